package agent_test

// These tests run the whole journey with real components: a HOME made by
// home.Init over local-directory hosts, real custodian keys, backups through
// the agent pipeline, and restores through restore.Run from the custodians'
// share files. The package is agent_test because restore imports agent.

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	bolt "go.etcd.io/bbolt"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/embassy-project/embassy/internal/agent"
	"github.com/embassy-project/embassy/internal/check"
	"github.com/embassy-project/embassy/internal/chunk"
	"github.com/embassy-project/embassy/internal/custodian"
	"github.com/embassy-project/embassy/internal/home"
	"github.com/embassy-project/embassy/internal/hosts"
	"github.com/embassy-project/embassy/internal/pack"
	"github.com/embassy-project/embassy/internal/restore"
	"github.com/embassy-project/embassy/internal/sample"
	"github.com/embassy-project/embassy/internal/shardstore"
)

const dataset = "registry"

var hostNames = []string{"alpha", "bravo", "charlie"}

// custodians are made once: three custodians, threshold two.
var custodians = sync.OnceValues(func() ([]*custodian.Identity, error) {
	var out []*custodian.Identity
	for _, n := range []string{"alice", "bob", "carol"} {
		id, err := custodian.Generate(n)
		if err != nil {
			return nil, err
		}
		out = append(out, id)
	}
	return out, nil
})

// testEnv is a guest with a HOME, three local hosts (k=2, n=3) and the share
// files of a two-custodian quorum.
type testEnv struct {
	tb     testing.TB
	dir    string
	home   *home.Home
	specs  []hosts.Spec
	shares []restore.ShareFile
	ids    []*custodian.Identity
}

func newEnv(tb testing.TB, dir string) *testEnv {
	tb.Helper()
	ids, err := custodians()
	if err != nil {
		tb.Fatal(err)
	}
	e := &testEnv{tb: tb, dir: dir, ids: ids[:2]}
	for _, n := range hostNames {
		e.specs = append(e.specs, hosts.Spec{Name: n, Location: filepath.Join(dir, "hosts", n)})
	}
	var recips []*custodian.Recipient
	for _, id := range ids {
		recips = append(recips, id.Recipient())
	}
	h, files, err := home.Init(filepath.Join(dir, "home"), home.InitOptions{
		GuestName: "test-state", Hosts: e.specs, DataShards: 2, Custodians: recips, Threshold: 2,
		Datasets: []string{dataset}, SharesDir: filepath.Join(dir, "shares"),
	})
	if err != nil {
		tb.Fatal(err)
	}
	e.home = h
	for _, f := range files {
		if f.Custodian == "carol" {
			continue // alice and bob are the quorum
		}
		b, err := os.ReadFile(f.Path)
		if err != nil {
			tb.Fatal(err)
		}
		e.shares = append(e.shares, restore.ShareFile{Name: f.Path, Data: b})
	}
	return e
}

func (e *testEnv) backupOpts(o agent.Options) (*agent.Result, error) {
	o.Dataset = dataset
	o.Hostname = "test"
	return agent.Backup(context.Background(), e.home, o)
}

func (e *testEnv) backup(path string) (*agent.Result, error) {
	return e.backupOpts(agent.Options{Path: path})
}

func (e *testEnv) mustBackup(path string) *agent.Result {
	e.tb.Helper()
	r, err := e.backup(path)
	if err != nil {
		e.tb.Fatalf("backup %s: %v", path, err)
	}
	return r
}

// restore restores snapshot snap into target from all hosts.
func (e *testEnv) restore(snap, target string) *restore.Result {
	e.tb.Helper()
	hs, err := hosts.Open(e.specs, hosts.Options{})
	if err != nil {
		e.tb.Fatal(err)
	}
	r, err := restore.Run(context.Background(), restore.Options{
		Hosts: hs, Shares: e.shares, Identities: e.ids, Dataset: dataset, Snapshot: snap, Target: target,
		Warn: func(s string) { e.tb.Errorf("restore warning: %s", s) },
	})
	if err != nil {
		e.tb.Fatalf("restore snapshot %s: %v", snap, err)
	}
	return r
}

// envelopes counts the envelopes on each host.
func (e *testEnv) envelopes() []int {
	e.tb.Helper()
	hs, err := hosts.Open(e.specs, hosts.Options{})
	if err != nil {
		e.tb.Fatal(err)
	}
	out := make([]int, len(hs))
	for i, h := range hs {
		if !h.Available() {
			e.tb.Fatalf("host %s: %v", h.Name, h.Err)
		}
		err := h.Store.List(context.Background(), shardstore.KindEnvelope, func(shardstore.ID, int64) error {
			out[i]++
			return nil
		})
		if err != nil {
			e.tb.Fatal(err)
		}
	}
	return out
}

// checkHealthy audits the hosts with the public identity only.
func (e *testEnv) checkHealthy(readData bool) *check.Report {
	e.tb.Helper()
	hs, err := hosts.Open(e.specs, hosts.Options{})
	if err != nil {
		e.tb.Fatal(err)
	}
	rep, err := check.Run(context.Background(), check.Options{Hosts: hs, Identity: e.home.Identity, ReadData: readData})
	if err != nil {
		e.tb.Fatal(err)
	}
	if !rep.Healthy || !rep.Restorable {
		e.tb.Fatalf("check: healthy %v restorable %v, problems %+v", rep.Healthy, rep.Restorable, rep.Problems)
	}
	return rep
}

func compare(tb testing.TB, want, got string) {
	tb.Helper()
	if err := sample.Compare(want, got); err != nil {
		tb.Fatalf("restored tree differs: %v", err)
	}
}

func randomBytes(n int, seed uint64) []byte {
	b := make([]byte, n)
	c := rand.NewChaCha8([32]byte{byte(seed), byte(seed >> 8), 'e', 'm', 'b'})
	_, _ = c.Read(b)
	return b
}

func TestIncrementalUnchanged(t *testing.T) {
	t.Parallel()
	e := newEnv(t, t.TempDir())
	src := filepath.Join(e.dir, "registry")
	if err := sample.Generate(src, 8<<20, 1); err != nil {
		t.Fatal(err)
	}
	r1 := e.mustBackup(src)
	r2 := e.mustBackup(src)
	t.Logf("first:  %+v", *r1)
	t.Logf("second: %+v", *r2)

	if r1.Seq != 1 || r2.Seq != 2 {
		t.Errorf("seqs %d, %d; want 1, 2", r1.Seq, r2.Seq)
	}
	if r1.ReadBytes != r1.Bytes || r1.Bytes < 8<<20 {
		t.Errorf("first backup read %d of %d bytes; want all of at least %d", r1.ReadBytes, r1.Bytes, 8<<20)
	}
	if r2.Bytes != r1.Bytes || r2.Files != r1.Files || r2.Dirs != r1.Dirs || r2.Symlinks != r1.Symlinks {
		t.Errorf("second backup counts %d bytes %d files %d dirs %d links; first %d %d %d %d",
			r2.Bytes, r2.Files, r2.Dirs, r2.Symlinks, r1.Bytes, r1.Files, r1.Dirs, r1.Symlinks)
	}
	// O(changed files): nothing unchanged is read again, and at most tree
	// bytes are new.
	if r2.ReadBytes != 0 {
		t.Errorf("unchanged backup read %d bytes, want 0", r2.ReadBytes)
	}
	if r2.NewBytes*100 >= r2.Bytes {
		t.Errorf("unchanged backup has %d new bytes of %d (want < 1%%)", r2.NewBytes, r2.Bytes)
	}
	if r2.NewPacks > 1 {
		t.Errorf("unchanged backup uploaded %d packs, want at most one tree pack", r2.NewPacks)
	}
	if r2.Packs != r1.Packs {
		t.Errorf("second snapshot references %d packs, first %d", r2.Packs, r1.Packs)
	}
	if r2.Envelope == r1.Envelope {
		t.Error("both snapshots have the same envelope")
	}
	for _, seq := range []string{"1", "2"} {
		target := filepath.Join(e.dir, "restored-"+seq)
		rr := e.restore(seq, target)
		if fmt.Sprint(rr.Seq) != seq || rr.Bytes != r1.Bytes {
			t.Errorf("restore %s: seq %d, %d bytes; want %d bytes", seq, rr.Seq, rr.Bytes, r1.Bytes)
		}
		compare(t, src, filepath.Join(target, "registry"))
	}
	e.checkHealthy(false)
}

func TestIncrementalEdit(t *testing.T) {
	t.Parallel()
	e := newEnv(t, t.TempDir())
	src := filepath.Join(e.dir, "registry")
	if err := sample.Generate(src, 8<<20, 2); err != nil {
		t.Fatal(err)
	}
	r1 := e.mustBackup(src)
	if err := sample.Edit(src, 0.01, 3); err != nil {
		t.Fatal(err)
	}
	// sample.Edit stamps every file it writes with this time; sum them up.
	edited := time.Date(2026, 1, 2, 0, 0, 0, 0, time.UTC)
	var changed, changedFiles uint64
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		if fi.ModTime().Equal(edited) {
			changed += uint64(fi.Size())
			changedFiles++
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	r2 := e.mustBackup(src)
	t.Logf("first:  %+v", *r1)
	t.Logf("second: %+v (%d changed files, %d bytes)", *r2, changedFiles, changed)
	if r2.Seq != r1.Seq+1 {
		t.Errorf("seq %d after %d", r2.Seq, r1.Seq)
	}
	if r2.ReadBytes != changed {
		t.Errorf("second backup read %d bytes; the changed files hold %d", r2.ReadBytes, changed)
	}
	if r2.ReadBytes*2 > r2.Bytes {
		t.Errorf("second backup read %d of %d bytes: an edit of 1%% should read well under half", r2.ReadBytes, r2.Bytes)
	}
	// New chunks come only from the files read; the rest is trees (about
	// 300 KB for this registry).
	if r2.NewBytes > r2.ReadBytes+1<<20 {
		t.Errorf("second backup has %d new bytes, more than the %d read plus trees", r2.NewBytes, r2.ReadBytes)
	}
	target := filepath.Join(e.dir, "restored")
	e.restore("latest", target)
	compare(t, src, filepath.Join(target, "registry"))
}

// failingReader returns left bytes of r, then EIO.
type failingReader struct {
	r    io.ReadCloser
	path string
	left int
}

func (f *failingReader) Read(p []byte) (int, error) {
	if f.left <= 0 {
		return 0, &fs.PathError{Op: "read", Path: f.path, Err: syscall.EIO}
	}
	if len(p) > f.left {
		p = p[:f.left]
	}
	n, err := f.r.Read(p)
	f.left -= n
	return n, err
}

func (f *failingReader) Close() error { return f.r.Close() }

// TestUnreadableFile replaces the walker's file opener, so it must not run
// in parallel with other backups (it does not call t.Parallel).
func TestUnreadableFile(t *testing.T) {
	e := newEnv(t, t.TempDir())
	src := filepath.Join(e.dir, "src")
	big := filepath.Join(src, "sub", "big.bin")
	for p, data := range map[string][]byte{
		filepath.Join(src, "a.txt"):        []byte(strings.Repeat("registry row\n", 1000)),
		filepath.Join(src, "sub", "b.txt"): randomBytes(100<<10, 1),
		big:                                randomBytes(20<<20, 2),
		filepath.Join(src, "z.txt"):        []byte("last\n"),
	} {
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	noEnvelopes := []int{0, 0, 0}

	// A file that cannot be opened fails the backup, naming the file.
	reset := refuseOpen(big)
	_, err := e.backup(src)
	reset()
	if err == nil || !strings.Contains(err.Error(), big) || !errors.Is(err, fs.ErrPermission) {
		t.Fatalf("backup with an unopenable file: %v; want a permission error naming %s", err, big)
	}
	if got := e.envelopes(); !slices.Equal(got, noEnvelopes) {
		t.Fatalf("failed backup left envelopes %v", got)
	}

	r1 := e.mustBackup(src)
	if r1.Seq != 1 {
		t.Fatalf("first successful backup has seq %d, want 1", r1.Seq)
	}
	oneEnvelope := []int{1, 1, 1}
	if got := e.envelopes(); !slices.Equal(got, oneEnvelope) {
		t.Fatalf("envelopes %v after one backup", got)
	}

	// A read error mid-file (after more than a pack's worth of data went into
	// the pipeline) fails the backup with the I/O error, naming the file.
	if err := os.WriteFile(big, randomBytes(20<<20, 3), 0o644); err != nil {
		t.Fatal(err)
	}
	goroutines := runtime.NumGoroutine()
	reset = agent.SetOpenFile(func(p string) (io.ReadCloser, error) {
		f, err := os.Open(p)
		if err != nil || p != big {
			return f, err
		}
		return &failingReader{r: f, path: p, left: 18 << 20}, nil
	})
	_, err = e.backup(src)
	reset()
	if err == nil || !strings.Contains(err.Error(), big) || !errors.Is(err, syscall.EIO) {
		t.Fatalf("backup with a failing read: %v; want EIO naming %s", err, big)
	}
	if got := e.envelopes(); !slices.Equal(got, oneEnvelope) {
		t.Fatalf("failed backup changed envelopes to %v", got)
	}
	waitGoroutines(t, goroutines, "a failed backup")

	// Without the fault the next backup follows the last good one: no gap,
	// no fork.
	r2 := e.mustBackup(src)
	if r2.Seq != r1.Seq+1 {
		t.Fatalf("backup after failures has seq %d, want %d", r2.Seq, r1.Seq+1)
	}
	if got := e.envelopes(); !slices.Equal(got, []int{2, 2, 2}) {
		t.Fatalf("envelopes %v after two backups", got)
	}
	rep := e.checkHealthy(true)
	if len(rep.Datasets) != 1 || rep.Datasets[0].Snapshots != 2 || rep.Datasets[0].Latest != 2 {
		t.Errorf("check sees %+v, want 2 snapshots, latest 2", rep.Datasets)
	}
	target := filepath.Join(e.dir, "restored")
	e.restore("latest", target)
	compare(t, src, filepath.Join(target, "src"))
}

func TestHostDownRefusesBackup(t *testing.T) {
	t.Parallel()
	e := newEnv(t, t.TempDir())
	src := filepath.Join(e.dir, "src")
	if err := os.MkdirAll(src, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(src, "f.txt"), []byte("hello"), 0o644); err != nil {
		t.Fatal(err)
	}
	r1 := e.mustBackup(src)

	down := e.specs[1].Location
	if err := os.Rename(down, down+".away"); err != nil {
		t.Fatal(err)
	}
	_, err := e.backup(src)
	if err == nil || !strings.Contains(err.Error(), "bravo") || !errors.Is(err, hosts.ErrUnavailable) {
		t.Fatalf("backup with host bravo down: %v; want an error naming bravo", err)
	}
	if err := os.Rename(down+".away", down); err != nil {
		t.Fatal(err)
	}
	r2 := e.mustBackup(src)
	if r2.Seq != r1.Seq+1 {
		t.Errorf("seq %d after %d", r2.Seq, r1.Seq)
	}
	if got := e.envelopes(); !slices.Equal(got, []int{2, 2, 2}) {
		t.Errorf("envelopes %v, want two on every host", got)
	}
}

// raceEnabled reports whether the test binary was built with -race.
var raceEnabled = sync.OnceValue(func() bool {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return false
	}
	for _, s := range bi.Settings {
		if s.Key == "-race" {
			return s.Value == "true"
		}
	}
	return false
})

// Memory bounds of the backup pipeline, for TestMemoryBounded. With W = 2
// workers (memoryWorkers: the test sets it, so the bound does not depend on
// the machine's GOMAXPROCS), n/k = 3/2, 16 MiB packs and one uploader (local
// hosts), the pipeline holds at most:
//
//	chunk copies: the read-ahead budget, by buffer capacity             16 MiB
//	  and as much again in the pool's free buffers                       16 MiB
//	zstd output, one per worker                                     W × 4 MiB =   8 MiB
//	zstd history, one per worker                                    W × 8 MiB =  16 MiB
//	chunker scan buffers (the walker's, one tree's)                 2 × 8 MiB =  16 MiB
//	data pack buffers, one per uploader + the one being filled    2 × 21 MiB =  42 MiB
//	the uploader's shards, the pack sealed into them           3 × 8 MiB + 4 KiB = 24 MiB
//	                                                                          ≈ 138 MiB
//
// The live heap a GC reports also counts what was allocated while it marked,
// so liveBound leaves room for that. HeapInuse also counts garbage not yet
// collected: without a limit the heap grows to about twice the live heap
// (GOGC=100) before a collection. cmd/embassy sets a 224 MiB soft memory
// limit (memoryLimit in cmd/embassy/main.go); the test sets the same and
// expects HeapInuse to stay under inuseBound.
const (
	memoryWorkers = 2
	liveBound     = 208 << 20
	memoryLimit   = 224 << 20 // as cmd/embassy sets it
	inuseBound    = 256 << 20
)

// memoryStreamSize is the stream TestMemoryBounded backs up: several times
// the bounds. The race detector makes every copied byte expensive, so under
// -race the stream is only just above liveBound (still more than a pipeline
// that buffered its input could hold), and the full check is the run
// without -race.
func memoryStreamSize() int64 {
	if raceEnabled() {
		return 256 << 20
	}
	return 1 << 30
}

// TestMemoryBounded backs up a stream of incompressible bytes larger than the
// pipeline's memory bound, under the CLI's soft memory limit, while sampling
// the heap every 20 ms, and checks that the live heap (as marked by each GC)
// stays under liveBound and HeapInuse under inuseBound. A pipeline that
// buffered its input would exceed both. Then it restores the stream and
// compares a running hash. The heap is the process's, so this test must run
// alone (it does not call t.Parallel; parallel tests wait until it is done).
func TestMemoryBounded(t *testing.T) {
	if testing.Short() {
		t.Skip("backs up a large stream")
	}
	size := memoryStreamSize()
	if size <= liveBound {
		t.Fatal("the stream must be larger than the bound it tests")
	}
	e := newEnv(t, t.TempDir())

	defer debug.SetMemoryLimit(debug.SetMemoryLimit(memoryLimit))
	runtime.GC()
	var peakInuse, peakLive uint64
	stop := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		tk := time.NewTicker(20 * time.Millisecond)
		defer tk.Stop()
		var ms runtime.MemStats
		live := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
		for {
			runtime.ReadMemStats(&ms)
			metrics.Read(live)
			peakInuse = max(peakInuse, ms.HeapInuse)
			if live[0].Value.Kind() == metrics.KindUint64 {
				peakLive = max(peakLive, live[0].Value.Uint64())
			}
			select {
			case <-stop:
				return
			case <-tk.C:
			}
		}
	}()

	h := sha256.New()
	stream := io.TeeReader(io.LimitReader(rand.NewChaCha8([32]byte{'m', 'e', 'm'}), size), h)
	start := time.Now()
	r, err := e.backupOpts(agent.Options{Path: "-", Stdin: stream, StdinName: "noise.bin", Workers: memoryWorkers})
	close(stop)
	<-sampled // peakInuse and peakLive are read after this
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("backed up %d MiB in %v (%d packs): peak live heap %d MiB (bound %d), peak HeapInuse %d MiB (bound %d, soft limit %d)",
		size>>20, time.Since(start).Round(time.Millisecond), r.NewPacks, peakLive>>20, liveBound>>20, peakInuse>>20, inuseBound>>20, memoryLimit>>20)
	if r.Bytes != uint64(size) || r.ReadBytes != uint64(size) || r.NewBytes < uint64(size) {
		t.Errorf("bytes %d, read %d, new %d; want %d each", r.Bytes, r.ReadBytes, r.NewBytes, size)
	}
	if peakLive >= liveBound {
		t.Errorf("peak live heap %d MiB backing up a %d MiB stream, want < %d MiB", peakLive>>20, size>>20, liveBound>>20)
	}
	if peakInuse >= inuseBound {
		t.Errorf("peak HeapInuse %d MiB backing up a %d MiB stream, want < %d MiB", peakInuse>>20, size>>20, inuseBound>>20)
	}

	target := filepath.Join(e.dir, "restored")
	rr := e.restore("latest", target)
	f, err := os.Open(filepath.Join(target, "noise.bin"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	g := sha256.New()
	n, err := io.Copy(g, f)
	if err != nil {
		t.Fatal(err)
	}
	if n != size || rr.Bytes != uint64(size) {
		t.Errorf("restored %d bytes (restore counts %d), want %d", n, rr.Bytes, size)
	}
	if !bytes.Equal(g.Sum(nil), h.Sum(nil)) {
		t.Error("restored stream differs from the one backed up")
	}
}

func TestStdin(t *testing.T) {
	t.Parallel()
	e := newEnv(t, t.TempDir())
	var b bytes.Buffer
	for i := 0; b.Len() < 3<<20; i++ {
		fmt.Fprintf(&b, "INSERT INTO persons VALUES (%d, 'name-%d', '%x');\n", i, i*7919, i*31337)
	}
	b.Write(randomBytes(1<<20, 4))
	want := bytes.Clone(b.Bytes())
	r, err := e.backupOpts(agent.Options{Path: "-", Stdin: &b, StdinName: "dump.sql"})
	if err != nil {
		t.Fatal(err)
	}
	if r.Files != 1 || r.Bytes != uint64(len(want)) {
		t.Errorf("stdin backup: %d files, %d bytes; want 1, %d", r.Files, r.Bytes, len(want))
	}
	target := filepath.Join(e.dir, "restored")
	rr := e.restore("latest", target)
	if rr.Path != filepath.Join(target, "dump.sql") {
		t.Errorf("restored to %s, want %s", rr.Path, filepath.Join(target, "dump.sql"))
	}
	got, err := os.ReadFile(filepath.Join(target, "dump.sql"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("restored dump.sql differs: %d bytes, want %d", len(got), len(want))
	}
}

func TestSpecialFiles(t *testing.T) {
	t.Parallel()
	e := newEnv(t, t.TempDir())
	src := filepath.Join(e.dir, "src")
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.MkdirAll(filepath.Join(src, "empty-dir"), 0o755))
	must(os.WriteFile(filepath.Join(src, "empty"), nil, 0o644))
	suid := filepath.Join(src, "suid-sticky")
	must(os.WriteFile(suid, []byte("#!/bin/sh\n"), 0o755))
	must(os.Chmod(suid, 0o755|fs.ModeSetuid|fs.ModeSticky))
	must(os.Symlink("does/not/exist", filepath.Join(src, "dangling")))
	must(os.WriteFile(filepath.Join(src, "caf\xe9-\xff\xfe.txt"), []byte("latin-1 name\n"), 0o600))
	fifo := filepath.Join(src, "pipe")
	must(syscall.Mkfifo(fifo, 0o644))
	fi, err := os.Lstat(suid)
	must(err)
	if fi.Mode()&(fs.ModeSetuid|fs.ModeSticky) != fs.ModeSetuid|fs.ModeSticky {
		t.Fatalf("could not set setuid and sticky bits: mode %v", fi.Mode())
	}

	r := e.mustBackup(src)
	if !slices.Equal(r.Skipped, []string{fifo}) {
		t.Errorf("skipped %q, want the FIFO %q", r.Skipped, fifo)
	}
	if r.Files != 3 || r.Dirs != 2 || r.Symlinks != 1 {
		t.Errorf("%d files, %d dirs, %d symlinks; want 3, 2, 1", r.Files, r.Dirs, r.Symlinks)
	}

	// The FIFO is not restored: remove it from the source, keeping the
	// directory's mtime, and compare.
	st, err := os.Lstat(src)
	must(err)
	must(os.Remove(fifo))
	must(os.Chtimes(src, st.ModTime(), st.ModTime()))
	target := filepath.Join(e.dir, "restored")
	e.restore("latest", target)
	compare(t, src, filepath.Join(target, "src"))
}

func TestLargeDirectory(t *testing.T) {
	t.Parallel()
	e := newEnv(t, t.TempDir())
	src := filepath.Join(e.dir, "big")
	if err := os.MkdirAll(src, 0o755); err != nil {
		t.Fatal(err)
	}
	// Long names make the directory's tree encoding exceed chunk.MaxSize,
	// the largest blob, so it must be stored as several pieces: about 11 MB,
	// at least three pieces, so that one lies wholly between the listing's
	// start (its node count changes) and its end (the new file), whatever
	// cut points the content has. With ~6 MB there could be only two, both
	// changed: the test failed about once in six runs.
	pad := strings.Repeat("n", 230)
	const count = 40000
	for i := 0; i < count; i++ {
		var data []byte
		if i%2 == 1 {
			data = []byte(fmt.Sprintf("%d\n", i%10))
		}
		if err := os.WriteFile(filepath.Join(src, fmt.Sprintf("%s-%06d", pad, i)), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	r1 := e.mustBackup(src)
	t.Logf("first:  %+v", *r1)
	if r1.Files != count {
		t.Errorf("%d files, want %d", r1.Files, count)
	}
	// The data is ten distinct two-byte blobs; everything else new is trees.
	if r1.NewBytes <= chunk.MaxSize {
		t.Fatalf("new bytes %d: the directory's tree should exceed %d", r1.NewBytes, chunk.MaxSize)
	}

	// One new file, sorting last: only it is read, and the tree pieces
	// before it are reused. (A listing of near-identical names has few
	// content-defined cut points, so pieces are often cut at chunk.MaxSize;
	// a file inserted inside the first piece would then change every piece
	// after it, and whether the middle of the listing falls in the first
	// piece depended on the files' mtimes: the test was flaky.)
	if err := os.WriteFile(filepath.Join(src, "zz-new"), []byte("new file\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	r2 := e.mustBackup(src)
	t.Logf("second: %+v", *r2)
	if r2.ReadBytes != uint64(len("new file\n")) {
		t.Errorf("second backup read %d bytes, want only the new file's %d", r2.ReadBytes, len("new file\n"))
	}
	if r2.NewBytes >= r1.NewBytes {
		t.Errorf("one new file made %d new bytes; the whole tree is %d (no piece reused)", r2.NewBytes, r1.NewBytes)
	}
	target := filepath.Join(e.dir, "restored")
	rr := e.restore("latest", target)
	if rr.Files != count+1 {
		t.Errorf("restored %d files, want %d", rr.Files, count+1)
	}
	compare(t, src, filepath.Join(target, "big"))
}

func BenchmarkBackup(b *testing.B) {
	src := filepath.Join(b.TempDir(), "registry")
	if err := sample.Generate(src, 64<<20, 1); err != nil {
		b.Fatal(err)
	}
	var size int64
	_ = filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			if fi, err := d.Info(); err == nil {
				size += fi.Size()
			}
		}
		return err
	})
	b.SetBytes(size)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		dir, err := os.MkdirTemp(b.TempDir(), "guest-")
		if err != nil {
			b.Fatal(err)
		}
		e := newEnv(b, dir)
		b.StartTimer()
		if _, err := e.backup(src); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		if err := os.RemoveAll(dir); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
}

// TestSingleFileRootUsesCache: a backup of one unchanged file reads nothing.
func TestSingleFileRootUsesCache(t *testing.T) {
	t.Parallel()
	e := newEnv(t, t.TempDir())
	f := filepath.Join(e.dir, "dump.bin")
	if err := os.WriteFile(f, bytes.Repeat([]byte("registry row\n"), 200000), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := e.backup(f); err != nil {
		t.Fatal(err)
	}
	r, err := e.backup(f)
	if err != nil {
		t.Fatal(err)
	}
	if r.ReadBytes != 0 || r.Seq != 2 {
		t.Fatalf("unchanged single file re-read: %+v", r)
	}
}

// TestConcurrentBackupRefused: a second backup of the same dataset while one
// holds the cache fails quickly with a clear message instead of hanging.
func TestConcurrentBackupRefused(t *testing.T) {
	t.Parallel()
	e := newEnv(t, t.TempDir())
	db, err := bolt.Open(e.home.CachePath(dataset), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	src := filepath.Join(e.dir, "src")
	os.MkdirAll(src, 0o755)
	os.WriteFile(filepath.Join(src, "f"), []byte("x"), 0o644)
	if _, err := e.backup(src); err == nil || !strings.Contains(err.Error(), "another backup") {
		t.Fatalf("got %v, want a refusal naming the running backup", err)
	}
}

// TestSmallFilesShareFrames: small files are compressed together in frames
// (docs/spec/pack.md), which is what makes a register of many small JSON
// documents compress well; duplicates within and across frames, and across
// backups, are stored once; the restore is exact.
func TestSmallFilesShareFrames(t *testing.T) {
	t.Parallel()
	e := newEnv(t, t.TempDir())
	src := filepath.Join(e.dir, "companies")
	r := rand.New(rand.NewPCG(7, 7))
	const count = 3000
	alone := map[string]int{} // distinct documents → their size compressed alone
	for i := 0; i < count; i++ {
		dir := filepath.Join(src, fmt.Sprintf("%02d", i%37))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		doc := fmt.Sprintf("{\n  \"registry_code\": \"%08d\",\n  \"name\": \"Company %d OÜ\",\n  \"status\": %q,\n  \"address\": {\"county\": %q, \"street\": \"Pikk %d\"},\n  \"capital_eur\": %d\n}\n",
			i%2500, i%2500, []string{"active", "liquidated", "bankrupt"}[r.IntN(3)],
			[]string{"Harju", "Tartu", "Ida-Viru", "Pärnu"}[r.IntN(4)], r.IntN(200), 2500*(1+r.IntN(40)))
		if i%2500 != i {
			doc = fmt.Sprintf("{\n  \"registry_code\": \"%08d\",\n  \"name\": \"Company %d OÜ\"\n}\n", i%2500, i%2500)
			if i%3 == 0 {
				doc = "duplicate\n" // the same small blob in many files and frames
			}
		}
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("%06d.json", i)), []byte(doc), 0o644); err != nil {
			t.Fatal(err)
		}
		alone[doc] = len(pack.Compress(nil, []byte(doc)))
	}
	var storedAlone int
	for _, n := range alone {
		storedAlone += n
	}
	// A file larger than SmallBlob is a frame of its own, and a copy of a
	// small file elsewhere is deduplicated.
	if err := os.WriteFile(filepath.Join(src, "scan.bin"), randomBytes(agent.SmallBlob+1, 9), 0o644); err != nil {
		t.Fatal(err)
	}
	r1 := e.mustBackup(src)
	t.Logf("first: %+v", *r1)
	// Compressed alone, the distinct documents would take storedAlone
	// bytes; in frames they take a fraction of that, so that everything
	// stored (documents, trees, pack indexes, the raw scan) is less.
	if stored := r1.StoredBytes - uint64(agent.SmallBlob+1); stored >= uint64(storedAlone) {
		t.Errorf("stored %d bytes (trees and indexes included); the documents alone compress to %d: frames are not shared", stored, storedAlone)
	}
	target := filepath.Join(e.dir, "restored")
	e.restore("latest", target)
	compare(t, src, filepath.Join(target, "companies"))

	// Renamed and copied files: their blobs are in the cache, nothing new
	// but trees is stored.
	if err := os.Rename(filepath.Join(src, "00"), filepath.Join(src, "moved")); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(src, "01", "000001.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(src, "copy.json"), b, 0o644); err != nil {
		t.Fatal(err)
	}
	r2 := e.mustBackup(src)
	t.Logf("second: %+v", *r2)
	if r2.ReadBytes == 0 || r2.NewBytes >= r2.ReadBytes {
		t.Errorf("second backup read %d bytes and stored %d new: re-read files should deduplicate", r2.ReadBytes, r2.NewBytes)
	}
	target2 := filepath.Join(e.dir, "restored2")
	e.restore("latest", target2)
	compare(t, src, filepath.Join(target2, "companies"))
	e.checkHealthy(true)
}

// TestFileChangesWhileListed: a small file that grew or shrank between the
// directory listing and its read is stored as read, whole (it replaces the
// walker's file opener, so it does not run in parallel).
func TestFileChangesWhileListed(t *testing.T) {
	e := newEnv(t, t.TempDir())
	src := filepath.Join(e.dir, "src")
	files := map[string][]byte{
		"grew.json":   []byte(strings.Repeat(`{"row":1}`, 50)),
		"shrank.json": []byte(strings.Repeat(`{"row":2}`, 50)),
		"empty-now":   []byte("gone soon\n"),
		"same.json":   []byte(`{"row":3}`),
		"grew-big":    []byte("x"),
	}
	for name, data := range files {
		if err := os.MkdirAll(src, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(src, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	grown := randomBytes(agent.SmallBlob*5, 4) // past the smallest chunk: chunked
	reset := agent.SetOpenFile(func(p string) (io.ReadCloser, error) {
		var err error
		switch filepath.Base(p) {
		case "grew.json":
			err = os.WriteFile(p, append(files["grew.json"], "+appended"...), 0o644)
		case "shrank.json":
			err = os.Truncate(p, 7)
		case "empty-now":
			err = os.Truncate(p, 0)
		case "grew-big":
			err = os.WriteFile(p, grown, 0o644)
		}
		if err != nil {
			return nil, err
		}
		return os.Open(p)
	})
	r := e.mustBackup(src)
	reset()
	t.Logf("%+v", *r)
	target := filepath.Join(e.dir, "restored")
	e.restore("latest", target)
	want := map[string][]byte{
		"grew.json":   append(files["grew.json"], "+appended"...),
		"shrank.json": files["shrank.json"][:7],
		"empty-now":   {},
		"same.json":   files["same.json"],
		"grew-big":    grown,
	}
	for name, w := range want {
		got, err := os.ReadFile(filepath.Join(target, "src", name))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, w) {
			t.Errorf("%s: restored %d bytes, want the %d read", name, len(got), len(w))
		}
	}
}

// TestFailureDeepInWideTree: a file that cannot be opened deep in one of
// many subtrees, while the readers and workers have others' files in
// flight, fails the backup, naming it, publishes nothing and leaves no
// goroutine behind; the clean tree then restores exactly (it replaces the
// walker's file opener, so it does not run in parallel).
func TestFailureDeepInWideTree(t *testing.T) {
	e := newEnv(t, t.TempDir())
	src := filepath.Join(e.dir, "src")
	wideTree(t, src)
	bad := filepath.Join(src, "d07", "s2", "deep", "f13.txt")
	goroutines := runtime.NumGoroutine()
	for round := 0; round < 3; round++ {
		reset := refuseOpen(bad)
		_, err := e.backup(src)
		reset()
		if err == nil || !strings.Contains(err.Error(), bad) {
			t.Fatalf("round %d: backup with an unopenable file: %v; want an error naming %s", round, err, bad)
		}
	}
	wideTreeAfterFailures(t, e, src, goroutines)
	target := filepath.Join(e.dir, "restored")
	e.restore("latest", target)
	compare(t, src, filepath.Join(target, "src"))
}

// wideTreeAfterFailures checks that the failed backups of wideTree's src
// published nothing and left no more than goroutines running, then backs
// src up whole.
func wideTreeAfterFailures(t *testing.T, e *testEnv, src string, goroutines int) {
	t.Helper()
	if got := e.envelopes(); !slices.Equal(got, []int{0, 0, 0}) {
		t.Fatalf("failed backups left envelopes %v", got)
	}
	waitGoroutines(t, goroutines, "failed backups")
	r := e.mustBackup(src)
	if r.Files != 12*3*20 || r.Dirs != 1+12+12*3+12*3 {
		t.Fatalf("backup saw %d files, %d dirs", r.Files, r.Dirs)
	}
}

// refuseOpen makes the walker's file opener fail on path with EACCES until
// reset is called.
func refuseOpen(path string) (reset func()) {
	return agent.SetOpenFile(func(p string) (io.ReadCloser, error) {
		if p == path {
			return nil, &fs.PathError{Op: "open", Path: p, Err: syscall.EACCES}
		}
		return os.Open(p)
	})
}

// wideTree writes 12 subtrees of 3 directories, each with a directory deep
// holding 20 small files: 720 files in 85 directories under src.
func wideTree(t *testing.T, src string) {
	t.Helper()
	for d := 0; d < 12; d++ {
		for s := 0; s < 3; s++ {
			dir := filepath.Join(src, fmt.Sprintf("d%02d", d), fmt.Sprintf("s%d", s), "deep")
			if err := os.MkdirAll(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			for f := 0; f < 20; f++ {
				p := filepath.Join(dir, fmt.Sprintf("f%02d.txt", f))
				if err := os.WriteFile(p, []byte(fmt.Sprintf("%d/%d/%d\n", d, s, f)), 0o644); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
}

// TestUnlistableDirDeepInWideTree: a directory that cannot be listed, deep
// in one of many subtrees that several walkers list at once, fails the
// backup with an error naming it, publishes nothing and leaves no goroutine
// behind, wherever it is (first, middle or last to be reached); then every
// walker lists the same trees as one would (the snapshot's root is the same
// blob twice, and restores exactly).
func TestUnlistableDirDeepInWideTree(t *testing.T) {
	e := newEnv(t, t.TempDir())
	src := filepath.Join(e.dir, "src")
	wideTree(t, src)
	goroutines := runtime.NumGoroutine()
	for _, bad := range []string{
		filepath.Join(src, "d00", "s0", "deep"),
		filepath.Join(src, "d07", "s2"),
		filepath.Join(src, "d11", "s2", "deep"),
	} {
		reset := agent.SetReadDir(func(p string, d *os.File) ([]os.DirEntry, error) {
			if p == bad {
				return nil, &fs.PathError{Op: "readdirent", Path: p, Err: syscall.EACCES}
			}
			return d.ReadDir(-1)
		})
		_, err := e.backup(src)
		reset()
		if err == nil || !strings.Contains(err.Error(), "read directory "+bad) {
			t.Fatalf("backup with %s unlistable: %v; want an error naming it", bad, err)
		}
	}
	wideTreeAfterFailures(t, e, src, goroutines)
	// A second backup of the untouched tree reuses every file entry; its
	// trees must be the same blobs, so it stores nothing new.
	r2 := e.mustBackup(src)
	if r2.NewBytes != 0 {
		t.Fatalf("a second backup of the same tree stored %d new bytes: the walkers' trees differ", r2.NewBytes)
	}
	target := filepath.Join(e.dir, "restored")
	e.restore("latest", target)
	compare(t, src, filepath.Join(target, "src"))
}

// TestCancelMidBackup: a backup cancelled while small files sit in open
// frames and packs are in flight returns the cancellation's cause, publishes
// nothing and leaves no goroutine behind; the next backup is complete (it
// replaces the walker's file opener, so it does not run in parallel).
func TestCancelMidBackup(t *testing.T) {
	e := newEnv(t, t.TempDir())
	src := filepath.Join(e.dir, "src")
	for d := 0; d < 20; d++ {
		dir := filepath.Join(src, fmt.Sprintf("d%02d", d))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		for f := 0; f < 100; f++ {
			doc := fmt.Sprintf("{\"company\": %d, \"dir\": %d, \"pad\": %q}\n", f, d, strings.Repeat("x", f))
			if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("%03d.json", f)), []byte(doc), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := os.WriteFile(filepath.Join(src, "d10", "big.bin"), randomBytes(24<<20, 5), 0o644); err != nil {
		t.Fatal(err)
	}
	stop := errors.New("operator pressed ^C")
	goroutines := runtime.NumGoroutine()
	ctx, cancel := context.WithCancelCause(context.Background())
	var opened atomic.Int64
	reset := agent.SetOpenFile(func(p string) (io.ReadCloser, error) {
		if opened.Add(1) == 1200 {
			cancel(stop)
		}
		return os.Open(p)
	})
	_, err := agent.Backup(ctx, e.home, agent.Options{Dataset: dataset, Hostname: "test", Path: src})
	reset()
	if !errors.Is(err, stop) {
		t.Fatalf("cancelled backup: %v; want the cancellation's cause", err)
	}
	if got := e.envelopes(); !slices.Equal(got, []int{0, 0, 0}) {
		t.Fatalf("cancelled backup left envelopes %v", got)
	}
	waitGoroutines(t, goroutines, "a cancelled backup")
	r := e.mustBackup(src)
	if r.Files != 20*100+1 || r.Seq != 1 {
		t.Fatalf("backup after the cancelled one: %d files, seq %d", r.Files, r.Seq)
	}
	target := filepath.Join(e.dir, "restored")
	e.restore("latest", target)
	compare(t, src, filepath.Join(target, "src"))
}

// waitGoroutines fails the test unless the goroutine count falls back to
// before: Backup waits for every goroutine it started, even when it fails
// (one may still be between its last Done and its exit, so it retries).
func waitGoroutines(t *testing.T, before int, after string) {
	t.Helper()
	for i := 0; runtime.NumGoroutine() > before; i++ {
		if i == 100 {
			t.Fatalf("%d goroutines after %s, %d before", runtime.NumGoroutine(), after, before)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
