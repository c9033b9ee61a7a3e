package snapshot

import (
	"bytes"
	"errors"
	"fmt"
	"math/bits"

	"github.com/zeebo/blake3"

	"github.com/embassy-project/embassy/internal/sig"
	"github.com/embassy-project/embassy/internal/wire"
)

// Magic opens every envelope body.
const Magic = "EMBSENV1"

// Domain is the signature domain of envelopes (see sig).
const Domain = "snapshot-envelope"

// Limits enforced by Validate and Parse.
const (
	MaxPacks  = 1 << 24 // packs listed in one envelope
	MaxRecord = 1 << 20 // bytes of sealed record carried in one envelope
	// MaxHostName is the longest host name.
	MaxHostName = 64
)

// PackRef lists one pack a snapshot needs: its ID, sealed size, the size of
// each shard and the address (BLAKE3-256) of each of its N shards; shard i
// lives on host i.
type PackRef struct {
	ID        [16]byte
	Size      uint64
	ShardSize uint64
	Shards    [][32]byte
}

// Envelope is a snapshot's signed, public description.
type Envelope struct {
	Guest, Dataset [16]byte
	Seq            uint64   // 1, 2, 3 … per dataset
	Prev           [32]byte // Hash of the previous envelope's signed bytes; zero for Seq 1
	Time           int64    // unix nanoseconds, as the agent's clock says
	K, N           uint8    // erasure parameters of every pack listed
	Hosts          []string // the host holding shard i of every pack, N names
	Packs          []PackRef
	Record         []byte // the sealed Record, opaque here
}

// Validate checks the structural rules: Seq ≥ 1, Prev zero exactly when Seq is
// 1, 1 ≤ K ≤ N, packs strictly sorted by ID (so unique) with N shards each and
// a shard size that can hold the pack (ShardSize·K ≥ Size ≥ 1), and a sealed
// record of 1..MaxRecord bytes.
func (e *Envelope) Validate() error {
	switch {
	case e.Seq == 0:
		return errors.New("envelope: seq 0")
	case e.Seq == 1 && e.Prev != [32]byte{}:
		return errors.New("envelope: seq 1 has a previous hash")
	case e.Seq > 1 && e.Prev == [32]byte{}:
		return fmt.Errorf("envelope: seq %d has no previous hash", e.Seq)
	case e.K == 0:
		return errors.New("envelope: k is 0")
	case e.K > e.N:
		return fmt.Errorf("envelope: k %d > n %d", e.K, e.N)
	case len(e.Hosts) != int(e.N):
		return fmt.Errorf("envelope: %d host names, want n=%d", len(e.Hosts), e.N)
	case len(e.Packs) > MaxPacks:
		return fmt.Errorf("envelope: %d packs exceeds limit %d", len(e.Packs), MaxPacks)
	case len(e.Record) == 0:
		return errors.New("envelope: empty record")
	case len(e.Record) > MaxRecord:
		return fmt.Errorf("envelope: record is %d bytes, limit %d", len(e.Record), MaxRecord)
	}
	seen := make(map[string]bool, len(e.Hosts))
	for _, h := range e.Hosts {
		if !validHost(h) {
			return fmt.Errorf("envelope: invalid host name %q", h)
		}
		if seen[h] {
			return fmt.Errorf("envelope: host %q listed twice", h)
		}
		seen[h] = true
	}
	for i := range e.Packs {
		p := &e.Packs[i]
		if i > 0 && bytes.Compare(e.Packs[i-1].ID[:], p.ID[:]) >= 0 {
			return fmt.Errorf("envelope: pack %d %x: not after %x (IDs must be strictly increasing)", i, p.ID, e.Packs[i-1].ID)
		}
		if len(p.Shards) != int(e.N) {
			return fmt.Errorf("envelope: pack %x: %d shards, want n=%d", p.ID, len(p.Shards), e.N)
		}
		if p.Size == 0 || p.ShardSize == 0 {
			return fmt.Errorf("envelope: pack %x: zero size", p.ID)
		}
		if hi, lo := bits.Mul64(p.ShardSize, uint64(e.K)); hi == 0 && lo < p.Size {
			return fmt.Errorf("envelope: pack %x: %d shards of %d bytes cannot hold %d bytes", p.ID, e.K, p.ShardSize, p.Size)
		}
	}
	return nil
}

// Marshal validates e and returns its body, the bytes that Sign signs.
func (e *Envelope) Marshal() ([]byte, error) {
	if err := e.Validate(); err != nil {
		return nil, err
	}
	return e.encode(), nil
}

// encode writes the body without validating it.
func (e *Envelope) encode() []byte {
	size := len(Magic) + 16 + 16 + 10 + 32 + 10 + 2 + 5 + 5 + len(e.Record) + 65*len(e.Hosts)
	for i := range e.Packs {
		size += 16 + 20 + 32*len(e.Packs[i].Shards)
	}
	w := wire.NewWriter(make([]byte, 0, size))
	w.Fixed([]byte(Magic))
	w.Fixed(e.Guest[:])
	w.Fixed(e.Dataset[:])
	w.Uvarint(e.Seq)
	w.Fixed(e.Prev[:])
	w.Varint(e.Time)
	w.Byte(e.K)
	w.Byte(e.N)
	for _, h := range e.Hosts {
		w.String(h)
	}
	w.Uvarint(uint64(len(e.Packs)))
	for i := range e.Packs {
		p := &e.Packs[i]
		w.Fixed(p.ID[:])
		w.Uvarint(p.Size)
		w.Uvarint(p.ShardSize)
		for j := range p.Shards {
			w.Fixed(p.Shards[j][:])
		}
	}
	w.LenBytes(e.Record)
	return w.Bytes()
}

// Sign signs e with the agent's key and returns the signed envelope:
// body || signature, the signature being sig.SignatureSize bytes over body
// under Domain. Signatures are randomized, so signing the same envelope twice
// gives different bytes and different hashes: an agent signs each Seq once
// and keeps what it signed.
func (e *Envelope) Sign(k *sig.PrivateKey) ([]byte, error) {
	body, err := e.Marshal()
	if err != nil {
		return nil, err
	}
	s, err := k.Sign(Domain, body)
	if err != nil {
		return nil, fmt.Errorf("sign envelope: %w", err)
	}
	return append(body, s...), nil
}

// split separates the signed bytes into body and signature.
func split(signed []byte) (body, signature []byte, err error) {
	if len(signed) < len(Magic)+sig.SignatureSize {
		return nil, nil, wire.Corruptf("envelope: %d bytes is too short", len(signed))
	}
	n := len(signed) - sig.SignatureSize
	return signed[:n:n], signed[n:], nil
}

// Parse decodes a signed envelope's structure without checking its
// signature; use Verify for anything not already verified. Every error wraps
// wire.ErrCorrupt.
func Parse(signed []byte) (*Envelope, error) {
	body, _, err := split(signed)
	if err != nil {
		return nil, err
	}
	return parseBody(body)
}

// Verify checks the signature of a signed envelope against the agent's
// public key (both the Ed25519 and the ML-DSA-65 halves), then parses it. A
// signature that fails wraps both sig.ErrBadSignature and wire.ErrCorrupt:
// whether forged, damaged or from another agent, these bytes are not an
// envelope of this agent.
func Verify(signed []byte, agent sig.PublicKey) (*Envelope, error) {
	body, s, err := split(signed)
	if err != nil {
		return nil, err
	}
	if err := agent.Verify(Domain, body, s); err != nil {
		return nil, fmt.Errorf("verify envelope: %w: %w", wire.ErrCorrupt, err)
	}
	return parseBody(body)
}

// Hash returns BLAKE3-256 of the signed bytes: the envelope's storage address
// and the Prev of its successor.
func Hash(signed []byte) [32]byte { return blake3.Sum256(signed) }

const packMinSize = 16 + 1 + 1 // plus 32·n shard addresses

func parseBody(body []byte) (*Envelope, error) {
	r := wire.NewReader(body, "envelope")
	r.Magic(Magic)
	e := &Envelope{}
	r.FixedInto(e.Guest[:])
	r.FixedInto(e.Dataset[:])
	e.Seq = r.Uvarint()
	r.FixedInto(e.Prev[:])
	e.Time = r.Varint()
	e.K = r.Byte()
	e.N = r.Byte()
	for i := 0; i < int(e.N) && r.Err() == nil; i++ {
		e.Hosts = append(e.Hosts, r.String(MaxHostName, "host name"))
	}
	count := r.UvarintMax(MaxPacks, "pack count")
	if err := r.Err(); err != nil {
		return nil, err
	}
	if count > 0 {
		// Bound the allocation by the input before trusting count.
		per := packMinSize + 32*int(e.N)
		if count > uint64(r.Remaining()/per) {
			r.Failf("%d packs of %d shards cannot fit in %d bytes", count, e.N, r.Remaining())
			return nil, r.Err()
		}
		e.Packs = make([]PackRef, count)
		shards := make([][32]byte, int(count)*int(e.N))
		for i := range e.Packs {
			p := &e.Packs[i]
			r.FixedInto(p.ID[:])
			p.Size = r.Uvarint()
			p.ShardSize = r.Uvarint()
			p.Shards = shards[i*int(e.N) : (i+1)*int(e.N) : (i+1)*int(e.N)]
			for j := range p.Shards {
				r.FixedInto(p.Shards[j][:])
			}
		}
	}
	rec := r.LenBytes(MaxRecord, "record")
	if err := r.Done(); err != nil {
		return nil, err
	}
	e.Record = bytes.Clone(rec)
	if err := e.Validate(); err != nil {
		return nil, wire.Corruptf("%v", err)
	}
	return e, nil
}

// validHost reports whether h is a host name (wire.ValidName).
func validHost(h string) bool { return wire.ValidName(h) }
