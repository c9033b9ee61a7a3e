package gov

import (
	"errors"
	"fmt"

	"github.com/embassy-project/embassy/internal/wire"
)

// Errors. Every refusal wraps one of these, so callers (and tests) tell them
// apart with errors.Is; the message around it names the values concerned.
var (
	// ErrMalformed marks an agreement, order or state whose bytes are wrong.
	// It wraps wire.ErrCorrupt.
	ErrMalformed = fmt.Errorf("governance: %w", wire.ErrCorrupt)
	// ErrUnsafe marks an agreement whose parameters are valid but unsafe
	// (for example a witness threshold that a colluding minority defeats).
	ErrUnsafe = errors.New("governance: unsafe parameters")
	// ErrBadSignature marks a signature line that names a known key but does
	// not verify.
	ErrBadSignature = errors.New("governance: bad signature")
	// ErrUnknownSigner marks a signature by a key the agreement does not list.
	ErrUnknownSigner = errors.New("governance: unknown signer")
	// ErrRevoked marks a signature by a custodian whose key was revoked.
	ErrRevoked = errors.New("governance: revoked key")
	// ErrQuorum marks too few distinct signers.
	ErrQuorum = errors.New("governance: quorum not met")
	// ErrRole marks signers that lack a role the quorum requires.
	ErrRole = errors.New("governance: required role missing")
	// ErrNotYetValid marks an order before its not-before time.
	ErrNotYetValid = errors.New("governance: not yet valid")
	// ErrExpired marks an order after its not-after time.
	ErrExpired = errors.New("governance: expired")
	// ErrReplay marks an order that was already carried out.
	ErrReplay = errors.New("governance: order already carried out")
	// ErrStaleEpoch marks an epoch older than the dataset's current one.
	ErrStaleEpoch = errors.New("governance: stale epoch")
	// ErrEpochGap marks an epoch more than one ahead of the current one.
	ErrEpochGap = errors.New("governance: epoch gap")
	// ErrWrongGuest marks an order or agreement for another guest.
	ErrWrongGuest = errors.New("governance: wrong guest")
	// ErrWrongAgreement marks an order issued under another agreement
	// version than the one in force.
	ErrWrongAgreement = errors.New("governance: wrong agreement version")
	// ErrNotAllowed marks something the agreement does not allow (a class on
	// a host, an unknown dataset or host).
	ErrNotAllowed = errors.New("governance: not allowed by the agreement")
	// ErrNotAcknowledged marks an agreement a host has not acknowledged.
	ErrNotAcknowledged = errors.New("governance: not acknowledged")
	// ErrTransition marks an order or event the current state does not
	// accept.
	ErrTransition = errors.New("governance: invalid transition")
	// ErrWrongWriter marks a write in the current epoch by a key that is not
	// the epoch's writer.
	ErrWrongWriter = errors.New("governance: wrong writer")
	// ErrRotateDue: a returned dataset is written again only after a rotate
	// order gives it new keys.
	ErrRotateDue = errors.New("governance: key rotation due")
)
