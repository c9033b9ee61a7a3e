package ledger

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"

	"github.com/transparency-dev/tessera/api"
	"github.com/transparency-dev/tessera/api/layout"
	"github.com/transparency-dev/tessera/fsck"

	"github.com/embassy-project/embassy/internal/wire"
)

// Fsck checks the log in dir from disk against v:
//
//   - the published checkpoint verifies under both of the log's keys;
//   - every entry up to its size parses, the entries' leaf hashes rebuild
//     every tile the checkpoint covers byte for byte, and the root equals the
//     checkpoint's (tessera's fsck);
//   - tessera's tree state is not behind the checkpoint;
//   - a stored cosigned checkpoint verifies and is consistent with it.
//
// A log that fails a check gives an error wrapping wire.ErrCorrupt; a file
// that cannot be read for another reason gives that I/O error. Fsck only
// reads, and may run while the log is open, though it then checks the
// checkpoint it read first.
func Fsck(ctx context.Context, dir string, v Verifier) error {
	raw, err := os.ReadFile(filepath.Join(dir, layout.CheckpointPath))
	if err != nil {
		return fmt.Errorf("fsck %s: %w", dir, err)
	}
	cp, err := v.ParseCheckpoint(raw)
	if err != nil {
		return fmt.Errorf("fsck %s: %w", dir, err)
	}
	f := &dirFetcher{dir: dir, checkpoint: raw}
	bundleHasher := func(b []byte) ([][]byte, error) {
		var eb api.EntryBundle
		if err := eb.UnmarshalText(b); err != nil {
			return nil, err
		}
		hs := make([][]byte, len(eb.Entries))
		for i, e := range eb.Entries {
			if _, err := ParseEntry(e); err != nil {
				return nil, err
			}
			hs[i] = hasher.HashLeaf(e)
		}
		return hs, nil
	}
	// tessera's fsck checks one signature; ParseCheckpoint above checked
	// both, and the fetcher hands it exactly those bytes.
	err = fsck.New(v.origin, v.ed, f, bundleHasher, fsck.Opts{N: 2}).Check(ctx)
	if err != nil {
		if ioErr := f.ioError(); ioErr != nil {
			return fmt.Errorf("fsck %s: %w", dir, ioErr)
		}
		if ctx.Err() != nil {
			return fmt.Errorf("fsck %s: %w", dir, ctx.Err())
		}
		return fmt.Errorf("fsck %s: %w", dir, wire.Corruptf("%v", err))
	}
	if err := checkTreeState(dir, cp.Size); err != nil {
		return fmt.Errorf("fsck %s: %w", dir, err)
	}
	cosigned, err := os.ReadFile(filepath.Join(dir, CosignedPath))
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil
	case err != nil:
		return fmt.Errorf("fsck %s: %w", dir, err)
	}
	ccp, err := v.ParseCheckpoint(cosigned)
	if err != nil {
		return fmt.Errorf("fsck %s: %s: %w", dir, CosignedPath, err)
	}
	c := &Client{Verifier: v, Fetch: f.fetch}
	if _, err := c.Advance(ctx, ccp.Trusted(), cp); err != nil {
		if errors.Is(err, ErrRollback) || errors.Is(err, ErrInconsistent) {
			return fmt.Errorf("fsck %s: %s: %w", dir, CosignedPath, wire.Corruptf("%v", err))
		}
		return fmt.Errorf("fsck %s: %s: %w", dir, CosignedPath, err)
	}
	return nil
}

// checkTreeState checks that tessera's private tree state (.state/treeState,
// JSON {"size":N,"root":base64}) is not behind the published checkpoint:
// if it were, the next append would overwrite published entries.
func checkTreeState(dir string, published uint64) error {
	b, err := os.ReadFile(filepath.Join(dir, ".state", "treeState"))
	if err != nil {
		return err
	}
	var ts struct {
		Size uint64 `json:"size"`
		Root []byte `json:"root"`
	}
	if err := json.Unmarshal(b, &ts); err != nil {
		return wire.Corruptf("tree state: %v", err)
	}
	if ts.Size < published {
		return wire.Corruptf("tree state has %d entries, the published checkpoint %d", ts.Size, published)
	}
	return nil
}

// dirFetcher reads a log's resources from its directory for tessera's fsck
// (falling back from partial to full tiles and bundles as tlog-tiles
// allows) and remembers the first I/O error other than a missing file.
type dirFetcher struct {
	dir        string
	checkpoint []byte

	mu    sync.Mutex
	ioErr error
}

func (f *dirFetcher) ioError() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.ioErr
}

func (f *dirFetcher) read(p string) ([]byte, error) {
	b, err := os.ReadFile(filepath.Join(f.dir, p))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		f.mu.Lock()
		if f.ioErr == nil {
			f.ioErr = err
		}
		f.mu.Unlock()
	}
	return b, err
}

func (f *dirFetcher) readPartial(full, partial string) ([]byte, error) {
	b, err := f.read(partial)
	if errors.Is(err, fs.ErrNotExist) && partial != full {
		return f.read(full)
	}
	return b, err
}

func (f *dirFetcher) ReadCheckpoint(context.Context) ([]byte, error) { return f.checkpoint, nil }

func (f *dirFetcher) ReadTile(_ context.Context, l, i uint64, p uint8) ([]byte, error) {
	return f.readPartial(layout.TilePath(l, i, 0), layout.TilePath(l, i, p))
}

func (f *dirFetcher) ReadEntryBundle(_ context.Context, i uint64, p uint8) ([]byte, error) {
	return f.readPartial(layout.EntriesPath(i, 0), layout.EntriesPath(i, p))
}

// fetch serves Client requests from the directory.
func (f *dirFetcher) fetch(_ context.Context, p string) ([]byte, error) {
	if p == layout.CheckpointPath {
		return f.checkpoint, nil
	}
	return f.read(p)
}
