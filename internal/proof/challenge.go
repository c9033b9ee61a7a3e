package proof

import (
	"errors"
	"fmt"
	"math"
	"slices"

	"github.com/zeebo/blake3"

	"github.com/embassy-project/embassy/internal/wire"
)

// Magics of the two formats.
const (
	ChallengeMagic = "EMBPCHL1"
	AnswerMagic    = "EMBPANS1"
)

// Limits enforced by Marshal and the parsers.
const (
	// MaxItems is the most items one challenge may ask for; enough for
	// Required(0.002, 0.9997), or 1% loss at 1 − 10^-17.
	MaxItems = 4096
	// MaxChallengeSize bounds a marshalled challenge (about 180 KiB).
	MaxChallengeSize = 8 + 16 + 32 + binaryMaxVarint + 2 + MaxItems*(32+binaryMaxVarint+3)
	// MaxSliceSize bounds one Bao slice: the 8-byte length, 49 parent nodes
	// (the deepest path of a shard under 2^63 bytes) and one leaf.
	MaxSliceSize = 8 + 64*maxDepth + GroupSize
	// MaxAnswerSize bounds a marshalled answer (about 76 MiB at MaxItems).
	MaxAnswerSize = 8 + 32 + 2 + MaxItems*(3+MaxSliceSize)
)

const binaryMaxVarint = 10

// minSliceSize is the shortest slice that can prove anything: the length
// header and one byte of data (a one-byte shard has no parent nodes).
const minSliceSize = 8 + 1

// Challenge asks a host for the leaves Items of shards it holds for guest
// Guest. Nonce is the randomness Items were sampled from (see Sample and
// Fair); Time is when the guest issued it, in Unix seconds, as the caller's
// clock says (informative: the host may refuse stale challenges).
type Challenge struct {
	Guest [16]byte
	Nonce [32]byte
	Time  int64
	Items []Item
}

// Validate checks what Marshal and ParseChallenge enforce: 1..MaxItems items,
// each at a non-negative multiple of GroupSize with a length of 1..GroupSize
// that ends before 2^63. Duplicate items are allowed (Sample draws with
// replacement).
func (c *Challenge) Validate() error {
	if len(c.Items) == 0 || len(c.Items) > MaxItems {
		return fmt.Errorf("proof: challenge has %d items, want 1..%d", len(c.Items), MaxItems)
	}
	for i, it := range c.Items {
		if err := checkItem(it); err != nil {
			return fmt.Errorf("proof: challenge item %d: %w", i, err)
		}
	}
	return nil
}

func checkItem(it Item) error {
	switch {
	case it.Offset < 0 || it.Offset%GroupSize != 0:
		return fmt.Errorf("offset %d is not a multiple of %d", it.Offset, GroupSize)
	case it.Length < 1 || it.Length > GroupSize:
		return fmt.Errorf("length %d not in 1..%d", it.Length, GroupSize)
	case it.Offset > math.MaxInt64-int64(it.Length):
		return errors.New("item ends past 2^63")
	}
	return nil
}

// Marshal returns the canonical encoding of c: the bytes a guest signs and
// sends, and that Digest hashes.
func (c *Challenge) Marshal() ([]byte, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return c.encode(), nil
}

func (c *Challenge) encode() []byte {
	w := wire.NewWriter(make([]byte, 0, 64+len(c.Items)*38))
	w.Fixed([]byte(ChallengeMagic))
	w.Fixed(c.Guest[:])
	w.Fixed(c.Nonce[:])
	w.Varint(c.Time)
	w.Uvarint(uint64(len(c.Items)))
	for _, it := range c.Items {
		w.Fixed(it.Shard[:])
		w.Uvarint(uint64(it.Offset))
		w.Uvarint(uint64(it.Length))
	}
	return w.Bytes()
}

// ParseChallenge decodes a challenge. It accepts exactly what Marshal
// produces; every failure wraps wire.ErrCorrupt.
func ParseChallenge(b []byte) (*Challenge, error) {
	if len(b) > MaxChallengeSize {
		return nil, wire.Corruptf("challenge of %d bytes exceeds %d", len(b), MaxChallengeSize)
	}
	r := wire.NewReader(b, "challenge")
	r.Magic(ChallengeMagic)
	c := &Challenge{}
	r.FixedInto(c.Guest[:])
	r.FixedInto(c.Nonce[:])
	c.Time = r.Varint()
	n := r.UvarintMax(MaxItems, "items")
	if r.Err() == nil && n == 0 {
		r.Failf("no items")
	}
	if r.Err() == nil && n > uint64(r.Remaining()/34) { // an item takes at least 34 bytes
		r.Failf("%d items cannot fit in %d bytes", n, r.Remaining())
	}
	if r.Err() != nil {
		return nil, r.Err()
	}
	c.Items = make([]Item, n)
	for i := range c.Items {
		it := &c.Items[i]
		r.FixedInto(it.Shard[:])
		it.Offset = int64(r.UvarintMax(math.MaxInt64, "offset"))
		it.Length = int(r.UvarintMax(GroupSize, "length"))
		if r.Err() != nil {
			break
		}
		if err := checkItem(*it); err != nil {
			r.Failf("item %d: %v", i, err)
		}
	}
	if err := r.Done(); err != nil {
		return nil, err
	}
	return c, nil
}

// Digest returns BLAKE3-256 of the challenge's encoding: what an answer names
// to say which challenge it answers. It is defined for any challenge, but only
// a valid one can be marshalled and answered.
func (c *Challenge) Digest() [32]byte { return blake3.Sum256(c.encode()) }

// Fair reports whether c's items are exactly Sample(c.Nonce, shards,
// len(c.Items)): what a host or an auditor checks, given the shard list, to
// see that the guest did not pick the items by hand.
func (c *Challenge) Fair(shards []Shard) bool {
	return len(c.Items) > 0 && slices.Equal(c.Items, Sample(c.Nonce, shards, len(c.Items)))
}

// Answer is a host's reply to one challenge: Slices[i] is the Bao slice
// encoding (bao.ExtractSlice, group Group) of challenge item i, or empty if
// the host cannot produce it (a lost or damaged shard): a host says what it
// lost per item instead of failing the whole answer.
type Answer struct {
	Challenge [32]byte // the challenge's Digest
	Slices    [][]byte
}

// Missing returns the indexes of the items the answer declares missing.
func (a *Answer) Missing() []int {
	var miss []int
	for i, s := range a.Slices {
		if len(s) == 0 {
			miss = append(miss, i)
		}
	}
	return miss
}

// Validate checks what Marshal and ParseAnswer enforce: 1..MaxItems slices,
// each empty (missing) or of minSliceSize..MaxSliceSize bytes. Whether the
// slices prove anything is Verify's job.
func (a *Answer) Validate() error {
	if len(a.Slices) == 0 || len(a.Slices) > MaxItems {
		return fmt.Errorf("proof: answer has %d slices, want 1..%d", len(a.Slices), MaxItems)
	}
	for i, s := range a.Slices {
		if len(s) != 0 && (len(s) < minSliceSize || len(s) > MaxSliceSize) {
			return fmt.Errorf("proof: answer slice %d: %d bytes, want 0 or %d..%d", i, len(s), minSliceSize, MaxSliceSize)
		}
	}
	return nil
}

// Marshal returns the canonical encoding of a: the bytes a host signs and
// sends.
func (a *Answer) Marshal() ([]byte, error) {
	if err := a.Validate(); err != nil {
		return nil, err
	}
	size := 8 + 32 + 3
	for _, s := range a.Slices {
		size += 3 + len(s)
	}
	w := wire.NewWriter(make([]byte, 0, size))
	w.Fixed([]byte(AnswerMagic))
	w.Fixed(a.Challenge[:])
	w.Uvarint(uint64(len(a.Slices)))
	for _, s := range a.Slices {
		w.LenBytes(s)
	}
	return w.Bytes(), nil
}

// ParseAnswer decodes an answer. It accepts exactly what Marshal produces;
// every failure wraps wire.ErrCorrupt. Missing items have nil slices. The
// result does not alias b.
func ParseAnswer(b []byte) (*Answer, error) {
	if len(b) > MaxAnswerSize {
		return nil, wire.Corruptf("answer of %d bytes exceeds %d", len(b), MaxAnswerSize)
	}
	r := wire.NewReader(b, "answer")
	r.Magic(AnswerMagic)
	a := &Answer{}
	r.FixedInto(a.Challenge[:])
	n := r.UvarintMax(MaxItems, "slices")
	if r.Err() == nil && n == 0 {
		r.Failf("no slices")
	}
	if r.Err() == nil && n > uint64(r.Remaining()) { // a slice takes at least 1 byte
		r.Failf("%d slices cannot fit in %d bytes", n, r.Remaining())
	}
	if r.Err() != nil {
		return nil, r.Err()
	}
	a.Slices = make([][]byte, n)
	ends := make([]int, n) // where each slice ends in b
	for i := range a.Slices {
		s := r.LenBytes(MaxSliceSize, "slice")
		ends[i] = r.Offset()
		if r.Err() != nil {
			break
		}
		if len(s) == 0 {
			continue
		}
		if len(s) < minSliceSize {
			r.Failf("slice %d: %d bytes, want 0 or at least %d", i, len(s), minSliceSize)
			break
		}
		a.Slices[i] = s
	}
	if err := r.Done(); err != nil {
		return nil, err
	}
	// One copy for all slices, so the answer does not share b.
	own := slices.Clone(b)
	for i, end := range ends {
		if s := a.Slices[i]; s != nil {
			a.Slices[i] = own[end-len(s) : end : end]
		}
	}
	return a, nil
}
