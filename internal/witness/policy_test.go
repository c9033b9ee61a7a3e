package witness

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/embassy-project/embassy/internal/wire"
)

// cosignedBy returns the checkpoint at size merged with cosignatures from
// each witness (via HTTP), and the raw responses.
func cosignedBy(t testing.TB, l *testLog, size uint64, ws ...*testWitness) ([]byte, [][]byte) {
	t.Helper()
	cp := l.checkpoint(t, size)
	var resps [][]byte
	for _, w := range ws {
		s, _ := w.State(l.origin)
		sigs, err := Submit(context.Background(), nil, w.srv.URL, cp, s.Size, l.proofFor(size))
		if err != nil {
			t.Fatal(err)
		}
		resps = append(resps, sigs)
	}
	merged, err := Merge(cp, resps...)
	if err != nil {
		t.Fatal(err)
	}
	return merged, resps
}

// onlyKey keeps the response lines whose key hash is that of vkey.
func onlyKey(t testing.TB, resp []byte, vkey string) []byte {
	t.Helper()
	lines, err := parseSigLines(resp)
	if err != nil {
		t.Fatal(err)
	}
	var out []byte
	for _, l := range lines {
		if strings.Contains(vkey, fmt.Sprintf("+%08x+", l.hash)) {
			out = append(out, l.line...)
		}
	}
	if out == nil {
		t.Fatalf("no line for %s", vkey)
	}
	return out
}

func TestPolicyCount(t *testing.T) {
	l := newTestLog(t, "example.com/log", 20, 1)
	home := startWitness(t, "home.example/witness", "", l)
	hostA := startWitness(t, "host-a.example/witness", "", l)
	hostB := startWitness(t, "host-b.example/witness", "", l)
	p := Policy{Threshold: 2, Witnesses: []Named{home.named(), hostA.named(), hostB.named()}}
	if err := p.Validate(); err != nil {
		t.Fatal(err)
	}

	merged, resps := cosignedBy(t, l, 20, home, hostA, hostB)
	ok, err := p.Count(merged, l.vkeys)
	if err != nil || !slices.Equal(ok, []string{home.keys.Name(), hostA.keys.Name(), hostB.keys.Name()}) {
		t.Fatalf("all three: %v, %v", ok, err)
	}

	// hostB returns only its Ed25519 cosignature: it does not count.
	cp := l.checkpoint(t, 20)
	edOnly := onlyKey(t, resps[2], hostB.pub.Ed25519)
	m, err := Merge(cp, resps[0], edOnly)
	if err != nil {
		t.Fatal(err)
	}
	ok, err = p.Count(m, l.vkeys)
	if !errors.Is(err, ErrUnwitnessed) || !slices.Equal(ok, []string{home.keys.Name()}) {
		t.Fatalf("home + Ed25519-only host: %v, %v", ok, err)
	}
	// Likewise ML-DSA only.
	m, _ = Merge(cp, resps[0], onlyKey(t, resps[2], hostB.pub.MLDSA))
	if ok, err = p.Count(m, l.vkeys); !errors.Is(err, ErrUnwitnessed) || len(ok) != 1 {
		t.Fatalf("home + ML-DSA-only host: %v, %v", ok, err)
	}
	// Home and hostA meet w = 2.
	m, _ = Merge(cp, resps[0], resps[1], edOnly)
	if ok, err = p.Count(m, l.vkeys); err != nil || len(ok) != 2 {
		t.Fatalf("home + hostA: %v, %v", ok, err)
	}

	// A bad signature from one witness does not hide the others.
	m, _ = Merge(cp, resps[0], edOnly, resps[1]) // ends with hostA's ML-DSA line
	bad := corruptLastSig(t, m)
	ok, err = p.Count(bad, l.vkeys)
	if !errors.Is(err, ErrUnwitnessed) || !slices.Equal(ok, []string{home.keys.Name()}) {
		t.Fatalf("one corrupted cosignature: %v, %v", ok, err)
	}

	// Cosignatures over another checkpoint do not count.
	other := newTestLog(t, "other", 20, 0)
	other.origin, other.signers = l.origin, l.signers
	m, _ = Merge(other.checkpoint(t, 20), resps...)
	if ok, err := p.Count(m, l.vkeys); !errors.Is(err, ErrUnwitnessed) || len(ok) != 0 {
		t.Fatalf("cosignatures moved to another checkpoint: %v, %v", ok, err)
	}

	// The log's own signature is required.
	impostor := newTestLog(t, "impostor", 20, 1)
	if _, err := p.Count(merged, impostor.vkeys); !errors.Is(err, ErrNotSigned) {
		t.Fatalf("wrong log key: %v", err)
	}
	if _, err := p.Count(merged, nil); err == nil {
		t.Fatal("no log keys accepted")
	}
	if _, err := p.Count([]byte("garbage"), l.vkeys); !errors.Is(err, wire.ErrCorrupt) {
		t.Fatalf("garbage note: %v", err)
	}
}

func TestPolicyValidate(t *testing.T) {
	_, a := keysFor(t, "a.example/w")
	_, b := keysFor(t, "b.example/w")
	_, c := keysFor(t, "c.example/w")
	named := func(n string, p PublicKeys) Named { return Named{Name: n, Verifiers: p.Verifiers()} }
	three := []Named{named("a", a), named("b", b), named("c", c)}
	for _, tc := range []struct {
		name string
		p    Policy
		ok   bool
	}{
		{"2 of 3", Policy{2, three}, true},
		{"1 of 3", Policy{1, three}, true},
		{"3 of 3", Policy{3, three}, true},
		{"0 of 3", Policy{0, three}, false},
		{"4 of 3", Policy{4, three}, false},
		{"negative", Policy{-1, three}, false},
		{"no witnesses", Policy{1, nil}, false},
		{"repeated name", Policy{1, []Named{named("a", a), named("a", b)}}, false},
		{"empty name", Policy{1, []Named{named("", a)}}, false},
		{"shared key", Policy{1, []Named{named("a", a), {Name: "b", Verifiers: []string{a.Ed25519, b.MLDSA}}}}, false},
		{"Ed25519 only", Policy{1, []Named{{Name: "a", Verifiers: []string{a.Ed25519}}}}, false},
		{"two Ed25519", Policy{1, []Named{{Name: "a", Verifiers: []string{a.Ed25519, b.Ed25519}}}}, false},
		{"three keys", Policy{1, []Named{{Name: "a", Verifiers: []string{a.Ed25519, a.MLDSA, b.MLDSA}}}}, false},
		{"plain Ed25519 note key", Policy{1, []Named{{Name: "a", Verifiers: []string{newTestLog(t, "x", 0, 1).vkeys[0], a.MLDSA}}}}, false},
		{"garbage key", Policy{1, []Named{{Name: "a", Verifiers: []string{"a+b+c", a.MLDSA}}}}, false},
	} {
		err := tc.p.Validate()
		if (err == nil) != tc.ok {
			t.Errorf("%s: Validate = %v", tc.name, err)
		}
		if err != nil && !errors.Is(err, ErrPolicy) {
			t.Errorf("%s: %v does not wrap ErrPolicy", tc.name, err)
		}
	}
}

func TestIntersects(t *testing.T) {
	for _, tc := range []struct {
		w, W, f int
		want    bool
	}{
		{2, 3, 0, true},  // the default: safe while no witness lies
		{2, 3, 1, false}, // one liar can cosign both forks
		{3, 3, 1, true},
		{3, 5, 0, true},
		{3, 5, 1, false},
		{4, 5, 2, true},
		{1, 1, 0, true},
		{1, 2, 0, false}, // two disjoint single cosigners
	} {
		if got := Intersects(tc.w, tc.W, tc.f); got != tc.want {
			t.Errorf("Intersects(%d, %d, %d) = %v", tc.w, tc.W, tc.f, got)
		}
	}
}

func TestMerge(t *testing.T) {
	l := newTestLog(t, "example.com/log", 8, 1)
	w1 := startWitness(t, "w1.example/w", "", l)
	w2 := startWitness(t, "w2.example/w", "", l)
	_, resps := cosignedBy(t, l, 8, w1, w2)
	cp := l.checkpoint(t, 8)

	once, err := Merge(cp, resps...)
	if err != nil {
		t.Fatal(err)
	}
	if want := len(cp) + len(resps[0]) + len(resps[1]); len(once) != want {
		t.Fatalf("merged %d bytes, want %d", len(once), want)
	}
	// The same cosignatures again, and the merged note merged again, add nothing.
	twice, err := Merge(cp, resps[0], resps[1], resps[0], resps[1])
	if err != nil || !bytes.Equal(twice, once) {
		t.Fatalf("duplicate cosignatures kept: %v", err)
	}
	again, err := Merge(once, resps...)
	if err != nil || !bytes.Equal(again, once) {
		t.Fatalf("merge of a merged note changed it: %v", err)
	}
	// A fresher cosignature by the same key (new timestamp) is dropped too:
	// one signature per key.
	fresh, err := Submit(context.Background(), nil, w1.srv.URL, cp, 8, l.proofFor(8))
	if err != nil {
		t.Fatal(err)
	}
	if m, err := Merge(once, fresh); err != nil || !bytes.Equal(m, once) {
		t.Fatalf("second cosignature by the same key kept: %v", err)
	}
	// The log's own signature stays first.
	if !bytes.HasPrefix(once, cp) {
		t.Fatal("checkpoint's signatures not first")
	}
	p := Policy{Threshold: 2, Witnesses: []Named{w1.named(), w2.named()}}
	if ok, err := p.Count(once, l.vkeys); err != nil || len(ok) != 2 {
		t.Fatalf("merged note: %v, %v", ok, err)
	}

	for name, tc := range map[string]struct {
		cp    []byte
		extra []byte
	}{
		"no blank line":     {[]byte("example.com/log\n8\n"), nil},
		"no signatures":     {[]byte(l.checkpointText(8) + "\n"), nil},
		"bad cosig prefix":  {cp, []byte("- w1 AAAAAAAA\n")},
		"cosig no newline":  {cp, bytes.TrimSuffix(resps[0], []byte("\n"))},
		"cosig bad base64":  {cp, []byte("\u2014 w1 !!!!\n")},
		"cosig short":       {cp, []byte("\u2014 w1 AAAA\n")},
		"cosig name plus":   {cp, []byte("\u2014 w+1 AAAAAAAA\n")},
		"cosig two spaces":  {cp, []byte("\u2014 w1  AAAAAAAA\n")},
		"too many sigs":     {cp, manySigs(100)},
		"checkpoint broken": {append(bytes.Clone(cp[:len(cp)-1]), 'x'), nil},
	} {
		if _, err := Merge(tc.cp, tc.extra); !errors.Is(err, wire.ErrCorrupt) {
			t.Errorf("%s: %v, want ErrCorrupt", name, err)
		}
	}
}

// manySigs returns n well-formed signature lines by distinct keys.
func manySigs(n int) []byte {
	var b []byte
	for i := range n {
		b = append(b, "\u2014 k "+b64.EncodeToString([]byte{0, 0, byte(i >> 8), byte(i), 1, 2, 3})+"\n"...)
	}
	return b
}
