package agent

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	bolt "go.etcd.io/bbolt"

	"github.com/embassy-project/embassy/internal/atomicfile"
	"github.com/embassy-project/embassy/internal/chunkindex"
	"github.com/embassy-project/embassy/internal/wire"
)

// The chunk index says where every chunk the dataset stored lies. It is a
// few immutable sorted runs (internal/chunkindex, docs/spec/chunk-index.md)
// in files next to cache.db; meta/runs in the database lists them, oldest
// first. Recording a batch writes one new run, merged in one sequential
// pass with the newest runs whenever they hold no more entries together
// than the batch and the runs merged so far: each run then holds more than
// all newer runs together, so there are at most log₂(chunks) runs and each
// entry is rewritten about log₂(batches) times, all in sequential writes.
// (A bbolt bucket keyed by random chunk IDs rewrote most of its pages for
// every batch: quadratic in the size of the index.)
//
// Crash safety: a run file is written and fsync'd, with its directory,
// before a transaction lists it; runs merged away are deleted only after
// the database is synced without them. A file not listed is a leftover and
// is deleted when the cache is opened.
const runsDir = "chunkindex"

var keyRuns = []byte("runs")

type indexRun struct {
	id   uint64
	name string
	f    *os.File
	*chunkindex.Run
}

type runIndex struct {
	db      *bolt.DB
	dir     string
	runs    atomic.Pointer[[]*indexRun] // oldest first; never modified once stored
	mu      sync.Mutex                  // serialises add
	next    uint64                      // ID of the next run file
	retired []*indexRun                 // merged away; closed with the index
	bad     atomic.Pointer[error]

	// crashAt, in tests, names a step of add at which it stops dead, as a
	// process killed there would: no clean-up, no further step.
	crashAt string
}

// errCrashed is what add returns when it stops at crashAt.
var errCrashed = errors.New("stopped at a crash point (test)")

func (x *runIndex) crash(step string) bool { return x.crashAt != "" && x.crashAt == step }

func runName(id uint64) string { return fmt.Sprintf("%016x.run", id) }

func (x *runIndex) current() []*indexRun {
	if p := x.runs.Load(); p != nil {
		return *p
	}
	return nil
}

// open loads the runs meta/runs lists, deletes files it does not list, and
// moves a pre-index "chunks" bucket into a run.
func (x *runIndex) open(db *bolt.DB, dir string) error {
	x.db, x.dir = db, dir
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("chunk index: %w", err)
	}
	var listed []runListing
	err := db.View(func(tx *bolt.Tx) error {
		var err error
		listed, err = decodeRuns(tx.Bucket(bMeta).Get(keyRuns))
		return err
	})
	if err != nil {
		return err
	}
	runs := make([]*indexRun, 0, len(listed))
	x.runs.Store(&runs)
	keep := map[string]bool{}
	for _, l := range listed {
		r, err := openRun(dir, l.id)
		if err != nil {
			return err
		}
		runs = append(runs, r)
		x.runs.Store(&runs)
		if r.Len() != l.count {
			return fmt.Errorf("chunk index run %s holds %d entries, listed with %d", r.name, r.Len(), l.count)
		}
		keep[runName(l.id)] = true
		x.next = max(x.next, l.id+1)
	}
	des, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("chunk index: %w", err)
	}
	for _, de := range des {
		n := de.Name()
		if keep[n] || !strings.HasSuffix(n, ".run") {
			continue
		}
		// Written by a backup that stopped before listing it, or merged
		// away and not yet deleted.
		if err := os.Remove(filepath.Join(dir, n)); err != nil {
			return fmt.Errorf("chunk index: remove leftover run: %w", err)
		}
	}
	return x.migrate()
}

func openRun(dir string, id uint64) (*indexRun, error) {
	name := filepath.Join(dir, runName(id))
	f, err := os.Open(name)
	if err != nil {
		return nil, fmt.Errorf("chunk index run: %w", err)
	}
	fi, err := f.Stat()
	if err == nil {
		var r *chunkindex.Run
		r, err = chunkindex.Open(f, fi.Size())
		if err == nil {
			return &indexRun{id: id, name: name, f: f, Run: r}, nil
		}
	}
	f.Close()
	return nil, fmt.Errorf("chunk index run %s: %w", name, err)
}

// migrate moves the entries of a "chunks" bucket (caches written before the
// chunk index, or by an older binary since) into a new run, newest.
func (x *runIndex) migrate() error {
	var (
		w    *chunkindex.Writer
		tmp  *os.File
		id   = x.next
		name = filepath.Join(x.dir, runName(id))
	)
	err := x.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bChunks)
		if b == nil {
			return nil
		}
		cur := b.Cursor()
		for k, v := cur.First(); k != nil; k, v = cur.Next() {
			if len(k) != 32 {
				return fmt.Errorf("chunks bucket: key of %d bytes", len(k))
			}
			e := chunkindex.Entry{ID: [32]byte(k)}
			r := wire.NewReader(v, "cache chunk")
			r.FixedInto(e.Pack[:])
			e.Offset = r.Uvarint()
			e.Length = uint32(r.UvarintMax(1<<32-1, "stored length"))
			e.RawLength = uint32(r.UvarintMax(1<<32-1, "raw length"))
			if err := r.Done(); err != nil {
				return err
			}
			if w == nil {
				var err error
				if tmp, err = os.OpenFile(name, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600); err != nil {
					return err
				}
				w = chunkindex.NewWriter(tmp)
			}
			if err := w.Add(&e); err != nil {
				return err
			}
		}
		return nil
	})
	var r *indexRun
	if err == nil && w != nil {
		r, err = x.finishRun(tmp, w, id)
	}
	if err != nil {
		if tmp != nil {
			tmp.Close()
			os.Remove(name)
		}
		return fmt.Errorf("move chunks bucket into the chunk index: %w", err)
	}
	runs := x.current()
	if r != nil {
		runs = append(runs[:len(runs):len(runs)], r)
		x.next++
	}
	err = x.db.Update(func(tx *bolt.Tx) error {
		if tx.Bucket(bChunks) == nil {
			return nil
		}
		if err := tx.Bucket(bMeta).Put(keyRuns, encodeRuns(runs)); err != nil {
			return err
		}
		return tx.DeleteBucket(bChunks)
	})
	if err != nil {
		if r != nil {
			r.f.Close()
			os.Remove(r.name)
		}
		return fmt.Errorf("move chunks bucket into the chunk index: %w", err)
	}
	x.runs.Store(&runs)
	return nil
}

// finishRun closes w, syncs the file and its directory, and opens the run.
func (x *runIndex) finishRun(f *os.File, w *chunkindex.Writer, id uint64) (*indexRun, error) {
	if err := w.Close(); err != nil {
		return nil, err
	}
	if err := f.Sync(); err != nil {
		return nil, err
	}
	if err := atomicfile.SyncDir(x.dir); err != nil {
		return nil, err
	}
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	r, err := chunkindex.Open(f, fi.Size())
	if err != nil {
		return nil, err
	}
	return &indexRun{id: id, name: f.Name(), f: f, Run: r}, nil
}

// add writes es (sorted, IDs distinct) as a new run, merged with the
// newest runs, and lists it in one transaction that also runs inTx. Then
// lookups see it, and runs merged away are deleted.
func (x *runIndex) add(es []chunkindex.Entry, inTx func(*bolt.Tx) error) error {
	x.mu.Lock()
	defer x.mu.Unlock()
	if len(es) == 0 {
		return x.db.Update(inTx)
	}
	old := x.current()
	i, total := len(old), int64(len(es))
	for i > 0 && old[i-1].Len() <= total {
		i--
		total += old[i].Len()
	}
	id := x.next
	x.next++
	name := filepath.Join(x.dir, runName(id))
	f, err := os.OpenFile(name, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("write chunk index run: %w", err)
	}
	srcs := make([]chunkindex.Source, 0, len(old)-i+1)
	for _, r := range old[i:] {
		srcs = append(srcs, r.Iter())
	}
	srcs = append(srcs, chunkindex.SliceSource(es))
	w := chunkindex.NewWriter(f)
	var r *indexRun
	err = chunkindex.Merge(w, srcs...)
	if err == nil && x.crash("run written") {
		return errCrashed
	}
	if err == nil {
		r, err = x.finishRun(f, w, id)
	}
	if err != nil {
		f.Close()
		os.Remove(name)
		if errors.Is(err, chunkindex.ErrCorrupt) {
			x.fail(err)
			return x.failure()
		}
		return fmt.Errorf("write chunk index run %s: %w", name, err)
	}
	if x.crash("run synced") {
		return errCrashed
	}
	runs := append(old[:i:i], r)
	err = x.db.Update(func(tx *bolt.Tx) error {
		if err := inTx(tx); err != nil {
			return err
		}
		return tx.Bucket(bMeta).Put(keyRuns, encodeRuns(runs))
	})
	if err != nil {
		r.f.Close()
		os.Remove(name)
		return err
	}
	if x.crash("listed") {
		return errCrashed
	}
	x.runs.Store(&runs)
	if i == len(old) {
		return nil
	}
	// The merged runs stay open for lookups in flight; their files go once
	// no synced state lists them.
	x.retired = append(x.retired, old[i:]...)
	if err := x.db.Sync(); err != nil {
		return fmt.Errorf("sync cache: %w", err)
	}
	if x.crash("synced") {
		return errCrashed
	}
	for j, r := range old[i:] {
		// A file left behind is deleted at the next open.
		_ = os.Remove(r.name)
		if j == 0 && x.crash("one merged run deleted") {
			return errCrashed
		}
	}
	return nil
}

// lookup finds id in the runs, newest first.
func (x *runIndex) lookup(id *[32]byte) (chunkindex.Entry, bool) {
	var e chunkindex.Entry
	runs := x.current()
	for j := len(runs) - 1; j >= 0; j-- {
		ok, err := runs[j].Lookup(id, &e)
		if err != nil {
			x.fail(fmt.Errorf("chunk index run %s: %w", runs[j].name, err))
			return e, false
		}
		if ok {
			return e, true
		}
	}
	return e, false
}

func (x *runIndex) fail(err error) { x.bad.CompareAndSwap(nil, &err) }

// failure is the first damage a lookup or merge found, if any.
func (x *runIndex) failure() error {
	if p := x.bad.Load(); p != nil {
		return fmt.Errorf("%w (delete %s and the cache.db beside it: the next backup uploads everything again)", *p, x.dir)
	}
	return nil
}

func (x *runIndex) close() error {
	var errs []error
	for _, r := range append(x.current(), x.retired...) {
		errs = append(errs, r.f.Close())
	}
	x.runs.Store(nil)
	x.retired = nil
	return errors.Join(errs...)
}

type runListing struct {
	id    uint64
	count int64
}

// encodeRuns is meta/runs: uvarint n ‖ n × (uvarint run ID ‖ uvarint entries).
func encodeRuns(runs []*indexRun) []byte {
	w := wire.NewWriter(nil)
	w.Uvarint(uint64(len(runs)))
	for _, r := range runs {
		w.Uvarint(r.id)
		w.Uvarint(uint64(r.Len()))
	}
	return w.Bytes()
}

func decodeRuns(v []byte) ([]runListing, error) {
	if v == nil {
		return nil, nil
	}
	r := wire.NewReader(v, "cache runs")
	n := r.UvarintMax(1<<16, "runs")
	var ls []runListing
	for i := uint64(0); i < n && r.Err() == nil; i++ {
		l := runListing{id: r.Uvarint(), count: int64(r.UvarintMax(chunkindex.MaxCount, "entries"))}
		if len(ls) > 0 && l.id <= ls[len(ls)-1].id {
			return nil, fmt.Errorf("cache runs: run %s listed after %s", strconv.FormatUint(l.id, 16), strconv.FormatUint(ls[len(ls)-1].id, 16))
		}
		ls = append(ls, l)
	}
	return ls, r.Done()
}
