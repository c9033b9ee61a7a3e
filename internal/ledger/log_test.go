package ledger

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"io/fs"
	mrand "math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/tessera/api/layout"
	"golang.org/x/mod/sumdb/note"

	"github.com/embassy-project/embassy/internal/wire"
)

const testInterval = MinCheckpointInterval

func testCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func openLog(t testing.TB, dir string, k *Keys) *Log {
	t.Helper()
	l, err := Open(testCtx(t), Config{Dir: dir, Keys: k, CheckpointInterval: testInterval})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close(context.Background()) })
	return l
}

// testEntry returns a distinct entry for index-like seed i.
func testEntry(i int) Entry {
	switch i % 3 {
	case 0:
		var obj [32]byte
		copy(obj[:], fmt.Sprintf("object %d", i))
		return Entry{Time: 1763700000 + int64(i), Event: ShardStored{Guest: h16(1), Kind: KindShards, Object: obj, Size: uint64(i), Writer: "writer-fp"}}
	case 1:
		var obj [32]byte
		copy(obj[:], fmt.Sprintf("object %d", i))
		return Entry{Time: 1763700000 + int64(i), Event: ObjectRead{Guest: h16(1), Kind: KindEnvelopes, Object: obj, Reader: "reader-fp"}}
	default:
		return Entry{Time: 1763700000 + int64(i), Event: ProofAnswered{Guest: h16(2), Challenge: h32(byte(i)), Answer: h32(byte(i >> 8)), Items: uint64(i)}}
	}
}

// appendAll appends entries concurrently (tessera batches concurrent
// appends) and returns them by index.
func appendAll(t testing.TB, l *Log, entries []Entry) map[uint64]Entry {
	t.Helper()
	ctx := testCtx(t)
	var mu sync.Mutex
	got := make(map[uint64]Entry, len(entries))
	var wg sync.WaitGroup
	errs := make(chan error, len(entries))
	sem := make(chan struct{}, 128)
	for _, e := range entries {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			idx, err := l.Append(ctx, e)
			if err != nil {
				errs <- err
				return
			}
			mu.Lock()
			defer mu.Unlock()
			if _, dup := got[idx]; dup {
				errs <- fmt.Errorf("index %d assigned twice", idx)
			}
			got[idx] = e
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	return got
}

func maxIndex(m map[uint64]Entry) uint64 {
	var n uint64
	for i := range m {
		n = max(n, i)
	}
	return n
}

// serve mounts the log's handler under /log/ the way the host node does.
func serve(t testing.TB, h http.Handler) string {
	t.Helper()
	mux := http.NewServeMux()
	mux.Handle("/log/", http.StripPrefix("/log", h))
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv.URL + "/log"
}

func awaitParsed(t testing.TB, l *Log, index uint64) *Checkpoint {
	t.Helper()
	b, err := l.AwaitCheckpoint(testCtx(t), index)
	if err != nil {
		t.Fatal(err)
	}
	cp, err := l.Verifier().ParseCheckpoint(b)
	if err != nil {
		t.Fatal(err)
	}
	if cp.Size <= index {
		t.Fatalf("checkpoint of size %d does not cover %d", cp.Size, index)
	}
	return cp
}

func TestLogAppendAudit(t *testing.T) {
	dir := t.TempDir()
	k := newKeys(t, "embassy.host/a")
	l := openLog(t, dir, k)
	ctx := testCtx(t)

	entries := make([]Entry, 1000)
	for i := range entries {
		entries[i] = testEntry(i)
	}
	byIndex := appendAll(t, l, entries)
	if len(byIndex) != 1000 || maxIndex(byIndex) != 999 {
		t.Fatalf("%d entries, max index %d", len(byIndex), maxIndex(byIndex))
	}
	cp := awaitParsed(t, l, 999)
	if cp.Size != 1000 {
		t.Fatalf("checkpoint size %d", cp.Size)
	}

	// Inclusion of random entries, with proofs from the log's tiles.
	for range 20 {
		i := mrand.Uint64N(cp.Size)
		p, err := l.InclusionProof(ctx, i, cp.Size)
		if err != nil {
			t.Fatal(err)
		}
		leaf := hasher.HashLeaf(mustMarshal(t, byIndex[i]))
		if err := proof.VerifyInclusion(hasher, i, cp.Size, leaf, p, cp.Hash[:]); err != nil {
			t.Fatalf("inclusion of %d: %v", i, err)
		}
		other := hasher.HashLeaf(mustMarshal(t, testEntry(5000)))
		if err := proof.VerifyInclusion(hasher, i, cp.Size, other, p, cp.Hash[:]); err == nil {
			t.Fatal("inclusion proof verifies for another entry")
		}
	}
	if _, err := l.InclusionProof(ctx, 1000, 1000); err == nil {
		t.Fatal("inclusion proof beyond the tree")
	}
	if _, err := l.InclusionProof(ctx, 0, 5000); err == nil {
		t.Fatal("inclusion proof in a tree larger than the log")
	}

	// An auditor over HTTP.
	c := &Client{Verifier: k.Verifier(), Fetch: HTTPFetcher(serve(t, l.Handler()), nil)}
	latest, err := c.Latest(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if latest.Size != cp.Size || latest.Hash != cp.Hash {
		t.Fatalf("latest %d %x, awaited %d %x", latest.Size, latest.Hash, cp.Size, cp.Hash)
	}
	all, err := c.Entries(ctx, latest, 0, latest.Size)
	if err != nil {
		t.Fatal(err)
	}
	for i, e := range all {
		if !reflect.DeepEqual(e, byIndex[uint64(i)]) {
			t.Fatalf("entry %d: got %+v, want %+v", i, e, byIndex[uint64(i)])
		}
	}
	for _, r := range [][2]uint64{{300, 517}, {0, 1}, {999, 1000}, {256, 512}, {5, 5}} {
		got, err := c.Entries(ctx, latest, r[0], r[1])
		if err != nil {
			t.Fatalf("entries %v: %v", r, err)
		}
		if uint64(len(got)) != r[1]-r[0] || (len(got) > 0 && !reflect.DeepEqual(got[0], byIndex[r[0]])) {
			t.Fatalf("entries %v: %d entries", r, len(got))
		}
	}
	if _, err := c.Entries(ctx, latest, 10, 1001); err == nil {
		t.Fatal("entries beyond the checkpoint")
	}

	// The log grows; old -> new is consistent, both ways of checking.
	more := make([]Entry, 300)
	for i := range more {
		more[i] = testEntry(1000 + i)
	}
	maps := appendAll(t, l, more)
	cp2 := awaitParsed(t, l, maxIndex(maps))
	if err := c.CheckConsistency(ctx, cp, cp2); err != nil {
		t.Fatal(err)
	}
	p, err := l.ConsistencyProof(ctx, cp.Size, cp2.Size)
	if err != nil {
		t.Fatal(err)
	}
	if err := proof.VerifyConsistency(hasher, cp.Size, cp2.Size, p, cp.Hash[:], cp2.Hash[:]); err != nil {
		t.Fatal(err)
	}
	tr, err := c.Advance(ctx, cp.Trusted(), cp2)
	if err != nil || tr != cp2.Trusted() {
		t.Fatalf("advance: %+v, %v", tr, err)
	}
	if tr, err := c.Advance(ctx, Trusted{}, cp); err != nil || tr != cp.Trusted() {
		t.Fatalf("advance from nothing: %+v, %v", tr, err)
	}
	// The entries of the smaller checkpoint still verify against it.
	if _, err := c.Entries(ctx, cp, 900, 1000); err != nil {
		t.Fatalf("entries of the older checkpoint: %v", err)
	}

	if err := Fsck(ctx, dir, k.Verifier()); err != nil {
		t.Fatal(err)
	}

	// Reopen after Close keeps the log.
	if err := l.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Append(ctx, testEntry(1)); !errors.Is(err, ErrClosed) {
		t.Fatalf("append after close: %v", err)
	}
	l2 := openLog(t, dir, k)
	b, err := l2.Checkpoint(ctx)
	if err != nil {
		t.Fatal(err)
	}
	cp3, err := k.Verifier().ParseCheckpoint(b)
	if err != nil {
		t.Fatal(err)
	}
	if cp3.Size != 1300 || cp3.Hash != cp2.Hash {
		t.Fatalf("after reopen: size %d", cp3.Size)
	}
	idx, err := l2.Append(ctx, testEntry(7))
	if err != nil || idx != 1300 {
		t.Fatalf("append after reopen: %d, %v", idx, err)
	}
	cp4 := awaitParsed(t, l2, idx)
	c.Fetch = HTTPFetcher(serve(t, l2.Handler()), nil)
	if err := c.CheckConsistency(ctx, cp2, cp4); err != nil {
		t.Fatal(err)
	}
}

func TestOpenRejects(t *testing.T) {
	dir := t.TempDir()
	k := newKeys(t, "embassy.host/a")
	ctx := testCtx(t)
	l := openLog(t, dir, k)
	if _, err := Open(ctx, Config{Dir: dir, Keys: k}); !errors.Is(err, ErrLocked) {
		t.Fatalf("second open: %v", err)
	}
	if err := l.Close(ctx); err != nil {
		t.Fatal(err)
	}
	// Another key with the same origin cannot take over the log.
	if _, err := Open(ctx, Config{Dir: dir, Keys: newKeys(t, "embassy.host/a")}); !errors.Is(err, wire.ErrCorrupt) {
		t.Fatalf("open with other keys: %v", err)
	}
	for name, cfg := range map[string]Config{
		"no keys":       {Dir: dir},
		"no dir":        {Keys: k},
		"origin":        {Dir: dir, Keys: k, Origin: "embassy.host/b"},
		"fast interval": {Dir: dir, Keys: k, CheckpointInterval: time.Millisecond},
	} {
		if l, err := Open(ctx, cfg); err == nil {
			l.Close(ctx)
			t.Errorf("%s: opened", name)
		}
	}
	l = openLog(t, dir, k) // the lock was released by the failures
	l.Close(ctx)
}

func TestHandler(t *testing.T) {
	dir := t.TempDir()
	k := newKeys(t, "embassy.host/a")
	l := openLog(t, dir, k)
	entries := make([]Entry, 300)
	for i := range entries {
		entries[i] = testEntry(i)
	}
	awaitParsed(t, l, maxIndex(appendAll(t, l, entries)))
	base := serve(t, l.Handler())
	// Unpublished entries exist on disk but are not served.
	if err := os.MkdirAll(filepath.Join(dir, "tile/entries/x001"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "tile/entries/x001/000"), []byte("junk"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "tile/entries/000.p/44123456"), []byte("tmp"), 0o644); err != nil {
		t.Fatal(err)
	}

	noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	get := func(method, path string) (int, http.Header, []byte) {
		req, _ := http.NewRequest(method, base+path, nil)
		resp, err := noRedirect.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, resp.Header, b
	}
	for _, c := range []struct {
		path  string
		ctype string
	}{
		{"/checkpoint", "text/plain; charset=utf-8"},
		{"/tile/entries/000", "application/octet-stream"},
		{"/tile/entries/001.p/44", "application/octet-stream"},
		{"/tile/0/000", "application/octet-stream"},
		{"/tile/0/001.p/44", "application/octet-stream"},
		{"/tile/1/000.p/1", "application/octet-stream"},
	} {
		code, h, b := get("GET", c.path)
		if code != 200 || h.Get("Content-Type") != c.ctype || len(b) == 0 {
			t.Errorf("GET %s: %d %q, %d bytes", c.path, code, h.Get("Content-Type"), len(b))
		}
		if code, _, _ := get("HEAD", c.path); code != 200 {
			t.Errorf("HEAD %s: %d", c.path, code)
		}
	}
	if _, h, _ := get("GET", "/tile/0/000"); !strings.Contains(h.Get("Cache-Control"), "immutable") {
		t.Errorf("full tile Cache-Control %q", h.Get("Cache-Control"))
	}
	if _, h, _ := get("GET", "/checkpoint"); h.Get("Cache-Control") != "no-cache" {
		t.Errorf("checkpoint Cache-Control %q", h.Get("Cache-Control"))
	}
	notServed := []string{
		"/", "/tile/", "/tile/entries/", "/tile/0/", "/.state/treeState", "/.ledger.lock", "/.state",
		"/../checkpoint", "/tile/../checkpoint", "/tile/0/../../checkpoint", "/tile/entries/../../.state/treeState",
		"/tile/entries/x001/000",       // beyond the published checkpoint
		"/tile/entries/000.p/44123456", // a temporary file's name
		"/tile/entries/0000", "/tile/entries/000.p/0", "/tile/entries/000.p/256", "/tile/00/000",
		"/tile/0//000", "/tile/64/000", "/tile/0/x000/000", "/cosigned-checkpoint", "/checkpoint/",
		"/tile/entries/001.p/45", // not on disk
		"tile/entries/000/", "/tile/entries/000.p/", "/tile/entries/000.p",
	}
	// Through the mux, which answers unclean paths with a redirect to the
	// clean one (served or not on its own merits).
	for _, p := range notServed {
		if code, _, _ := get("GET", p); code != 404 && (code < 300 || code > 399) {
			t.Errorf("GET %s: %d, want 404", p, code)
		}
	}
	// The handler itself, given raw paths.
	h := l.Handler()
	for _, p := range notServed {
		rec := httptest.NewRecorder()
		req := httptest.NewRequest("GET", "/", nil)
		req.URL.Path = p
		h.ServeHTTP(rec, req)
		if rec.Code != 404 {
			t.Errorf("handler %s: %d, want 404", p, rec.Code)
		}
	}
	if code, _, _ := get("POST", "/checkpoint"); code != http.StatusMethodNotAllowed {
		t.Errorf("POST: %d", code)
	}
	// Escaping by a raw (unnormalised) request path.
	resp, err := http.Get(strings.Replace(base, "/log", "/log/tile/%2e%2e/checkpoint", 1))
	if err == nil {
		resp.Body.Close()
		if resp.StatusCode == 200 {
			t.Error("encoded .. served")
		}
	}
}

func FuzzResourcePath(f *testing.F) {
	for _, p := range []string{"tile/entries/000", "tile/0/x001/234.p/7", "tile/63/000", "tile/entries/x999/x999/999"} {
		f.Add(p)
	}
	f.Fuzz(func(t *testing.T, p string) {
		size, ok := resourceNeeds(p)
		if !ok {
			return
		}
		if strings.Contains(p, "..") || strings.Contains(p, "//") || size == 0 {
			t.Fatalf("accepted %q (size %d)", p, size)
		}
	})
}

func TestTreeSizeFor(t *testing.T) {
	for _, c := range []struct {
		level, n uint64
		w        uint8
		want     uint64
		ok       bool
	}{
		{0, 0, 0, 256, true},
		{0, 0, 5, 5, true},
		{0, 3, 5, 3*256 + 5, true},
		{1, 0, 1, 256, true},
		{1, 0, 0, 65536, true},
		{2, 1, 2, (256 + 2) << 16, true},
		{7, 0, 0, 0, false},
		{7, 0, 255, 255 << 56, true},
		{8, 0, 1, 0, false},
		{0, ^uint64(0), 0, 0, false},
	} {
		got, ok := treeSizeFor(c.level, c.n, c.w)
		if got != c.want || ok != c.ok {
			t.Errorf("treeSizeFor(%d, %d, %d) = %d, %v; want %d, %v", c.level, c.n, c.w, got, ok, c.want, c.ok)
		}
	}
}

// TestTamperBundle is tampering case (a): an entry bundle rewritten on disk.
func TestTamperBundle(t *testing.T) {
	dir := t.TempDir()
	k := newKeys(t, "embassy.host/a")
	l := openLog(t, dir, k)
	ctx := testCtx(t)
	entries := make([]Entry, 600)
	for i := range entries {
		entries[i] = testEntry(i)
	}
	cp := awaitParsed(t, l, maxIndex(appendAll(t, l, entries)))
	if err := l.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if err := Fsck(ctx, dir, k.Verifier()); err != nil {
		t.Fatalf("clean log: %v", err)
	}

	// Replace entry 300 in the full bundle 1 by another valid entry.
	path := filepath.Join(dir, layout.EntriesPath(1, 0))
	orig, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	tampered := rewriteBundleEntry(t, orig, 300-256, mustMarshal(t, Entry{Time: 1, Event: HostStarted{Config: h32(0xbd)}}))
	if err := os.WriteFile(path, tampered, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := Fsck(ctx, dir, k.Verifier()); !errors.Is(err, wire.ErrCorrupt) {
		t.Fatalf("fsck of a rewritten bundle: %v", err)
	}
	c := &Client{Verifier: k.Verifier(), Fetch: (&dirFetcher{dir: dir}).fetch}
	for _, r := range [][2]uint64{{0, 600}, {290, 310}, {300, 301}} {
		if _, err := c.Entries(ctx, cp, r[0], r[1]); !errors.Is(err, wire.ErrCorrupt) {
			t.Fatalf("entries %v of a rewritten bundle: %v", r, err)
		}
	}
	// Entries outside the rewritten bundle still verify.
	if _, err := c.Entries(ctx, cp, 0, 256); err != nil {
		t.Fatalf("untouched bundle: %v", err)
	}

	// A bundle that does not parse as entries.
	if err := os.WriteFile(path, append(bytes.Clone(orig[:len(orig)-1]), 0xff), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := Fsck(ctx, dir, k.Verifier()); !errors.Is(err, wire.ErrCorrupt) {
		t.Fatalf("fsck of a garbled bundle: %v", err)
	}
	// A missing bundle.
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if err := Fsck(ctx, dir, k.Verifier()); !errors.Is(err, wire.ErrCorrupt) {
		t.Fatalf("fsck of a missing bundle: %v", err)
	}
	if _, err := c.Entries(ctx, cp, 256, 300); !errors.Is(err, fs.ErrNotExist) || errors.Is(err, wire.ErrCorrupt) {
		t.Fatalf("entries of a missing bundle: %v", err)
	}
	if err := os.WriteFile(path, orig, 0o644); err != nil {
		t.Fatal(err)
	}
	// A rewritten tile.
	tile := filepath.Join(dir, layout.TilePath(0, 0, 0))
	tb, err := os.ReadFile(tile)
	if err != nil {
		t.Fatal(err)
	}
	tb[5] ^= 1
	if err := os.WriteFile(tile, tb, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := Fsck(ctx, dir, k.Verifier()); !errors.Is(err, wire.ErrCorrupt) {
		t.Fatalf("fsck of a rewritten tile: %v", err)
	}
	tb[5] ^= 1
	if err := os.WriteFile(tile, tb, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := Fsck(ctx, dir, k.Verifier()); err != nil {
		t.Fatalf("restored log: %v", err)
	}
}

// rewriteBundleEntry replaces entry i of a tlog-tiles entry bundle.
func rewriteBundleEntry(t *testing.T, bundle []byte, i int, entry []byte) []byte {
	t.Helper()
	var out []byte
	for j := 0; len(bundle) > 0; j++ {
		n := int(bundle[0])<<8 | int(bundle[1])
		e := bundle[2 : 2+n]
		bundle = bundle[2+n:]
		if j == i {
			e = entry
		}
		out = append(out, byte(len(e)>>8), byte(len(e)))
		out = append(out, e...)
	}
	return out
}

// TestRollback is tampering case (b): the log's checkpoint replaced by an
// older one signed by the same keys.
func TestRollback(t *testing.T) {
	dir := t.TempDir()
	k := newKeys(t, "embassy.host/a")
	l := openLog(t, dir, k)
	ctx := testCtx(t)
	first := make([]Entry, 100)
	for i := range first {
		first[i] = testEntry(i)
	}
	oldRaw, err := l.AwaitCheckpoint(ctx, maxIndex(appendAll(t, l, first)))
	if err != nil {
		t.Fatal(err)
	}
	second := make([]Entry, 100)
	for i := range second {
		second[i] = testEntry(100 + i)
	}
	awaitParsed(t, l, maxIndex(appendAll(t, l, second)))
	if err := l.Close(ctx); err != nil {
		t.Fatal(err)
	}

	// The auditor accepted the larger checkpoint and stored it as text.
	l = openLog(t, dir, k)
	c := &Client{Verifier: k.Verifier(), Fetch: HTTPFetcher(serve(t, l.Handler()), nil)}
	cp, err := c.Latest(ctx)
	if err != nil {
		t.Fatal(err)
	}
	trusted, err := c.Advance(ctx, Trusted{}, cp)
	if err != nil {
		t.Fatal(err)
	}
	stored, _ := trusted.MarshalText()
	if err := l.Close(ctx); err != nil {
		t.Fatal(err)
	}

	// The host truncates: an old, validly signed checkpoint reappears.
	if err := os.WriteFile(filepath.Join(dir, "checkpoint"), oldRaw, 0o644); err != nil {
		t.Fatal(err)
	}
	trusted, err = ParseTrusted(stored)
	if err != nil {
		t.Fatal(err)
	}
	l = openLog(t, dir, k)
	c.Fetch = HTTPFetcher(serve(t, l.Handler()), nil)
	old, err := c.Latest(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if old.Size != 100 {
		t.Fatalf("served size %d", old.Size)
	}
	if _, err := c.Advance(ctx, trusted, old); !errors.Is(err, ErrRollback) {
		t.Fatalf("advance to an older checkpoint: %v", err)
	}
	if err := c.CheckConsistency(ctx, cp, old); !errors.Is(err, ErrRollback) {
		t.Fatalf("consistency to an older checkpoint: %v", err)
	}
}

// TestFork is tampering case (c): a second log with the same keys and
// origin but other entries.
func TestFork(t *testing.T) {
	k := newKeys(t, "embassy.host/a")
	ctx := testCtx(t)
	dirA, dirB := t.TempDir(), t.TempDir()
	la, lb := openLog(t, dirA, k), openLog(t, dirB, k)
	common := make([]Entry, 10)
	for i := range common {
		common[i] = testEntry(i)
	}
	// Both logs start the same, in the same order.
	for _, e := range common {
		if _, err := la.Append(ctx, e); err != nil {
			t.Fatal(err)
		}
		if _, err := lb.Append(ctx, e); err != nil {
			t.Fatal(err)
		}
	}
	var diverge []Entry
	for i := range 100 {
		diverge = append(diverge, testEntry(1000+i))
	}
	cpA := awaitParsed(t, la, maxIndex(appendAll(t, la, diverge[:60])))
	diverge[7] = testEntry(5000) // B has an entry A never had
	cpB := awaitParsed(t, lb, maxIndex(appendAll(t, lb, diverge)))

	c := &Client{Verifier: k.Verifier(), Fetch: HTTPFetcher(serve(t, lb.Handler()), nil)}
	err := c.CheckConsistency(ctx, cpA, cpB)
	if !errors.Is(err, ErrInconsistent) {
		t.Fatalf("fork: %v", err)
	}
	// Same size, different roots.
	cA := &Client{Verifier: k.Verifier(), Fetch: HTTPFetcher(serve(t, la.Handler()), nil)}
	forged := *cpA
	forged.Hash = h32(1)
	if _, err := cA.Advance(ctx, forged.Trusted(), cpA); !errors.Is(err, ErrInconsistent) {
		t.Fatalf("same size, other root: %v", err)
	}
	// The common prefix is consistent with both.
	if err := cA.CheckConsistency(ctx, cpA, cpA); err != nil {
		t.Fatal(err)
	}
	// A fetch failure is not an inconsistency.
	broken := &Client{Verifier: k.Verifier(), Fetch: func(ctx context.Context, p string) ([]byte, error) {
		return nil, fmt.Errorf("connection refused")
	}}
	if err := broken.CheckConsistency(ctx, cpA, cpB); err == nil || errors.Is(err, ErrInconsistent) || errors.Is(err, wire.ErrCorrupt) {
		t.Fatalf("fetch failure: %v", err)
	}
	// Nor is a garbled tile: that is corrupt data.
	garbled := &Client{Verifier: k.Verifier(), Fetch: func(ctx context.Context, p string) ([]byte, error) {
		return []byte("short"), nil
	}}
	if err := garbled.CheckConsistency(ctx, cpA, cpB); !errors.Is(err, wire.ErrCorrupt) || errors.Is(err, ErrInconsistent) {
		t.Fatalf("garbled tile: %v", err)
	}
}

func TestCosignatures(t *testing.T) {
	dir := t.TempDir()
	k := newKeys(t, "embassy.host/a")
	l := openLog(t, dir, k)
	ctx := testCtx(t)
	c := &Client{Verifier: k.Verifier(), Fetch: HTTPFetcher(serve(t, l.Handler()), nil)}
	if _, err := c.Cosigned(ctx); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("no cosigned checkpoint yet: %v", err)
	}
	w1 := newWitness(t, "witness.one")
	w2 := newWitness(t, "witness.two")
	cosign := func(raw []byte, w note.Signer) []byte {
		t.Helper()
		n, err := note.Open(raw, note.VerifierList(k.Verifier().ed, k.Verifier().ml))
		if err != nil {
			t.Fatal(err)
		}
		b, err := note.Sign(n, w)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}

	appendAll(t, l, []Entry{testEntry(1), testEntry(2)})
	raw1, err := l.AwaitCheckpoint(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.AddCosignatures(raw1); err == nil {
		t.Fatal("checkpoint without cosignatures stored")
	}
	if err := l.AddCosignatures(cosign(raw1, w1)); err != nil {
		t.Fatal(err)
	}
	got, err := c.Cosigned(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got.Size != 2 || len(got.Cosignatures) != 1 {
		t.Fatalf("cosigned %d with %d cosignatures", got.Size, len(got.Cosignatures))
	}
	// A second witness on the same tree: both lines kept.
	if err := l.AddCosignatures(cosign(raw1, w2)); err != nil {
		t.Fatal(err)
	}
	if got, _ = c.Cosigned(ctx); len(got.Cosignatures) != 2 {
		t.Fatalf("merged: %d cosignatures", len(got.Cosignatures))
	}
	if err := Fsck(ctx, dir, k.Verifier()); err != nil {
		t.Fatal(err)
	}

	appendAll(t, l, []Entry{testEntry(3)})
	raw2, err := l.AwaitCheckpoint(ctx, 2)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.AddCosignatures(cosign(raw2, w1)); err != nil {
		t.Fatal(err)
	}
	if got, _ = c.Cosigned(ctx); got.Size != 3 || len(got.Cosignatures) != 1 {
		t.Fatalf("newer: size %d, %d cosignatures", got.Size, len(got.Cosignatures))
	}
	if err := l.AddCosignatures(cosign(raw1, w2)); !errors.Is(err, ErrRollback) {
		t.Fatalf("older cosigned checkpoint: %v", err)
	}
	// Not this log's checkpoint.
	other := newKeys(t, "embassy.host/a")
	oed, oml := other.signers()
	if err := l.AddCosignatures(cosign2(t, signCheckpoint(t, k.Origin(), 3, got.Hash, oed, oml), other, w1)); !errors.Is(err, wire.ErrCorrupt) {
		t.Fatalf("foreign checkpoint: %v", err)
	}
	// Signed by the log for a size it never reached.
	ed, ml := k.signers()
	if err := l.AddCosignatures(cosign(signCheckpoint(t, k.Origin(), 1000, got.Hash, ed, ml), w1)); err == nil {
		t.Fatal("checkpoint beyond the log stored")
	}
	if got, _ = c.Cosigned(ctx); got.Size != 3 {
		t.Fatalf("stored size changed to %d", got.Size)
	}
	if err := Fsck(ctx, dir, k.Verifier()); err != nil {
		t.Fatal(err)
	}
	// A stored cosigned checkpoint ahead of the published one is corrupt.
	if err := l.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, CosignedPath), cosign(signCheckpoint(t, k.Origin(), 3, h32(4), ed, ml), w1), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := Fsck(ctx, dir, k.Verifier()); !errors.Is(err, wire.ErrCorrupt) {
		t.Fatalf("fsck with a forked cosigned checkpoint: %v", err)
	}
}

func newWitness(t *testing.T, name string) note.Signer {
	t.Helper()
	skey, _, err := note.GenerateKey(rand.Reader, name)
	if err != nil {
		t.Fatal(err)
	}
	s, err := note.NewSigner(skey)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func cosign2(t *testing.T, raw []byte, k *Keys, w note.Signer) []byte {
	t.Helper()
	n, err := note.Open(raw, note.VerifierList(k.Verifier().ed, k.Verifier().ml))
	if err != nil {
		t.Fatal(err)
	}
	b, err := note.Sign(n, w)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func BenchmarkAppend(b *testing.B) {
	k := newKeys(b, "embassy.host/bench")
	for _, par := range []int{1, 16, 256} {
		b.Run(fmt.Sprintf("concurrent=%d", par), func(b *testing.B) {
			l := openLog(b, b.TempDir(), k)
			e := testEntry(0)
			size := len(mustMarshal(b, e))
			b.SetBytes(int64(size))
			b.ReportAllocs()
			b.SetParallelism(max(1, par/max(1, runtime.GOMAXPROCS(0))))
			ctx := context.Background()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, err := l.Append(ctx, e); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.StopTimer()
			l.Close(ctx)
		})
	}
}
