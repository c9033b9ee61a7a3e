package proof

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"lukechampine.com/blake3/bao"

	"github.com/embassy-project/embassy/internal/shardstore"
	"github.com/embassy-project/embassy/internal/testenv"
	"github.com/embassy-project/embassy/internal/wire"
)

// host is an in-memory host: shard bytes and the outboard kept beside them.
// data may differ from what the outboard was computed over, to play a host
// that damaged or discarded its data.
type host struct {
	data, ob map[shardstore.ID][]byte
	opened   map[shardstore.ID]int
}

func newHost() *host {
	return &host{data: map[shardstore.ID][]byte{}, ob: map[shardstore.ID][]byte{}, opened: map[shardstore.ID]int{}}
}

func (h *host) put(data []byte) Shard {
	id := shardstore.Sum(data)
	h.data[id] = slices.Clone(data)
	h.ob[id] = Outboard(data)
	return Shard{id, int64(len(data))}
}

func (h *host) open(id shardstore.ID) (io.ReaderAt, []byte, error) {
	h.opened[id]++
	d, ok := h.data[id]
	if !ok {
		return nil, nil, fmt.Errorf("open: %w", shardstore.ErrNotFound)
	}
	return bytes.NewReader(d), h.ob[id], nil
}

// extract is a host without Respond's self-check: it sends whatever slice
// its bytes give, right or wrong.
func (h *host) extract(c *Challenge) *Answer {
	a := &Answer{Challenge: c.Digest(), Slices: make([][]byte, len(c.Items))}
	for i, it := range c.Items {
		var buf bytes.Buffer
		data := h.data[it.Shard][it.Offset : it.Offset+int64(it.Length)]
		if err := bao.ExtractSlice(&buf, bytes.NewReader(data), bytes.NewReader(h.ob[it.Shard]), Group, uint64(it.Offset), uint64(it.Length)); err != nil {
			panic(err)
		}
		a.Slices[i] = buf.Bytes()
	}
	return a
}

// everyLeaf returns a challenge for every leaf of shards, in order.
func everyLeaf(shards ...Shard) *Challenge {
	c := &Challenge{Guest: [16]byte{'g'}, Nonce: [32]byte{'n'}, Time: 1763700000}
	for _, s := range shards {
		for g := range int64(leaves(s.Size)) {
			off := g * GroupSize
			c.Items = append(c.Items, Item{s.ID, off, int(min(GroupSize, s.Size-off))})
		}
	}
	return c
}

func sizesOf(shards ...Shard) map[shardstore.ID]int64 {
	m := map[shardstore.ID]int64{}
	for _, s := range shards {
		m[s.ID] = s.Size
	}
	return m
}

func mustRespond(t testing.TB, c *Challenge, open func(shardstore.ID) (io.ReaderAt, []byte, error)) *Answer {
	t.Helper()
	a, err := Respond(c, open)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func mustVerify(t testing.TB, c *Challenge, a *Answer, sizes map[shardstore.ID]int64) Report {
	t.Helper()
	r, err := Verify(c, a, sizes)
	if err != nil {
		t.Fatal(err)
	}
	if r.OK+r.Missing+r.Bad != len(c.Items) || len(r.Results) != len(c.Items) {
		t.Fatalf("report counts %d+%d+%d for %d items", r.OK, r.Missing, r.Bad, len(c.Items))
	}
	return r
}

// reasons returns each item's Reason, "" for OK.
func reasons(r Report) []string {
	var out []string
	for _, x := range r.Results {
		if x.OK != (x.Reason == "") {
			panic("OK and Reason disagree")
		}
		out = append(out, x.Reason)
	}
	return out
}

// TestRoundTrip proves every leaf of shards of every test size, through the
// marshalled challenge and answer, and checks each slice's wire size.
func TestRoundTrip(t *testing.T) {
	for _, n := range testSizes {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			h := newHost()
			s := h.put(testenv.RandBytes(byte(n), n))
			if n == 0 {
				if Sample([32]byte{1}, []Shard{s}, 10) != nil {
					t.Fatal("an empty shard was sampled")
				}
				// Nothing to prove: an item in it is not a leaf.
				c := &Challenge{Items: []Item{{s.ID, 0, 1}}}
				a := mustRespond(t, c, h.open)
				if len(a.Missing()) != 1 {
					t.Fatal("host proved a byte of an empty shard")
				}
				if r := mustVerify(t, c, a, sizesOf(s)); r.Results[0].Reason != ReasonNotListed {
					t.Fatalf("got %q", r.Results[0].Reason)
				}
				return
			}
			for name, c := range map[string]*Challenge{
				"every leaf": everyLeaf(s),
				"sample":     {Nonce: [32]byte{byte(n)}, Time: -5, Items: Sample([32]byte{byte(n)}, []Shard{s}, 50)},
			} {
				cb, err := c.Marshal()
				if err != nil {
					t.Fatal(err)
				}
				c2, err := ParseChallenge(cb)
				if err != nil {
					t.Fatalf("%s: %v", name, err)
				}
				a := mustRespond(t, c2, h.open)
				ab, err := a.Marshal()
				if err != nil {
					t.Fatal(err)
				}
				a2, err := ParseAnswer(ab)
				if err != nil {
					t.Fatalf("%s: %v", name, err)
				}
				r := mustVerify(t, c, a2, sizesOf(s))
				if !r.Passed() || r.OK != len(c.Items) {
					t.Fatalf("%s: %d of %d items proven: %v", name, r.OK, len(c.Items), reasons(r))
				}
				// Each slice is header + path + leaf: 8 + 64·depth + length.
				depth := 0
				for l := leaves(int64(n)); l > 1; l = (l + 1) / 2 {
					depth++
				}
				for i, s := range a2.Slices {
					if extra := len(s) - 8 - c.Items[i].Length; extra%64 != 0 || extra/64 > depth {
						t.Fatalf("%s: slice %d is %d bytes for a %d-byte leaf at depth ≤ %d", name, i, len(s), c.Items[i].Length, depth)
					}
				}
			}
			if h.opened[s.ID] != 2 {
				t.Fatalf("shard opened %d times for two challenges", h.opened[s.ID])
			}
		})
	}
}

// TestRespondFromFile serves from an *os.File, reading only the leaves, and
// checks Respond closes it.
func TestRespondFromFile(t *testing.T) {
	data := testenv.RandBytes(9, 1<<20+300)
	s := Shard{shardstore.Sum(data), int64(len(data))}
	path := filepath.Join(t.TempDir(), "shard")
	testenv.WriteFile(t, path, data)
	ob := Outboard(data)
	var files []*os.File
	open := func(id shardstore.ID) (io.ReaderAt, []byte, error) {
		f, err := os.Open(path)
		files = append(files, f)
		return &countingReaderAt{f: f}, ob, err
	}
	c := &Challenge{Items: Sample([32]byte{4}, []Shard{s}, 20)}
	a := mustRespond(t, c, open)
	if r := mustVerify(t, c, a, sizesOf(s)); !r.Passed() {
		t.Fatalf("file-backed answer fails: %v", reasons(r))
	}
	if len(files) != 1 {
		t.Fatalf("opened %d times", len(files))
	}
	if _, err := files[0].Stat(); !errors.Is(err, os.ErrClosed) {
		t.Fatal("Respond did not close the shard file")
	}
}

type countingReaderAt struct {
	f *os.File
	n int64
}

func (c *countingReaderAt) ReadAt(p []byte, off int64) (int, error) {
	if len(p) > GroupSize {
		panic("read more than one leaf at a time")
	}
	c.n += int64(len(p))
	return c.f.ReadAt(p, off)
}

func (c *countingReaderAt) Close() error { return c.f.Close() }

// TestOutboardOnlyHostFails: a host that kept the outboards but replaced the
// data with zeros or random bytes of the same length proves nothing.
func TestOutboardOnlyHostFails(t *testing.T) {
	for name, fake := range map[string]func(n int) []byte{
		"zeros":  func(n int) []byte { return make([]byte, n) },
		"random": func(n int) []byte { return testenv.RandBytes(99, n) },
	} {
		t.Run(name, func(t *testing.T) {
			h := newHost()
			var shards []Shard
			for i, n := range []int{1, 16385, 100000, 3<<20 + 7} {
				s := h.put(testenv.RandBytes(byte(i), n))
				h.data[s.ID] = fake(n)
				shards = append(shards, s)
			}
			c := &Challenge{Items: Sample([32]byte{3}, shards, 64)}
			// Respond's own check notices and says missing.
			r := mustVerify(t, c, mustRespond(t, c, h.open), sizesOf(shards...))
			if r.Missing != len(c.Items) {
				t.Fatalf("Respond: %d of %d missing: %v", r.Missing, len(c.Items), reasons(r))
			}
			// A host that sends them anyway fails every item.
			r = mustVerify(t, c, h.extract(c), sizesOf(shards...))
			if r.Bad != len(c.Items) {
				t.Fatalf("raw slices: %d of %d bad: %v", r.Bad, len(c.Items), reasons(r))
			}
			for _, x := range r.Results {
				if x.Reason != ReasonBadSlice {
					t.Fatalf("reason %q", x.Reason)
				}
			}
		})
	}
}

// TestFlippedByte: one flipped byte fails exactly the items of its leaf.
func TestFlippedByte(t *testing.T) {
	h := newHost()
	a := h.put(testenv.RandBytes(1, 40000))
	b := h.put(testenv.RandBytes(2, 3<<20+7))
	c := h.put(testenv.RandBytes(3, 100000))
	const at = 1_000_000 // leaf 61 of b
	h.data[b.ID][at] ^= 0x01
	ch := everyLeaf(a, b, c)
	ch.Items = append(ch.Items, Item{b.ID, 61 * GroupSize, GroupSize}) // twice
	damaged := func(it Item) bool { return it.Shard == b.ID && it.Offset == 61*GroupSize }

	for name, ans := range map[string]*Answer{
		"Respond": mustRespond(t, ch, h.open),
		"raw":     h.extract(ch),
	} {
		want := ReasonMissing
		if name == "raw" {
			want = ReasonBadSlice
		}
		r := mustVerify(t, ch, ans, sizesOf(a, b, c))
		for _, x := range r.Results {
			if damaged(x.Item) != !x.OK || (!x.OK && x.Reason != want) {
				t.Fatalf("%s: item %+v: ok=%v %q", name, x.Item, x.OK, x.Reason)
			}
		}
		if r.OK != len(ch.Items)-2 {
			t.Fatalf("%s: %d ok", name, r.OK)
		}
	}
}

// TestFlippedOutboardByte: damage to the outboard can fail items but can
// never make a wrong slice pass.
func TestFlippedOutboardByte(t *testing.T) {
	h := newHost()
	s := h.put(testenv.RandBytes(5, 300000)) // 19 leaves
	ch := everyLeaf(s)
	good := h.extract(ch)
	for _, at := range []int{8, 40, 8 + 64*5 + 3, len(h.ob[s.ID]) - 1} {
		h.ob[s.ID][at] ^= 0x80
		raw := h.extract(ch)
		r := mustVerify(t, ch, raw, sizesOf(s))
		for i, x := range r.Results {
			if x.OK != bytes.Equal(raw.Slices[i], good.Slices[i]) {
				t.Fatalf("outboard byte %d: item %d ok=%v", at, i, x.OK)
			}
		}
		if r.OK == len(ch.Items) {
			t.Fatalf("outboard byte %d: nothing failed", at)
		}
		resp := mustVerify(t, ch, mustRespond(t, ch, h.open), sizesOf(s))
		if resp.OK != r.OK || resp.Missing != r.Bad {
			t.Fatalf("outboard byte %d: Respond ok %d missing %d; raw ok %d bad %d", at, resp.OK, resp.Missing, r.OK, r.Bad)
		}
		h.ob[s.ID][at] ^= 0x80
	}
	// A header one byte longer keeps the tree's shape, and a slice that does
	// not include the last leaf does not authenticate the length: those
	// slices still verify against the address. Only Verify's comparison with
	// the known size catches them.
	h.ob[s.ID][0] ^= 1
	resp := mustRespond(t, ch, h.open)
	last := len(ch.Items) - 1
	for i, sl := range resp.Slices[:last] {
		if _, ok := bao.VerifySlice(sl, Group, uint64(ch.Items[i].Offset), uint64(ch.Items[i].Length), s.ID); !ok {
			t.Fatalf("slice %d with a wrong length header does not verify; the test's premise is wrong", i)
		}
	}
	want := slices.Repeat([]string{ReasonWrongLength}, last)
	if got := reasons(mustVerify(t, ch, resp, sizesOf(s))); !slices.Equal(got, append(want, ReasonMissing)) {
		t.Fatalf("bad outboard header: %q", got)
	}
	// A header naming a size with another number of leaves: all missing.
	h.ob[s.ID][2] ^= 1
	if r := mustVerify(t, ch, mustRespond(t, ch, h.open), sizesOf(s)); r.Missing != len(ch.Items) {
		t.Fatalf("bad outboard header: %d missing", r.Missing)
	}
}

// TestLostShardAndLoss: a host that lost a shard says so per item; one that
// lost 1% of its leaves is caught at Required(0.01, 0.9999).
func TestLostShardAndLoss(t *testing.T) {
	h := newHost()
	var shards []Shard
	for i := range 5 {
		shards = append(shards, h.put(testenv.RandBytes(byte(10+i), 20*GroupSize)))
	}
	// 100 leaves in all; lose shard 2 entirely.
	lost := shards[2].ID
	delete(h.data, lost)
	c := &Challenge{Items: Sample([32]byte{6}, shards, 200)}
	r := mustVerify(t, c, mustRespond(t, c, h.open), sizesOf(shards...))
	for _, x := range r.Results {
		if (x.Item.Shard == lost) != (x.Reason == ReasonMissing) || (x.Item.Shard != lost && !x.OK) {
			t.Fatalf("item %+v: %q", x.Item, x.Reason)
		}
	}
	if r.Missing == 0 || r.OK == 0 || r.Bad != 0 {
		t.Fatalf("missing %d ok %d bad %d", r.Missing, r.OK, r.Bad)
	}

	// Restore it, then zero one leaf of 100: 1% of the bytes.
	h.put(testenv.RandBytes(12, 20*GroupSize))
	victim := shards[3].ID
	clear(h.data[victim][7*GroupSize : 8*GroupSize])
	m, _ := Required(0.01, 0.9999)
	c = &Challenge{Nonce: [32]byte{7}, Items: Sample([32]byte{7}, shards, m)}
	r = mustVerify(t, c, mustRespond(t, c, h.open), sizesOf(shards...))
	if r.Passed() || r.Missing == 0 {
		t.Fatal("a host that lost 1% passed an audit of", m, "items")
	}
	for _, x := range r.Results {
		if !x.OK && (x.Item.Shard != victim || x.Item.Offset != 7*GroupSize) {
			t.Fatalf("item %+v failed: %q", x.Item, x.Reason)
		}
	}
}

// TestRespondErrors: I/O failures abort the answer; loss does not.
func TestRespondErrors(t *testing.T) {
	h := newHost()
	s := h.put(testenv.RandBytes(1, 50000))
	c := everyLeaf(s)
	ioErr := errors.New("disk on fire")
	if _, err := Respond(c, func(shardstore.ID) (io.ReaderAt, []byte, error) { return nil, nil, ioErr }); !errors.Is(err, ioErr) {
		t.Fatalf("open error: %v", err)
	}
	if _, err := Respond(c, func(shardstore.ID) (io.ReaderAt, []byte, error) {
		return failingReaderAt{ioErr}, h.ob[s.ID], nil
	}); !errors.Is(err, ioErr) {
		t.Fatalf("read error: %v", err)
	}
	for name, open := range map[string]func(shardstore.ID) (io.ReaderAt, []byte, error){
		"corrupt": func(shardstore.ID) (io.ReaderAt, []byte, error) { return nil, nil, shardstore.ErrMismatch },
		"truncated": func(id shardstore.ID) (io.ReaderAt, []byte, error) {
			return bytes.NewReader(h.data[id][:20000]), h.ob[id], nil
		},
		"short outboard": func(id shardstore.ID) (io.ReaderAt, []byte, error) {
			return bytes.NewReader(h.data[id]), h.ob[id][:7], nil
		},
		"outboard too long": func(id shardstore.ID) (io.ReaderAt, []byte, error) {
			return bytes.NewReader(h.data[id]), append(slices.Clone(h.ob[id]), 0), nil
		},
	} {
		a, err := Respond(c, open)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		r := mustVerify(t, c, a, sizesOf(s))
		if name == "truncated" {
			// The first leaf is still there; the rest are not.
			if !r.Results[0].OK || r.Missing != len(c.Items)-1 {
				t.Fatalf("%s: %v", name, reasons(r))
			}
			continue
		}
		if r.Missing != len(c.Items) {
			t.Fatalf("%s: %v", name, reasons(r))
		}
	}
	if _, err := Respond(&Challenge{}, h.open); err == nil {
		t.Fatal("Respond to an empty challenge")
	}
}

type failingReaderAt struct{ err error }

func (f failingReaderAt) ReadAt([]byte, int64) (int, error) { return 0, f.err }

// TestVerifyRefuses: answers for other challenges, forged headers, slices
// moved between items or shards, and the guest's own stale lists.
func TestVerifyRefuses(t *testing.T) {
	h := newHost()
	a := h.put(testenv.RandBytes(1, 5*GroupSize+10))
	b := h.put(testenv.RandBytes(2, 5*GroupSize+10))
	c := everyLeaf(a, b)
	ans := mustRespond(t, c, h.open)
	sizes := sizesOf(a, b)
	if r := mustVerify(t, c, ans, sizes); !r.Passed() {
		t.Fatal(reasons(r))
	}

	other := *c
	other.Time++
	if _, err := Verify(&other, ans, sizes); !errors.Is(err, ErrWrongChallenge) {
		t.Fatalf("answer to another challenge: %v", err)
	}
	short := &Answer{Challenge: ans.Challenge, Slices: ans.Slices[1:]}
	if _, err := Verify(c, short, sizes); !errors.Is(err, wire.ErrCorrupt) {
		t.Fatalf("short answer: %v", err)
	}
	if _, err := Verify(&Challenge{}, ans, sizes); err == nil {
		t.Fatal("Verify accepted an invalid challenge")
	}

	check := func(name string, mutate func(a *Answer), item int, want string) {
		t.Helper()
		forged := &Answer{Challenge: ans.Challenge, Slices: slices.Clone(ans.Slices)}
		mutate(forged)
		r := mustVerify(t, c, forged, sizes)
		if got := r.Results[item].Reason; got != want {
			t.Fatalf("%s: item %d: got %q, want %q", name, item, got, want)
		}
		if r.OK != len(c.Items)-1 {
			t.Fatalf("%s: %d ok", name, r.OK)
		}
	}
	// Items 0..5 are a's leaves, 6..11 b's.
	check("swapped leaves", func(f *Answer) { f.Slices[1] = ans.Slices[2] }, 1, ReasonBadSlice)
	check("other shard", func(f *Answer) { f.Slices[1] = ans.Slices[7] }, 1, ReasonBadSlice)
	check("truncated", func(f *Answer) { f.Slices[3] = ans.Slices[3][:len(ans.Slices[3])-1] }, 3, ReasonBadSlice)
	check("trailing", func(f *Answer) { f.Slices[3] = append(slices.Clone(ans.Slices[3]), 0) }, 3, ReasonBadSlice)
	check("tiny", func(f *Answer) { f.Slices[3] = []byte{1, 2, 3} }, 3, ReasonWrongLength)
	check("missing", func(f *Answer) { f.Slices[4] = nil }, 4, ReasonMissing)
	check("bigger header", func(f *Answer) {
		s := slices.Clone(ans.Slices[0])
		s[1]++ // claims 256 more bytes
		f.Slices[0] = s
	}, 0, ReasonWrongLength)
	// A host that claims the shard is one leaf long and sends the root's
	// children as if they were the leaf cannot pass either.
	check("smaller header", func(f *Answer) {
		s := slices.Clone(ans.Slices[5])
		s[0], s[1], s[2] = 10, 0, 0
		f.Slices[5] = s
	}, 5, ReasonWrongLength)

	// The guest's list lacks b: b's items are its own problem, not the host's.
	r := mustVerify(t, c, ans, sizesOf(a))
	for i, x := range r.Results {
		if (i >= 6) != (x.Reason == ReasonNotListed) {
			t.Fatalf("item %d: %q", i, x.Reason)
		}
	}
	// Or believes a is smaller than it is.
	r = mustVerify(t, c, ans, map[shardstore.ID]int64{a.ID: 3 * GroupSize, b.ID: b.Size})
	want := []string{ReasonWrongLength, ReasonWrongLength, ReasonWrongLength, ReasonNotListed, ReasonNotListed, ReasonNotListed, "", "", "", "", "", ""}
	if got := reasons(r); !slices.Equal(got, want) || r.Bad != 6 {
		t.Fatalf("stale size: %q", got)
	}
}
