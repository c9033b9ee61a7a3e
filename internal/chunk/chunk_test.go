package chunk

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"sync"
	"testing"

	"github.com/zeebo/blake3"

	"github.com/embassy-project/embassy/internal/wire"
)

// randBytes returns n deterministic pseudo-random bytes for seed.
func randBytes(seed uint64, n int) []byte {
	var s [32]byte
	s[0] = byte(seed)
	s[1] = byte(seed >> 8)
	r := rand.NewChaCha8(s)
	b := make([]byte, n)
	_, _ = r.Read(b)
	return b
}

func testKey(b byte) Key {
	var k Key
	for i := range k {
		k[i] = b + byte(i)
	}
	return k
}

// split chunks data with key k and returns copies of the chunks.
func split(t testing.TB, k Key, data []byte) [][]byte {
	t.Helper()
	c, err := NewChunker(k, bytes.NewReader(data), nil)
	if err != nil {
		t.Fatal(err)
	}
	return drain(t, c)
}

func drain(t testing.TB, c *Chunker) [][]byte {
	t.Helper()
	var out [][]byte
	for {
		ch, err := c.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, bytes.Clone(ch))
	}
	// io.EOF is sticky.
	if ch, err := c.Next(); err != io.EOF || ch != nil {
		t.Fatalf("Next after EOF = %d bytes, %v; want nil, io.EOF", len(ch), err)
	}
	return out
}

func lengths(chunks [][]byte) []int {
	l := make([]int, len(chunks))
	for i, c := range chunks {
		l[i] = len(c)
	}
	return l
}

func TestChunkerProperties(t *testing.T) {
	big := randBytes(1, 24<<20)
	tests := []struct {
		name string
		data []byte
	}{
		{"empty", nil},
		{"one byte", []byte{42}},
		{"below min", big[:MinSize-1]},
		{"exactly min", big[:MinSize]},
		{"min plus one", big[:MinSize+1]},
		{"exactly max", big[:MaxSize]},
		{"max plus one", big[:MaxSize+1]},
		{"random 24 MiB", big},
		{"zeros 13 MiB", make([]byte, 13<<20)},
		{"text", bytes.Repeat([]byte("id;name;born;parish\n1;Ann;1970-01-01;North\n"), 200000)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			chunks := split(t, testKey(1), tt.data)
			if len(tt.data) == 0 {
				if len(chunks) != 0 {
					t.Fatalf("empty input gave %d chunks", len(chunks))
				}
				return
			}
			if got := bytes.Join(chunks, nil); !bytes.Equal(got, tt.data) {
				t.Fatal("concatenated chunks differ from input")
			}
			for i, c := range chunks {
				last := i == len(chunks)-1
				if len(c) > MaxSize || len(c) == 0 || (!last && len(c) < MinSize) {
					t.Errorf("chunk %d/%d has %d bytes", i, len(chunks), len(c))
				}
			}
		})
	}
}

func TestChunkerDeterministic(t *testing.T) {
	data := randBytes(2, 16<<20)
	a := lengths(split(t, testKey(1), data))
	b := lengths(split(t, testKey(1), data))
	if fmt.Sprint(a) != fmt.Sprint(b) {
		t.Fatalf("same key, same data, different cuts:\n%v\n%v", a, b)
	}
	if len(a) < 8 {
		t.Fatalf("only %d chunks in 16 MiB with a 1 MiB average", len(a))
	}
}

func TestChunkerKeysDiffer(t *testing.T) {
	data := randBytes(3, 16<<20)
	a := lengths(split(t, testKey(1), data))
	b := lengths(split(t, testKey(2), data))
	// Keyed Gear tables give independent cut points: the first cut already differs.
	if a[0] == b[0] {
		t.Fatalf("keys 1 and 2 share the first cut point %d (cuts %v / %v)", a[0], a, b)
	}
}

// TestChunkerGolden pins the cut points of a fixed key and input: if the
// chunking library or its parameters change, dedup against existing archives
// breaks, and this test must say so.
func TestChunkerGolden(t *testing.T) {
	data := randBytes(4, 12<<20)
	got := fmt.Sprint(lengths(split(t, testKey(7), data)))
	const want = "[1147270 1222410 1135686 2060268 1049066 1264156 1170999 1771152 1168768 593137]"
	if got != want {
		t.Fatalf("cut points changed:\n got %s\nwant %s", got, want)
	}
}

func TestChunkerShiftResistant(t *testing.T) {
	k := testKey(5)
	h := NewHasher(k)
	data := randBytes(6, 32<<20)
	ids := map[ID]bool{}
	orig := split(t, k, data)
	for _, c := range orig {
		ids[h.Sum(c)] = true
	}
	for _, insert := range []int{1, 100, 4096, 300000} {
		shifted := append(randBytes(7, insert), data...)
		chunks := split(t, k, shifted)
		kept := 0
		for _, c := range chunks {
			if ids[h.Sum(c)] {
				kept++
			}
		}
		// FastCDC resynchronises within a few chunks: small inserts cost at
		// most two chunks, large ones (several chunks of new data whose cuts
		// fall between old ones) may cost a few more.
		if (insert <= 4096 && kept < len(orig)-2) || kept < len(orig)*3/4 {
			t.Errorf("insert %d bytes: %d of %d chunk IDs survive", insert, kept, len(orig))
		}
	}
}

type failReader struct {
	data []byte
	err  error
}

func (r *failReader) Read(p []byte) (int, error) {
	if len(r.data) == 0 {
		return 0, r.err
	}
	n := copy(p, r.data)
	r.data = r.data[n:]
	return n, nil
}

func TestChunkerReadError(t *testing.T) {
	errBoom := errors.New("boom")
	for _, n := range []int{0, 10, MinSize + 5, 3 * MaxSize} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			c, err := NewChunker(testKey(1), &failReader{data: randBytes(8, n), err: errBoom}, nil)
			if err != nil {
				t.Fatal(err)
			}
			var got error
			total := 0
			for {
				ch, err := c.Next()
				if err != nil {
					got = err
					break
				}
				total += len(ch)
			}
			if !errors.Is(got, errBoom) || got == io.EOF {
				t.Fatalf("got %v after %d bytes, want wrapped boom", got, total)
			}
			if total >= n && n > 0 {
				t.Fatalf("all %d bytes delivered before the error", total)
			}
			if _, err := c.Next(); !errors.Is(err, errBoom) {
				t.Fatalf("error not sticky: %v", err)
			}
		})
	}
}

func TestChunkerBufferAndReset(t *testing.T) {
	if _, err := NewChunker(testKey(1), bytes.NewReader(nil), make([]byte, MinBufferSize-1)); err == nil {
		t.Fatal("short buffer accepted")
	}
	// The scan buffer's size must not move a single cut point.
	in := randBytes(11, 13<<20)
	small, err := NewChunker(testKey(1), bytes.NewReader(in), make([]byte, MinBufferSize))
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(lengths(drain(t, small))) != fmt.Sprint(lengths(split(t, testKey(1), in))) {
		t.Fatal("a MinBufferSize scan buffer cuts differently from the default")
	}
	buf := make([]byte, BufferSize)
	a := randBytes(9, 9<<20)
	b := randBytes(10, 5<<20)
	c, err := NewChunker(testKey(1), bytes.NewReader(a), buf)
	if err != nil {
		t.Fatal(err)
	}
	gotA := drain(t, c)
	c.Reset(bytes.NewReader(b))
	gotB := drain(t, c)
	if fmt.Sprint(lengths(gotA)) != fmt.Sprint(lengths(split(t, testKey(1), a))) ||
		fmt.Sprint(lengths(gotB)) != fmt.Sprint(lengths(split(t, testKey(1), b))) {
		t.Fatal("reused chunker cuts differ from a fresh one")
	}
	if !bytes.Equal(bytes.Join(gotB, nil), b) {
		t.Fatal("reset chunker lost data")
	}
}

func TestHasherKnownAnswer(t *testing.T) {
	k := testKey(1)
	var idKey [32]byte
	blake3.DeriveKey("embassy v1 chunk-id", k[:], idKey[:])
	ref, _ := blake3.NewKeyed(idKey[:])
	data := []byte("embassy")
	ref.Write(data)
	var want ID
	copy(want[:], ref.Sum(nil))
	h := NewHasher(k)
	if got := h.Sum(data); got != want {
		t.Fatalf("Sum = %s, want %s", got, want)
	}
	// Pinned value: the ID derivation is part of the format.
	const golden = "45192dc0c6824340a9c32f993c2f442a2d8f6b6f07cda55b91ed680b5b786270"
	if got := h.Sum(data).String(); got != golden {
		t.Fatalf("Sum(%q) = %s, want %s", data, got, golden)
	}
	if NewHasher(testKey(2)).Sum(data) == want {
		t.Fatal("different keys give the same ID")
	}
	if h.Sum(nil) == h.Sum([]byte{0}) {
		t.Fatal("empty and one zero byte collide")
	}
}

func TestHasherConcurrent(t *testing.T) {
	h := NewHasher(testKey(3))
	inputs := [][]byte{nil, randBytes(11, 100), randBytes(12, 8<<10), randBytes(13, 1<<20)}
	want := make([]ID, len(inputs))
	for i, in := range inputs {
		want[i] = h.Sum(in)
	}
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range 50 {
				i := (g + j) % len(inputs)
				if got := h.Sum(inputs[i]); got != want[i] {
					t.Errorf("goroutine %d: Sum(input %d) = %s, want %s", g, i, got, want[i])
					return
				}
			}
		}()
	}
	wg.Wait()
}

func TestParseID(t *testing.T) {
	id := NewHasher(testKey(1)).Sum([]byte("x"))
	got, err := ParseID(id.String())
	if err != nil || got != id {
		t.Fatalf("ParseID(String()) = %s, %v", got, err)
	}
	bad := []string{"", "00", id.String()[:63], id.String() + "0", "zz" + id.String()[2:],
		"AB" + id.String()[2:]}
	for _, s := range bad {
		if _, err := ParseID(s); !errors.Is(err, wire.ErrCorrupt) {
			t.Errorf("ParseID(%q) = %v, want ErrCorrupt", s, err)
		}
	}
}

func FuzzParseID(f *testing.F) {
	f.Add(NewHasher(testKey(1)).Sum(nil).String())
	f.Add("")
	f.Add("AB")
	f.Fuzz(func(t *testing.T, s string) {
		id, err := ParseID(s)
		if err != nil {
			if !errors.Is(err, wire.ErrCorrupt) {
				t.Fatalf("error %v does not wrap ErrCorrupt", err)
			}
			return
		}
		if id.String() != s {
			t.Fatalf("round trip %q -> %q", s, id.String())
		}
	})
}

func BenchmarkChunker(b *testing.B) {
	for _, kind := range []string{"random", "text"} {
		var data []byte
		if kind == "random" {
			data = randBytes(20, 64<<20)
		} else {
			data = textLike(64 << 20)
		}
		b.Run(kind, func(b *testing.B) {
			buf := make([]byte, BufferSize)
			c, err := NewChunker(testKey(1), bytes.NewReader(data), buf)
			if err != nil {
				b.Fatal(err)
			}
			b.SetBytes(int64(len(data)))
			b.ReportAllocs()
			for b.Loop() {
				c.Reset(bytes.NewReader(data))
				for {
					_, err := c.Next()
					if err == io.EOF {
						break
					}
					if err != nil {
						b.Fatal(err)
					}
				}
			}
		})
	}
}

// textLike returns n bytes of registry-like CSV text.
func textLike(n int) []byte {
	r := rand.New(rand.NewPCG(1, 2))
	names := []string{"Anna", "Jaan", "Mari", "Peeter", "Kadri", "Toomas", "Liis", "Andres"}
	places := []string{"Tallinn", "Tartu", "Narva", "Pärnu", "Kuressaare", "Viljandi"}
	var b bytes.Buffer
	for i := 0; b.Len() < n; i++ {
		fmt.Fprintf(&b, "%d;%s;%s;%04d-%02d-%02d;%s;%d\n", 38000000000+r.IntN(1e9), names[r.IntN(len(names))],
			names[r.IntN(len(names))]+"son", 1920+r.IntN(100), 1+r.IntN(12), 1+r.IntN(28), places[r.IntN(len(places))], i)
	}
	return b.Bytes()[:n]
}

func BenchmarkHasherSum(b *testing.B) {
	h := NewHasher(testKey(1))
	for _, size := range []int{8 << 10, 1 << 20} {
		data := randBytes(21, size)
		b.Run(fmt.Sprint(size>>10, "KiB"), func(b *testing.B) {
			b.SetBytes(int64(size))
			b.ReportAllocs()
			for b.Loop() {
				h.Sum(data)
			}
		})
		b.Run(fmt.Sprint(size>>10, "KiB-parallel"), func(b *testing.B) {
			b.SetBytes(int64(size))
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					h.Sum(data)
				}
			})
		})
	}
}
