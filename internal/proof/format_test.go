package proof

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"testing"

	"github.com/embassy-project/embassy/internal/shardstore"
	"github.com/embassy-project/embassy/internal/testenv"
	"github.com/embassy-project/embassy/internal/wire"
)

var update = flag.Bool("update", false, "rewrite the golden vectors in testdata/proof")

const goldenDir = "../../testdata/proof"

func testChallenge() *Challenge {
	c := &Challenge{Guest: [16]byte{'g', 'u', 'e', 's', 't'}, Nonce: [32]byte{1, 2, 3}, Time: 1763700000}
	c.Items = []Item{
		{shardstore.ID{1}, 0, GroupSize},
		{shardstore.ID{2}, 5 * GroupSize, 1},
		{shardstore.ID{1}, 0, GroupSize},
		{shardstore.ID{3}, (math.MaxInt64/GroupSize - 1) * GroupSize, GroupSize},
	}
	return c
}

func TestChallengeEncoding(t *testing.T) {
	c := testChallenge()
	b, err := c.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	got, err := ParseChallenge(b)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, c) {
		t.Fatalf("round trip: %+v", got)
	}
	if got.Digest() != c.Digest() || c.Digest() == ([32]byte{}) {
		t.Fatal("digest")
	}
	neg := *c
	neg.Time = -1
	if d := neg.Digest(); d == c.Digest() {
		t.Fatal("digest ignores time")
	}

	for name, mut := range map[string]func(c *Challenge){
		"no items":    func(c *Challenge) { c.Items = nil },
		"too many":    func(c *Challenge) { c.Items = slices.Repeat(c.Items[:1], MaxItems+1) },
		"zero length": func(c *Challenge) { c.Items[1].Length = 0 },
		"long":        func(c *Challenge) { c.Items[1].Length = GroupSize + 1 },
		"unaligned":   func(c *Challenge) { c.Items[1].Offset = 1 },
		"negative":    func(c *Challenge) { c.Items[1].Offset = -GroupSize },
		"past 2^63":   func(c *Challenge) { c.Items[3].Offset = math.MaxInt64 / GroupSize * GroupSize },
	} {
		bad := testChallenge()
		mut(bad)
		if _, err := bad.Marshal(); err == nil {
			t.Errorf("%s: Marshal accepted", name)
		}
		// Encoded anyway, the parser refuses it too.
		if _, err := ParseChallenge(bad.encode()); !errors.Is(err, wire.ErrCorrupt) {
			t.Errorf("%s: ParseChallenge: %v", name, err)
		}
	}
	full := &Challenge{Time: math.MinInt64, Items: slices.Repeat(c.Items[3:], MaxItems)}
	if fb, err := full.Marshal(); err != nil || len(fb) > MaxChallengeSize {
		t.Fatalf("a full challenge: %d bytes, %v", len(fb), err)
	} else if _, err := ParseChallenge(fb); err != nil {
		t.Fatalf("a full challenge: %v", err)
	}

	corrupt := map[string][]byte{
		"empty":    nil,
		"magic":    append([]byte("EMBPCHL2"), b[8:]...),
		"trailing": append(slices.Clone(b), 0),
		"huge":     make([]byte, MaxChallengeSize+1),
		"count":    func() []byte { x := slices.Clone(b); x[8+16+32+5] = 200; return x }(),
		"nonminimal": func() []byte {
			// items count 4 written as 0x84 0x00
			x := slices.Clone(b[:8+16+32+5])
			x = append(x, 0x84, 0x00)
			return append(x, b[8+16+32+5+1:]...)
		}(),
	}
	for i := range len(b) {
		corrupt[fmt.Sprintf("truncated to %d", i)] = b[:i]
	}
	for name, x := range corrupt {
		if _, err := ParseChallenge(x); !errors.Is(err, wire.ErrCorrupt) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func TestAnswerEncoding(t *testing.T) {
	h := newHost()
	s := h.put(testenv.RandBytes(1, 70000))
	c := everyLeaf(s)
	a := mustRespond(t, c, h.open)
	a.Slices[2] = nil // missing
	b, err := a.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	got, err := ParseAnswer(b)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, a) || !slices.Equal(got.Missing(), []int{2}) {
		t.Fatal("round trip")
	}
	// The parsed answer does not share the input.
	b[len(b)-1] ^= 1
	if !bytes.Equal(got.Slices[4], a.Slices[4]) {
		t.Fatal("parsed slices alias the input")
	}
	b[len(b)-1] ^= 1

	for name, mut := range map[string]func(a *Answer){
		"no slices":  func(a *Answer) { a.Slices = nil },
		"too many":   func(a *Answer) { a.Slices = slices.Repeat(a.Slices[:1], MaxItems+1) },
		"tiny slice": func(a *Answer) { a.Slices[0] = make([]byte, minSliceSize-1) },
		"huge slice": func(a *Answer) { a.Slices[0] = make([]byte, MaxSliceSize+1) },
	} {
		bad := &Answer{Challenge: a.Challenge, Slices: slices.Clone(a.Slices)}
		mut(bad)
		if _, err := bad.Marshal(); err == nil {
			t.Errorf("%s: Marshal accepted", name)
		}
	}
	corrupt := map[string][]byte{
		"empty":    nil,
		"magic":    append([]byte("EMBPANS0"), b[8:]...),
		"trailing": append(slices.Clone(b), 0),
		"huge":     make([]byte, MaxAnswerSize+1),
		"zero":     append([]byte(AnswerMagic+string(make([]byte, 32))), 0),
		"count":    append([]byte(AnswerMagic+string(make([]byte, 32))), 3, 0, 0),
		"tiny":     append([]byte(AnswerMagic+string(make([]byte, 32))), 1, 3, 1, 2, 3),
		"too long": append([]byte(AnswerMagic+string(make([]byte, 32))), 1, 0xff, 0xff, 0x03),
	}
	for i := 0; i < len(b); i += 97 {
		corrupt[fmt.Sprintf("truncated to %d", i)] = b[:i]
	}
	for name, x := range corrupt {
		if _, err := ParseAnswer(x); !errors.Is(err, wire.ErrCorrupt) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

// Golden vectors: two small shards, their outboards, a challenge sampled from
// a fixed nonce, and the honest answer. Everything is deterministic, so the
// committed files must be reproduced byte for byte.
var goldenShards = []struct {
	name string
	seed byte
	size int
}{{"shard-a", 1, 2*GroupSize + 232}, {"shard-b", 2, 1000}}

func goldenChallenge(shards []Shard) *Challenge {
	nonce := [32]byte{} // 05 06 … 24: picked so the sample shows both shards, a repeat and a short leaf
	for i := range nonce {
		nonce[i] = byte(i + 5)
	}
	return &Challenge{Guest: [16]byte{'g', 'u', 'e', 's', 't'}, Nonce: nonce, Time: 1763700000, Items: Sample(nonce, shards, 4)}
}

func golden(t *testing.T, name string, b []byte) []byte {
	t.Helper()
	path := filepath.Join(goldenDir, name)
	if *update {
		if err := os.MkdirAll(goldenDir, 0o755); err != nil {
			t.Fatal(err)
		}
		testenv.WriteFile(t, path, b)
	}
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read golden vector (regenerate with go test -update): %v", err)
	}
	return got
}

func TestGolden(t *testing.T) {
	h := newHost()
	var shards []Shard
	total := 0
	for _, g := range goldenShards {
		data := golden(t, g.name+".bin", testenv.RandBytes(g.seed, g.size))
		if !bytes.Equal(data, testenv.RandBytes(g.seed, g.size)) {
			t.Fatalf("%s.bin changed", g.name)
		}
		s := h.put(data)
		if ob := golden(t, g.name+".obao", Outboard(data)); !bytes.Equal(ob, h.ob[s.ID]) {
			t.Fatalf("%s.obao: Outboard no longer produces the committed outboard", g.name)
		}
		shards = append(shards, s)
		total += len(data) + len(h.ob[s.ID])
	}
	want := goldenChallenge(shards)
	wb, err := want.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	cb := golden(t, "challenge.bin", wb)
	c, err := ParseChallenge(cb)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(cb, wb) || !reflect.DeepEqual(c, want) {
		t.Fatal("challenge.bin: Sample or Marshal no longer produce the committed challenge")
	}
	if !c.Fair(shards) {
		t.Fatal("challenge.bin is not fair")
	}
	a := mustRespond(t, c, h.open)
	wa, err := a.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	ab := golden(t, "answer.bin", wa)
	if !bytes.Equal(ab, wa) {
		t.Fatal("answer.bin: Respond or Marshal no longer produce the committed answer")
	}
	parsed, err := ParseAnswer(ab)
	if err != nil {
		t.Fatal(err)
	}
	if r := mustVerify(t, c, parsed, sizesOf(shards...)); !r.Passed() {
		t.Fatalf("answer.bin does not verify: %v", reasons(r))
	}
	if total += len(cb) + len(ab); total > 100<<10 {
		t.Fatalf("golden vectors take %d bytes; keep them under 100 KiB", total)
	}
}

func FuzzParseChallenge(f *testing.F) {
	b, _ := testChallenge().Marshal()
	f.Add(b)
	if g, err := os.ReadFile(filepath.Join(goldenDir, "challenge.bin")); err == nil {
		f.Add(g)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		testenv.RoundTrip(t, b, ParseChallenge, (*Challenge).Marshal)
	})
}

func FuzzParseAnswer(f *testing.F) {
	h := newHost()
	s := h.put(testenv.RandBytes(1, 40000))
	a := mustRespond(f, everyLeaf(s), h.open)
	a.Slices[1] = nil
	b, _ := a.Marshal()
	f.Add(b)
	f.Add(append([]byte(AnswerMagic+string(make([]byte, 32))), 2, 0, 9, 1, 2, 3, 4, 5, 6, 7, 8, 9))
	if g, err := os.ReadFile(filepath.Join(goldenDir, "answer.bin")); err == nil {
		f.Add(g)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		testenv.RoundTrip(t, b, ParseAnswer, (*Answer).Marshal)
	})
}
