package ledger

import (
	"bytes"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/transparency-dev/merkle/compact"
	"golang.org/x/mod/sumdb/note"

	"github.com/embassy-project/embassy/internal/testenv"
	"github.com/embassy-project/embassy/internal/wire"
)

var update = flag.Bool("update", false, "rewrite the golden vectors in testdata/ledger")

const goldenDir = "../../testdata/ledger"

func h32(b byte) (h [32]byte) {
	for i := range h {
		h[i] = b
	}
	return h
}

func h16(b byte) (h [16]byte) {
	for i := range h {
		h[i] = b
	}
	return h
}

// goldenEntries are the entries in testdata/ledger, one file each, and in
// this order the leaves of testdata/ledger/checkpoint.
var goldenEntries = []struct {
	file  string
	entry Entry
}{
	{"entry-host-started.bin", Entry{Time: 1763700000, Event: HostStarted{Config: h32(0xc0)}}},
	{"entry-shard-stored.bin", Entry{Time: 1763700001, Event: ShardStored{Guest: h16(0x01), Kind: KindShards, Object: h32(0xaa), Size: 1 << 20, Writer: "0123456789abcdef0123456789abcdef"}}},
	{"entry-envelope-stored.bin", Entry{Time: 1763700002, Event: ShardStored{Guest: h16(0x01), Kind: KindEnvelopes, Object: h32(0xee), Size: 3600, Writer: "0123456789abcdef0123456789abcdef"}}},
	{"entry-object-read.bin", Entry{Time: 1763700003, Event: ObjectRead{Guest: h16(0x01), Kind: KindShards, Object: h32(0xaa), Reader: "0123456789abcdef0123456789abcdef"}}},
	{"entry-object-read-grant.bin", Entry{Time: 1763700004, Event: ObjectRead{Guest: h16(0x01), Kind: KindShards, Object: h32(0xaa), Reader: "sha256:" + strings.Repeat("5e", 32), Grant: h16(0x67)}}},
	{"entry-grant-presented.bin", Entry{Time: 1763700005, Event: GrantPresented{Guest: h16(0x01), Grant: h16(0x67), Reader: "sha256:" + strings.Repeat("5e", 32)}}},
	{"entry-proof-answered.bin", Entry{Time: 1763700006, Event: ProofAnswered{Guest: h16(0x01), Challenge: h32(0xc1), Answer: h32(0xa1), Items: 16}}},
	{"entry-cosigned.bin", Entry{Time: 1763700007, Event: Cosigned{Checkpoints: []Witnessed{
		{Origin: "embassy.host/b", Size: 1000, Hash: h32(0xb0)},
		{Origin: "embassy.host/c", Size: 7, Hash: h32(0xc0)},
	}}}},
}

func mustMarshal(t testing.TB, e Entry) []byte {
	t.Helper()
	b, err := MarshalEntry(e)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestEntryRoundTrip(t *testing.T) {
	extra := []Entry{
		{Time: -1, Event: HostStarted{}},
		{Time: 0, Event: ProofAnswered{Items: ^uint64(0)}},
		{Time: 1 << 62, Event: ShardStored{Kind: KindShards, Size: ^uint64(0), Writer: strings.Repeat("~", MaxFingerprintLen)}},
		{Event: Cosigned{Checkpoints: func() []Witnessed {
			w := make([]Witnessed, MaxCosigned)
			for i := range w {
				w[i] = Witnessed{Origin: strings.Repeat("o", MaxOriginLen), Size: uint64(i)}
			}
			return w
		}()}},
	}
	all := extra
	for _, g := range append(goldenEntries, goldenGovEntries...) {
		all = append(all, g.entry)
	}
	for _, e := range all {
		b := mustMarshal(t, e)
		got, err := ParseEntry(b)
		if err != nil {
			t.Fatalf("%s: %v", e.Event.Type(), err)
		}
		if !reflect.DeepEqual(got, e) {
			t.Fatalf("%s: got %+v, want %+v", e.Event.Type(), got, e)
		}
		if !bytes.Equal(mustMarshal(t, got), b) {
			t.Fatalf("%s: re-marshal differs", e.Event.Type())
		}
		// Every strict prefix is truncated, every extension has trailing bytes.
		for i := range b {
			if _, err := ParseEntry(b[:i]); !errors.Is(err, wire.ErrCorrupt) {
				t.Fatalf("%s: prefix of %d bytes: %v", e.Event.Type(), i, err)
			}
		}
		if _, err := ParseEntry(append(bytes.Clone(b), 0)); !errors.Is(err, wire.ErrCorrupt) {
			t.Fatalf("%s: trailing byte accepted: %v", e.Event.Type(), err)
		}
	}
}

func TestMarshalEntryRejects(t *testing.T) {
	for name, e := range map[string]Entry{
		"no event":         {},
		"bad kind":         {Event: ShardStored{Kind: 3, Writer: "w"}},
		"zero kind":        {Event: ObjectRead{Reader: "r"}},
		"empty writer":     {Event: ShardStored{Kind: KindShards}},
		"space in writer":  {Event: ShardStored{Kind: KindShards, Writer: "a b"}},
		"long reader":      {Event: GrantPresented{Reader: strings.Repeat("r", MaxFingerprintLen+1)}},
		"non-ascii reader": {Event: ObjectRead{Kind: KindShards, Reader: "é"}},
		"no checkpoints":   {Event: Cosigned{}},
		"bad origin":       {Event: Cosigned{Checkpoints: []Witnessed{{Origin: "a+b"}}}},
		"long origin":      {Event: Cosigned{Checkpoints: []Witnessed{{Origin: strings.Repeat("o", 256)}}}},
		"too many": {Event: Cosigned{Checkpoints: func() []Witnessed {
			return make([]Witnessed, MaxCosigned+1)
		}()}},
	} {
		if _, err := MarshalEntry(e); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestParseEntryRejects(t *testing.T) {
	good := mustMarshal(t, goldenEntries[4].entry) // object-read with grant
	mod := func(f func(b []byte) []byte) []byte { return f(bytes.Clone(good)) }
	readerEnd := 8 + 1 + 5 + 16 + 1 + 32 + 1 + 71 // magic type time guest kind object len reader
	cases := map[string][]byte{
		"empty":                 nil,
		"bad magic":             mod(func(b []byte) []byte { b[0] = 'X'; return b }),
		"type 0":                mod(func(b []byte) []byte { b[8] = 0; return b }),
		"type 7":                mod(func(b []byte) []byte { b[8] = 7; return b }),
		"bad kind":              mod(func(b []byte) []byte { b[8+1+5+16] = 3; return b }),
		"grant flag":            mod(func(b []byte) []byte { b[readerEnd] = 2; return b }),
		"zero grant":            mod(func(b []byte) []byte { copy(b[readerEnd+1:], make([]byte, 16)); return b }),
		"no grant+32":           mod(func(b []byte) []byte { b[readerEnd] = 0; return b }),
		"reader ctl":            mod(func(b []byte) []byte { b[8+1+5+16+1+32+1] = '\n'; return b }),
		"long time":             append(append([]byte(EntryMagic+"\x01"), 0x80, 0x00), make([]byte, 32)...), // non-minimal varint
		"too big":               make([]byte, MaxEntrySize+1),
		"cosigned 0":            append([]byte(EntryMagic+"\x06\x00"), 0),
		"cosigned huge count":   append([]byte(EntryMagic+"\x06\x00"), 100, 1, 'a', 0),
		"cosigned empty origin": append(append([]byte(EntryMagic+"\x06\x00"), 1, 0, 0), make([]byte, 32)...),
		"cosigned space origin": append(append([]byte(EntryMagic+"\x06\x00"), 1, 1, ' ', 0), make([]byte, 32)...),
	}
	if good[readerEnd] != 1 {
		t.Fatalf("test offsets are wrong: grant flag is %d", good[readerEnd])
	}
	for name, b := range cases {
		if _, err := ParseEntry(b); !errors.Is(err, wire.ErrCorrupt) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func FuzzParseEntry(f *testing.F) {
	for _, g := range append(goldenEntries, goldenGovEntries...) {
		f.Add(mustMarshal(f, g.entry))
	}
	f.Add([]byte(EntryMagic))
	f.Fuzz(func(t *testing.T, b []byte) {
		testenv.RoundTrip(t, b, ParseEntry, MarshalEntry)
	})
}

func FuzzParseTrusted(f *testing.F) {
	f.Add([]byte(TrustedHeader + "\nembassy.host/a\n12\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		testenv.RoundTrip(t, b, ParseTrusted, Trusted.MarshalText)
	})
}

func TestTrustedText(t *testing.T) {
	tr := Trusted{Origin: "embassy.host/a", Size: 1234, Hash: h32(7)}
	b, err := tr.MarshalText()
	if err != nil {
		t.Fatal(err)
	}
	var got Trusted
	if err := got.UnmarshalText(b); err != nil || got != tr {
		t.Fatalf("got %+v, %v", got, err)
	}
	if _, err := (Trusted{}).MarshalText(); err == nil {
		t.Fatal("zero Trusted marshalled")
	}
	for _, bad := range []string{
		"",
		strings.Replace(string(b), "1234", "01234", 1),
		strings.Replace(string(b), "1234", "-1", 1),
		strings.Replace(string(b), TrustedHeader, "embassy-ledger-trusted-v2", 1),
		strings.TrimSuffix(string(b), "\n"),
		string(b) + "\n",
		strings.Replace(string(b), "embassy.host/a", "a b", 1),
		strings.Replace(string(b), "BwcH", "Bwc", 1),
	} {
		if _, err := ParseTrusted([]byte(bad)); !errors.Is(err, wire.ErrCorrupt) {
			t.Errorf("%q: %v", bad, err)
		}
	}
}

// goldenKeys returns the test log's keys from testdata/ledger/log.key,
// creating them with -update if the file is missing.
func goldenKeys(t testing.TB) *Keys {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(goldenDir, "log.key"))
	if errors.Is(err, os.ErrNotExist) && *update {
		priv, pub, err := GenerateKeys("embassy.host/golden")
		if err != nil {
			t.Fatal(err)
		}
		writeGolden(t, "log.key", priv)
		writeGolden(t, "log.pub", []byte(strings.Join(pub, "\n")+"\n"))
		b = priv
	} else if err != nil {
		t.Fatalf("read test log key: %v", err)
	}
	k, err := ParseKeys(b)
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
	testenv.WriteFile(t, filepath.Join(goldenDir, name), b)
}

func readGolden(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(goldenDir, name))
	if err != nil {
		t.Fatalf("read golden vector (regenerate with go test -update): %v", err)
	}
	return b
}

// rootOf returns the RFC 6962 root of the given entries, in order.
func rootOf(t testing.TB, entries [][]byte) [32]byte {
	t.Helper()
	r := (&compact.RangeFactory{Hash: hasher.HashChildren}).NewEmptyRange(0)
	for _, e := range entries {
		if err := r.Append(hasher.HashLeaf(e), nil); err != nil {
			t.Fatal(err)
		}
	}
	root, err := r.GetRootHash(nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) == 0 {
		root = hasher.EmptyRoot()
	}
	return [32]byte(root)
}

// signCheckpoint signs a checkpoint body with the given signers.
func signCheckpoint(t testing.TB, origin string, size uint64, root [32]byte, signers ...note.Signer) []byte {
	t.Helper()
	body := Trusted{Origin: origin, Size: size, Hash: root}
	b, err := body.MarshalText()
	if err != nil {
		t.Fatal(err)
	}
	text := strings.TrimPrefix(string(b), TrustedHeader+"\n") // same three lines as a checkpoint body
	n, err := note.Sign(&note.Note{Text: text}, signers...)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func TestGolden(t *testing.T) {
	k := goldenKeys(t)
	pub := strings.Split(strings.TrimSuffix(string(readGolden(t, "log.pub")), "\n"), "\n")
	if !reflect.DeepEqual(pub, k.Public()) {
		t.Fatalf("log.pub does not match log.key:\n%q\n%q", pub, k.Public())
	}
	v, err := NewVerifier("embassy.host/golden", pub)
	if err != nil {
		t.Fatal(err)
	}
	var leaves [][]byte
	for _, g := range goldenEntries {
		b := mustMarshal(t, g.entry)
		if *update {
			writeGolden(t, g.file, b)
		}
		want := readGolden(t, g.file)
		if !bytes.Equal(b, want) {
			t.Errorf("%s: encoder output differs from the golden vector", g.file)
		}
		got, err := ParseEntry(want)
		if err != nil || !reflect.DeepEqual(got, g.entry) {
			t.Errorf("%s: %+v, %v", g.file, got, err)
		}
		leaves = append(leaves, want)
	}
	root := rootOf(t, leaves)
	if *update {
		ed, ml := k.signers()
		writeGolden(t, "checkpoint", signCheckpoint(t, k.Origin(), uint64(len(leaves)), root, ed, ml))
		tr := Trusted{Origin: k.Origin(), Size: uint64(len(leaves)), Hash: root}
		b, _ := tr.MarshalText()
		writeGolden(t, "trusted.txt", b)
	}
	cp, err := v.ParseCheckpoint(readGolden(t, "checkpoint"))
	if err != nil {
		t.Fatal(err)
	}
	if cp.Size != uint64(len(leaves)) || cp.Hash != root {
		t.Fatalf("golden checkpoint: size %d root %x, entries give %d %x", cp.Size, cp.Hash, len(leaves), root)
	}
	tr, err := ParseTrusted(readGolden(t, "trusted.txt"))
	if err != nil || tr != cp.Trusted() {
		t.Fatalf("trusted.txt: %+v, %v", tr, err)
	}
}
