package witness

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	fnote "github.com/transparency-dev/formats/note"
	"golang.org/x/mod/sumdb/note"

	"github.com/embassy-project/embassy/internal/wire"
)

// verifyCosigs checks that sigs are exactly the two cosignatures of tw over
// checkpoint, with formats' own verifiers.
func verifyCosigs(t testing.TB, tw *testWitness, checkpoint []byte, sigs string) {
	t.Helper()
	if got := strings.Count(sigs, "\n"); got != 2 {
		t.Fatalf("response has %d lines, want 2: %q", got, sigs)
	}
	var vs []note.Verifier
	for _, k := range tw.pub.Verifiers() {
		v, err := fnote.NewVerifierForCosignatureV1(k)
		if err != nil {
			t.Fatal(err)
		}
		vs = append(vs, v)
	}
	text, _, err := splitNote(checkpoint)
	if err != nil {
		t.Fatal(err)
	}
	n, err := note.Open(append(append(bytes.Clone(text), '\n'), sigs...), note.VerifierList(vs...))
	if err != nil {
		t.Fatalf("cosignatures do not verify: %v", err)
	}
	if len(n.Sigs) != 2 {
		t.Fatalf("%d cosignatures verified, want 2", len(n.Sigs))
	}
}

func TestAddCheckpointHTTP(t *testing.T) {
	l := newTestLog(t, "example.com/log-a", 100, 1)
	tw := startWitness(t, "witness.example/w1", "", l)
	url := tw.srv.URL

	// First contact: old must be 0.
	code, ct, body := postRaw(t, url, l.request(t, 0, 10))
	if code != http.StatusOK || ct != "text/x.tlog.signature" {
		t.Fatalf("first contact: %d %s %q", code, ct, body)
	}
	verifyCosigs(t, tw, l.checkpoint(t, 10), body)

	// Growth with a valid proof.
	code, _, body = postRaw(t, url, l.request(t, 10, 37))
	if code != http.StatusOK {
		t.Fatalf("growth: %d %q", code, body)
	}
	verifyCosigs(t, tw, l.checkpoint(t, 37), body)

	// The same checkpoint again is cosigned again.
	if code, _, body = postRaw(t, url, l.request(t, 37, 37)); code != http.StatusOK {
		t.Fatalf("same checkpoint: %d %q", code, body)
	}

	// Stale old size: 409 with the witness's size.
	code, ct, body = postRaw(t, url, l.request(t, 10, 50))
	if code != http.StatusConflict || ct != "text/x.tlog.size" || body != "37\n" {
		t.Fatalf("stale old: %d %s %q", code, ct, body)
	}
	code, _, body = postRaw(t, url, l.request(t, 0, 50))
	if code != http.StatusConflict || body != "37\n" {
		t.Fatalf("old 0 after contact: %d %q", code, body)
	}

	// Old larger than the checkpoint.
	req := Request{Old: 37, Checkpoint: l.checkpoint(t, 20)}.Marshal()
	if code, _, body = postRaw(t, url, req); code != http.StatusBadRequest {
		t.Fatalf("old > size: %d %q", code, body)
	}

	// Bad proof.
	p := l.proof(t, 37, 60)
	p[0] = bytes.Repeat([]byte{1}, 32)
	req = Request{Old: 37, Proof: p, Checkpoint: l.checkpoint(t, 60)}.Marshal()
	if code, _, body = postRaw(t, url, req); code != http.StatusUnprocessableEntity {
		t.Fatalf("bad proof: %d %q", code, body)
	}

	// Forks: a tree with other entries, checkpoints signed by the real log key.
	fork := newTestLog(t, "fork", 100, 0)
	fork.origin, fork.signers, fork.vkeys = l.origin, l.signers, l.vkeys
	code, ct, body = postRaw(t, url, fork.request(t, 37, 37))
	if code != http.StatusConflict || strings.HasPrefix(ct, "text/x.tlog.size") {
		t.Fatalf("fork at same size: %d %s %q", code, ct, body)
	}
	if code, _, body = postRaw(t, url, fork.request(t, 37, 80)); code != http.StatusUnprocessableEntity {
		t.Fatalf("fork at larger size: %d %q", code, body)
	}

	// Unknown origin.
	stranger := newTestLog(t, "example.com/stranger", 5, 1)
	if code, _, body = postRaw(t, url, stranger.request(t, 0, 5)); code != http.StatusNotFound {
		t.Fatalf("unknown origin: %d %q", code, body)
	}

	// Signed by another key only.
	impostor := newTestLog(t, "impostor", 100, 1)
	impostor.origin = l.origin
	if code, _, body = postRaw(t, url, impostor.request(t, 37, 40)); code != http.StatusForbidden {
		t.Fatalf("wrong log key: %d %q", code, body)
	}
	// A known key name with a bad signature.
	req = Request{Old: 37, Proof: l.proof(t, 37, 40), Checkpoint: corruptLastSig(t, l.checkpoint(t, 40))}.Marshal()
	if code, _, body = postRaw(t, url, req); code != http.StatusForbidden {
		t.Fatalf("bad log signature: %d %q", code, body)
	}

	// Nothing was cosigned past 37, and every cosign was reported.
	if s, _ := tw.State(l.origin); s != l.state(37) {
		t.Fatalf("state %+v, want size 37", s)
	}
	got := tw.recorded()
	if len(got) != 3 || got[0].Size != 10 || got[1].Size != 37 || got[2].Size != 37 || got[1].Root != l.state(37).Root {
		t.Fatalf("OnCosign calls: %+v", got)
	}
}

func TestAddCheckpointAllLogKeys(t *testing.T) {
	l := newTestLog(t, "example.com/two-keys", 10, 2)
	tw := startWitness(t, "witness.example/w1", "", l)
	one := Request{Checkpoint: signText(t, l.checkpointText(10), l.signers[0])}.Marshal()
	if code, _, body := postRaw(t, tw.srv.URL, one); code != http.StatusForbidden {
		t.Fatalf("one of two log keys: %d %q", code, body)
	}
	if code, _, body := postRaw(t, tw.srv.URL, l.request(t, 0, 10)); code != http.StatusOK {
		t.Fatalf("both log keys: %d %q", code, body)
	}

	// A log signing like embassy's ledger: Ed25519 (0x01) and ML-DSA-44
	// (0x06), both named after the origin.
	hybrid := newTestLog(t, "embassy.host/host-a", 10, 1)
	hybrid.addMLDSAKey(t)
	w2 := startWitness(t, "witness.example/w1", "", hybrid)
	edOnly := Request{Checkpoint: signText(t, hybrid.checkpointText(10), hybrid.signers[0])}.Marshal()
	if code, _, body := postRaw(t, w2.srv.URL, edOnly); code != http.StatusForbidden {
		t.Fatalf("hybrid log, Ed25519 only: %d %q", code, body)
	}
	code, _, body := postRaw(t, w2.srv.URL, hybrid.request(t, 0, 10))
	if code != http.StatusOK {
		t.Fatalf("hybrid log: %d %q", code, body)
	}
	m, err := Merge(hybrid.checkpoint(t, 10), []byte(body))
	if err != nil {
		t.Fatal(err)
	}
	p := Policy{Threshold: 1, Witnesses: []Named{w2.named()}}
	if ok, err := p.Count(m, hybrid.vkeys); err != nil || len(ok) != 1 {
		t.Fatalf("hybrid log count: %v, %v", ok, err)
	}
}

func TestAddCheckpointMalformed(t *testing.T) {
	l := newTestLog(t, "example.com/log", 10, 1)
	tw := startWitness(t, "witness.example/w1", "", l)
	cp := string(l.checkpoint(t, 10))
	text := l.checkpointText(10)
	sign := func(text string) string { return string(signText(t, text, l.signers...)) }
	root := b64.EncodeToString(l.tree.HashAt(10))
	for name, body := range map[string]string{
		"empty":               "",
		"no old line":         "\n" + cp,
		"bad old":             "old x\n\n" + cp,
		"bad proof line":      "old 0\nnot-base64\n\n" + cp,
		"no blank line":       "old 0\n" + cp,
		"unsigned note":       "old 0\n\n" + text,
		"garbage signature":   "old 0\n\n" + text + "\n— example.com/log-key0 !!!\n",
		"control character":   "old 0\n\n" + strings.Replace(cp, "\n10\n", "\n1\x010\n", 1),
		"leading zero size":   "old 0\n\n" + sign(l.origin+"\n010\n"+root+"\n"),
		"short root":          "old 0\n\n" + sign(l.origin+"\n10\n"+b64.EncodeToString(make([]byte, 31))+"\n"),
		"two lines only":      "old 0\n\n" + sign(l.origin+"\n10\n"),
		"checkpoint no final": "old 0\n\n" + strings.TrimSuffix(cp, "\n"),
	} {
		code, _, resp := postRaw(t, tw.srv.URL, []byte(body))
		if code != http.StatusBadRequest {
			t.Errorf("%s: %d %q, want 400", name, code, resp)
		}
	}
	// Over the body cap.
	big := "old 0\n\n" + cp + strings.Repeat("x", MaxRequestSize)
	if code, _, resp := postRaw(t, tw.srv.URL, []byte(big)); code != http.StatusRequestEntityTooLarge {
		t.Errorf("over cap: %d %q", code, resp)
	}
	// Only POST.
	resp, err := http.Get(tw.srv.URL + "/add-checkpoint")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("GET: %d", resp.StatusCode)
	}
	if s, _ := tw.State(l.origin); s != (State{}) {
		t.Fatalf("malformed requests changed state: %+v", s)
	}
}

func TestStatePersists(t *testing.T) {
	l := newTestLog(t, "example.com/log", 30, 1)
	l2 := newTestLog(t, "example.com/log-2", 30, 1)
	dir := t.TempDir()
	tw := startWitness(t, "witness.example/w1", dir, l, l2)
	for _, step := range [][2]uint64{{0, 5}, {5, 21}} {
		if code, _, body := postRaw(t, tw.srv.URL, l.request(t, step[0], step[1])); code != http.StatusOK {
			t.Fatalf("%v: %d %q", step, code, body)
		}
	}
	tw.srv.Close()

	// The state file is the documented format.
	b, err := os.ReadFile(filepath.Join(dir, stateFileName(l.origin)))
	if err != nil {
		t.Fatal(err)
	}
	s, err := parseState(b)
	if err != nil || s.Origin != l.origin || s.State != l.state(21) {
		t.Fatalf("state file %q: %+v, %v", b, s, err)
	}

	tw2 := startWitness(t, "witness.example/w1", dir, l, l2)
	if s, _ := tw2.State(l.origin); s != l.state(21) {
		t.Fatalf("after restart: %+v", s)
	}
	if s, _ := tw2.State(l2.origin); s != (State{}) {
		t.Fatalf("untouched log after restart: %+v", s)
	}
	if code, _, body := postRaw(t, tw2.srv.URL, l.request(t, 0, 30)); code != http.StatusConflict || body != "21\n" {
		t.Fatalf("after restart, old 0: %d %q", code, body)
	}
	if code, _, body := postRaw(t, tw2.srv.URL, l.request(t, 21, 30)); code != http.StatusOK {
		t.Fatalf("after restart, old 21: %d %q", code, body)
	}

	// A corrupt state file stops the witness from starting rather than
	// letting it forget what it cosigned.
	path := filepath.Join(dir, stateFileName(l.origin))
	b, _ = os.ReadFile(path)
	if err := os.WriteFile(path, bytes.Replace(b, []byte("\n30\n"), []byte("\n3O\n"), 1), 0o600); err != nil {
		t.Fatal(err)
	}
	k, _ := keysFor(t, "witness.example/w1")
	if _, err := New(Config{Dir: dir, Keys: k, Logs: []Log{l.config()}}); !errors.Is(err, wire.ErrCorrupt) {
		t.Fatalf("corrupt state: %v", err)
	}
	// A state file for another origin under this origin's name is refused too.
	b2 := savedState{Origin: l2.origin, State: l2.state(3)}.marshal()
	if err := os.WriteFile(path, b2, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := New(Config{Dir: dir, Keys: k, Logs: []Log{l.config()}}); !errors.Is(err, wire.ErrCorrupt) {
		t.Fatalf("state of another origin: %v", err)
	}
}

// TestStateWriteFails injects a failed state write: no cosignature may leave
// the witness and its state must not move.
func TestStateWriteFails(t *testing.T) {
	l := newTestLog(t, "example.com/log", 30, 1)
	tw := startWitness(t, "witness.example/w1", "", l)
	if code, _, _ := postRaw(t, tw.srv.URL, l.request(t, 0, 5)); code != http.StatusOK {
		t.Fatal(code)
	}
	tw.write = func(string, []byte) error { return errors.New("injected fsync failure") }
	code, _, body := postRaw(t, tw.srv.URL, l.request(t, 5, 20))
	if code != http.StatusInternalServerError || strings.Contains(body, "\u2014") {
		t.Fatalf("failed write: %d %q", code, body)
	}
	if s, _ := tw.State(l.origin); s != l.state(5) {
		t.Fatalf("state moved: %+v", s)
	}
	if n := len(tw.recorded()); n != 1 {
		t.Fatalf("OnCosign called %d times, want 1", n)
	}
}

// TestConcurrentSameOld sends many requests with the same old size at once:
// exactly one may win, the others must see 409 (tlog-witness's rollback race).
func TestConcurrentSameOld(t *testing.T) {
	l := newTestLog(t, "example.com/log", 64, 1)
	tw := startWitness(t, "witness.example/w1", "", l)
	bodies := make([][]byte, 16)
	for i := range bodies {
		bodies[i] = l.request(t, 0, uint64(40+i))
	}
	var ok, conflict atomic.Int32
	var wg sync.WaitGroup
	for _, b := range bodies {
		wg.Go(func() {
			code, _, _ := postRaw(t, tw.srv.URL, b)
			switch code {
			case http.StatusOK:
				ok.Add(1)
			case http.StatusConflict:
				conflict.Add(1)
			}
		})
	}
	wg.Wait()
	if ok.Load() != 1 || conflict.Load() != 15 {
		t.Fatalf("%d ok, %d conflicts; want 1 and 15", ok.Load(), conflict.Load())
	}
}

// TestConcurrentSubmit runs clients submitting growing checkpoints through
// Submit: the witness's state never rolls back and ends at the largest size
// it cosigned.
func TestConcurrentSubmit(t *testing.T) {
	const n, clients = 64, 4
	l := newTestLog(t, "example.com/log", n, 1)
	tw := startWitness(t, "witness.example/w1", "", l)
	cps := make([][]byte, n+1)
	for i := 1; i <= n; i++ {
		cps[i] = l.checkpoint(t, uint64(i))
	}
	var wg sync.WaitGroup
	var maxOK atomic.Uint64
	for g := range clients {
		wg.Go(func() {
			for size := uint64(1 + g); size <= n; size += clients {
				_, err := Submit(context.Background(), nil, tw.srv.URL, cps[size], 0, l.proofFor(size))
				if err == nil {
					for {
						m := maxOK.Load()
						if size <= m || maxOK.CompareAndSwap(m, size) {
							break
						}
					}
				} else if !errors.Is(err, ErrConflict) {
					t.Errorf("size %d: %v", size, err)
				}
			}
		})
	}
	wg.Wait()
	got := tw.recorded()
	for i := 1; i < len(got); i++ {
		if got[i].Size < got[i-1].Size {
			t.Fatalf("OnCosign went back from %d to %d", got[i-1].Size, got[i].Size)
		}
	}
	if s, _ := tw.State(l.origin); s.Size != maxOK.Load() || s != l.state(s.Size) {
		t.Fatalf("final state %d, largest cosigned %d", s.Size, maxOK.Load())
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	l := newTestLog(t, "example.com/log", 1, 1)
	k, _ := keysFor(t, "witness.example/w1")
	other, _ := keysFor(t, "witness.example/w2")
	dir := t.TempDir()
	for name, cfg := range map[string]Config{
		"no dir":          {Keys: k, Logs: []Log{l.config()}},
		"no logs":         {Dir: dir, Keys: k},
		"no keys":         {Dir: dir, Logs: []Log{l.config()}},
		"mixed keys":      {Dir: dir, Keys: Keys{Ed25519: k.Ed25519, MLDSA: other.MLDSA}, Logs: []Log{l.config()}},
		"duplicate log":   {Dir: dir, Keys: k, Logs: []Log{l.config(), l.config()}},
		"no log keys":     {Dir: dir, Keys: k, Logs: []Log{{Origin: l.origin}}},
		"bad log key":     {Dir: dir, Keys: k, Logs: []Log{{Origin: l.origin, Verifiers: []string{"x+1+2"}}}},
		"repeated key":    {Dir: dir, Keys: k, Logs: []Log{{Origin: l.origin, Verifiers: []string{l.vkeys[0], l.vkeys[0]}}}},
		"empty origin":    {Dir: dir, Keys: k, Logs: []Log{{Origin: "", Verifiers: l.vkeys}}},
		"newline origin":  {Dir: dir, Keys: k, Logs: []Log{{Origin: "a\nb", Verifiers: l.vkeys}}},
		"key in log slot": {Dir: dir, Keys: Keys{Ed25519: k.MLDSA, MLDSA: k.Ed25519}, Logs: []Log{l.config()}},
	} {
		if _, err := New(cfg); err == nil {
			t.Errorf("%s: New succeeded", name)
		} else if strings.Contains(err.Error(), k.Ed25519[30:]) || strings.Contains(err.Error(), k.MLDSA[30:]) {
			t.Errorf("%s: error reveals key material: %v", name, err)
		}
	}
}

func TestSubmit(t *testing.T) {
	l := newTestLog(t, "example.com/log", 100, 1)
	tw := startWitness(t, "witness.example/w1", "", l)
	ctx := context.Background()
	var proofs []uint64
	proofFor := func(to uint64) func(context.Context, uint64) ([][]byte, error) {
		return func(ctx context.Context, from uint64) ([][]byte, error) {
			proofs = append(proofs, from)
			return l.proofFor(to)(ctx, from)
		}
	}

	// First contact with hint 0: no proof needed.
	sigs, err := Submit(ctx, nil, tw.srv.URL, l.checkpoint(t, 10), 0, proofFor(10))
	if err != nil {
		t.Fatal(err)
	}
	verifyCosigs(t, tw, l.checkpoint(t, 10), string(sigs))
	if len(proofs) != 0 {
		t.Fatalf("proofs fetched on first contact: %v", proofs)
	}

	// Hint 0 after contact: 409, proof from 10, retry.
	if sigs, err = Submit(ctx, nil, tw.srv.URL, l.checkpoint(t, 30), 0, proofFor(30)); err != nil {
		t.Fatal(err)
	}
	verifyCosigs(t, tw, l.checkpoint(t, 30), string(sigs))
	if len(proofs) != 1 || proofs[0] != 10 {
		t.Fatalf("proofs fetched: %v, want [10]", proofs)
	}

	// A stale non-zero hint: proof from 20 refused with 409, then from 30.
	proofs = nil
	if _, err = Submit(ctx, nil, tw.srv.URL, l.checkpoint(t, 50), 20, proofFor(50)); err != nil {
		t.Fatal(err)
	}
	if len(proofs) != 2 || proofs[0] != 20 || proofs[1] != 30 {
		t.Fatalf("proofs fetched: %v, want [20 30]", proofs)
	}

	// The right hint: one request.
	proofs = nil
	if _, err = Submit(ctx, nil, tw.srv.URL, l.checkpoint(t, 60), 50, proofFor(60)); err != nil || len(proofs) != 1 {
		t.Fatalf("right hint: %v, proofs %v", err, proofs)
	}

	// A checkpoint older than the witness's: it is ahead; the error says so
	// and carries its size.
	_, err = Submit(ctx, nil, tw.srv.URL, l.checkpoint(t, 40), 0, proofFor(40))
	var ce *ConflictError
	if !errors.As(err, &ce) || ce.Size != 60 || !strings.Contains(err.Error(), tw.srv.URL) {
		t.Fatalf("witness ahead: %v", err)
	}

	// Sentinels for the other statuses, each naming the witness.
	stranger := newTestLog(t, "example.com/stranger", 5, 1)
	impostor := newTestLog(t, "impostor", 100, 1)
	impostor.origin = l.origin
	fork := newTestLog(t, "fork", 100, 0)
	fork.origin, fork.signers = l.origin, l.signers
	for _, tc := range []struct {
		name string
		cp   []byte
		hint uint64
		pf   func(context.Context, uint64) ([][]byte, error)
		want error
	}{
		{"unknown log", stranger.checkpoint(t, 5), 0, stranger.proofFor(5), ErrUnknownLog},
		{"wrong key", impostor.checkpoint(t, 70), 60, impostor.proofFor(70), ErrNotSigned},
		{"fork same size", fork.checkpoint(t, 60), 60, fork.proofFor(60), ErrRootMismatch},
		{"fork larger", fork.checkpoint(t, 70), 60, fork.proofFor(70), ErrBadProof},
	} {
		_, err := Submit(ctx, nil, tw.srv.URL, tc.cp, tc.hint, tc.pf)
		if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tw.srv.URL) {
			t.Errorf("%s: %v, want %v naming %s", tc.name, err, tc.want, tw.srv.URL)
		}
	}

	// Proof source failures and bad hints are reported, not sent.
	boom := errors.New("tile fetch failed")
	_, err = Submit(ctx, nil, tw.srv.URL, l.checkpoint(t, 70), 60, func(context.Context, uint64) ([][]byte, error) { return nil, boom })
	if !errors.Is(err, boom) {
		t.Fatalf("proof failure: %v", err)
	}
	if _, err = Submit(ctx, nil, tw.srv.URL, l.checkpoint(t, 70), 71, l.proofFor(70)); err == nil {
		t.Fatal("hint larger than size accepted")
	}
	if _, err = Submit(ctx, nil, tw.srv.URL, []byte("not a note"), 0, l.proofFor(70)); !errors.Is(err, wire.ErrCorrupt) {
		t.Fatalf("bad checkpoint: %v", err)
	}
	if s, _ := tw.State(l.origin); s.Size != 60 {
		t.Fatalf("state %d, want 60", s.Size)
	}
}

// TestSubmitStuckWitness: a witness that never answers costs the caller its
// context deadline, no more.
func TestSubmitStuckWitness(t *testing.T) {
	l := newTestLog(t, "example.com/log", 10, 1)
	release := make(chan struct{})
	srv := newServer(t, http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer close(release)
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	_, err := Submit(ctx, nil, srv.URL, l.checkpoint(t, 10), 0, l.proofFor(10))
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), srv.URL) {
		t.Fatalf("stuck witness: %v", err)
	}
}

func TestSubmitBadResponses(t *testing.T) {
	l := newTestLog(t, "example.com/log", 10, 1)
	for name, h := range map[string]http.HandlerFunc{
		"empty 200":      func(rw http.ResponseWriter, r *http.Request) {},
		"garbage 200":    func(rw http.ResponseWriter, r *http.Request) { rw.Write([]byte("hello\n")) },
		"bad size 409":   func(rw http.ResponseWriter, r *http.Request) { conflict(rw, "ten\n") },
		"no newline 409": func(rw http.ResponseWriter, r *http.Request) { conflict(rw, "5") },
		"huge 200": func(rw http.ResponseWriter, r *http.Request) {
			rw.Write(bytes.Repeat([]byte("\u2014 w AAAAAAAA\n"), MaxRequestSize))
		},
		"500": func(rw http.ResponseWriter, r *http.Request) { http.Error(rw, "oops", 500) },
	} {
		srv := newServer(t, h)
		if _, err := Submit(context.Background(), nil, srv.URL, l.checkpoint(t, 10), 0, l.proofFor(10)); err == nil || !strings.Contains(err.Error(), srv.URL) {
			t.Errorf("%s: %v", name, err)
		}
	}
	// A stopped witness.
	srv := newServer(t, http.NotFoundHandler())
	srv.Close()
	if _, err := Submit(context.Background(), nil, srv.URL, l.checkpoint(t, 10), 0, l.proofFor(10)); err == nil || !strings.Contains(err.Error(), srv.URL) {
		t.Errorf("stopped witness: %v", err)
	}
	// Credentials in the URL stay out of errors.
	if _, err := Submit(context.Background(), nil, "http://user:hunter2@127.0.0.1:1/w", l.checkpoint(t, 10), 0, l.proofFor(10)); err == nil || strings.Contains(err.Error(), "hunter2") {
		t.Errorf("credentials: %v", err)
	}
}

// TestSubmitPath: Submit posts to <prefix>/add-checkpoint.
func TestSubmitPath(t *testing.T) {
	l := newTestLog(t, "example.com/log", 10, 1)
	tw := startWitness(t, "witness.example/w1", "", l)
	mux := http.NewServeMux()
	mux.Handle("/witness/", http.StripPrefix("/witness", tw.Handler()))
	srv := newServer(t, mux)
	if _, err := Submit(context.Background(), nil, srv.URL+"/witness", l.checkpoint(t, 10), 0, l.proofFor(10)); err != nil {
		t.Fatal(err)
	}
}

func conflict(rw http.ResponseWriter, body string) {
	rw.Header().Set("Content-Type", "text/x.tlog.size")
	rw.WriteHeader(http.StatusConflict)
	rw.Write([]byte(body))
}
