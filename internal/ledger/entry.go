package ledger

import (
	"errors"
	"fmt"

	"github.com/embassy-project/embassy/internal/wire"
)

// EntryMagic starts every entry.
const EntryMagic = "EMBLENT1"

// MaxEntrySize is the largest entry: the tlog-tiles entry bundle format
// stores each entry's length in 16 bits.
const MaxEntrySize = 1<<16 - 1

// Limits on variable-length fields.
const (
	MaxFingerprintLen = 128 // writer and reader fingerprints
	MaxOriginLen      = 255 // log origins (the C2SP cosignature format stores them in 8 bits)
	MaxCosigned       = 100 // checkpoints in one Cosigned entry
)

// Type is an entry's event type, the byte after the magic.
type Type uint8

// Event types. Numbers are never reused.
const (
	TypeHostStarted    Type = 1
	TypeShardStored    Type = 2
	TypeObjectRead     Type = 3
	TypeGrantPresented Type = 4
	TypeProofAnswered  Type = 5
	TypeCosigned       Type = 6
	// Governance (docs/spec/order.md, docs/spec/governance-state.md).
	TypeOrderLogged      Type = 7
	TypeOrderRefused     Type = 8
	TypeOrderCarriedOut  Type = 9
	TypeAgreementAdopted Type = 10
	TypeArmed            Type = 11
	TypeDisarmed         Type = 12
	TypeWriteFenced      Type = 13
	TypeShareReleased    Type = 14
)

func (t Type) String() string {
	switch t {
	case TypeHostStarted:
		return "host-started"
	case TypeShardStored:
		return "shard-stored"
	case TypeObjectRead:
		return "object-read"
	case TypeGrantPresented:
		return "grant-presented"
	case TypeProofAnswered:
		return "proof-answered"
	case TypeCosigned:
		return "cosigned"
	case TypeOrderLogged:
		return "order-logged"
	case TypeOrderRefused:
		return "order-refused"
	case TypeOrderCarriedOut:
		return "order-carried-out"
	case TypeAgreementAdopted:
		return "agreement-adopted"
	case TypeArmed:
		return "armed"
	case TypeDisarmed:
		return "disarmed"
	case TypeWriteFenced:
		return "write-fenced"
	case TypeShareReleased:
		return "share-released"
	}
	return fmt.Sprintf("type(%d)", uint8(t))
}

// Kind says which of a guest's stores an object is in.
type Kind uint8

// Object kinds.
const (
	KindShards    Kind = 1
	KindEnvelopes Kind = 2
)

func (k Kind) String() string {
	switch k {
	case KindShards:
		return "shards"
	case KindEnvelopes:
		return "envelopes"
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

// ParseKind maps "shards" and "envelopes" to their Kind.
func ParseKind(s string) (Kind, error) {
	switch s {
	case "shards":
		return KindShards, nil
	case "envelopes":
		return KindEnvelopes, nil
	}
	return 0, fmt.Errorf("object kind %q: want shards or envelopes", s)
}

func (k Kind) valid() bool { return k == KindShards || k == KindEnvelopes }

// Entry is one logged event with the time the host gave it.
type Entry struct {
	// Time is Unix seconds by the host's clock when the event happened. It is
	// informative: concurrent appends may be sequenced out of time order.
	Time int64
	// Event is one of HostStarted, ShardStored, ObjectRead, GrantPresented,
	// ProofAnswered or Cosigned.
	Event Event
}

// Event is the typed part of an entry.
type Event interface {
	// Type returns the event's type byte.
	Type() Type
	check() error
	appendTo(w *wire.Writer)
}

// HostStarted records that the host process started with a configuration.
type HostStarted struct {
	// Config is a commitment to the host's configuration (the host node
	// chooses what it hashes; BLAKE3-256 of its config file).
	Config [32]byte
}

// ShardStored records that a guest's object was written to the store.
type ShardStored struct {
	Guest  [16]byte
	Kind   Kind
	Object [32]byte // the object's address (BLAKE3-256 of its bytes)
	Size   uint64   // bytes stored
	Writer string   // fingerprint of the key that authenticated the write
}

// ObjectRead records that a guest's object was served.
type ObjectRead struct {
	Guest  [16]byte
	Kind   Kind
	Object [32]byte
	Reader string   // fingerprint of the key that authenticated the read
	Grant  [16]byte // ID of the read grant that allowed the read; zero if none
}

// GrantPresented records that a reader presented a grant for a guest.
type GrantPresented struct {
	Guest  [16]byte
	Grant  [16]byte // the read grant's ID (docs/spec/access.md)
	Reader string   // fingerprint of the presenting key
}

// ProofAnswered records that the host answered a storage-proof challenge.
type ProofAnswered struct {
	Guest     [16]byte
	Challenge [32]byte // digest of the challenge received
	Answer    [32]byte // digest of the answer sent
	Items     uint64   // number of objects the challenge covered
}

// Cosigned records the checkpoints of other logs this host, as a witness,
// cosigned in one round.
type Cosigned struct {
	Checkpoints []Witnessed
}

// Witnessed is one checkpoint a witness cosigned.
type Witnessed struct {
	Origin string
	Size   uint64
	Hash   [32]byte
}

func (HostStarted) Type() Type    { return TypeHostStarted }
func (ShardStored) Type() Type    { return TypeShardStored }
func (ObjectRead) Type() Type     { return TypeObjectRead }
func (GrantPresented) Type() Type { return TypeGrantPresented }
func (ProofAnswered) Type() Type  { return TypeProofAnswered }
func (Cosigned) Type() Type       { return TypeCosigned }

// validFingerprint reports whether s is 1 to MaxFingerprintLen printable
// ASCII characters without spaces. Fingerprints are opaque here; the host
// node decides their form ("sha256:" and the hex SHA-256 of the client's
// TLS SubjectPublicKeyInfo, docs/spec/access.md).
func validFingerprint(s string) bool {
	if len(s) == 0 || len(s) > MaxFingerprintLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < 0x21 || s[i] > 0x7e {
			return false
		}
	}
	return true
}

// ValidOrigin reports whether s can name a log: 1 to 255 printable ASCII
// characters without spaces or '+' (a signed-note key name that also fits
// the C2SP cosignature format). Embassy hosts use "embassy.host/NAME".
func ValidOrigin(s string) bool {
	if len(s) == 0 || len(s) > MaxOriginLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x21 || c > 0x7e || c == '+' {
			return false
		}
	}
	return true
}

// Origin returns the origin convention for host name's log:
// "embassy.host/" + name.
func Origin(hostName string) string { return "embassy.host/" + hostName }

var errZeroGrant = errors.New("grant present but all zero")

func (e HostStarted) check() error { return nil }

func (e ShardStored) check() error {
	if !e.Kind.valid() {
		return fmt.Errorf("bad kind %d", e.Kind)
	}
	if !validFingerprint(e.Writer) {
		return fmt.Errorf("bad writer fingerprint %q", e.Writer)
	}
	return nil
}

func (e ObjectRead) check() error {
	if !e.Kind.valid() {
		return fmt.Errorf("bad kind %d", e.Kind)
	}
	if !validFingerprint(e.Reader) {
		return fmt.Errorf("bad reader fingerprint %q", e.Reader)
	}
	return nil
}

func (e GrantPresented) check() error {
	if !validFingerprint(e.Reader) {
		return fmt.Errorf("bad reader fingerprint %q", e.Reader)
	}
	return nil
}

func (e ProofAnswered) check() error { return nil }

func (e Cosigned) check() error {
	if len(e.Checkpoints) == 0 || len(e.Checkpoints) > MaxCosigned {
		return fmt.Errorf("%d checkpoints, want 1 to %d", len(e.Checkpoints), MaxCosigned)
	}
	for _, c := range e.Checkpoints {
		if !ValidOrigin(c.Origin) {
			return fmt.Errorf("bad origin %q", c.Origin)
		}
	}
	return nil
}

func (e HostStarted) appendTo(w *wire.Writer) { w.Fixed(e.Config[:]) }

func (e ShardStored) appendTo(w *wire.Writer) {
	w.Fixed(e.Guest[:])
	w.Byte(byte(e.Kind))
	w.Fixed(e.Object[:])
	w.Uvarint(e.Size)
	w.String(e.Writer)
}

func (e ObjectRead) appendTo(w *wire.Writer) {
	w.Fixed(e.Guest[:])
	w.Byte(byte(e.Kind))
	w.Fixed(e.Object[:])
	w.String(e.Reader)
	if e.Grant == ([16]byte{}) {
		w.Byte(0)
		return
	}
	w.Byte(1)
	w.Fixed(e.Grant[:])
}

func (e GrantPresented) appendTo(w *wire.Writer) {
	w.Fixed(e.Guest[:])
	w.Fixed(e.Grant[:])
	w.String(e.Reader)
}

func (e ProofAnswered) appendTo(w *wire.Writer) {
	w.Fixed(e.Guest[:])
	w.Fixed(e.Challenge[:])
	w.Fixed(e.Answer[:])
	w.Uvarint(e.Items)
}

func (e Cosigned) appendTo(w *wire.Writer) {
	w.Uvarint(uint64(len(e.Checkpoints)))
	for _, c := range e.Checkpoints {
		w.String(c.Origin)
		w.Uvarint(c.Size)
		w.Fixed(c.Hash[:])
	}
}

// MarshalEntry encodes e. It fails on a nil or invalid event, or if the
// encoding exceeds MaxEntrySize.
func MarshalEntry(e Entry) ([]byte, error) {
	if e.Event == nil {
		return nil, errors.New("marshal entry: no event")
	}
	if err := e.Event.check(); err != nil {
		return nil, fmt.Errorf("marshal %s entry: %w", e.Event.Type(), err)
	}
	w := wire.NewWriter(make([]byte, 0, 128))
	w.Fixed([]byte(EntryMagic))
	w.Byte(byte(e.Event.Type()))
	w.Varint(e.Time)
	e.Event.appendTo(w)
	if w.Len() > MaxEntrySize {
		return nil, fmt.Errorf("marshal %s entry: %d bytes, more than %d", e.Event.Type(), w.Len(), MaxEntrySize)
	}
	return w.Bytes(), nil
}

// ParseEntry decodes an entry. Every failure wraps wire.ErrCorrupt, and
// MarshalEntry(ParseEntry(b)) == b for every b it accepts.
func ParseEntry(b []byte) (Entry, error) {
	if len(b) > MaxEntrySize {
		return Entry{}, wire.Corruptf("ledger entry: %d bytes, more than %d", len(b), MaxEntrySize)
	}
	r := wire.NewReader(b, "ledger entry")
	r.Magic(EntryMagic)
	t := Type(r.Byte())
	e := Entry{Time: r.Varint()}
	if r.Err() != nil {
		return Entry{}, r.Err()
	}
	switch t {
	case TypeHostStarted:
		var ev HostStarted
		r.FixedInto(ev.Config[:])
		e.Event = ev
	case TypeShardStored:
		var ev ShardStored
		r.FixedInto(ev.Guest[:])
		ev.Kind = readKind(r)
		r.FixedInto(ev.Object[:])
		ev.Size = r.Uvarint()
		ev.Writer = readFingerprint(r, "writer")
		e.Event = ev
	case TypeObjectRead:
		var ev ObjectRead
		r.FixedInto(ev.Guest[:])
		ev.Kind = readKind(r)
		r.FixedInto(ev.Object[:])
		ev.Reader = readFingerprint(r, "reader")
		switch r.Byte() {
		case 0:
		case 1:
			r.FixedInto(ev.Grant[:])
			if r.Err() == nil && ev.Grant == ([16]byte{}) {
				r.Failf("%v", errZeroGrant)
			}
		default:
			r.Failf("bad grant flag")
		}
		e.Event = ev
	case TypeGrantPresented:
		var ev GrantPresented
		r.FixedInto(ev.Guest[:])
		r.FixedInto(ev.Grant[:])
		ev.Reader = readFingerprint(r, "reader")
		e.Event = ev
	case TypeProofAnswered:
		var ev ProofAnswered
		r.FixedInto(ev.Guest[:])
		r.FixedInto(ev.Challenge[:])
		r.FixedInto(ev.Answer[:])
		ev.Items = r.Uvarint()
		e.Event = ev
	case TypeCosigned:
		n := r.UvarintMax(MaxCosigned, "checkpoint count")
		if r.Err() == nil && n == 0 {
			r.Failf("no checkpoints")
		}
		// Each checkpoint takes at least 1+1+1+32 bytes: check before allocating.
		if r.Err() == nil && n*35 > uint64(r.Remaining()) {
			r.Failf("%d checkpoints cannot fit in %d bytes", n, r.Remaining())
		}
		var ev Cosigned
		if r.Err() == nil {
			ev.Checkpoints = make([]Witnessed, n)
		}
		for i := range ev.Checkpoints {
			c := &ev.Checkpoints[i]
			c.Origin = r.String(MaxOriginLen, "origin")
			if r.Err() == nil && !ValidOrigin(c.Origin) {
				r.Failf("bad origin %q", c.Origin)
			}
			c.Size = r.Uvarint()
			r.FixedInto(c.Hash[:])
		}
		e.Event = ev
	default:
		ev, ok := parseGovEvent(t, r)
		if !ok {
			r.Failf("unknown event type %d", t)
		}
		e.Event = ev
	}
	if err := r.Done(); err != nil {
		return Entry{}, err
	}
	return e, nil
}

func readKind(r *wire.Reader) Kind {
	k := Kind(r.Byte())
	if r.Err() == nil && !k.valid() {
		r.Failf("bad object kind %d", k)
	}
	return k
}

func readFingerprint(r *wire.Reader, field string) string {
	s := r.String(MaxFingerprintLen, field)
	if r.Err() == nil && !validFingerprint(s) {
		r.Failf("bad %s fingerprint", field)
	}
	return s
}
