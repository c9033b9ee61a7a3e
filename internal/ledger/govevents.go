package ledger

import (
	"errors"
	"fmt"
	"unicode/utf8"

	"github.com/embassy-project/embassy/internal/wire"
)

// Limits on governance entries.
const (
	// MaxOrderSize bounds a logged order file (the whole signed note), so the
	// entry fits MaxEntrySize.
	MaxOrderSize   = 60000
	MaxReasonLen   = 512
	MaxDatasetLen  = 64
	MaxCustodianFP = 128
)

// OrderLogged records a quorum-signed order, whole, before the host carries
// it out (log before act). Other hosts read missed orders from here.
type OrderLogged struct {
	Guest [16]byte
	Order []byte // the signed order file (docs/spec/order.md)
}

// OrderRefused records an order the host refused, and why.
type OrderRefused struct {
	Guest  [16]byte
	Digest [32]byte // BLAKE3-256 of the submitted file
	Reason string   // printable UTF-8, at most MaxReasonLen bytes
}

// OrderCarriedOut records that a logged order took effect once a checkpoint
// covering its OrderLogged entry was cosigned by the witness threshold.
type OrderCarriedOut struct {
	Guest  [16]byte
	Order  [16]byte // the order's ID
	Logged uint64   // index of its OrderLogged entry in this log
	Epoch  uint64   // the dataset's epoch afterwards (0 if the order sets none)
}

// AgreementAdopted records that an agreement version came into force for a
// guest at this host.
type AgreementAdopted struct {
	Guest   [16]byte
	Version uint64
	Hash    [32]byte // BLAKE3-256 of the agreement text
}

// Armed records that an activation threshold was crossed for a dataset
// (home silent too long). Arming alerts; it never activates.
type Armed struct {
	Guest   [16]byte
	Dataset string
	Silent  uint64 // seconds since the last heartbeat
}

// Disarmed records that home spoke again before any activation.
type Disarmed struct {
	Guest   [16]byte
	Dataset string
}

// WriteFenced records that a write was refused by the fencing rule (stale
// epoch or a key that is not the epoch's writer): once per writer, dataset
// and epoch per host process.
type WriteFenced struct {
	Guest   [16]byte
	Dataset string
	Epoch   uint64 // the epoch the writer claimed
	Writer  string // fingerprint of the refused writer key
}

// ShareReleased records that a custodian's key share was released to this
// host under an activation order (docs/spec/share-release.md).
type ShareReleased struct {
	Guest     [16]byte
	Dataset   string
	Order     [16]byte
	Custodian string // the custodian's key fingerprint
}

func (OrderLogged) Type() Type      { return TypeOrderLogged }
func (OrderRefused) Type() Type     { return TypeOrderRefused }
func (OrderCarriedOut) Type() Type  { return TypeOrderCarriedOut }
func (AgreementAdopted) Type() Type { return TypeAgreementAdopted }
func (Armed) Type() Type            { return TypeArmed }
func (Disarmed) Type() Type         { return TypeDisarmed }
func (WriteFenced) Type() Type      { return TypeWriteFenced }
func (ShareReleased) Type() Type    { return TypeShareReleased }

func (e OrderLogged) check() error {
	if len(e.Order) == 0 || len(e.Order) > MaxOrderSize {
		return fmt.Errorf("order of %d bytes, want 1 to %d", len(e.Order), MaxOrderSize)
	}
	return nil
}

func (e OrderRefused) check() error { return checkReason(e.Reason) }

func checkReason(s string) error {
	if len(s) == 0 || len(s) > MaxReasonLen || !utf8.ValidString(s) {
		return fmt.Errorf("reason must be 1 to %d bytes of UTF-8", MaxReasonLen)
	}
	for _, r := range s {
		if r < 0x20 || r == 0x7f {
			return errors.New("reason has a control character")
		}
	}
	return nil
}

func (e OrderCarriedOut) check() error  { return nil }
func (e AgreementAdopted) check() error { return nil }
func (e Armed) check() error            { return checkDataset(e.Dataset) }
func (e Disarmed) check() error         { return checkDataset(e.Dataset) }
func (e WriteFenced) check() error {
	if err := checkDataset(e.Dataset); err != nil {
		return err
	}
	if !validFingerprint(e.Writer) {
		return fmt.Errorf("bad writer fingerprint %q", e.Writer)
	}
	return nil
}
func (e ShareReleased) check() error {
	if err := checkDataset(e.Dataset); err != nil {
		return err
	}
	if !validFingerprint(e.Custodian) {
		return fmt.Errorf("bad custodian fingerprint %q", e.Custodian)
	}
	return nil
}

func checkDataset(s string) error {
	if !wire.ValidName(s) {
		return fmt.Errorf("bad dataset name %q", s)
	}
	return nil
}

func (e OrderLogged) appendTo(w *wire.Writer) { w.Fixed(e.Guest[:]); w.LenBytes(e.Order) }
func (e OrderRefused) appendTo(w *wire.Writer) {
	w.Fixed(e.Guest[:])
	w.Fixed(e.Digest[:])
	w.String(e.Reason)
}
func (e OrderCarriedOut) appendTo(w *wire.Writer) {
	w.Fixed(e.Guest[:])
	w.Fixed(e.Order[:])
	w.Uvarint(e.Logged)
	w.Uvarint(e.Epoch)
}
func (e AgreementAdopted) appendTo(w *wire.Writer) {
	w.Fixed(e.Guest[:])
	w.Uvarint(e.Version)
	w.Fixed(e.Hash[:])
}
func (e Armed) appendTo(w *wire.Writer) {
	w.Fixed(e.Guest[:])
	w.String(e.Dataset)
	w.Uvarint(e.Silent)
}
func (e Disarmed) appendTo(w *wire.Writer) { w.Fixed(e.Guest[:]); w.String(e.Dataset) }
func (e WriteFenced) appendTo(w *wire.Writer) {
	w.Fixed(e.Guest[:])
	w.String(e.Dataset)
	w.Uvarint(e.Epoch)
	w.String(e.Writer)
}
func (e ShareReleased) appendTo(w *wire.Writer) {
	w.Fixed(e.Guest[:])
	w.String(e.Dataset)
	w.Fixed(e.Order[:])
	w.String(e.Custodian)
}

func readDataset(r *wire.Reader) string {
	s := r.String(MaxDatasetLen, "dataset")
	if r.Err() == nil && !wire.ValidName(s) {
		r.Failf("bad dataset name")
	}
	return s
}

// parseGovEvent decodes the governance events; ok is false for a type it
// does not know.
func parseGovEvent(t Type, r *wire.Reader) (Event, bool) {
	switch t {
	case TypeOrderLogged:
		var ev OrderLogged
		r.FixedInto(ev.Guest[:])
		ev.Order = r.LenBytes(MaxOrderSize, "order")
		if r.Err() == nil && len(ev.Order) == 0 {
			r.Failf("empty order")
		}
		return ev, true
	case TypeOrderRefused:
		var ev OrderRefused
		r.FixedInto(ev.Guest[:])
		r.FixedInto(ev.Digest[:])
		ev.Reason = r.String(MaxReasonLen, "reason")
		if r.Err() == nil {
			if err := checkReason(ev.Reason); err != nil {
				r.Failf("%v", err)
			}
		}
		return ev, true
	case TypeOrderCarriedOut:
		var ev OrderCarriedOut
		r.FixedInto(ev.Guest[:])
		r.FixedInto(ev.Order[:])
		ev.Logged = r.Uvarint()
		ev.Epoch = r.Uvarint()
		return ev, true
	case TypeAgreementAdopted:
		var ev AgreementAdopted
		r.FixedInto(ev.Guest[:])
		ev.Version = r.Uvarint()
		r.FixedInto(ev.Hash[:])
		return ev, true
	case TypeArmed:
		var ev Armed
		r.FixedInto(ev.Guest[:])
		ev.Dataset = readDataset(r)
		ev.Silent = r.Uvarint()
		return ev, true
	case TypeDisarmed:
		var ev Disarmed
		r.FixedInto(ev.Guest[:])
		ev.Dataset = readDataset(r)
		return ev, true
	case TypeWriteFenced:
		var ev WriteFenced
		r.FixedInto(ev.Guest[:])
		ev.Dataset = readDataset(r)
		ev.Epoch = r.Uvarint()
		ev.Writer = readFingerprint(r, "writer")
		return ev, true
	case TypeShareReleased:
		var ev ShareReleased
		r.FixedInto(ev.Guest[:])
		ev.Dataset = readDataset(r)
		r.FixedInto(ev.Order[:])
		ev.Custodian = readFingerprint(r, "custodian")
		return ev, true
	}
	return nil, false
}
