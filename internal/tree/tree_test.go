package tree

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"github.com/embassy-project/embassy/internal/testenv"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/embassy-project/embassy/internal/wire"
)

var update = flag.Bool("update", false, "rewrite the golden vectors in testdata/tree")

const goldenDir = "../../testdata/tree"

// ref returns a deterministic valid Ref derived from seed.
func ref(seed byte, raw uint64) Ref {
	var r Ref
	for i := range r.ID {
		r.ID[i] = seed + byte(i)
	}
	for i := range r.Pack {
		r.Pack[i] = seed ^ byte(i*7)
	}
	r.Offset = uint64(seed) * 1000
	r.Length = raw/2 + 1
	r.RawLength = raw
	return r
}

// mixed is the fixture of testdata/tree/mixed.bin: every type and the edges of
// every field.
func mixed() *Tree {
	return &Tree{Nodes: []Node{
		{Name: "-leading-dash", Type: File, Mode: 0o644, UID: 1000, GID: 1000, MTime: 1700000000123456789},
		{Name: ".hidden", Type: Dir, Mode: 0o1777, MTime: -1, Subtree: []Ref{ref(1, 300)}},
		{Name: "big", Type: File, Mode: 0o4755, UID: math.MaxUint32, GID: math.MaxUint32, MTime: math.MaxInt64,
			Size: 3<<20 + 17, Content: []Ref{ref(2, 1<<20), ref(3, 2<<20), ref(4, 17)}},
		{Name: "link", Type: Symlink, Mode: 0o777, MTime: math.MinInt64, Target: "../etc/passwd"},
		{Name: "sub", Type: Dir, Mode: 0o755, Subtree: []Ref{ref(5, 1)}},
		{Name: "\xff\xfenot-utf8 ü", Type: File, Mode: 0o600, Size: 5, Content: []Ref{
			{ID: [32]byte{9}, Pack: [16]byte{9}, Offset: math.MaxUint64 - 1, Length: 1, RawLength: 5}}},
	}}
}

func large(n int) *Tree {
	t := &Tree{Nodes: make([]Node, n)}
	for i := range t.Nodes {
		nd := Node{Name: fmt.Sprintf("file-%08d.dat", i), Type: File, Mode: 0o644, UID: 1000, GID: 1000,
			MTime: 1700000000000000000 + int64(i)*1e9}
		switch i % 10 {
		case 0:
			nd.Type, nd.Subtree = Dir, []Ref{ref(byte(i), 4096)}
		case 1:
			nd.Type, nd.Target = Symlink, "target/of/the/link"
		default:
			nd.Content = []Ref{ref(byte(i), 1<<20), ref(byte(i+1), 12345)}
			nd.Size = 1<<20 + 12345
		}
		t.Nodes[i] = nd
	}
	return t
}

func TestRoundTrip(t *testing.T) {
	for name, tr := range map[string]*Tree{
		"empty":  {},
		"mixed":  mixed(),
		"large":  large(1000),
		"single": {Nodes: []Node{{Name: "a", Type: File}}},
	} {
		t.Run(name, func(t *testing.T) {
			b, err := tr.Marshal()
			if err != nil {
				t.Fatal(err)
			}
			if cap(b) != len(b) {
				t.Errorf("encoding of %d bytes allocated %d", len(b), cap(b))
			}
			got, err := Parse(b)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tr) {
				t.Fatalf("round trip differs:\n got %+v\nwant %+v", got, tr)
			}
			b2, err := got.Marshal()
			if err != nil || !bytes.Equal(b, b2) {
				t.Fatalf("re-marshal differs (err %v)", err)
			}
		})
	}
}

func TestValidate(t *testing.T) {
	file := func(name string) Node { return Node{Name: name, Type: File, Mode: 0o644} }
	cases := []struct {
		name string
		mod  func(t *Tree)
		ok   bool
	}{
		{"valid", func(t *Tree) {}, true},
		{"empty tree", func(t *Tree) { t.Nodes = nil }, true},
		{"empty name", func(t *Tree) { t.Nodes[0].Name = "" }, false},
		{"dot", func(t *Tree) { t.Nodes[0].Name = "." }, false},
		{"dotdot", func(t *Tree) { t.Nodes[0].Name = ".." }, false},
		{"three dots ok", func(t *Tree) { t.Nodes[0].Name = "..." }, true},
		{"slash", func(t *Tree) { t.Nodes[0].Name = "a/b" }, false},
		{"only slash", func(t *Tree) { t.Nodes[0].Name = "/" }, false},
		{"nul", func(t *Tree) { t.Nodes[0].Name = "a\x00" }, false},
		{"backslash ok", func(t *Tree) { t.Nodes[0].Name = "a\\b" }, true},
		{"255 bytes ok", func(t *Tree) { t.Nodes[0].Name = strings.Repeat("a", 255) }, true},
		{"256 bytes", func(t *Tree) { t.Nodes[0].Name = strings.Repeat("a", 256) }, false},
		{"unsorted", func(t *Tree) { t.Nodes[0], t.Nodes[1] = t.Nodes[1], t.Nodes[0] }, false},
		{"duplicate", func(t *Tree) { t.Nodes[1].Name = t.Nodes[0].Name }, false},
		{"bytewise order", func(t *Tree) { t.Nodes[0].Name, t.Nodes[1].Name = "Z", "a" }, true},
		{"bytewise order violated", func(t *Tree) { t.Nodes[0].Name, t.Nodes[1].Name = "a", "Z" }, false},
		{"mode bits", func(t *Tree) { t.Nodes[0].Mode = 0o10644 }, false},
		{"mode all perm bits ok", func(t *Tree) { t.Nodes[0].Mode = 0o7777 }, true},
		{"unknown type", func(t *Tree) { t.Nodes[0].Type = 4 }, false},
		{"zero type", func(t *Tree) { t.Nodes[0].Type = 0 }, false},
		{"file size mismatch", func(t *Tree) { t.Nodes[2].Size++ }, false},
		{"empty file with size", func(t *Tree) { t.Nodes[0].Size = 1 }, false},
		{"file with target", func(t *Tree) { t.Nodes[0].Target = "x" }, false},
		{"file with subtree", func(t *Tree) { t.Nodes[0].Subtree = []Ref{ref(1, 1)} }, false},
		{"file chunk zero length", func(t *Tree) { t.Nodes[2].Content[0].Length = 0 }, false},
		{"file chunk zero raw length", func(t *Tree) {
			t.Nodes[2].Size -= t.Nodes[2].Content[0].RawLength
			t.Nodes[2].Content[0].RawLength = 0
		}, false},
		{"file chunk offset overflow", func(t *Tree) { t.Nodes[2].Content[0].Offset = math.MaxUint64 }, false},
		{"file size overflow", func(t *Tree) {
			t.Nodes[2].Content = []Ref{ref(1, math.MaxUint64), ref(2, 2)}
			t.Nodes[2].Size = 1
		}, false},
		{"dir without subtree", func(t *Tree) { t.Nodes[1].Subtree = nil }, false},
		{"dir with content", func(t *Tree) { t.Nodes[1].Content = []Ref{ref(1, 1)} }, false},
		{"dir with size", func(t *Tree) { t.Nodes[1].Size = 1 }, false},
		{"dir with target", func(t *Tree) { t.Nodes[1].Target = "x" }, false},
		{"symlink empty target", func(t *Tree) { t.Nodes[3].Target = "" }, false},
		{"symlink target nul", func(t *Tree) { t.Nodes[3].Target = "a\x00b" }, false},
		{"symlink target 4096 ok", func(t *Tree) { t.Nodes[3].Target = strings.Repeat("/", 4096) }, true},
		{"symlink target 4097", func(t *Tree) { t.Nodes[3].Target = strings.Repeat("/", 4097) }, false},
		{"symlink with content", func(t *Tree) { t.Nodes[3].Content = []Ref{ref(1, 1)} }, false},
		{"symlink with subtree", func(t *Tree) { t.Nodes[3].Subtree = []Ref{ref(1, 1)} }, false},
		{"symlink with size", func(t *Tree) { t.Nodes[3].Size = 1 }, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			tr := &Tree{Nodes: []Node{
				file("a"),
				{Name: "b", Type: Dir, Mode: 0o755, Subtree: []Ref{ref(1, 100)}},
				{Name: "c", Type: File, Mode: 0o644, Size: 30, Content: []Ref{ref(2, 10), ref(3, 20)}},
				{Name: "d", Type: Symlink, Mode: 0o777, Target: "a"},
			}}
			c.mod(tr)
			err := tr.Validate()
			if (err == nil) != c.ok {
				t.Fatalf("Validate = %v, want ok=%v", err, c.ok)
			}
			b, merr := tr.Marshal()
			if (merr == nil) != c.ok {
				t.Fatalf("Marshal = %v, want ok=%v", merr, c.ok)
			}
			if c.ok {
				if _, err := Parse(b); err != nil {
					t.Fatalf("Parse of valid tree: %v", err)
				}
				return
			}
			// The same tree encoded without validation must be refused by
			// Parse, unless the offending field is one the encoding of that
			// type has no room for (a directory's Size): then it is dropped.
			got, err := Parse(tr.encode())
			if err == nil && reflect.DeepEqual(got, tr) {
				t.Fatal("Parse accepted the invalid tree")
			}
			if err != nil && !errors.Is(err, wire.ErrCorrupt) {
				t.Fatalf("Parse of invalid encoding = %v, want ErrCorrupt", err)
			}
		})
	}
}

func TestParseCorrupt(t *testing.T) {
	good, err := mixed().Marshal()
	if err != nil {
		t.Fatal(err)
	}
	header := func(count uint64) []byte {
		w := wire.NewWriter(nil)
		w.Fixed([]byte(Magic))
		w.Uvarint(count)
		return w.Bytes()
	}
	cases := map[string][]byte{
		"nil":               nil,
		"bad magic":         append([]byte("EMBTREE2"), good[8:]...),
		"no count":          []byte(Magic),
		"trailing":          append(bytes.Clone(good), 0),
		"count too big":     header(MaxNodes + 1),
		"count no nodes":    header(1 << 20),
		"non-minimal count": append([]byte(Magic), 0x81, 0x00),
		// A file claiming a huge number of chunks must fail before allocating.
		"chunk count beyond input": append(header(1), 1, 'a', byte(File), 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0x07),
		"mode beyond mask":         append(header(1), 1, 'a', byte(File), 0x80, 0x40, 0, 0, 0, 0, 0),
		"uid beyond uint32":        append(header(1), 1, 'a', byte(File), 0, 0x80, 0x80, 0x80, 0x80, 0x10, 0, 0, 0, 0),
		"unknown type":             append(header(1), 1, 'a', 7, 0, 0, 0, 0, 0, 0),
		"empty target":             append(header(1), 1, 'a', byte(Symlink), 0, 0, 0, 0, 0),
	}
	for name, b := range cases {
		t.Run(name, func(t *testing.T) {
			if _, err := Parse(b); !errors.Is(err, wire.ErrCorrupt) {
				t.Fatalf("got %v, want ErrCorrupt", err)
			}
		})
	}
	t.Run("every truncation", func(t *testing.T) {
		for n := range len(good) {
			if _, err := Parse(good[:n]); !errors.Is(err, wire.ErrCorrupt) {
				t.Fatalf("truncated to %d: got %v, want ErrCorrupt", n, err)
			}
		}
	})
	// Trees are authenticated by the pack that carries them, so a flipped
	// byte here need not be detected; it must either fail cleanly or yield a
	// valid tree that encodes back to the same bytes.
	t.Run("every byte flip", func(t *testing.T) {
		for i := range good {
			b := bytes.Clone(good)
			b[i] ^= 0x01
			tr, err := Parse(b)
			if err != nil {
				if !errors.Is(err, wire.ErrCorrupt) {
					t.Fatalf("flip at %d: got %v, want ErrCorrupt", i, err)
				}
				continue
			}
			if b2, err := tr.Marshal(); err != nil || !bytes.Equal(b, b2) {
				t.Fatalf("flip at %d: parsed but does not re-encode (err %v)", i, err)
			}
		}
	})
}

func TestFind(t *testing.T) {
	tr := mixed()
	for _, n := range tr.Nodes {
		got := tr.Find(n.Name)
		if got == nil || got.Name != n.Name {
			t.Fatalf("Find(%q) = %v", n.Name, got)
		}
	}
	for _, name := range []string{"", "a", "zzz", "bi", "bigg", "\xff"} {
		if got := tr.Find(name); got != nil {
			t.Fatalf("Find(%q) = %q, want nil", name, got.Name)
		}
	}
	if (&Tree{}).Find("x") != nil {
		t.Fatal("Find on empty tree")
	}
	// Find returns a pointer into the tree.
	tr.Find("sub").Mode = 0o700
	if tr.Nodes[4].Mode != 0o700 {
		t.Fatal("Find does not point into the tree")
	}
}

// goldenValid are the committed encodings that must keep parsing to these
// trees; goldenInvalid are committed encodings that must keep failing.
func goldenValid() map[string]*Tree {
	return map[string]*Tree{
		"empty.bin": {},
		"mixed.bin": mixed(),
	}
}

func goldenInvalid() map[string]*Tree {
	bad := func(mod func(t *Tree)) *Tree {
		t := mixed()
		mod(t)
		return t
	}
	return map[string]*Tree{
		"bad-dotdot.bin":         bad(func(t *Tree) { t.Nodes[1].Name = ".." }),
		"bad-slash.bin":          bad(func(t *Tree) { t.Nodes[4].Name = "x/../../etc" }),
		"bad-unsorted.bin":       bad(func(t *Tree) { t.Nodes[0], t.Nodes[1] = t.Nodes[1], t.Nodes[0] }),
		"bad-duplicate.bin":      bad(func(t *Tree) { t.Nodes[1].Name = t.Nodes[0].Name }),
		"bad-size.bin":           bad(func(t *Tree) { t.Nodes[2].Size-- }),
		"bad-symlink-nul.bin":    bad(func(t *Tree) { t.Nodes[3].Target = "/etc\x00" }),
		"bad-dir-no-subtree.bin": bad(func(t *Tree) { t.Nodes[4].Subtree[0].Length = 0 }),
	}
}

func TestGolden(t *testing.T) {
	if *update {
		for name, tr := range goldenValid() {
			b, err := tr.Marshal()
			if err != nil {
				t.Fatal(err)
			}
			writeGolden(t, name, b)
		}
		for name, tr := range goldenInvalid() {
			writeGolden(t, name, tr.encode())
		}
	}
	for name, want := range goldenValid() {
		b := readGolden(t, name)
		got, err := Parse(b)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("%s: parsed tree differs from fixture", name)
		}
		if m, _ := want.Marshal(); !bytes.Equal(m, b) {
			t.Fatalf("%s: Marshal no longer produces the committed bytes", name)
		}
	}
	for name := range goldenInvalid() {
		if _, err := Parse(readGolden(t, name)); !errors.Is(err, wire.ErrCorrupt) {
			t.Fatalf("%s: got %v, want ErrCorrupt", name, err)
		}
	}
}

func writeGolden(t *testing.T, name string, b []byte) {
	t.Helper()
	if err := os.MkdirAll(goldenDir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(goldenDir, name), b, 0o644); err != nil {
		t.Fatal(err)
	}
}

func readGolden(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(goldenDir, name))
	if err != nil {
		t.Fatalf("read golden vector (regenerate with go test -update): %v", err)
	}
	return b
}

func FuzzParse(f *testing.F) {
	for name := range goldenValid() {
		f.Add(readGolden(f, name))
	}
	for name := range goldenInvalid() {
		f.Add(readGolden(f, name))
	}
	small, _ := large(20).Marshal()
	f.Add(small)
	f.Fuzz(func(t *testing.T, b []byte) {
		testenv.RoundTrip(t, b, Parse, (*Tree).Marshal)
		if tr, err := Parse(b); err == nil {
			if enc := tr.encode(); cap(enc) != len(enc) {
				t.Fatalf("encoding of %d bytes allocated %d", len(enc), cap(enc))
			}
		}
	})
}

func BenchmarkMarshal(b *testing.B) {
	for _, n := range []int{100, 10000} {
		tr := large(n)
		enc, _ := tr.Marshal()
		b.Run(fmt.Sprintf("entries=%d", n), func(b *testing.B) {
			b.SetBytes(int64(len(enc)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := tr.Marshal(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkParse(b *testing.B) {
	for _, n := range []int{100, 10000} {
		enc, _ := large(n).Marshal()
		b.Run(fmt.Sprintf("entries=%d", n), func(b *testing.B) {
			b.SetBytes(int64(len(enc)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := Parse(enc); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
