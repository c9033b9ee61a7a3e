package snapshot

import (
	"bytes"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"github.com/embassy-project/embassy/internal/testenv"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/embassy-project/embassy/internal/sig"
	"github.com/embassy-project/embassy/internal/wire"
)

var update = flag.Bool("update", false, "rewrite the golden vectors in testdata/snapshot")

const goldenDir = "../../testdata/snapshot"

// testEnvelope returns a deterministic valid envelope with npacks packs of
// n shards each.
func testEnvelope(seq uint64, prev [32]byte, npacks int, k, n uint8) *Envelope {
	e := &Envelope{
		Guest:   [16]byte{'g', 'u', 'e', 's', 't'},
		Dataset: [16]byte{'d', 'a', 't', 'a', 's', 'e', 't'},
		Seq:     seq,
		Prev:    prev,
		Time:    1763700000000000000 + int64(seq)*3600e9,
		K:       k,
		N:       n,
		Record:  []byte(fmt.Sprintf("sealed record of snapshot %d (opaque here)", seq)),
	}
	for i := range int(n) {
		e.Hosts = append(e.Hosts, fmt.Sprintf("host-%d", i))
	}
	for i := range npacks {
		p := PackRef{Size: 16<<20 + uint64(i), Shards: make([][32]byte, n)}
		p.ID[0], p.ID[1], p.ID[2], p.ID[15] = byte(i>>16), byte(i>>8), byte(i), byte(seq)
		p.ShardSize = (p.Size + uint64(k) - 1) / uint64(k)
		for j := range p.Shards {
			p.Shards[j][0], p.Shards[j][1], p.Shards[j][2], p.Shards[j][31] = byte(i>>16), byte(i>>8), byte(i), byte(j)
		}
		e.Packs = append(e.Packs, p)
	}
	return e
}

func testKey(t testing.TB) *sig.PrivateKey {
	t.Helper()
	path := filepath.Join(goldenDir, "agent.key")
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) && *update {
		k, err := sig.Generate()
		if err != nil {
			t.Fatal(err)
		}
		writeGolden(t, "agent.key", []byte(hex.EncodeToString(k.Bytes())+"\n"))
		return k
	}
	if err != nil {
		t.Fatalf("read test agent key: %v", err)
	}
	raw, err := hex.DecodeString(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	k, err := sig.NewPrivateKey(raw)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func writeGolden(t testing.TB, name string, b []byte) {
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

func mustSign(t testing.TB, e *Envelope, k *sig.PrivateKey) []byte {
	t.Helper()
	b, err := e.Sign(k)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestEnvelopeRoundTrip(t *testing.T) {
	k := testKey(t)
	for name, e := range map[string]*Envelope{
		"first":    testEnvelope(1, [32]byte{}, 3, 2, 3),
		"later":    testEnvelope(7, [32]byte{1, 2, 3}, 100, 3, 5),
		"no packs": testEnvelope(1, [32]byte{}, 0, 1, 1),
		"replicas": testEnvelope(2, [32]byte{9}, 2, 1, 4),
		"max n":    testEnvelope(1, [32]byte{}, 2, 200, 255),
		"negative time": func() *Envelope {
			e := testEnvelope(1, [32]byte{}, 1, 1, 1)
			e.Time = -1
			return e
		}(),
	} {
		t.Run(name, func(t *testing.T) {
			signed := mustSign(t, e, k)
			body, _ := e.Marshal()
			if !bytes.Equal(signed[:len(body)], body) || len(signed) != len(body)+sig.SignatureSize {
				t.Fatal("signed bytes are not body || signature")
			}
			for what, parse := range map[string]func([]byte) (*Envelope, error){
				"Parse":  Parse,
				"Verify": func(b []byte) (*Envelope, error) { return Verify(b, k.Public()) },
			} {
				got, err := parse(signed)
				if err != nil {
					t.Fatalf("%s: %v", what, err)
				}
				if !reflect.DeepEqual(got, e) {
					t.Fatalf("%s: round trip differs:\n got %+v\nwant %+v", what, got, e)
				}
			}
			if Hash(signed) == Hash(mustSign(t, e, k)) {
				t.Fatal("two signatures of one body gave equal hashes; signatures should be randomized")
			}
		})
	}
}

func TestEnvelopeValidate(t *testing.T) {
	cases := []struct {
		name string
		mod  func(e *Envelope)
		ok   bool
	}{
		{"valid", func(e *Envelope) {}, true},
		{"seq 0", func(e *Envelope) { e.Seq, e.Prev = 0, [32]byte{} }, false},
		{"seq 1 with prev", func(e *Envelope) { e.Seq = 1 }, false},
		{"seq 1 without prev", func(e *Envelope) { e.Seq, e.Prev = 1, [32]byte{} }, true},
		{"seq 2 without prev", func(e *Envelope) { e.Prev = [32]byte{} }, false},
		{"k 0", func(e *Envelope) { e.K = 0 }, false},
		{"k > n", func(e *Envelope) { e.K = 4 }, false},
		{"k = n", func(e *Envelope) { e.K = 3 }, true},
		{"unsorted packs", func(e *Envelope) { e.Packs[0], e.Packs[1] = e.Packs[1], e.Packs[0] }, false},
		{"duplicate pack", func(e *Envelope) { e.Packs[1].ID = e.Packs[0].ID }, false},
		{"too few shards", func(e *Envelope) { e.Packs[1].Shards = e.Packs[1].Shards[:2] }, false},
		{"too many shards", func(e *Envelope) { e.Packs[1].Shards = append(e.Packs[1].Shards, [32]byte{}) }, false},
		{"zero size", func(e *Envelope) { e.Packs[0].Size = 0 }, false},
		{"zero shard size", func(e *Envelope) { e.Packs[0].ShardSize = 0 }, false},
		{"shards cannot hold pack", func(e *Envelope) { e.Packs[0].ShardSize = e.Packs[0].Size/2 - 1 }, false},
		{"shards larger than needed", func(e *Envelope) { e.Packs[0].ShardSize = e.Packs[0].Size }, true},
		{"identical shards ok (replicas)", func(e *Envelope) { e.Packs[0].Shards[1] = e.Packs[0].Shards[0] }, true},
		{"empty record", func(e *Envelope) { e.Record = nil }, false},
		{"max record", func(e *Envelope) { e.Record = make([]byte, MaxRecord) }, true},
		{"record too big", func(e *Envelope) { e.Record = make([]byte, MaxRecord+1) }, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e := testEnvelope(2, [32]byte{7}, 3, 2, 3)
			c.mod(e)
			if err := e.Validate(); (err == nil) != c.ok {
				t.Fatalf("Validate = %v, want ok=%v", err, c.ok)
			}
			body, err := e.Marshal()
			if (err == nil) != c.ok {
				t.Fatalf("Marshal = %v, want ok=%v", err, c.ok)
			}
			if !c.ok {
				body = e.encode()
			}
			_, err = Parse(append(body, make([]byte, sig.SignatureSize)...))
			if c.ok && err != nil {
				t.Fatalf("Parse of valid envelope: %v", err)
			}
			if !c.ok && !errors.Is(err, wire.ErrCorrupt) {
				t.Fatalf("Parse of invalid envelope = %v, want ErrCorrupt", err)
			}
		})
	}
}

func TestVerify(t *testing.T) {
	k := testKey(t)
	e := testEnvelope(3, [32]byte{1}, 2, 2, 3)
	signed := mustSign(t, e, k)
	if _, err := Verify(signed, k.Public()); err != nil {
		t.Fatal(err)
	}
	other, err := sig.Generate()
	if err != nil {
		t.Fatal(err)
	}
	bad := func(t *testing.T, err error) {
		t.Helper()
		if !errors.Is(err, sig.ErrBadSignature) || !errors.Is(err, wire.ErrCorrupt) {
			t.Fatalf("got %v, want ErrBadSignature and ErrCorrupt", err)
		}
	}
	t.Run("different key", func(t *testing.T) {
		_, err := Verify(signed, other.Public())
		bad(t, err)
	})
	t.Run("no key", func(t *testing.T) {
		_, err := Verify(signed, sig.PublicKey{})
		bad(t, err)
	})
	t.Run("re-signed with a fresh agent key", func(t *testing.T) {
		// Someone without the agent's key can produce a well-formed envelope;
		// only the real agent's public key tells it apart.
		forged := mustSign(t, e, other)
		if _, err := Verify(forged, other.Public()); err != nil {
			t.Fatal(err)
		}
		_, err := Verify(forged, k.Public())
		bad(t, err)
	})
	t.Run("signature of another domain", func(t *testing.T) {
		body, _ := e.Marshal()
		s, _ := k.Sign("order", body)
		_, err := Verify(append(body, s...), k.Public())
		bad(t, err)
	})
	t.Run("every byte flip", func(t *testing.T) {
		for i := range signed {
			b := bytes.Clone(signed)
			b[i] ^= 0x04
			if _, err := Verify(b, k.Public()); !errors.Is(err, wire.ErrCorrupt) {
				t.Fatalf("flip at %d of %d: got %v, want ErrCorrupt", i, len(signed), err)
			} else if i < len(signed)-sig.SignatureSize && !errors.Is(err, sig.ErrBadSignature) {
				t.Fatalf("flip at %d in body: got %v, want ErrBadSignature", i, err)
			}
		}
	})
	t.Run("every truncation", func(t *testing.T) {
		for n := range len(signed) {
			if _, err := Verify(signed[:n], k.Public()); !errors.Is(err, wire.ErrCorrupt) {
				t.Fatalf("truncated to %d: got %v, want ErrCorrupt", n, err)
			}
			if _, err := Parse(signed[:n]); !errors.Is(err, wire.ErrCorrupt) {
				t.Fatalf("Parse truncated to %d: got %v, want ErrCorrupt", n, err)
			}
		}
	})
	t.Run("appended bytes", func(t *testing.T) {
		_, err := Verify(append(bytes.Clone(signed), 0), k.Public())
		bad(t, err)
	})
	t.Run("validly signed but invalid body", func(t *testing.T) {
		// An agent bug, not a forgery: the signature holds, the structure does not.
		inv := testEnvelope(3, [32]byte{1}, 2, 2, 3)
		inv.K = 9
		body := inv.encode()
		s, _ := k.Sign(Domain, body)
		_, err := Verify(append(body, s...), k.Public())
		if !errors.Is(err, wire.ErrCorrupt) || errors.Is(err, sig.ErrBadSignature) {
			t.Fatalf("got %v, want ErrCorrupt only", err)
		}
	})
}

func TestParseCorrupt(t *testing.T) {
	body, _ := testEnvelope(2, [32]byte{7}, 3, 2, 3).Marshal()
	zeroSig := make([]byte, sig.SignatureSize)
	// header is the body up to the pack count: magic, guest, dataset,
	// seq 2 (one byte), prev, time 0, k, n.
	header := func(k, n byte) []byte {
		return append(bytes.Clone(body[:len(Magic)+16+16+1+32]), 0, k, n)
	}
	withCount := func(k, n byte, count uint64) []byte {
		w := wire.NewWriter(header(k, n))
		w.Uvarint(count)
		return w.Bytes()
	}
	cases := map[string][]byte{
		"nil":                     nil,
		"short":                   make([]byte, sig.SignatureSize),
		"bad magic":               append(append([]byte("EMBSENV2"), body[8:]...), zeroSig...),
		"trailing body byte":      append(append(bytes.Clone(body), 0), zeroSig...),
		"pack count over limit":   append(withCount(1, 1, MaxPacks+1), zeroSig...),
		"pack count beyond input": append(withCount(1, 255, 1<<20), zeroSig...),
		"no record":               append(withCount(1, 1, 0), zeroSig...),
	}
	for name, b := range cases {
		t.Run(name, func(t *testing.T) {
			if _, err := Parse(b); !errors.Is(err, wire.ErrCorrupt) {
				t.Fatalf("got %v, want ErrCorrupt", err)
			}
		})
	}
}

// golden envelopes: a three-link chain and a second, conflicting seq 2.
var goldenEnvelopes = []string{"envelope-1.bin", "envelope-2.bin", "envelope-3.bin", "envelope-2-fork.bin"}

// goldenFixture returns the envelope each golden file must hold; prev links
// are the hashes of the committed files themselves.
func goldenFixture(t testing.TB, name string) *Envelope {
	switch name {
	case "envelope-1.bin":
		return testEnvelope(1, [32]byte{}, 2, 2, 3)
	case "envelope-2.bin":
		return testEnvelope(2, Hash(readGolden(t, "envelope-1.bin")), 3, 2, 3)
	case "envelope-3.bin":
		return testEnvelope(3, Hash(readGolden(t, "envelope-2.bin")), 1, 1, 1)
	case "envelope-2-fork.bin":
		e := testEnvelope(2, Hash(readGolden(t, "envelope-1.bin")), 3, 2, 3)
		e.Time++
		return e
	}
	t.Fatalf("no fixture for %s", name)
	return nil
}

func TestGoldenEnvelopes(t *testing.T) {
	k := testKey(t)
	if *update {
		for _, name := range goldenEnvelopes { // in order: each links to files written before it
			writeGolden(t, name, mustSign(t, goldenFixture(t, name), k))
		}
	}
	var chain []Signed
	for _, name := range goldenEnvelopes {
		b := readGolden(t, name)
		got, err := Verify(b, k.Public())
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		want := goldenFixture(t, name)
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("%s: parsed envelope differs from fixture", name)
		}
		if body, _ := want.Marshal(); !bytes.Equal(body, b[:len(b)-sig.SignatureSize]) {
			t.Fatalf("%s: Marshal no longer produces the committed body", name)
		}
		chain = append(chain, Signed{Env: got, Hash: Hash(b)})
	}
	if err := CheckChain(chain[:3]); err != nil {
		t.Fatalf("golden chain: %v", err)
	}
	var fork *ForkError
	if err := CheckChain(chain); !errors.As(err, &fork) || fork.Seq != 2 {
		t.Fatalf("golden fork: got %v, want fork at seq 2", err)
	}
	if err := CheckChain([]Signed{chain[0], chain[3], chain[2]}); !errors.Is(err, ErrBrokenLink) {
		t.Fatalf("golden chain through the fork: got %v, want ErrBrokenLink", err)
	}
}

func FuzzParse(f *testing.F) {
	// The input is an envelope body; a zero signature is appended, since
	// Parse ignores it and mutating its 3373 bytes teaches nothing.
	for _, name := range goldenEnvelopes {
		b := readGolden(f, name)
		f.Add(b[:len(b)-sig.SignatureSize])
	}
	for _, e := range []*Envelope{testEnvelope(1, [32]byte{}, 0, 1, 1), testEnvelope(5, [32]byte{5}, 4, 1, 2)} {
		body, _ := e.Marshal()
		f.Add(body)
	}
	zeroSig := make([]byte, sig.SignatureSize)
	f.Fuzz(func(t *testing.T, body []byte) {
		// Parse takes signed bytes; a zero signature suffices (it does not verify).
		parse := func(b []byte) (*Envelope, error) { return Parse(append(bytes.Clone(b), zeroSig...)) }
		testenv.RoundTrip(t, body, parse, (*Envelope).Marshal)
	})
}

func BenchmarkVerify(b *testing.B) {
	k := testKey(b)
	for _, n := range []int{1, 1000, 100000} {
		signed := mustSign(b, testEnvelope(2, [32]byte{1}, n, 3, 5), k)
		b.Run(fmt.Sprintf("packs=%d", n), func(b *testing.B) {
			b.SetBytes(int64(len(signed)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := Verify(signed, k.Public()); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkHash(b *testing.B) {
	k := testKey(b)
	signed := mustSign(b, testEnvelope(2, [32]byte{1}, 1000, 3, 5), k)
	b.SetBytes(int64(len(signed)))
	b.ReportAllocs()
	for b.Loop() {
		Hash(signed)
	}
}
