package shardstore

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"

	"github.com/zeebo/blake3"

	"github.com/embassy-project/embassy/internal/wire"
)

// ID is an object's address: the BLAKE3-256 of its bytes.
type ID [32]byte

// Sum returns the ID of data.
func Sum(data []byte) ID { return ID(blake3.Sum256(data)) }

// String returns the 64 lowercase hex digits of id.
func (id ID) String() string { return hex.EncodeToString(id[:]) }

// MarshalText encodes id as 64 lowercase hex digits.
func (id ID) MarshalText() ([]byte, error) { return []byte(id.String()), nil }

// UnmarshalText parses 64 lowercase hex digits.
func (id *ID) UnmarshalText(b []byte) error {
	v, err := ParseID(string(b))
	if err != nil {
		return err
	}
	*id = v
	return nil
}

// ParseID parses the canonical form of an ID: exactly 64 lowercase hex
// digits. Errors wrap wire.ErrCorrupt.
func ParseID(s string) (ID, error) {
	var id ID
	if len(s) != 2*len(id) {
		return ID{}, wire.Corruptf("object id %q: %d characters, want %d", s, len(s), 2*len(id))
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return ID{}, wire.Corruptf("object id %q: not lowercase hex", s)
		}
	}
	if _, err := hex.Decode(id[:], []byte(s)); err != nil {
		return ID{}, wire.Corruptf("object id %q: %v", s, err)
	}
	return id, nil
}

// Kind separates the object namespaces of a store.
type Kind string

const (
	// KindShard holds erasure-coded shard files of packs.
	KindShard Kind = "shards"
	// KindEnvelope holds signed snapshot envelopes.
	KindEnvelope Kind = "envelopes"
)

// Kinds returns every valid kind.
func Kinds() []Kind { return []Kind{KindShard, KindEnvelope} }

// Valid reports whether k is one of the defined kinds.
func (k Kind) Valid() bool { return k == KindShard || k == KindEnvelope }

var (
	// ErrNotFound is returned by Get and Stat for an absent object.
	ErrNotFound = errors.New("not found")
	// ErrMismatch means bytes do not hash to their address: refused by Put,
	// found by Get. It wraps wire.ErrCorrupt.
	ErrMismatch = fmt.Errorf("%w: content does not match its address", wire.ErrCorrupt)
	// ErrInvalidKind is returned for a Kind that is not Valid.
	ErrInvalidKind = errors.New("invalid object kind")
)

// CheckKind returns an error wrapping ErrInvalidKind unless k is valid.
func CheckKind(k Kind) error {
	if !k.Valid() {
		return fmt.Errorf("%w %q", ErrInvalidKind, string(k))
	}
	return nil
}

// Summer is a Store that computes the address of what it is given:
// PutSum(ctx, kind, data) is Put(ctx, kind, Sum(data), data) returning that
// address, with data hashed once, where a caller's Sum and Put's check hash
// it twice. A store whose bytes another party will check (a host behind a
// client) still has that party check them.
type Summer interface {
	PutSum(ctx context.Context, kind Kind, data []byte) (ID, error)
}

// PutSum stores data in s under its address and returns the address,
// through s's PutSum if it is a Summer.
func PutSum(ctx context.Context, s Store, kind Kind, data []byte) (ID, error) {
	if ss, ok := s.(Summer); ok {
		return ss.PutSum(ctx, kind, data)
	}
	id := Sum(data)
	return id, s.Put(ctx, kind, id, data)
}

// Store is the one provider-side storage contract: write-once and
// content-addressed. Implementations are safe for concurrent use and honour
// ctx cancellation (at least on entry, and between objects in List).
type Store interface {
	// Put stores data under id. It verifies Sum(data) == id (else an error
	// wrapping ErrMismatch, and nothing is stored), is durable when it returns
	// nil, and is idempotent: a Put of an id already present is a no-op
	// returning nil. It never overwrites and never deletes. The store keeps no
	// reference to data.
	Put(ctx context.Context, kind Kind, id ID, data []byte) error
	// Get returns the object's bytes (the caller's to keep). It re-hashes them
	// and returns an error wrapping ErrMismatch (so wire.ErrCorrupt) naming id
	// if they do not match, or ErrNotFound if the object is absent.
	Get(ctx context.Context, kind Kind, id ID) ([]byte, error)
	// Stat returns the stored size without hashing; ErrNotFound if absent.
	Stat(ctx context.Context, kind Kind, id ID) (int64, error)
	// List calls fn for every object of kind, in no particular order. An
	// error from fn stops the walk and is returned as is.
	List(ctx context.Context, kind Kind, fn func(id ID, size int64) error) error
}
