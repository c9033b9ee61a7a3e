package witness

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/transparency-dev/formats/log"
	fnote "github.com/transparency-dev/formats/note"
	"github.com/transparency-dev/merkle/rfc6962"
	"github.com/transparency-dev/merkle/testonly"
	"golang.org/x/mod/sumdb/note"
)

// testLog is a log with a real RFC 6962 tree and a real note signing key.
type testLog struct {
	origin  string
	signers []note.Signer
	vkeys   []string
	tree    *testonly.Tree
}

// newTestLog returns a log whose tree has n entries ("<origin> entry i"),
// signing with nkeys Ed25519 note keys.
func newTestLog(t testing.TB, origin string, n, nkeys int) *testLog {
	t.Helper()
	l := &testLog{origin: origin, tree: testonly.New(rfc6962.DefaultHasher)}
	for i := range nkeys {
		skey, vkey, err := note.GenerateKey(rand.Reader, fmt.Sprintf("%s-key%d", strings.ReplaceAll(origin, "/", "_"), i))
		if err != nil {
			t.Fatal(err)
		}
		s, err := note.NewSigner(skey)
		if err != nil {
			t.Fatal(err)
		}
		l.signers = append(l.signers, s)
		l.vkeys = append(l.vkeys, vkey)
	}
	l.grow(n)
	return l
}

// grow appends entries until the tree has n.
func (l *testLog) grow(n int) {
	for i := l.tree.Size(); i < uint64(n); i++ {
		l.tree.AppendData(fmt.Appendf(nil, "%s entry %d", l.origin, i))
	}
}

// checkpointText is the checkpoint body at size.
func (l *testLog) checkpointText(size uint64) string {
	return string(log.Checkpoint{Origin: l.origin, Size: size, Hash: l.tree.HashAt(size)}.Marshal())
}

// checkpoint returns the checkpoint at size signed by every log key.
func (l *testLog) checkpoint(t testing.TB, size uint64) []byte {
	t.Helper()
	return signText(t, l.checkpointText(size), l.signers...)
}

func signText(t testing.TB, text string, signers ...note.Signer) []byte {
	t.Helper()
	b, err := note.Sign(&note.Note{Text: text}, signers...)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func (l *testLog) proof(t testing.TB, from, to uint64) [][]byte {
	t.Helper()
	p, err := l.tree.ConsistencyProof(from, to)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// proofFor is Submit's proof source for the checkpoint at size to.
func (l *testLog) proofFor(to uint64) func(context.Context, uint64) ([][]byte, error) {
	return func(_ context.Context, from uint64) ([][]byte, error) { return l.tree.ConsistencyProof(from, to) }
}

func (l *testLog) cp(size uint64) Checkpoint {
	c := Checkpoint{Origin: l.origin, Size: size}
	copy(c.Root[:], l.tree.HashAt(size))
	return c
}

func (l *testLog) state(size uint64) State {
	c := l.cp(size)
	return State{Size: size, Root: c.Root}
}

func (l *testLog) request(t testing.TB, old, size uint64) []byte {
	t.Helper()
	var p [][]byte
	if old != 0 && old != size {
		p = l.proof(t, old, size)
	}
	return Request{Old: old, Proof: p, Checkpoint: l.checkpoint(t, size)}.Marshal()
}

func (l *testLog) config() Log { return Log{Origin: l.origin, Verifiers: l.vkeys} }

// testWitness is a Witness behind an httptest server, with its cosign calls
// recorded.
type testWitness struct {
	*Witness
	keys Keys
	pub  PublicKeys
	srv  *httptest.Server
	dir  string

	mu      sync.Mutex
	cosigns []Cosign
}

type keyPair struct {
	priv Keys
	pub  PublicKeys
}

var (
	keyCacheMu sync.Mutex
	keyCache   = map[string]keyPair{}
)

// keysFor returns a key pair for name, generated once per test binary.
func keysFor(t testing.TB, name string) (Keys, PublicKeys) {
	t.Helper()
	keyCacheMu.Lock()
	defer keyCacheMu.Unlock()
	if kp, ok := keyCache[name]; ok {
		return kp.priv, kp.pub
	}
	k, p, err := GenerateKeys(name)
	if err != nil {
		t.Fatal(err)
	}
	keyCache[name] = keyPair{k, p}
	return k, p
}

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// startWitness starts a witness named name for logs, with its state in dir
// (a new temporary directory if "").
func startWitness(t testing.TB, name, dir string, logs ...*testLog) *testWitness {
	t.Helper()
	if dir == "" {
		dir = t.TempDir()
	}
	k, p := keysFor(t, name)
	tw := &testWitness{keys: k, pub: p, dir: dir}
	cfg := Config{Dir: dir, Keys: k, Logger: quietLogger()}
	for _, l := range logs {
		cfg.Logs = append(cfg.Logs, l.config())
	}
	cfg.OnCosign = func(origin string, size uint64, root [HashSize]byte) {
		tw.mu.Lock()
		tw.cosigns = append(tw.cosigns, Cosign{origin, size, root})
		tw.mu.Unlock()
	}
	w, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	tw.Witness = w
	tw.srv = httptest.NewServer(w.Handler())
	t.Cleanup(tw.srv.Close)
	return tw
}

func (tw *testWitness) named() Named {
	return Named{Name: tw.keys.Name(), Verifiers: tw.pub.Verifiers()}
}

func (tw *testWitness) recorded() []Cosign {
	tw.mu.Lock()
	defer tw.mu.Unlock()
	return append([]Cosign(nil), tw.cosigns...)
}

// postRaw sends a raw add-checkpoint body and returns status, content type and body.
func postRaw(t testing.TB, url string, body []byte) (int, string, string) {
	t.Helper()
	resp, err := http.Post(url+"/add-checkpoint", "", strings.NewReader(string(body)))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, resp.Header.Get("Content-Type"), string(b)
}

// newServer starts an httptest server closed at the end of the test.
func newServer(t testing.TB, h http.Handler) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv
}

// corruptLastSig flips a bit in the signature (not the key hash) of a signed
// note's last signature line, keeping the line well-formed.
func corruptLastSig(t testing.TB, n []byte) []byte {
	t.Helper()
	i := bytes.LastIndexByte(n[:len(n)-1], ' ') + 1
	sig, err := b64.DecodeString(string(n[i : len(n)-1]))
	if err != nil {
		t.Fatal(err)
	}
	sig[len(sig)-1] ^= 1
	return append(append(bytes.Clone(n[:i]), b64.EncodeToString(sig)...), '\n')
}

// addMLDSAKey adds an ML-DSA-44 signing key named after the origin, as
// embassy's ledger signs its checkpoints (Ed25519 + ML-DSA-44).
func (l *testLog) addMLDSAKey(t testing.TB) {
	t.Helper()
	skey, vkey, err := fnote.GenerateMLDSAKey(l.origin)
	if err != nil {
		t.Fatal(err)
	}
	s, err := fnote.NewMLDSASigner(skey)
	if err != nil {
		t.Fatal(err)
	}
	l.signers = append(l.signers, s)
	l.vkeys = append(l.vkeys, vkey)
}
