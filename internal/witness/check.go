package witness

import (
	"bytes"
	"errors"
	"fmt"
	"net/http"

	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"
)

// Errors a witness answers with, one per HTTP status; the client maps the
// statuses back to them, so callers branch the same way on both sides.
var (
	// ErrUnknownLog: the checkpoint's origin is not a configured log (404).
	ErrUnknownLog = errors.New("unknown log origin")
	// ErrNotSigned: not every configured key of the log signed the
	// checkpoint (403).
	ErrNotSigned = errors.New("checkpoint not signed by every log key")
	// ErrOldSize: the old size is larger than the checkpoint's size (400).
	ErrOldSize = errors.New("old size larger than checkpoint size")
	// ErrConflict: the old size is not the size the witness last cosigned
	// (409 with that size); the error is a *ConflictError.
	ErrConflict = errors.New("old size is not the witness's size")
	// ErrRootMismatch: same size as the witness's state but a different root
	// hash, a fork (409 without a size).
	ErrRootMismatch = errors.New("root hash differs from the cosigned one at the same size")
	// ErrBadProof: the consistency proof does not verify (422).
	ErrBadProof = errors.New("consistency proof does not verify")
	// ErrTooLarge: the request body is over MaxRequestSize (413).
	ErrTooLarge = errors.New("request body too large")
	// ErrBadRequest: a witness answered 400 (the client's request was
	// malformed or old > size); the witness itself uses wire.ErrCorrupt and
	// ErrOldSize.
	ErrBadRequest = errors.New("witness rejected the request as malformed")
)

// ConflictError is ErrConflict with the size the witness holds for the log.
type ConflictError struct {
	Size uint64
}

func (e *ConflictError) Error() string {
	return fmt.Sprintf("%v: witness has size %d", ErrConflict, e.Size)
}

// Is makes errors.Is(err, ErrConflict) hold.
func (e *ConflictError) Is(target error) bool { return target == ErrConflict }

// State is what a witness remembers about one log: the size and root hash of
// the latest checkpoint it cosigned. The zero State is "never cosigned", which
// is the empty tree.
type State struct {
	Size uint64
	Root [HashSize]byte
}

// emptyRoot is RFC 6962's root of the empty tree, SHA-256("").
var emptyRoot = [HashSize]byte(rfc6962.DefaultHasher.EmptyRoot())

// root returns the state's root hash, the empty tree's for size 0.
func (s State) root() []byte {
	if s.Size == 0 {
		return emptyRoot[:]
	}
	return s.Root[:]
}

// Check decides whether a witness whose state for the log is state may
// cosign cp, submitted with old size old and a consistency proof; it is the
// whole of tlog-witness's consistency rules and does no I/O. On success the
// witness's new state is State{cp.Size, cp.Root}.
//
//   - old > cp.Size: ErrOldSize (400);
//   - old != state.Size: *ConflictError{state.Size} (409), so the client can
//     retry from the witness's size; on first contact (zero State) old must be 0;
//   - old == cp.Size: the proof must be empty (else ErrBadProof) and the root
//     equal to the state's (else ErrRootMismatch, 409);
//   - otherwise the proof must prove cp consistent with (state.Size,
//     state.Root) under RFC 6962 (else ErrBadProof, 422); from size 0 it must
//     be empty.
//
// A checkpoint smaller than the state is thus always refused: its old size
// either exceeds its size or differs from the state's.
func Check(state State, old uint64, proof [][]byte, cp Checkpoint) error {
	switch {
	case old > cp.Size:
		return fmt.Errorf("%w: old %d, checkpoint %d", ErrOldSize, old, cp.Size)
	case old != state.Size:
		return &ConflictError{Size: state.Size}
	case old == cp.Size:
		if len(proof) != 0 {
			return fmt.Errorf("%w: %d proof hashes for equal sizes", ErrBadProof, len(proof))
		}
		if !bytes.Equal(cp.Root[:], state.root()) {
			return fmt.Errorf("%w: size %d", ErrRootMismatch, cp.Size)
		}
		return nil
	}
	if err := verifyConsistency(old, cp.Size, proof, state.root(), cp.Root[:]); err != nil {
		return fmt.Errorf("%w: %d to %d: %v", ErrBadProof, old, cp.Size, err)
	}
	return nil
}

// verifyConsistency is transparency-dev/merkle's RFC 6962 consistency check.
func verifyConsistency(size1, size2 uint64, p [][]byte, root1, root2 []byte) error {
	return proof.VerifyConsistency(rfc6962.DefaultHasher, size1, size2, p, root1, root2)
}

// statusOf maps an add-checkpoint error to its HTTP status.
func statusOf(err error) int {
	switch {
	case errors.Is(err, ErrConflict), errors.Is(err, ErrRootMismatch):
		return http.StatusConflict
	case errors.Is(err, ErrUnknownLog):
		return http.StatusNotFound
	case errors.Is(err, ErrNotSigned):
		return http.StatusForbidden
	case errors.Is(err, ErrBadProof):
		return http.StatusUnprocessableEntity
	case errors.Is(err, ErrTooLarge):
		return http.StatusRequestEntityTooLarge
	case errors.Is(err, ErrOldSize), isCorrupt(err):
		return http.StatusBadRequest
	case isContext(err):
		return http.StatusServiceUnavailable
	default:
		return http.StatusInternalServerError
	}
}
