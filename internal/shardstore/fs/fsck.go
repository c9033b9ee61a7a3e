package fs

import (
	"context"
	"fmt"
	"io"
	iofs "io/fs"
	"os"
	"path/filepath"

	"github.com/zeebo/blake3"

	"github.com/embassy-project/embassy/internal/shardstore"
)

// Report is the outcome of Fsck.
type Report struct {
	Objects   int             // objects whose bytes were hashed
	Bytes     int64           // their total size
	Damaged   []DamagedObject // objects whose bytes do not hash to their name
	Stray     []string        // store-relative paths that are not objects, marker or layout
	TempFiles int             // files in tmp/: Puts in flight, or leftovers of a crash
}

// DamagedObject names an object whose bytes are wrong.
type DamagedObject struct {
	Kind shardstore.Kind
	ID   shardstore.ID
}

// Clean reports whether Fsck found nothing damaged and nothing stray.
func (r Report) Clean() bool { return len(r.Damaged) == 0 && len(r.Stray) == 0 }

// Fsck re-hashes every object and reports those whose bytes do not match
// their name, and any entry that does not belong to the layout. It changes
// nothing. Memory use does not depend on object sizes.
func (s *Store) Fsck(ctx context.Context) (Report, error) {
	var r Report
	if err := checkMarker(filepath.Join(s.dir, markerName)); err != nil {
		return r, fmt.Errorf("fsck %s: %w", s.dir, err)
	}
	top, err := os.ReadDir(s.dir)
	if err != nil {
		return r, fmt.Errorf("fsck %s: %w", s.dir, err)
	}
	for _, e := range top {
		switch e.Name() {
		case markerName, tmpName, "lost+found", string(shardstore.KindShard), string(shardstore.KindEnvelope):
		default:
			r.Stray = append(r.Stray, e.Name())
		}
	}
	tmp, err := os.ReadDir(filepath.Join(s.dir, tmpName))
	if err != nil {
		return r, fmt.Errorf("fsck %s: %w", s.dir, err)
	}
	r.TempFiles = len(tmp)
	buf := make([]byte, 1<<20)
	for _, kind := range shardstore.Kinds() {
		err := s.walk(ctx, kind, func(id shardstore.ID, rel string, _ iofs.FileInfo) error {
			n, sum, err := hashFile(filepath.Join(s.dir, rel), buf)
			if err != nil {
				return err
			}
			r.Objects++
			r.Bytes += n
			if sum != id {
				r.Damaged = append(r.Damaged, DamagedObject{Kind: kind, ID: id})
			}
			return nil
		}, func(rel string) { r.Stray = append(r.Stray, rel) })
		if err != nil {
			if fe, ok := err.(*walkFnError); ok {
				err = fe.err
			}
			return r, fmt.Errorf("fsck %s: %w", s.dir, err)
		}
	}
	return r, nil
}

func hashFile(path string, buf []byte) (int64, shardstore.ID, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, shardstore.ID{}, err
	}
	defer f.Close()
	h := blake3.New()
	n, err := io.CopyBuffer(h, f, buf)
	if err != nil {
		return 0, shardstore.ID{}, err
	}
	var id shardstore.ID
	h.Sum(id[:0])
	return n, id, nil
}
