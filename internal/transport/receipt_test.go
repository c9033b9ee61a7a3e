package transport

import (
	"bytes"
	"context"
	"crypto/x509"
	"errors"
	"flag"
	"io"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"testing"
	"time"

	"github.com/zeebo/blake3"

	"github.com/embassy-project/embassy/internal/access"
	"github.com/embassy-project/embassy/internal/ledger"
	"github.com/embassy-project/embassy/internal/proof"
	"github.com/embassy-project/embassy/internal/shardstore"
	"github.com/embassy-project/embassy/internal/testenv"
	"github.com/embassy-project/embassy/internal/wire"
	"github.com/embassy-project/embassy/internal/witness"
)

var update = flag.Bool("update", false, "regenerate testdata/transport/receipt.bin and challenge.bin (log.key and descriptor.json are made only if missing)")

// goldenHost is the host of the golden descriptor and receipt.
const goldenHost = "golden-host"

// challengeFor returns a challenge of guest g (nonce from seed) over a
// 3000-byte shard and a shard the host does not have, and the host's
// marshalled answer to it, made by proof.Respond from the shard's bytes.
func challengeFor(t testing.TB, g [16]byte, seed byte) (*proof.Challenge, []byte) {
	t.Helper()
	shard := testenv.RandBytes(seed, 3000)
	id := shardstore.Sum(shard)
	c := &proof.Challenge{
		Guest: g,
		Nonce: [32]byte(testenv.RandBytes(seed+1, 32)),
		Time:  1767225600, // 2026-01-01
		Items: []proof.Item{
			{Shard: id, Offset: 0, Length: len(shard)},
			{Shard: shardstore.Sum([]byte("absent")), Offset: proof.GroupSize, Length: proof.GroupSize},
		},
	}
	a, err := proof.Respond(c, func(got shardstore.ID) (io.ReaderAt, []byte, error) {
		if got != id {
			return nil, nil, shardstore.ErrNotFound
		}
		return bytes.NewReader(shard), proof.Outboard(shard), nil
	})
	if err != nil {
		t.Fatal(err)
	}
	ab, err := a.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return c, ab
}

// answered is the ProofAnswered event committing to challenge c and answer.
func answered(c *proof.Challenge, answer []byte) ledger.ProofAnswered {
	return ledger.ProofAnswered{Guest: c.Guest, Challenge: c.Digest(), Answer: blake3.Sum256(answer), Items: uint64(len(c.Items))}
}

// logReceipts appends entries to a fresh real log with the given private
// key file, waits for one checkpoint covering all of them, and returns for
// each entry a receipt carrying answer, the entry, its index, that
// checkpoint and its inclusion proof.
func logReceipts(t testing.TB, privateKey []byte, answer []byte, entries []ledger.Entry) []*Receipt {
	t.Helper()
	keys, err := ledger.ParseKeys(privateKey)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	l, err := ledger.Open(ctx, ledger.Config{Dir: t.TempDir(), Keys: keys, CheckpointInterval: ledger.MinCheckpointInterval})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close(context.Background())
	idx := make([]uint64, len(entries))
	for i, e := range entries {
		if idx[i], err = l.Append(ctx, e); err != nil {
			t.Fatal(err)
		}
	}
	cpb, err := l.AwaitCheckpoint(ctx, idx[len(idx)-1])
	if err != nil {
		t.Fatal(err)
	}
	cp, err := l.Verifier().ParseCheckpoint(cpb)
	if err != nil {
		t.Fatal(err)
	}
	rs := make([]*Receipt, len(entries))
	for i, e := range entries {
		eb, err := ledger.MarshalEntry(e)
		if err != nil {
			t.Fatal(err)
		}
		incl, err := l.InclusionProof(ctx, idx[i], cp.Size)
		if err != nil {
			t.Fatal(err)
		}
		rs[i] = &Receipt{Answer: answer, Entry: eb, Index: idx[i], Checkpoint: cpb, Inclusion: incl}
	}
	return rs
}

// filler returns an unrelated entry, to put the receipt's entry deeper in
// the tree than index 0.
func filler(i int) ledger.Entry {
	return ledger.Entry{Time: 1767225000 + int64(i), Event: ledger.ShardStored{
		Guest: [16]byte{9}, Kind: ledger.KindShards, Object: [32]byte{byte(i)}, Size: uint64(i), Writer: "sha256:writer"}}
}

func clone(r *Receipt) *Receipt {
	c := &Receipt{
		Answer:     bytes.Clone(r.Answer),
		Entry:      bytes.Clone(r.Entry),
		Index:      r.Index,
		Checkpoint: bytes.Clone(r.Checkpoint),
	}
	for _, h := range r.Inclusion {
		c.Inclusion = append(c.Inclusion, bytes.Clone(h))
	}
	return c
}

// positions returns about n byte offsets spread over a field of size len,
// always including the first and the last.
func positions(size, n int) []int {
	step := max(1, size/n)
	var ps []int
	for i := 0; i < size; i += step {
		ps = append(ps, i)
	}
	if size > 0 && ps[len(ps)-1] != size-1 {
		ps = append(ps, size-1)
	}
	return ps
}

func TestVerifyReceipt(t *testing.T) {
	priv, pub, err := ledger.GenerateKeys(ledger.Origin("lu-1"))
	if err != nil {
		t.Fatal(err)
	}
	d := newDescriptor(t, "lu-1")
	d.Log.Keys = pub
	g := [16]byte{1, 2, 3}
	c, answer := challengeFor(t, g, 7)
	other, _ := challengeFor(t, g, 8) // same guest and shard, another nonce

	pa := answered(c, answer)
	otherGuest := pa
	otherGuest.Guest = [16]byte{4, 5, 6}
	wrongItems := pa
	wrongItems.Items++
	wrongAnswer := pa
	wrongAnswer.Answer[0] ^= 1
	entries := []ledger.Entry{filler(0), filler(1), filler(2)}
	entries = append(entries,
		ledger.Entry{Time: 1767225601, Event: pa},
		ledger.Entry{Time: 1767225602, Event: otherGuest},
		ledger.Entry{Time: 1767225603, Event: wrongItems},
		ledger.Entry{Time: 1767225604, Event: wrongAnswer},
		filler(3),
	)
	rs := logReceipts(t, priv, answer, entries)
	good := rs[3]
	if good.Index != 3 || len(good.Inclusion) == 0 {
		t.Fatalf("receipt at index %d with %d proof hashes; want index 3 under a larger tree", good.Index, len(good.Inclusion))
	}
	if err := VerifyReceipt(good, c, d); err != nil {
		t.Fatalf("a real receipt does not verify: %v", err)
	}
	// Through the wire format.
	b := good.Marshal()
	parsed, err := ParseReceipt(b)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(parsed, good) {
		t.Fatal("ParseReceipt(Marshal(r)) != r")
	}
	if !bytes.Equal(parsed.Marshal(), b) {
		t.Fatal("Marshal(ParseReceipt(b)) != b")
	}
	if err := VerifyReceipt(parsed, c, d); err != nil {
		t.Fatalf("parsed receipt: %v", err)
	}
	// The answer it carries is the host's answer to c.
	a, err := proof.ParseAnswer(parsed.Answer)
	if err != nil {
		t.Fatal(err)
	}
	rep, err := proof.Verify(c, a, map[shardstore.ID]int64{c.Items[0].Shard: 3000, c.Items[1].Shard: 2 * proof.GroupSize})
	if err != nil || rep.OK != 1 || rep.Missing != 1 {
		t.Fatalf("answer: %+v, %v; want one item proven, one missing", rep, err)
	}

	otherKeys := newDescriptor(t, "lu-1") // same origin, other keys
	otherOrigin := newDescriptor(t, "lu-2")
	otherOrigin.Log.Keys = pub // keys named lu-1's origin under lu-2's
	witnessOnly := newDescriptor(t, "lu-1")
	witnessOnly.Log = KeySet{}
	swapped := *d // a witness's keys in place of the log's
	swapped.Log = KeySet{Origin: d.Log.Origin, Keys: d.Witness.Keys}

	type tcase struct {
		name string
		r    *Receipt
		c    *proof.Challenge
		d    *Descriptor
	}
	cases := []tcase{
		{"another challenge", good, other, d},
		{"another log's keys", good, c, otherKeys},
		{"another log's origin", good, c, otherOrigin},
		{"witness-only descriptor", good, c, witnessOnly},
		{"witness keys as log keys", good, c, &swapped},
		{"entry of another event type", rs[2], c, d},
		{"entry for another guest", rs[4], c, d},
		{"entry with another item count", rs[5], c, d},
		{"entry with another answer digest", rs[6], c, d},
		{"entry of another receipt", func() *Receipt { r := clone(rs[4]); r.Entry = good.Entry; return r }(), c, d},
		{"nothing", &Receipt{}, c, d},
	}
	mut := func(name string, f func(r *Receipt)) {
		r := clone(good)
		f(r)
		cases = append(cases, tcase{name, r, c, d})
	}
	for _, i := range positions(len(good.Answer), 64) {
		mut("answer byte "+strconv.Itoa(i), func(r *Receipt) { r.Answer[i] ^= 0x01 })
	}
	mut("answer truncated", func(r *Receipt) { r.Answer = r.Answer[:len(r.Answer)-1] })
	mut("answer extended", func(r *Receipt) { r.Answer = append(r.Answer, 0) })
	mut("no answer", func(r *Receipt) { r.Answer = nil })
	for i := range good.Entry {
		mut("entry byte "+strconv.Itoa(i), func(r *Receipt) { r.Entry[i] ^= 0x01 })
	}
	mut("entry truncated", func(r *Receipt) { r.Entry = r.Entry[:len(r.Entry)-1] })
	// Invert every byte (which leaves base64 and the note syntax), and flip
	// the low bit of every byte of the signed body. Not of the signature
	// lines: the last base64 character of a signature has padding bits that
	// signed-note's decoder ignores, so some such flips leave a checkpoint
	// that still verifies (the same signature, in other bytes).
	for i := range good.Checkpoint {
		mut("checkpoint byte "+strconv.Itoa(i)+" inverted", func(r *Receipt) { r.Checkpoint[i] ^= 0xff })
	}
	for i := range bytes.Index(good.Checkpoint, []byte("\n\n")) + 2 {
		mut("checkpoint body byte "+strconv.Itoa(i)+" low bit", func(r *Receipt) { r.Checkpoint[i] ^= 0x01 })
	}
	mut("checkpoint truncated", func(r *Receipt) { r.Checkpoint = r.Checkpoint[:len(r.Checkpoint)-1] })
	mut("no checkpoint", func(r *Receipt) { r.Checkpoint = nil })
	for i := range good.Inclusion {
		for _, j := range []int{0, 17, 31} {
			mut("inclusion hash "+strconv.Itoa(i)+" byte "+strconv.Itoa(j), func(r *Receipt) { r.Inclusion[i][j] ^= 0x80 })
		}
	}
	mut("inclusion proof empty", func(r *Receipt) { r.Inclusion = nil })
	mut("inclusion proof short", func(r *Receipt) { r.Inclusion = r.Inclusion[:len(r.Inclusion)-1] })
	mut("inclusion proof long", func(r *Receipt) { r.Inclusion = append(r.Inclusion, make([]byte, 32)) })
	mut("inclusion proof reversed", func(r *Receipt) {
		for i, j := 0, len(r.Inclusion)-1; i < j; i, j = i+1, j-1 {
			r.Inclusion[i], r.Inclusion[j] = r.Inclusion[j], r.Inclusion[i]
		}
	})
	mut("inclusion hash short", func(r *Receipt) { r.Inclusion[0] = r.Inclusion[0][:31] })
	mut("index - 1", func(r *Receipt) { r.Index-- })
	mut("index + 1", func(r *Receipt) { r.Index++ })
	mut("index 0", func(r *Receipt) { r.Index = 0 })
	mut("index = tree size", func(r *Receipt) { r.Index = uint64(len(entries)) })
	mut("index max", func(r *Receipt) { r.Index = math.MaxUint64 })
	mut("index of another entry", func(r *Receipt) { r.Index = rs[4].Index })
	mut("proof of another entry", func(r *Receipt) { r.Index, r.Inclusion = rs[4].Index, rs[4].Inclusion })

	for _, tc := range cases {
		err := VerifyReceipt(tc.r, tc.c, tc.d)
		if !errors.Is(err, wire.ErrCorrupt) {
			t.Errorf("%s: VerifyReceipt = %v, want an error wrapping ErrCorrupt", tc.name, err)
		}
	}
	// The mutations above worked on copies.
	if err := VerifyReceipt(good, c, d); err != nil {
		t.Fatalf("the good receipt no longer verifies: %v", err)
	}
}

func TestParseReceiptRejects(t *testing.T) {
	r := &Receipt{
		Answer:     []byte("answer"),
		Entry:      []byte("entry"),
		Index:      5,
		Checkpoint: []byte("checkpoint\n"),
		Inclusion:  [][]byte{bytes.Repeat([]byte{1}, 32), bytes.Repeat([]byte{2}, 32)},
	}
	b := r.Marshal()
	got, err := ParseReceipt(b)
	if err != nil || !reflect.DeepEqual(got, r) {
		t.Fatalf("round trip: %+v, %v", got, err)
	}
	// Every truncation, golden receipt included.
	inputs := [][]byte{b}
	if gb, err := os.ReadFile(filepath.Join(goldenDir, "receipt.bin")); err == nil {
		inputs = append(inputs, gb)
	}
	for _, in := range inputs {
		for n := range len(in) {
			if _, err := ParseReceipt(in[:n]); !errors.Is(err, wire.ErrCorrupt) {
				t.Fatalf("truncated to %d of %d bytes: %v", n, len(in), err)
			}
		}
	}
	build := func(f func(w *wire.Writer)) []byte {
		w := wire.NewWriter(nil)
		f(w)
		return w.Bytes()
	}
	for name, in := range map[string][]byte{
		"trailing byte": append(bytes.Clone(b), 0),
		"bad magic":     append([]byte("EMBPRCT2"), b[8:]...),
		"no magic":      b[8:],
		"too many hashes": build(func(w *wire.Writer) {
			w.Fixed([]byte(ReceiptMagic))
			w.LenBytes(nil)
			w.LenBytes(nil)
			w.Uint64(0)
			w.LenBytes(nil)
			w.Uvarint(MaxReceiptProofLen + 1)
			for range MaxReceiptProofLen + 1 {
				w.Fixed(make([]byte, 32))
			}
		}),
		"huge hash count": build(func(w *wire.Writer) {
			w.Fixed([]byte(ReceiptMagic))
			w.LenBytes(nil)
			w.LenBytes(nil)
			w.Uint64(0)
			w.LenBytes(nil)
			w.Uvarint(math.MaxUint64)
		}),
		"entry over limit": build(func(w *wire.Writer) {
			w.Fixed([]byte(ReceiptMagic))
			w.LenBytes(nil)
			w.LenBytes(make([]byte, MaxReceiptEntry+1))
			w.Uint64(0)
			w.LenBytes(nil)
			w.Uvarint(0)
		}),
		"checkpoint over limit": build(func(w *wire.Writer) {
			w.Fixed([]byte(ReceiptMagic))
			w.LenBytes(nil)
			w.LenBytes(nil)
			w.Uint64(0)
			w.LenBytes(make([]byte, MaxReceiptCheckpoint+1))
			w.Uvarint(0)
		}),
		"answer length over limit": build(func(w *wire.Writer) {
			w.Fixed([]byte(ReceiptMagic))
			w.Uvarint(MaxReceiptAnswer + 1)
		}),
		"non-minimal varint": build(func(w *wire.Writer) {
			w.Fixed([]byte(ReceiptMagic))
			w.Fixed([]byte{0x80, 0x00}) // answer length 0, in two bytes
			w.LenBytes(nil)
			w.Uint64(0)
			w.LenBytes(nil)
			w.Uvarint(0)
		}),
	} {
		if _, err := ParseReceipt(in); !errors.Is(err, wire.ErrCorrupt) {
			t.Errorf("%s: %v", name, err)
		}
	}
	// The parser's limits are inclusive: a receipt at every limit parses.
	atLimits := &Receipt{Entry: make([]byte, MaxReceiptEntry), Checkpoint: make([]byte, MaxReceiptCheckpoint)}
	for range MaxReceiptProofLen {
		atLimits.Inclusion = append(atLimits.Inclusion, make([]byte, 32))
	}
	if _, err := ParseReceipt(atLimits.Marshal()); err != nil {
		t.Fatalf("receipt at the limits: %v", err)
	}
}

func FuzzParseReceipt(f *testing.F) {
	f.Add((&Receipt{Answer: []byte("a"), Entry: []byte("e"), Index: 1, Checkpoint: []byte("c"), Inclusion: [][]byte{make([]byte, 32)}}).Marshal())
	f.Add((&Receipt{}).Marshal())
	if b, err := os.ReadFile(filepath.Join(goldenDir, "receipt.bin")); err == nil {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		testenv.RoundTrip(t, b, ParseReceipt, func(r *Receipt) ([]byte, error) { return r.Marshal(), nil })
	})
}

// goldenLogKey returns testdata/transport/log.key, creating it and
// descriptor.json with -update if they are missing: the receipt is signed by
// this key and verified under the descriptor's copy of its public half.
func goldenLogKey(t *testing.T) []byte {
	t.Helper()
	path := filepath.Join(goldenDir, "log.key")
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) && *update {
		priv, pub, err := ledger.GenerateKeys(ledger.Origin(goldenHost))
		if err != nil {
			t.Fatal(err)
		}
		_, witPub, err := witness.GenerateKeys("embassy.witness/" + goldenHost)
		if err != nil {
			t.Fatal(err)
		}
		cert, _, _, err := access.NewServerCertificate(goldenHost, time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
		if err != nil {
			t.Fatal(err)
		}
		leaf, err := x509.ParseCertificate(cert.Certificate[0])
		if err != nil {
			t.Fatal(err)
		}
		d := &Descriptor{
			Version: DescriptorVersion,
			Name:    goldenHost,
			URL:     "https://golden-host.example:8443",
			TLS:     access.SPKIFingerprint(leaf),
			Log:     KeySet{Origin: ledger.Origin(goldenHost), Keys: pub},
			Witness: KeySet{Origin: "embassy.witness/" + goldenHost, Keys: witPub.Verifiers()},
		}
		if err := os.MkdirAll(goldenDir, 0o755); err != nil {
			t.Fatal(err)
		}
		testenv.WriteFile(t, path, priv)
		testenv.WriteFile(t, filepath.Join(goldenDir, "descriptor.json"), d.Marshal())
		return priv
	}
	if err != nil {
		t.Fatalf("read golden log key (create with go test -update): %v", err)
	}
	return b
}

// TestGoldenReceipt checks the committed receipt: it parses, re-marshals to
// the same bytes, and verifies for the committed challenge under the
// committed descriptor. Its checkpoint is signed, so -update makes new bytes.
func TestGoldenReceipt(t *testing.T) {
	guest := [16]byte{0x60, 0x1d, 0xe2}
	if *update {
		priv := goldenLogKey(t)
		c, answer := challengeFor(t, guest, 42)
		cb, err := c.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		entries := []ledger.Entry{filler(0), filler(1), filler(2), filler(3), filler(4),
			{Time: 1767225601, Event: answered(c, answer)}}
		r := logReceipts(t, priv, answer, entries)[5]
		testenv.WriteFile(t, filepath.Join(goldenDir, "challenge.bin"), cb)
		testenv.WriteFile(t, filepath.Join(goldenDir, "receipt.bin"), r.Marshal())
	}
	priv := goldenLogKey(t)
	keys, err := ledger.ParseKeys(priv)
	if err != nil {
		t.Fatal(err)
	}
	d, err := ParseDescriptor(testenv.ReadFile(t, filepath.Join(goldenDir, "descriptor.json")))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(d.Log.Keys, keys.Public()) || d.Log.Origin != keys.Origin() {
		t.Fatal("descriptor.json's log keys are not log.key's")
	}
	c, err := proof.ParseChallenge(testenv.ReadFile(t, filepath.Join(goldenDir, "challenge.bin")))
	if err != nil {
		t.Fatal(err)
	}
	if c.Guest != guest {
		t.Fatalf("golden challenge for guest %x", c.Guest)
	}
	b := testenv.ReadFile(t, filepath.Join(goldenDir, "receipt.bin"))
	r, err := ParseReceipt(b)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(r.Marshal(), b) {
		t.Fatal("Marshal(ParseReceipt(receipt.bin)) differs from the file")
	}
	if r.Index != 5 || len(r.Inclusion) != 2 {
		t.Fatalf("golden receipt: index %d, %d proof hashes; want 5 and 2", r.Index, len(r.Inclusion))
	}
	if err := VerifyReceipt(r, c, d); err != nil {
		t.Fatalf("golden receipt does not verify: %v", err)
	}
	// The answer is still the one the shard gives (proof's encoding has
	// not moved under the committed receipt).
	_, answer := challengeFor(t, guest, 42)
	if !bytes.Equal(r.Answer, answer) {
		t.Fatal("golden receipt's answer differs from proof.Respond's answer to the golden challenge")
	}
	r.Answer[len(r.Answer)-1] ^= 1
	if err := VerifyReceipt(r, c, d); !errors.Is(err, wire.ErrCorrupt) {
		t.Fatalf("golden receipt with a changed answer: %v", err)
	}
}
