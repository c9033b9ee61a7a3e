package proof

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"math/bits"

	"lukechampine.com/blake3/bao"

	"github.com/embassy-project/embassy/internal/shardstore"
	"github.com/embassy-project/embassy/internal/wire"
)

// ErrWrongChallenge is returned by Verify for an answer that names another
// challenge's digest: a replayed or misrouted answer.
var ErrWrongChallenge = errors.New("proof: answer is for another challenge")

// Why an item failed (Result.Reason).
const (
	// ReasonMissing: the host declared the item missing (empty slice).
	ReasonMissing = "missing"
	// ReasonBadSlice: the slice does not verify against the shard address.
	ReasonBadSlice = "bad slice"
	// ReasonWrongLength: the slice claims a shard length other than the one
	// the guest knows, or proves a different number of bytes than asked.
	ReasonWrongLength = "wrong length"
	// ReasonNotListed: the guest's own sizes do not contain this item (the
	// shard is not listed, or the item lies outside it): a bug or stale list
	// on the guest's side, not evidence against the host.
	ReasonNotListed = "not listed"
)

// Respond answers challenge c from the host's stored shards. open returns one
// shard's bytes as an io.ReaderAt (an *os.File will do; Respond closes data if
// it is an io.Closer, ignoring the close error since it only read) and the
// outboard stored beside it. open is called once per distinct shard.
//
// Cost: per item one ReadAt of at most GroupSize bytes from data, a
// sequential scan of the whole outboard in memory (0.4% of the shard, so
// 64 KiB for a 16 MiB shard), and one BLAKE3 of the leaf to check the slice
// before sending it. Whole shards are never read.
//
// Items the host cannot prove are left empty (missing) rather than failing
// the answer: a shard open reports absent (shardstore.ErrNotFound) or corrupt
// (wire.ErrCorrupt), an outboard of the wrong size, a shard shorter than its
// outboard says, an item outside the stored shard, or a slice that does not
// verify against the shard address (the host's own bytes are damaged). Any
// other error from open or from reading data is an I/O failure and is
// returned, since reporting it as loss would be wrong; retry later.
func Respond(c *Challenge, open func(id shardstore.ID) (data io.ReaderAt, outboard []byte, err error)) (*Answer, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	a := &Answer{Challenge: c.Digest(), Slices: make([][]byte, len(c.Items))}
	var order []shardstore.ID
	byShard := make(map[shardstore.ID][]int)
	for i, it := range c.Items {
		if _, ok := byShard[it.Shard]; !ok {
			order = append(order, it.Shard)
		}
		byShard[it.Shard] = append(byShard[it.Shard], i)
	}
	for _, id := range order {
		if err := respondShard(a, c, id, byShard[id], open); err != nil {
			return nil, err
		}
	}
	return a, nil
}

func respondShard(a *Answer, c *Challenge, id shardstore.ID, idx []int, open func(shardstore.ID) (io.ReaderAt, []byte, error)) error {
	data, ob, err := open(id)
	if err != nil {
		if errors.Is(err, shardstore.ErrNotFound) || errors.Is(err, wire.ErrCorrupt) {
			return nil // missing
		}
		return fmt.Errorf("proof: open shard %s: %w", id, err)
	}
	if cl, ok := data.(io.Closer); ok {
		defer func() { _ = cl.Close() }()
	}
	if len(ob) < 8 {
		return nil
	}
	size := binary.LittleEndian.Uint64(ob)
	if size > math.MaxInt64-GroupSize || len(ob) != OutboardSize(int(size)) {
		return nil // the outboard is damaged; every item of this shard is missing
	}
	done := make(map[int64][]byte) // duplicate items share one slice
	for _, i := range idx {
		it := c.Items[i]
		if s, ok := done[it.Offset]; ok {
			a.Slices[i] = s
			continue
		}
		if uint64(it.Offset) >= size || uint64(it.Length) != min(GroupSize, size-uint64(it.Offset)) {
			continue // not a leaf of the shard we hold
		}
		var buf bytes.Buffer
		buf.Grow(8 + 64*bits.Len64(leaves(int64(size))) + it.Length) // header, path, leaf
		leaf := io.NewSectionReader(data, it.Offset, int64(it.Length))
		err := bao.ExtractSlice(&buf, leaf, bytes.NewReader(ob), Group, uint64(it.Offset), uint64(it.Length))
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			continue // the shard is shorter than its outboard says
		} else if err != nil {
			return fmt.Errorf("proof: read shard %s at %d: %w", id, it.Offset, err)
		}
		s := buf.Bytes()
		if _, ok := bao.VerifySlice(s, Group, uint64(it.Offset), uint64(it.Length), id); !ok {
			continue // damaged on our side: say so instead of sending bad bytes
		}
		a.Slices[i] = s
		done[it.Offset] = s
	}
	return nil
}

// Result is the verdict on one challenge item.
type Result struct {
	Item   Item
	OK     bool
	Reason string // empty when OK; else one of the Reason constants
}

// Report is Verify's verdict on an answer: one Result per challenge item, in
// challenge order, and counts. OK + Missing + Bad = len(Results).
type Report struct {
	Results []Result
	OK      int // items proven
	Missing int // items the host declared missing
	Bad     int // items with a wrong or unverifiable slice (or not listed)
}

// Passed reports whether every item was proven.
func (r Report) Passed() bool { return len(r.Results) > 0 && r.OK == len(r.Results) }

// Verify checks answer a against challenge c, using only the shard
// addresses in c's items and sizes, the guest's own record of each shard's
// size. It trusts nothing from the host but the slice bytes, and those only
// once they verify: each slice's length header MUST equal the known size, the
// slice MUST verify (bao.VerifySlice, group Group) against the address for
// exactly the item's range with no trailing bytes, and it MUST yield exactly
// Length bytes.
//
// It returns ErrWrongChallenge if a names another challenge, and an error
// wrapping wire.ErrCorrupt if a has a different number of slices than c has
// items; otherwise a Report, in which a failed item is evidence of loss
// (except ReasonNotListed, which is the guest's own inconsistency).
func Verify(c *Challenge, a *Answer, sizes map[shardstore.ID]int64) (Report, error) {
	if err := c.Validate(); err != nil {
		return Report{}, err
	}
	if a.Challenge != c.Digest() {
		return Report{}, ErrWrongChallenge
	}
	if len(a.Slices) != len(c.Items) {
		return Report{}, wire.Corruptf("answer has %d slices for %d challenge items", len(a.Slices), len(c.Items))
	}
	rep := Report{Results: make([]Result, len(c.Items))}
	for i, it := range c.Items {
		reason := verifyItem(it, a.Slices[i], sizes)
		rep.Results[i] = Result{Item: it, OK: reason == "", Reason: reason}
		switch reason {
		case "":
			rep.OK++
		case ReasonMissing:
			rep.Missing++
		default:
			rep.Bad++
		}
	}
	return rep, nil
}

func verifyItem(it Item, s []byte, sizes map[shardstore.ID]int64) string {
	size, ok := sizes[it.Shard]
	if !ok || it.Offset >= size || int64(it.Length) != min(GroupSize, size-it.Offset) {
		return ReasonNotListed
	}
	if len(s) == 0 {
		return ReasonMissing
	}
	// The header is the one thing the host states; with it pinned to the
	// known size the tree shape, and so every node checked, is fixed.
	if len(s) < 8 || binary.LittleEndian.Uint64(s) != uint64(size) {
		return ReasonWrongLength
	}
	got, ok := bao.VerifySlice(s, Group, uint64(it.Offset), uint64(it.Length), it.Shard)
	if !ok {
		return ReasonBadSlice
	}
	if len(got) != it.Length {
		return ReasonWrongLength
	}
	return ""
}
