package hostnode

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/embassy-project/embassy/internal/access"
	"github.com/embassy-project/embassy/internal/guest"
	"github.com/embassy-project/embassy/internal/ledger"
	"github.com/embassy-project/embassy/internal/proof"
	"github.com/embassy-project/embassy/internal/shardstore"
	"github.com/embassy-project/embassy/internal/shardstore/storetest"
	"github.com/embassy-project/embassy/internal/sig"
	"github.com/embassy-project/embassy/internal/testenv"
	"github.com/embassy-project/embassy/internal/transport"
)

type testGuest struct {
	id    *guest.Identity
	agent *sig.PrivateKey
}

func newGuest(t *testing.T) *testGuest {
	t.Helper()
	agent, err := sig.Generate()
	if err != nil {
		t.Fatal(err)
	}
	gid, err := guest.NewID()
	if err != nil {
		t.Fatal(err)
	}
	id, err := guest.NewIdentity(gid, "testland", agent.Public())
	if err != nil {
		t.Fatal(err)
	}
	return &testGuest{id: id, agent: agent}
}

func freeAddr(t *testing.T) string { return testenv.FreeAddr(t) }

type testHost struct {
	dir    string
	desc   *transport.Descriptor
	srv    *Server
	cancel context.CancelFunc
	done   chan error
}

// startHost initialises a host directory serving g with quota and runs it
// in-process over real TLS on loopback.
func startHost(t *testing.T, name string, g *testGuest, quota int64) *testHost {
	t.Helper()
	h := newHostDir(t, filepath.Join(t.TempDir(), name), name, g, quota)
	h.start(t)
	return h
}

// newHostDir initialises a host directory serving g (if not nil) with quota.
func newHostDir(t *testing.T, dir, name string, g *testGuest, quota int64) *testHost {
	t.Helper()
	d, err := Init(dir, InitOptions{Name: name, Listen: freeAddr(t), Now: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	if g != nil {
		if _, err := AddGuest(dir, g.id.Marshal(), quota); err != nil {
			t.Fatal(err)
		}
	}
	return &testHost{dir: dir, desc: d}
}

func (h *testHost) start(t *testing.T) {
	t.Helper()
	h.startWith(t, Options{CosignInterval: 200 * time.Millisecond})
}

func (h *testHost) startWith(t *testing.T, opt Options) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	if opt.Logger == nil {
		opt.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	srv, err := Open(ctx, h.dir, opt)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	if err := srv.Listen(""); err != nil {
		cancel()
		srv.Close(context.Background())
		t.Fatal(err)
	}
	h.srv, h.cancel, h.done = srv, cancel, make(chan error, 1)
	go func() { h.done <- srv.Serve(ctx) }()
	t.Cleanup(func() { h.stop(t) })
}

func (h *testHost) stop(t *testing.T) {
	if h.cancel == nil {
		return
	}
	h.cancel()
	if err := <-h.done; err != nil {
		t.Errorf("serve: %v", err)
	}
	h.cancel = nil
}

func (g *testGuest) client(t *testing.T, d *transport.Descriptor) *transport.Client {
	t.Helper()
	cert, err := access.NewAgentCertificate(g.agent, g.id.Guest, time.Now(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	c := transport.NewClient(d, g.id.Guest, cert)
	c.Timeout = 5 * time.Second
	c.Backoff = 10 * time.Millisecond
	t.Cleanup(c.Close)
	return c
}

// TestConformance runs the shard store suite against a real host over mTLS,
// through the guest's client: the remote store keeps the same contract as
// the directory store.
func TestConformance(t *testing.T) {
	g := newGuest(t)
	storetest.Run(t, func(t *testing.T) shardstore.Store {
		h := startHost(t, "lu-1", g, 1<<30)
		return g.client(t, h.desc)
	})
}

func TestRefusals(t *testing.T) {
	g := newGuest(t)
	h := startHost(t, "lu-1", g, 1<<20)
	ctx := context.Background()
	c := g.client(t, h.desc)

	// Another guest's agent, not served here: refused in the handshake.
	other := newGuest(t)
	oc := other.client(t, h.desc)
	oc.Retries = 0
	data := []byte("registry shard")
	if err := oc.Put(ctx, shardstore.KindShard, shardstore.Sum(data), data); !errors.Is(err, transport.ErrRefused) || !strings.Contains(err.Error(), "bad certificate") {
		t.Fatalf("unserved guest's put: %v, want a TLS refusal", err)
	}

	// A pinned fingerprint that is not the host's: the client refuses.
	bad := *h.desc
	bad.TLS = "sha256:" + strings.Repeat("ab", 32)
	bc := g.client(t, &bad)
	if _, err := bc.Get(ctx, shardstore.KindShard, shardstore.Sum(data)); !errors.Is(err, transport.ErrRefused) {
		t.Fatalf("client and a host that does not match the pin: %v, want ErrRefused", err)
	}

	hc := rawClient(t, g, h.desc)
	base := h.desc.BaseURL() + "/v1/guests/" + g.id.Guest.String()
	for _, tc := range []struct {
		name, method, path string
		body               []byte
		want               int
	}{
		{"mismatch", "PUT", "/shards/" + shardstore.Sum([]byte("x")).String(), []byte("y"), http.StatusUnprocessableEntity},
		{"traversal", "PUT", "/shards/..%2f..%2fhost.json", []byte("y"), http.StatusBadRequest},
		{"upper-case id", "PUT", "/shards/" + strings.ToUpper(shardstore.Sum([]byte("y")).String()), []byte("y"), http.StatusBadRequest},
		{"bad kind", "PUT", "/tmp/" + shardstore.Sum([]byte("y")).String(), []byte("y"), http.StatusBadRequest},
		{"over quota", "PUT", "/shards/" + shardstore.Sum(make([]byte, 2<<20)).String(), make([]byte, 2<<20), http.StatusInsufficientStorage},
		{"no delete", "DELETE", "/shards/" + shardstore.Sum([]byte("y")).String(), nil, http.StatusMethodNotAllowed},
		{"other guest path", "GET", "/../" + other.id.Guest.String() + "/shards/", nil, http.StatusForbidden},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var rd io.Reader
			if tc.body != nil {
				rd = bytes.NewReader(tc.body)
			}
			u := base + tc.path
			if tc.name == "other guest path" {
				u = h.desc.BaseURL() + "/v1/guests/" + other.id.Guest.String() + "/shards/"
			}
			req, _ := http.NewRequest(tc.method, u, rd)
			resp, err := hc.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tc.want {
				t.Fatalf("%s %s: %d, want %d", tc.method, tc.path, resp.StatusCode, tc.want)
			}
		})
	}

	// Oversized body.
	big := make([]byte, 1<<20)
	if err := c.Put(ctx, shardstore.KindShard, shardstore.Sum(big), big); err != nil {
		t.Fatalf("put within quota: %v", err)
	}
	if err := c.Put(ctx, shardstore.KindShard, shardstore.Sum(big[1:]), big[1:]); !errors.Is(err, transport.ErrQuota) {
		t.Fatalf("put over quota: %v, want ErrQuota", err)
	}
	// Repeated put is a no-op and is not charged again.
	if err := c.Put(ctx, shardstore.KindShard, shardstore.Sum(big), big); err != nil {
		t.Fatalf("repeated put: %v", err)
	}

	// Without a client certificate only the public log is reachable.
	anon := &http.Client{Transport: &http.Transport{TLSClientConfig: access.ClientConfig(nil, h.desc.TLS)}}
	resp, err := anon.Get(base + "/shards/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("certless list: %d, want 401", resp.StatusCode)
	}
	resp, err = anon.Get(h.desc.BaseURL() + "/log/checkpoint")
	if err != nil {
		t.Fatal(err)
	}
	cp, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("public checkpoint: %d", resp.StatusCode)
	}
	v, err := ledger.NewVerifier(h.desc.Log.Origin, h.desc.Log.Keys)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v.ParseCheckpoint(cp); err != nil {
		t.Fatalf("checkpoint does not verify with the descriptor's keys: %v", err)
	}
}

// rawClient is an HTTP client with the guest's agent certificate.
func rawClient(t *testing.T, g *testGuest, d *transport.Descriptor) *http.Client {
	cert, err := access.NewAgentCertificate(g.agent, g.id.Guest, time.Now(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return &http.Client{Transport: &http.Transport{TLSClientConfig: access.ClientConfig(&cert, d.TLS)}, Timeout: 10 * time.Second}
}

// TestProof runs a storage proof against a real host and checks the receipt:
// the answer verifies against the shard addresses, and the host's log
// committed to the challenge and answer under a signed checkpoint.
func TestProof(t *testing.T) {
	g := newGuest(t)
	h := startHost(t, "lu-1", g, 1<<30)
	ctx := context.Background()
	c := g.client(t, h.desc)
	var shards []proof.Shard
	sizes := map[shardstore.ID]int64{}
	for i := 0; i < 8; i++ {
		b := make([]byte, 100_000+i*40_000)
		rand.Read(b)
		id := shardstore.Sum(b)
		if err := c.Put(ctx, shardstore.KindShard, id, b); err != nil {
			t.Fatal(err)
		}
		shards = append(shards, proof.Shard{ID: id, Size: int64(len(b))})
		sizes[id] = int64(len(b))
	}
	audit := func() proof.Report {
		var nonce [32]byte
		rand.Read(nonce[:])
		ch := &proof.Challenge{Guest: g.id.Guest, Nonce: nonce, Time: time.Now().Unix(), Items: proof.Sample(nonce, shards, 200)}
		cb, err := ch.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		rb, err := c.Prove(ctx, cb)
		if err != nil {
			t.Fatal(err)
		}
		rc, err := transport.ParseReceipt(rb)
		if err != nil {
			t.Fatal(err)
		}
		if err := transport.VerifyReceipt(rc, ch, h.desc); err != nil {
			t.Fatalf("receipt: %v", err)
		}
		ans, err := proof.ParseAnswer(rc.Answer)
		if err != nil {
			t.Fatal(err)
		}
		rep, err := proof.Verify(ch, ans, sizes)
		if err != nil {
			t.Fatal(err)
		}
		return rep
	}
	if rep := audit(); !rep.Passed() {
		t.Fatalf("honest host failed the proof: %+v", rep)
	}
	// The host keeps the outboards (hash trees) but throws the data of one
	// shard away (replaces it with zeros): the items in it fail.
	victim := shards[3].ID
	p := filepath.Join(h.dir, storeDir, g.id.Guest.String(), "shards", victim.String()[:2], victim.String())
	os.Chmod(p, 0o600)
	if err := os.WriteFile(p, make([]byte, shards[3].Size), 0o400); err != nil {
		t.Fatal(err)
	}
	rep := audit()
	if rep.Passed() {
		t.Fatal("a host that kept only the hash tree of a shard passed")
	}
	for _, r := range rep.Results {
		if (r.Item.Shard == victim) == r.OK {
			t.Fatalf("item %+v: ok=%v", r.Item, r.OK)
		}
	}
}
