package seal

import (
	"bytes"
	"crypto/ecdh"
	"crypto/hpke"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"github.com/embassy-project/embassy/internal/testenv"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/embassy-project/embassy/internal/wire"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/seal")

var (
	keyOnce  sync.Once
	testPriv hpke.PrivateKey
)

func testKey(t testing.TB) hpke.PrivateKey {
	keyOnce.Do(func() {
		k, err := KEM().GenerateKey()
		if err != nil {
			panic(err)
		}
		testPriv = k
	})
	return testPriv
}

func testAD() AD {
	return AD{
		Kind:    KindPack,
		Guest:   [16]byte([]byte("test-guest-00001")),
		Dataset: [16]byte([]byte("test-dataset-001")),
		Object:  [16]byte([]byte("test-object-0001")),
	}
}

func mustSeal(t testing.TB, pub hpke.PublicKey, ad AD, pt []byte) []byte {
	t.Helper()
	s, err := Seal(pub, ad, pt)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func wantCorrupt(t *testing.T, what string, got []byte, err error) {
	t.Helper()
	if !errors.Is(err, wire.ErrCorrupt) || got != nil {
		t.Fatalf("%s: Open = %d bytes, %v; want nil, ErrCorrupt", what, len(got), err)
	}
}

var sizes = []int{0, 1, 100, SegmentSize - 1, SegmentSize, SegmentSize + 1, 2 * SegmentSize, 3*SegmentSize + 17, 5<<20 + 7}

func TestRoundTrip(t *testing.T) {
	priv := testKey(t)
	for _, n := range sizes {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			pt := testenv.RandBytes(byte(n), n)
			s := mustSeal(t, priv.PublicKey(), testAD(), pt)
			if len(s) != n+Overhead(n) {
				t.Errorf("sealed %d bytes into %d, Overhead says %d", n, len(s), n+Overhead(n))
			}
			got, err := Open(priv, testAD(), s)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, pt) {
				t.Fatal("round trip differs")
			}
			if again := mustSeal(t, priv.PublicKey(), testAD(), pt); bytes.Equal(again, s) {
				t.Fatal("sealing twice gave the same bytes")
			}
		})
	}
}

// TestSpecLayout checks the constants and the example in docs/spec/seal.md.
func TestSpecLayout(t *testing.T) {
	if id := KEM().ID(); id != 0x647a {
		t.Fatalf("KEM ID %#x, want 0x647a (MLKEM768-X25519)", id)
	}
	ad := testAD()
	s := mustSeal(t, testKey(t).PublicKey(), ad, nil)
	if len(s) != 1245 {
		t.Fatalf("empty object is %d bytes, want 1245", len(s))
	}
	want := append([]byte("EMBSEAL1\x01\x01"), ad.Guest[:]...)
	want = append(want, ad.Dataset[:]...)
	want = append(want, ad.Object[:]...)
	want = append(want, 0x90, 0x09)
	if !bytes.Equal(s[:60], want) || s[1228] != 0x10 {
		t.Fatalf("layout differs from the spec:\n got %x\nwant %x", s[:60], want)
	}
}

func TestOverhead(t *testing.T) {
	// 58 AD + 2 + 1168 key slot + body-length varint + 16 per segment.
	tests := []struct{ n, want int }{
		{0, 58 + 2 + 1168 + 1 + 16},
		{1, 58 + 2 + 1168 + 1 + 16},
		{SegmentSize, 58 + 2 + 1168 + 3 + 16},
		{SegmentSize + 1, 58 + 2 + 1168 + 3 + 32},
		{16 << 20, 58 + 2 + 1168 + 4 + 256*16},
	}
	for _, tt := range tests {
		if got := Overhead(tt.n); got != tt.want {
			t.Errorf("Overhead(%d) = %d, want %d", tt.n, got, tt.want)
		}
	}
}

func TestWrongKey(t *testing.T) {
	priv := testKey(t)
	other, err := KEM().GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	s := mustSeal(t, priv.PublicKey(), testAD(), []byte("secret registry"))
	got, err := Open(other, testAD(), s)
	wantCorrupt(t, "other key", got, err)
	if !strings.Contains(err.Error(), "wrong dataset key or corrupt data") {
		t.Errorf("message %q does not tell the user what is wrong", err)
	}
}

func TestWrongKEM(t *testing.T) {
	classical, err := hpke.DHKEM(ecdh.X25519()).GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Seal(classical.PublicKey(), testAD(), []byte("x")); err == nil {
		t.Fatal("Seal to a classical key succeeded")
	}
	if _, err := Seal(nil, testAD(), []byte("x")); err == nil {
		t.Fatal("Seal to a nil key succeeded")
	}
	s := mustSeal(t, testKey(t).PublicKey(), testAD(), []byte("x"))
	if _, err := Open(classical, testAD(), s); err == nil {
		t.Fatal("Open with a classical key succeeded")
	}
}

func TestBadKind(t *testing.T) {
	for _, k := range []Kind{0, 3, 255} {
		ad := testAD()
		ad.Kind = k
		if _, err := Seal(testKey(t).PublicKey(), ad, nil); err == nil {
			t.Errorf("Seal with kind %d succeeded", k)
		}
	}
}

func TestWrongAD(t *testing.T) {
	priv := testKey(t)
	s := mustSeal(t, priv.PublicKey(), testAD(), testenv.RandBytes(1, 1000))
	changes := map[string]func(*AD){
		"kind":    func(a *AD) { a.Kind = KindRecord },
		"guest":   func(a *AD) { a.Guest[15] ^= 1 },
		"dataset": func(a *AD) { a.Dataset[0] ^= 1 },
		"object":  func(a *AD) { a.Object[7] ^= 1 },
	}
	for name, change := range changes {
		t.Run(name, func(t *testing.T) {
			ad := testAD()
			change(&ad)
			got, err := Open(priv, ad, s)
			wantCorrupt(t, "expected AD differs in "+name, got, err)
			// Rewriting the header to match the expected AD (a host moving a
			// pack) must fail authentication, not just the header check.
			moved := bytes.Clone(s)
			copy(moved, ad.encode())
			got, err = Open(priv, ad, moved)
			wantCorrupt(t, "header rewritten to another "+name, got, err)
		})
	}
}

// layout returns the offset of the body in s and the number of segments.
func layout(t *testing.T, s []byte) (bodyStart, nseg int) {
	t.Helper()
	p, err := parse(s)
	if err != nil {
		t.Fatal(err)
	}
	bodyStart = len(s) - len(p.body)
	return bodyStart, (len(p.body) + cipherSegSize - 1) / cipherSegSize
}

func TestFlips(t *testing.T) {
	priv := testKey(t)
	for _, n := range []int{0, 10, 2*SegmentSize + 5} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			s := mustSeal(t, priv.PublicKey(), testAD(), testenv.RandBytes(2, n))
			bodyStart, nseg := layout(t, s)
			positions := map[int]bool{}
			for i := 0; i < bodyStart; i++ { // header, key slot, body length: every byte
				positions[i] = true
			}
			for seg := 0; seg < nseg; seg++ { // each segment: first, middle, tag bytes
				start := bodyStart + seg*cipherSegSize
				end := min(start+cipherSegSize, len(s))
				for _, p := range []int{start, (start + end) / 2, end - tagSize, end - 1} {
					positions[p] = true
				}
			}
			for p := range positions {
				for _, mask := range []byte{0x01, 0x80} {
					bad := bytes.Clone(s)
					bad[p] ^= mask
					got, err := Open(priv, testAD(), bad)
					if !errors.Is(err, wire.ErrCorrupt) || got != nil {
						t.Fatalf("flip %#x at byte %d of %d (body at %d): %d bytes, %v", mask, p, len(s), bodyStart, len(got), err)
					}
				}
			}
		})
	}
}

// withBody returns s with its body replaced (and the length field fixed).
func withBody(t *testing.T, s, body []byte) []byte {
	t.Helper()
	p, err := parse(s)
	if err != nil {
		t.Fatal(err)
	}
	p.body = body
	return p.marshal()
}

func TestTruncateReorder(t *testing.T) {
	priv := testKey(t)
	pt := testenv.RandBytes(3, 4*SegmentSize+100)
	s := mustSeal(t, priv.PublicKey(), testAD(), pt)
	p, err := parse(s)
	if err != nil {
		t.Fatal(err)
	}
	body := p.body
	seg := func(i int) []byte { return body[i*cipherSegSize : min((i+1)*cipherSegSize, len(body))] }
	cat := func(parts ...[]byte) []byte { return bytes.Join(parts, nil) }
	nseg := 5
	variants := map[string][]byte{
		"swap 0 1":         cat(seg(1), seg(0), seg(2), seg(3), seg(4)),
		"swap 2 3":         cat(seg(0), seg(1), seg(3), seg(2), seg(4)),
		"drop middle":      cat(seg(0), seg(1), seg(3), seg(4)),
		"duplicate":        cat(seg(0), seg(1), seg(1), seg(2), seg(3), seg(4)),
		"append":           cat(body, seg(0)),
		"final moved up":   cat(seg(0), seg(4)),
		"empty":            nil,
		"only final":       seg(4),
		"tag of final cut": body[:len(body)-1],
	}
	for k := 1; k < nseg; k++ {
		variants[fmt.Sprintf("truncate after %d segments", k)] = body[:k*cipherSegSize]
	}
	k := keyForTest(t, priv, testAD(), s)
	for name, b := range variants {
		t.Run(name, func(t *testing.T) {
			// The sealed object with the changed body: the all-or-nothing
			// binding changes K, so this fails at the first segment.
			got, err := Open(priv, testAD(), withBody(t, s, b))
			wantCorrupt(t, name, got, err)
			// The STREAM layer alone, under the right key, must refuse too.
			got, err = openBody(k, testAD().encode(), b)
			wantCorrupt(t, name+" (body only)", got, err)
		})
	}
	// Truncating the sealed bytes themselves at each segment boundary.
	bodyStart := len(s) - len(body)
	for k := 0; k <= nseg; k++ {
		cut := min(bodyStart+k*cipherSegSize, len(s)-1)
		got, err := Open(priv, testAD(), s[:cut])
		wantCorrupt(t, fmt.Sprintf("sealed bytes cut at %d", cut), got, err)
	}
	if got, err := openBody(k, testAD().encode(), body); err != nil || !bytes.Equal(got, pt) {
		t.Fatalf("recovered key does not open the body: %v", err)
	}
}

// keyForTest recovers the pack key K of s the way Open does.
func keyForTest(t *testing.T, priv hpke.PrivateKey, ad AD, s []byte) []byte {
	t.Helper()
	p, err := parse(s)
	if err != nil {
		t.Fatal(err)
	}
	h := aontHasher(ad.encode())
	h.Write(p.body)
	k := h.Sum(nil)
	r, err := hpke.NewRecipient(p.wrapped[:encSize], priv, hpke.HKDFSHA256(), hpke.AES256GCM(), []byte(hpkeInfo))
	if err != nil {
		t.Fatal(err)
	}
	m, err := r.Open(ad.encode(), p.wrapped[encSize:])
	if err != nil {
		t.Fatal(err)
	}
	for i := range k {
		k[i] ^= m[i]
	}
	return k
}

func TestPlaintextLen(t *testing.T) {
	tests := []struct {
		body, want int
		ok         bool
	}{
		{0, 0, false},
		{15, 0, false},
		{16, 0, true},
		{17, 1, true},
		{cipherSegSize, SegmentSize, true},
		{cipherSegSize + 15, 0, false},
		{cipherSegSize + 16, 0, false}, // empty final segment after a full one
		{cipherSegSize + 17, SegmentSize + 1, true},
		{2 * cipherSegSize, 2 * SegmentSize, true},
	}
	for _, tt := range tests {
		got, err := plaintextLen(tt.body)
		if (err == nil) != tt.ok || (tt.ok && got != tt.want) {
			t.Errorf("plaintextLen(%d) = %d, %v; want %d, ok=%v", tt.body, got, err, tt.want, tt.ok)
		}
	}
}

func TestParseErrors(t *testing.T) {
	s := mustSeal(t, testKey(t).PublicKey(), testAD(), []byte("hello"))
	hdr := func(f func([]byte)) []byte { b := bytes.Clone(s); f(b); return b }
	tests := map[string][]byte{
		"empty":          nil,
		"magic":          hdr(func(b []byte) { b[7] = '2' }),
		"version":        hdr(func(b []byte) { b[8] = 2 }),
		"kind 0":         hdr(func(b []byte) { b[9] = 0 }),
		"kind 3":         hdr(func(b []byte) { b[9] = 3 }),
		"short key slot": append(append(bytes.Clone(s[:ADSize]), binary.AppendUvarint(nil, wrappedSize-1)...), s[ADSize+2+1:]...),
		"long key slot":  append(append(bytes.Clone(s[:ADSize]), binary.AppendUvarint(nil, wrappedSize+1)...), s[ADSize+2:]...),
		"trailing byte":  append(bytes.Clone(s), 0),
		"truncated":      s[:len(s)-1],
		"header only":    s[:ADSize],
	}
	for name, b := range tests {
		t.Run(name, func(t *testing.T) {
			if _, err := parse(b); !errors.Is(err, wire.ErrCorrupt) {
				t.Fatalf("parse: %v, want ErrCorrupt", err)
			}
			got, err := Open(testKey(t), testAD(), b)
			wantCorrupt(t, name, got, err)
		})
	}
}

func TestConcurrent(t *testing.T) {
	priv := testKey(t)
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			pt := testenv.RandBytes(byte(g), 100000+g)
			ad := testAD()
			ad.Object[0] = byte(g)
			for range 5 {
				s, err := Seal(priv.PublicKey(), ad, pt)
				if err != nil {
					t.Error(err)
					return
				}
				got, err := Open(priv, ad, s)
				if err != nil || !bytes.Equal(got, pt) {
					t.Errorf("goroutine %d: %v", g, err)
					return
				}
			}
		}()
	}
	wg.Wait()
}

func FuzzOpen(f *testing.F) {
	priv := testKey(f)
	for _, n := range []int{0, 5, SegmentSize + 3} {
		f.Add(mustSeal(f, priv.PublicKey(), testAD(), testenv.RandBytes(4, n)))
	}
	f.Add([]byte(Magic))
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := parse(b)
		if err != nil {
			if !errors.Is(err, wire.ErrCorrupt) {
				t.Fatalf("parse error %v does not wrap ErrCorrupt", err)
			}
		} else if !bytes.Equal(p.marshal(), b) {
			t.Fatalf("parse → marshal differs")
		}
		got, err := Open(priv, testAD(), b)
		if err == nil {
			// Only untouched seeds can open.
			if _, err2 := parse(b); err2 != nil {
				t.Fatal("opened an object that does not parse")
			}
			_ = got
			return
		}
		if !errors.Is(err, wire.ErrCorrupt) || got != nil {
			t.Fatalf("Open = %d bytes, %v; want nil, ErrCorrupt", len(got), err)
		}
	})
}

// Golden vectors: a committed test key and objects sealed to it once. They
// must keep opening; regenerate only with -update (and review the diff).
var goldenDir = filepath.Join("..", "..", "testdata", "seal")

type vector struct {
	name string
	kind Kind
	pt   []byte
}

func goldenVectors() []vector {
	multi := make([]byte, 2*SegmentSize+100)
	for i := range multi {
		multi[i] = byte(i % 251)
	}
	return []vector{
		{"empty", KindPack, nil},
		{"small", KindPack, []byte("embassy seal golden vector\n")},
		{"segment", KindPack, multi[:SegmentSize]},
		{"multi", KindPack, multi},
		{"record", KindRecord, []byte(`{"root":"test"}` + "\n")},
	}
}

func goldenAD(k Kind) AD {
	ad := testAD()
	ad.Kind = k
	return ad
}

func TestGolden(t *testing.T) {
	keyPath := filepath.Join(goldenDir, "test-key.hex")
	if *update {
		priv, err := KEM().GenerateKey()
		if err != nil {
			t.Fatal(err)
		}
		kb, err := priv.Bytes()
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(keyPath, []byte(hex.EncodeToString(kb)+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		for _, v := range goldenVectors() {
			s := mustSeal(t, priv.PublicKey(), goldenAD(v.kind), v.pt)
			if err := os.WriteFile(filepath.Join(goldenDir, v.name+".sealed"), s, 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	kh, err := os.ReadFile(keyPath)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := hex.DecodeString(strings.TrimSpace(string(kh)))
	if err != nil {
		t.Fatal(err)
	}
	priv, err := KEM().NewPrivateKey(kb)
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range goldenVectors() {
		t.Run(v.name, func(t *testing.T) {
			s, err := os.ReadFile(filepath.Join(goldenDir, v.name+".sealed"))
			if err != nil {
				t.Fatal(err)
			}
			got, err := Open(priv, goldenAD(v.kind), s)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, v.pt) {
				t.Fatal("golden plaintext differs")
			}
			if len(s) != len(v.pt)+Overhead(len(v.pt)) {
				t.Fatalf("golden object has %d bytes, want %d", len(s), len(v.pt)+Overhead(len(v.pt)))
			}
		})
	}
}

func BenchmarkSeal(b *testing.B) {
	priv := testKey(b)
	for _, n := range []int{64 << 10, 16 << 20} {
		pt := testenv.RandBytes(5, n)
		b.Run(fmt.Sprintf("%dKiB", n>>10), func(b *testing.B) {
			b.SetBytes(int64(n))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := Seal(priv.PublicKey(), testAD(), pt); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkOpen(b *testing.B) {
	priv := testKey(b)
	for _, n := range []int{64 << 10, 16 << 20} {
		s := mustSeal(b, priv.PublicKey(), testAD(), testenv.RandBytes(6, n))
		b.Run(fmt.Sprintf("%dKiB", n>>10), func(b *testing.B) {
			b.SetBytes(int64(n))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := Open(priv, testAD(), s); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// TestAppendSealReusesBuffer: AppendSeal appends after dst's contents and,
// given room, writes into dst's array; what it appends opens like Seal's.
func TestAppendSealReusesBuffer(t *testing.T) {
	priv := testKey(t)
	buf := make([]byte, 0, 1<<20)
	for _, n := range []int{0, 100, SegmentSize + 1, 3 * SegmentSize} {
		pt := testenv.RandBytes(byte(n), n)
		prefix := []byte("keep")
		dst := append(buf[:0], prefix...)
		s, err := AppendSeal(dst, priv.PublicKey(), testAD(), pt)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.HasPrefix(s, prefix) || len(s) != len(prefix)+n+Overhead(n) {
			t.Fatalf("%d bytes: got %d bytes, want the prefix and %d", n, len(s), n+Overhead(n))
		}
		if &s[0] != &buf[:1][0] {
			t.Fatalf("%d bytes: AppendSeal did not use the buffer's room", n)
		}
		got, err := Open(priv, testAD(), s[len(prefix):])
		if err != nil || !bytes.Equal(got, pt) {
			t.Fatalf("%d bytes: Open = %v", n, err)
		}
	}
}
