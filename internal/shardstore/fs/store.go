package fs

import (
	"context"
	"errors"
	"fmt"
	iofs "io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/embassy-project/embassy/internal/shardstore"
	"github.com/embassy-project/embassy/internal/wire"
)

const (
	markerName    = MarkerName
	markerPrefix  = "embassy-store "
	markerContent = markerPrefix + "1\n"
	tmpName       = "tmp"
	dirPerm       = 0o700
	objectPerm    = 0o444
)

// ErrNotStore is returned by Open for a directory that holds other files and
// no store marker, or whose marker is not one this version reads.
var ErrNotStore = errors.New("not an embassy store directory")

// MarkerName is the file that marks a directory as a store.
const MarkerName = "embassy-store"

// Store is a shardstore.Store in a local directory. It is safe for concurrent
// use, also by several processes on the same directory.
type Store struct {
	dir string
	ops fileOps
	// fanouts records the fan-out directories whose entry in their kind
	// directory this process has made durable.
	fanouts sync.Map // string → struct{}
}

var _ shardstore.Store = (*Store)(nil)

// Open opens the store in dir, creating dir and the layout if dir is missing
// or empty (a "lost+found" entry is tolerated), and removes temp files left by
// a crash. It refuses (ErrNotStore) a directory that holds anything else.
// Temp-file cleanup can make a Put that another process has in flight on the
// same directory fail; it never loses or corrupts an object.
func Open(dir string) (*Store, error) { return open(dir, osOps{}) }

func open(dir string, ops fileOps) (*Store, error) {
	s := &Store{dir: filepath.Clean(dir), ops: ops}
	if err := s.init(); err != nil {
		return nil, fmt.Errorf("open store %s: %w", s.dir, err)
	}
	return s, nil
}

// Dir returns the store's directory.
func (s *Store) Dir() string { return s.dir }

func (s *Store) init() error {
	fi, err := os.Stat(s.dir)
	switch {
	case errors.Is(err, iofs.ErrNotExist):
		if err := os.MkdirAll(s.dir, dirPerm); err != nil {
			return err
		}
		if err := s.ops.SyncDir(filepath.Dir(s.dir)); err != nil {
			return fmt.Errorf("sync parent directory: %w", err)
		}
	case err != nil:
		return err
	case !fi.IsDir():
		return fmt.Errorf("%w: not a directory", ErrNotStore)
	}
	entries, err := os.ReadDir(s.dir)
	if err != nil {
		return err
	}
	marker := false
	var others []string
	for _, e := range entries {
		switch e.Name() {
		case markerName:
			marker = true
		case tmpName, "lost+found":
		default:
			others = append(others, e.Name())
		}
	}
	if marker {
		if err := checkMarker(filepath.Join(s.dir, markerName)); err != nil {
			return err
		}
	} else if len(others) > 0 {
		if len(others) > 3 {
			others = append(others[:3], "…")
		}
		return fmt.Errorf("%w: it holds %s and no %s marker; give an empty or new directory",
			ErrNotStore, strings.Join(others, ", "), markerName)
	}
	// Create whatever is missing: tmp first (the marker is written through
	// it), then the marker, then the kind directories.
	created := false
	for _, name := range []string{tmpName, string(shardstore.KindShard), string(shardstore.KindEnvelope)} {
		err := s.ops.Mkdir(filepath.Join(s.dir, name), dirPerm)
		if err == nil {
			created = true
		} else if !errors.Is(err, iofs.ErrExist) {
			return err
		}
		if name == tmpName {
			if err := s.cleanTmp(); err != nil {
				return err
			}
			if !marker {
				if err := s.writeMarker(); err != nil {
					return err
				}
				created = true
			}
		}
	}
	if created {
		if err := s.ops.SyncDir(s.dir); err != nil {
			return fmt.Errorf("sync store directory: %w", err)
		}
	}
	return nil
}

func checkMarker(path string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	switch {
	case string(b) == markerContent:
		return nil
	case strings.HasPrefix(string(b), markerPrefix):
		return fmt.Errorf("%w: store format %q is not supported by this version", ErrNotStore, strings.TrimSpace(string(b)))
	default:
		return fmt.Errorf("%w: unrecognised %s marker", ErrNotStore, markerName)
	}
}

func (s *Store) writeMarker() error {
	path := filepath.Join(s.dir, markerName)
	err := s.writeNew(path, []byte(markerContent))
	if errors.Is(err, iofs.ErrExist) { // another process created the store at the same time
		return checkMarker(path)
	}
	return err
}

// cleanTmp removes temp files left by crashed Puts.
func (s *Store) cleanTmp() error {
	tmp := filepath.Join(s.dir, tmpName)
	entries, err := os.ReadDir(tmp)
	if err != nil {
		return err
	}
	for _, e := range entries {
		if err := s.ops.Remove(filepath.Join(tmp, e.Name())); err != nil && !errors.Is(err, iofs.ErrNotExist) {
			return fmt.Errorf("remove stale temp file: %w", err)
		}
	}
	return nil
}

// writeNew writes data to a temp file, fsyncs it and links it to path. It
// returns an error wrapping fs.ErrExist if path exists; the temp file is gone
// in every case except a crash.
func (s *Store) writeNew(path string, data []byte) (err error) {
	f, err := s.ops.CreateTemp(filepath.Join(s.dir, tmpName), "put-*")
	if err != nil {
		return fmt.Errorf("create temp file: %w", err)
	}
	tmp := f.Name()
	closed := false
	defer func() {
		if !closed {
			f.Close()
		}
		// After a successful link the temp name is a second name of the
		// object; if removing it fails it is clutter the next Open removes.
		_ = s.ops.Remove(tmp)
	}()
	if done, err := writeDirect(f, data); err != nil {
		return fmt.Errorf("write temp file: %w", err)
	} else if !done {
		if _, err := f.Write(data); err != nil {
			return fmt.Errorf("write temp file: %w", err)
		}
	}
	if err := f.Chmod(objectPerm); err != nil {
		return fmt.Errorf("chmod temp file: %w", err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("sync temp file: %w", err)
	}
	closed = true
	if err := f.Close(); err != nil {
		return fmt.Errorf("close temp file: %w", err)
	}
	if err := s.ops.Link(tmp, path); err != nil {
		if errors.Is(err, iofs.ErrExist) {
			return err
		}
		return fmt.Errorf("link into place: %w", err)
	}
	return nil
}

func (s *Store) path(kind shardstore.Kind, id shardstore.ID) string {
	h := id.String()
	return filepath.Join(s.dir, string(kind), h[:2], h)
}

func check(ctx context.Context, kind shardstore.Kind) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return shardstore.CheckKind(kind)
}

// ensureFanout creates the fan-out directory of id if needed and makes its
// entry durable, once per process.
func (s *Store) ensureFanout(kind shardstore.Kind, id shardstore.ID) (string, error) {
	key := string(kind) + "/" + id.String()[:2]
	dir := filepath.Join(s.dir, key)
	if _, ok := s.fanouts.Load(key); ok {
		return dir, nil
	}
	if err := s.ops.Mkdir(dir, dirPerm); err != nil && !errors.Is(err, iofs.ErrExist) {
		return "", err
	}
	if err := s.ops.SyncDir(filepath.Join(s.dir, string(kind))); err != nil {
		return "", fmt.Errorf("sync %s directory: %w", kind, err)
	}
	s.fanouts.Store(key, struct{}{})
	return dir, nil
}

// Put stores data under id durably; see shardstore.Store.
func (s *Store) Put(ctx context.Context, kind shardstore.Kind, id shardstore.ID, data []byte) error {
	if err := check(ctx, kind); err != nil {
		return fmt.Errorf("put %s/%s: %w", kind, id, err)
	}
	if shardstore.Sum(data) != id {
		return fmt.Errorf("put %s/%s: %w", kind, id, shardstore.ErrMismatch)
	}
	if err := s.put(ctx, kind, id, data); err != nil {
		return fmt.Errorf("put %s/%s: %w", kind, id, err)
	}
	return nil
}

// PutChecked is Put for a caller that has computed id from data itself and
// compared it with the address it was asked to store under: a host node
// computes it in the same pass as the shard's storage-proof outboard
// (proof.OutboardSum), and hashing it again cost a tenth of the host's CPU.
// A wrong id stores data under an address it does not hash to, which Get
// then reports as corrupt.
func (s *Store) PutChecked(ctx context.Context, kind shardstore.Kind, id shardstore.ID, data []byte) error {
	if err := check(ctx, kind); err != nil {
		return fmt.Errorf("put %s/%s: %w", kind, id, err)
	}
	if err := s.put(ctx, kind, id, data); err != nil {
		return fmt.Errorf("put %s/%s: %w", kind, id, err)
	}
	return nil
}

// PutSum stores data under the address it computes (shardstore.Summer).
func (s *Store) PutSum(ctx context.Context, kind shardstore.Kind, data []byte) (shardstore.ID, error) {
	if err := check(ctx, kind); err != nil {
		return shardstore.ID{}, fmt.Errorf("put %s: %w", kind, err)
	}
	id := shardstore.Sum(data)
	if err := s.put(ctx, kind, id, data); err != nil {
		return id, fmt.Errorf("put %s/%s: %w", kind, id, err)
	}
	return id, nil
}

// put stores data, which hashes to id, under id.
func (s *Store) put(ctx context.Context, kind shardstore.Kind, id shardstore.ID, data []byte) error {
	path := s.path(kind, id)
	dir, err := s.ensureFanout(kind, id)
	if err != nil {
		return err
	}
	if fi, err := os.Lstat(path); err == nil {
		// Already stored. Its directory entry may come from a Put that
		// failed before syncing the directory, so sync it again.
		if !fi.Mode().IsRegular() || fi.Size() != int64(len(data)) {
			return wire.Corruptf("stored copy is damaged (%s, %d bytes, want %d); run fsck", fi.Mode().Type(), fi.Size(), len(data))
		}
		return s.ops.SyncDir(dir)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := s.writeNew(path, data); err != nil && !errors.Is(err, iofs.ErrExist) {
		return err
	}
	if err := s.ops.SyncDir(dir); err != nil {
		return fmt.Errorf("sync directory: %w", err)
	}
	return nil
}

// Get returns the object's bytes after checking them against id.
func (s *Store) Get(ctx context.Context, kind shardstore.Kind, id shardstore.ID) ([]byte, error) {
	if err := check(ctx, kind); err != nil {
		return nil, fmt.Errorf("get %s/%s: %w", kind, id, err)
	}
	data, err := os.ReadFile(s.path(kind, id))
	if errors.Is(err, iofs.ErrNotExist) {
		return nil, fmt.Errorf("get %s/%s: %w", kind, id, shardstore.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("get %s/%s: %w", kind, id, err)
	}
	if shardstore.Sum(data) != id {
		return nil, fmt.Errorf("get %s/%s: stored bytes damaged: %w", kind, id, shardstore.ErrMismatch)
	}
	return data, nil
}

// Open opens an object for reading parts of it without checking its hash
// (a storage proof checks the parts it reads against the address). The
// caller closes the file.
func (s *Store) Open(ctx context.Context, kind shardstore.Kind, id shardstore.ID) (*os.File, error) {
	if err := check(ctx, kind); err != nil {
		return nil, fmt.Errorf("open %s/%s: %w", kind, id, err)
	}
	f, err := os.Open(s.path(kind, id))
	if errors.Is(err, iofs.ErrNotExist) {
		return nil, fmt.Errorf("open %s/%s: %w", kind, id, shardstore.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("open %s/%s: %w", kind, id, err)
	}
	return f, nil
}

// Stat returns the object's size.
func (s *Store) Stat(ctx context.Context, kind shardstore.Kind, id shardstore.ID) (int64, error) {
	if err := check(ctx, kind); err != nil {
		return 0, fmt.Errorf("stat %s/%s: %w", kind, id, err)
	}
	fi, err := os.Stat(s.path(kind, id))
	if errors.Is(err, iofs.ErrNotExist) {
		return 0, fmt.Errorf("stat %s/%s: %w", kind, id, shardstore.ErrNotFound)
	}
	if err != nil {
		return 0, fmt.Errorf("stat %s/%s: %w", kind, id, err)
	}
	if !fi.Mode().IsRegular() {
		return 0, fmt.Errorf("stat %s/%s: %w", kind, id, wire.Corruptf("not a regular file"))
	}
	return fi.Size(), nil
}

// List calls fn for every object of kind. Entries whose names are not
// canonical object names are skipped (Fsck reports them).
func (s *Store) List(ctx context.Context, kind shardstore.Kind, fn func(shardstore.ID, int64) error) error {
	if err := check(ctx, kind); err != nil {
		return fmt.Errorf("list %s: %w", kind, err)
	}
	err := s.walk(ctx, kind, func(id shardstore.ID, _ string, fi iofs.FileInfo) error {
		return fn(id, fi.Size())
	}, nil)
	var fnErr *walkFnError
	if errors.As(err, &fnErr) {
		return fnErr.err
	}
	if err != nil {
		return fmt.Errorf("list %s: %w", kind, err)
	}
	return nil
}

// walkFnError carries an error from the caller's function through walk
// unwrapped.
type walkFnError struct{ err error }

func (e *walkFnError) Error() string { return e.err.Error() }

// walk calls fn for each well-named regular file of kind and stray (if not
// nil) with the store-relative path of anything else.
func (s *Store) walk(ctx context.Context, kind shardstore.Kind, fn func(shardstore.ID, string, iofs.FileInfo) error, stray func(rel string)) error {
	kdir := filepath.Join(s.dir, string(kind))
	fanouts, err := os.ReadDir(kdir)
	if err != nil {
		return err
	}
	for _, fo := range fanouts {
		if err := ctx.Err(); err != nil {
			return err
		}
		prefix := fo.Name()
		if !fo.IsDir() || len(prefix) != 2 || strings.Trim(prefix, "0123456789abcdef") != "" {
			if stray != nil {
				stray(filepath.Join(string(kind), prefix))
			}
			continue
		}
		entries, err := os.ReadDir(filepath.Join(kdir, prefix))
		if err != nil {
			return err
		}
		for _, e := range entries {
			if err := ctx.Err(); err != nil {
				return err
			}
			rel := filepath.Join(string(kind), prefix, e.Name())
			id, perr := shardstore.ParseID(e.Name())
			if perr != nil || !strings.HasPrefix(e.Name(), prefix) || !e.Type().IsRegular() {
				if stray != nil {
					stray(rel)
				}
				continue
			}
			fi, err := e.Info()
			if err != nil {
				return err
			}
			if err := fn(id, rel, fi); err != nil {
				return &walkFnError{err}
			}
		}
	}
	return nil
}
