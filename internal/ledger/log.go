package ledger

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/transparency-dev/tessera"
	"github.com/transparency-dev/tessera/api/layout"
	"github.com/transparency-dev/tessera/client"
	"github.com/transparency-dev/tessera/storage/posix"
	"golang.org/x/mod/sumdb/note"
)

// Defaults for Config.
const (
	DefaultBatchMaxAge        = 20 * time.Millisecond
	DefaultBatchMaxSize       = 256
	DefaultCheckpointInterval = time.Second
	// MinCheckpointInterval is tessera's POSIX driver's lower bound.
	MinCheckpointInterval = 100 * time.Millisecond
)

// Files the package keeps in the log directory besides tessera's.
const (
	// CosignedPath holds the latest checkpoint stored by AddCosignatures.
	CosignedPath = "cosigned-checkpoint"
	lockFile     = ".ledger.lock"
)

var (
	// ErrClosed is returned by a Log after Close.
	ErrClosed = errors.New("ledger closed")
	// ErrLocked means another Log (in this or another process) has the
	// directory open.
	ErrLocked = errors.New("ledger directory is in use")
)

// Config configures Open.
type Config struct {
	// Dir is the log directory (tessera's POSIX layout; created if missing).
	Dir string
	// Origin is the log's origin; empty means Keys.Origin(), otherwise it
	// must equal it.
	Origin string
	// Keys sign checkpoints.
	Keys *Keys
	// BatchMaxAge is how long an appended entry may wait for others to be
	// sequenced with it (DefaultBatchMaxAge if zero). It bounds Append's
	// latency when appends are rare.
	BatchMaxAge time.Duration
	// BatchMaxSize sequences a batch early once it has this many entries
	// (DefaultBatchMaxSize if zero).
	BatchMaxSize uint
	// CheckpointInterval is how often a new checkpoint is published while
	// the log grows (DefaultCheckpointInterval if zero; at least
	// MinCheckpointInterval).
	CheckpointInterval time.Duration
}

// Log is a host's open event log. Its methods are safe for concurrent use.
type Log struct {
	dir      string
	keys     *Keys
	verifier Verifier
	add      tessera.AddFn
	shutdown func(context.Context) error
	reader   tessera.LogReader
	awaiter  *tessera.PublicationAwaiter
	cancel   context.CancelFunc
	done     <-chan struct{}
	lock     *os.File
	root     *os.Root

	cosignMu  sync.Mutex
	closeOnce sync.Once
	closeErr  error
	closed    atomic.Bool
}

// Open opens or creates the log in cfg.Dir and starts tessera's sequencer,
// checkpoint publisher and garbage collector, which run until Close (or
// until ctx is cancelled, which stops them without waiting; prefer Close).
// An existing checkpoint must verify under cfg.Keys.
func Open(ctx context.Context, cfg Config) (*Log, error) {
	if cfg.Keys == nil {
		return nil, errors.New("open ledger: no keys")
	}
	if cfg.Origin == "" {
		cfg.Origin = cfg.Keys.Origin()
	}
	if cfg.Origin != cfg.Keys.Origin() {
		return nil, fmt.Errorf("open ledger: origin %q, but the keys sign for %q", cfg.Origin, cfg.Keys.Origin())
	}
	if cfg.Dir == "" {
		return nil, errors.New("open ledger: no directory")
	}
	if cfg.BatchMaxAge <= 0 {
		cfg.BatchMaxAge = DefaultBatchMaxAge
	}
	if cfg.BatchMaxSize == 0 {
		cfg.BatchMaxSize = DefaultBatchMaxSize
	}
	if cfg.CheckpointInterval == 0 {
		cfg.CheckpointInterval = DefaultCheckpointInterval
	}
	if cfg.CheckpointInterval < MinCheckpointInterval {
		return nil, fmt.Errorf("open ledger: checkpoint interval %v is below %v", cfg.CheckpointInterval, MinCheckpointInterval)
	}
	if err := os.MkdirAll(cfg.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("open ledger: %w", err)
	}
	lock, err := lockDir(cfg.Dir)
	if err != nil {
		return nil, err
	}
	l, err := open(ctx, cfg, lock)
	if err != nil {
		lock.Close() // releases the flock
		return nil, err
	}
	return l, nil
}

func open(ctx context.Context, cfg Config, lock *os.File) (*Log, error) {
	v := cfg.Keys.Verifier()
	cp, err := os.ReadFile(filepath.Join(cfg.Dir, layout.CheckpointPath))
	switch {
	case err == nil:
		if _, err := v.ParseCheckpoint(cp); err != nil {
			return nil, fmt.Errorf("open ledger %s: existing checkpoint: %w", cfg.Dir, err)
		}
	case !errors.Is(err, fs.ErrNotExist):
		return nil, fmt.Errorf("open ledger: %w", err)
	}
	root, err := os.OpenRoot(cfg.Dir)
	if err != nil {
		return nil, fmt.Errorf("open ledger: %w", err)
	}
	lctx, cancel := context.WithCancel(ctx)
	driver, err := posix.New(lctx, posix.Config{Path: cfg.Dir})
	if err != nil {
		cancel()
		root.Close()
		return nil, fmt.Errorf("open ledger %s: %w", cfg.Dir, err)
	}
	ed, ml := cfg.Keys.signers()
	opts := tessera.NewAppendOptions().
		WithCheckpointSigner(ed, ml).
		WithBatching(cfg.BatchMaxSize, cfg.BatchMaxAge).
		WithCheckpointInterval(cfg.CheckpointInterval)
	a, shutdown, reader, err := tessera.NewAppender(lctx, driver, opts)
	if err != nil {
		cancel()
		root.Close()
		return nil, fmt.Errorf("open ledger %s: %w", cfg.Dir, err)
	}
	poll := min(cfg.CheckpointInterval/4, 50*time.Millisecond)
	return &Log{
		dir:      cfg.Dir,
		keys:     cfg.Keys,
		verifier: v,
		add:      a.Add,
		shutdown: shutdown,
		reader:   reader,
		awaiter:  tessera.NewPublicationAwaiter(lctx, reader.ReadCheckpoint, poll),
		cancel:   cancel,
		done:     lctx.Done(),
		lock:     lock,
		root:     root,
	}, nil
}

// lockDir takes an exclusive flock on the directory's lock file, so that
// one process and one Log at a time append (tessera's own fcntl locks do
// not exclude two Logs in one process).
func lockDir(dir string) (*os.File, error) {
	f, err := os.OpenFile(filepath.Join(dir, lockFile), os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open ledger: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("open ledger %s: %w", dir, ErrLocked)
		}
		return nil, fmt.Errorf("open ledger %s: lock: %w", dir, err)
	}
	return f, nil
}

// Origin returns the log's origin.
func (l *Log) Origin() string { return l.verifier.Origin() }

// Verifier returns the verifier for the log's checkpoints.
func (l *Log) Verifier() Verifier { return l.verifier }

// Append adds e to the log and returns its index once the entry is durably
// sequenced: written to its entry bundle, integrated into the tree's tiles
// and recorded in the tree state, each file fsynced with its directory. It
// survives a crash from then on, and the next published checkpoint
// (AwaitCheckpoint) covers it. If ctx ends first the entry may or may not
// be sequenced.
func (l *Log) Append(ctx context.Context, e Entry) (uint64, error) {
	if l.closed.Load() {
		return 0, ErrClosed
	}
	b, err := MarshalEntry(e)
	if err != nil {
		return 0, err
	}
	future := l.add(ctx, tessera.NewEntry(b))
	type result struct {
		idx tessera.Index
		err error
	}
	ch := make(chan result, 1)
	go func() {
		idx, err := future()
		ch <- result{idx, err}
	}()
	select {
	case r := <-ch:
		if r.err != nil {
			return 0, fmt.Errorf("append %s entry: %w", e.Event.Type(), r.err)
		}
		return r.idx.Index, nil
	case <-ctx.Done():
		return 0, fmt.Errorf("append %s entry: %w", e.Event.Type(), ctx.Err())
	case <-l.done:
		return 0, ErrClosed
	}
}

// AwaitCheckpoint waits until a published checkpoint covers index (its size
// is larger than index) and returns it.
func (l *Log) AwaitCheckpoint(ctx context.Context, index uint64) ([]byte, error) {
	if l.closed.Load() {
		return nil, ErrClosed
	}
	_, cp, err := l.awaiter.Await(ctx, func() (tessera.Index, error) { return tessera.Index{Index: index}, nil })
	if err != nil {
		return nil, fmt.Errorf("await checkpoint for entry %d: %w", index, err)
	}
	return cp, nil
}

// Checkpoint returns the latest published checkpoint.
func (l *Log) Checkpoint(ctx context.Context) ([]byte, error) {
	cp, err := l.reader.ReadCheckpoint(ctx)
	if err != nil {
		return nil, fmt.Errorf("read checkpoint: %w", err)
	}
	return cp, nil
}

// Size returns the number of entries sequenced so far (the published
// checkpoint may lag behind it).
func (l *Log) Size(ctx context.Context) (uint64, error) {
	return l.reader.IntegratedSize(ctx)
}

// ConsistencyProof returns the RFC 6962 consistency proof from tree size
// old to tree size new, built from the log's tiles.
func (l *Log) ConsistencyProof(ctx context.Context, old, new uint64) ([][]byte, error) {
	tiles, err := l.tilesFor(ctx, new)
	if err != nil {
		return nil, err
	}
	if old > new {
		return nil, fmt.Errorf("consistency proof from %d to smaller %d", old, new)
	}
	pb, err := client.NewProofBuilder(ctx, new, tiles)
	if err != nil {
		return nil, fmt.Errorf("consistency proof: %w", err)
	}
	p, err := pb.ConsistencyProof(ctx, old, new)
	if err != nil {
		return nil, fmt.Errorf("consistency proof %d to %d: %w", old, new, err)
	}
	return p, nil
}

// InclusionProof returns the RFC 6962 inclusion proof of entry index in the
// tree of the given size, built from the log's tiles.
func (l *Log) InclusionProof(ctx context.Context, index, size uint64) ([][]byte, error) {
	tiles, err := l.tilesFor(ctx, size)
	if err != nil {
		return nil, err
	}
	if index >= size {
		return nil, fmt.Errorf("inclusion proof of entry %d in a tree of size %d", index, size)
	}
	pb, err := client.NewProofBuilder(ctx, size, tiles)
	if err != nil {
		return nil, fmt.Errorf("inclusion proof: %w", err)
	}
	p, err := pb.InclusionProof(ctx, index)
	if err != nil {
		return nil, fmt.Errorf("inclusion proof of %d in %d: %w", index, size, err)
	}
	return p, nil
}

// tilesFor checks that the log has size entries and returns a tile reader
// for proofs in a tree of that size, reading tiles as they are in the
// current tree (the tree of the given size may never have been written).
func (l *Log) tilesFor(ctx context.Context, size uint64) (client.TileFetcherFunc, error) {
	n, err := l.reader.IntegratedSize(ctx)
	if err != nil {
		return nil, fmt.Errorf("read tree size: %w", err)
	}
	if size > n {
		return nil, fmt.Errorf("tree size %d is beyond the log's %d entries", size, n)
	}
	return tilesAt(n, l.reader.ReadTile), nil
}

// AddCosignatures stores cosigned: a checkpoint this log signed (both of its
// signatures verify) with witness cosignature lines appended. It replaces
// the stored one if it is at least as large; for the same tree the witness
// lines of both are kept. The file is written atomically and fsynced.
// A checkpoint not signed by this log wraps wire.ErrCorrupt; one smaller
// than the stored one gives ErrRollback.
func (l *Log) AddCosignatures(cosigned []byte) error {
	cp, err := l.verifier.ParseCheckpoint(cosigned)
	if err != nil {
		return fmt.Errorf("add cosignatures: %w", err)
	}
	if len(cp.Cosignatures) == 0 {
		return errors.New("add cosignatures: the checkpoint has no cosignatures")
	}
	if _, err := l.tilesFor(context.Background(), cp.Size); err != nil {
		return fmt.Errorf("add cosignatures: %w", err)
	}
	l.cosignMu.Lock()
	defer l.cosignMu.Unlock()
	out := cp.Raw
	old, err := l.root.ReadFile(CosignedPath)
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return fmt.Errorf("add cosignatures: %w", err)
	default:
		prev, err := l.verifier.ParseCheckpoint(old)
		if err != nil {
			return fmt.Errorf("add cosignatures: stored %s: %w", CosignedPath, err)
		}
		switch {
		case prev.Size > cp.Size:
			return fmt.Errorf("add cosignatures: size %d, stored %d: %w", cp.Size, prev.Size, ErrRollback)
		case prev.Size == cp.Size && prev.Hash != cp.Hash:
			return fmt.Errorf("add cosignatures: two roots for size %d: %w", cp.Size, ErrInconsistent)
		case prev.Size == cp.Size:
			out = mergeCosignatures(cp, prev.Cosignatures)
		}
	}
	if err := writeFileSync(l.root, CosignedPath, out); err != nil {
		return fmt.Errorf("add cosignatures: %w", err)
	}
	return nil
}

// mergeCosignatures returns cp's note with the signature lines in extra
// that it lacks appended, up to the signed-note limit of 100 lines.
func mergeCosignatures(cp *Checkpoint, extra []note.Signature) []byte {
	out := append([]byte(nil), cp.Raw...)
	have := map[note.Signature]bool{}
	for _, s := range cp.Cosignatures {
		have[s] = true
	}
	lines := len(cp.Cosignatures) + 2
	for _, s := range extra {
		if have[s] || lines >= 100 {
			continue
		}
		have[s] = true
		lines++
		out = fmt.Appendf(out, "— %s %s\n", s.Name, s.Base64)
	}
	return out
}

// writeFileSync replaces name in root through a temporary file, fsync,
// rename and a directory fsync.
func writeFileSync(root *os.Root, name string, data []byte) error {
	tmp := name + ".tmp"
	f, err := root.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := root.Rename(tmp, name); err != nil {
		return err
	}
	d, err := root.Open(".")
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// Close stops the log in this order: tessera's shutdown refuses new
// appends and waits (bounded by ctx) until a published checkpoint covers
// every entry Append returned; then the background work (sequencer,
// checkpoint publisher, garbage collector, awaiter) is cancelled; then the
// directory lock is released. Entries appended but not yet covered when ctx
// ends stay durable and are published by the next Open.
func (l *Log) Close(ctx context.Context) error {
	l.closeOnce.Do(func() {
		l.closed.Store(true)
		err := l.shutdown(ctx)
		l.cancel()
		if e := l.root.Close(); err == nil {
			err = e
		}
		if e := l.lock.Close(); err == nil {
			err = e
		}
		if err != nil {
			l.closeErr = fmt.Errorf("close ledger %s: %w", l.dir, err)
		}
	})
	return l.closeErr
}
