package witness

import (
	"errors"
	"fmt"

	fnote "github.com/transparency-dev/formats/note"
	"golang.org/x/mod/sumdb/note"

	"github.com/embassy-project/embassy/internal/wire"
)

var (
	// ErrUnwitnessed: fewer than Threshold witnesses cosigned a checkpoint.
	// A checkpoint is then reported as not (yet) witnessed, not retried
	// forever.
	ErrUnwitnessed = errors.New("checkpoint not cosigned by enough witnesses")
	// ErrPolicy: a Policy is not valid.
	ErrPolicy = errors.New("invalid witness policy")
)

// Named is a witness as a policy knows it.
type Named struct {
	// Name labels the witness in Count's result (e.g. "home", a host name).
	Name string
	// Verifiers are the witness's two verifier keys: one Ed25519
	// cosignature/v1 (alg 0x04) and one ML-DSA-44 (alg 0x06), as from
	// PublicKeys.Verifiers.
	Verifiers []string
}

// Policy is a w-of-W witness policy: a checkpoint is witnessed when at least
// Threshold (w) of the Witnesses (W) cosigned it, each with both of its keys.
//
// Two checkpoints that each meet the policy share at least 2w − W witnesses.
// If at most f witnesses may lie (cosign two inconsistent checkpoints of one
// log), a split view is impossible while 2w − W > f (Intersects). The default,
// w = 2 of W = 3 (the guest's home witness and two other hosts per log), has
// 2w − W = 1: it rules out split views as long as no witness lies (f = 0), and
// a single lying witness can only help a forked log if the two forks are shown
// to different honest witnesses, whose stored states then disagree. For
// availability it tolerates any one witness being down (the other two still
// give w = 2); with the home witness and one host down, 1 < w, so new
// checkpoints stay unwitnessed and Count reports ErrUnwitnessed for them
// instead of anyone waiting.
type Policy struct {
	Threshold int
	Witnesses []Named
}

// Intersects reports whether any two sets of w cosigners out of W witnesses
// share more than f witnesses (2w − W > f): with at most f dishonest witnesses,
// two w-quorums then always share an honest one, which cosigns only one of two
// inconsistent checkpoints.
func Intersects(w, W, f int) bool { return 2*w-W > f }

type witnessKeys struct {
	name    string
	ed, ml  note.Verifier
	signers []note.Verifier
}

// Validate checks the policy: 1 ≤ Threshold ≤ len(Witnesses), unique
// non-empty names, each witness with exactly one Ed25519 cosignature/v1 and
// one ML-DSA-44 key, and no key shared between witnesses. Errors wrap
// ErrPolicy.
func (p Policy) Validate() error {
	_, err := p.load()
	return err
}

func (p Policy) load() ([]witnessKeys, error) {
	if p.Threshold < 1 || p.Threshold > len(p.Witnesses) {
		return nil, fmt.Errorf("%w: threshold %d of %d witnesses", ErrPolicy, p.Threshold, len(p.Witnesses))
	}
	type nameHash struct {
		name string
		hash uint32
	}
	names := make(map[string]bool)
	keys := make(map[nameHash]bool)
	out := make([]witnessKeys, 0, len(p.Witnesses))
	for _, w := range p.Witnesses {
		if w.Name == "" || names[w.Name] {
			return nil, fmt.Errorf("%w: witness name %q empty or repeated", ErrPolicy, w.Name)
		}
		names[w.Name] = true
		wk := witnessKeys{name: w.Name}
		if len(w.Verifiers) != 2 {
			return nil, fmt.Errorf("%w: witness %q has %d keys, want an Ed25519 and an ML-DSA-44 key", ErrPolicy, w.Name, len(w.Verifiers))
		}
		for _, vk := range w.Verifiers {
			alg, err := keyAlg(vk)
			if err != nil {
				return nil, fmt.Errorf("%w: witness %q: %v", ErrPolicy, w.Name, err)
			}
			v, err := fnote.NewVerifierForCosignatureV1(vk)
			if err != nil {
				return nil, fmt.Errorf("%w: witness %q: %v", ErrPolicy, w.Name, err)
			}
			switch {
			case alg == algEd25519Cosig && wk.ed == nil:
				wk.ed = v
			case alg == algMLDSA44Cosig && wk.ml == nil:
				wk.ml = v
			default:
				return nil, fmt.Errorf("%w: witness %q: want one key of type 0x04 and one of type 0x06, got 0x%02x twice or another type", ErrPolicy, w.Name, alg)
			}
			k := nameHash{v.Name(), v.KeyHash()}
			if keys[k] {
				return nil, fmt.Errorf("%w: key %s+%08x listed twice", ErrPolicy, k.name, k.hash)
			}
			keys[k] = true
		}
		wk.signers = []note.Verifier{wk.ed, wk.ml}
		out = append(out, wk)
	}
	return out, nil
}

// Count returns the names of the witnesses that cosigned the checkpoint note
// cosigned with both of their keys, in policy order. The note must be signed
// by every one of the log's verifier keys logVerifiers (else ErrNotSigned). A
// witness with a missing or invalid signature for either key does not count.
// When fewer than Threshold count, Count returns them with an error wrapping
// ErrUnwitnessed.
func (p Policy) Count(cosigned []byte, logVerifiers []string) (ok []string, err error) {
	ws, err := p.load()
	if err != nil {
		return nil, err
	}
	lvs, err := parseVerifiers(logVerifiers)
	if err != nil {
		return nil, fmt.Errorf("count cosignatures: log keys: %w", err)
	}
	n, err := note.Open(cosigned, note.VerifierList(lvs...))
	if err != nil {
		var unverified *note.UnverifiedNoteError
		var invalid *note.InvalidSignatureError
		if errors.As(err, &unverified) || errors.As(err, &invalid) {
			return nil, fmt.Errorf("count cosignatures: %w: %v", ErrNotSigned, err)
		}
		return nil, fmt.Errorf("count cosignatures: %w", wire.Corruptf("checkpoint note: %v", err))
	}
	if missing := missingSigner(n, lvs); missing != "" {
		return nil, fmt.Errorf("count cosignatures: %w: no signature by %s", ErrNotSigned, missing)
	}
	for _, w := range ws {
		// One Open per witness, so that one witness's bad signature cannot
		// hide the others' (note.Open fails on any invalid known signature).
		wn, err := note.Open(cosigned, note.VerifierList(w.signers...))
		if err == nil && missingSigner(wn, w.signers) == "" {
			ok = append(ok, w.name)
		}
	}
	if len(ok) < p.Threshold {
		return ok, fmt.Errorf("%w: %d of %d witnesses, need %d", ErrUnwitnessed, len(ok), len(ws), p.Threshold)
	}
	return ok, nil
}
