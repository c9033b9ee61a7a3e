package hostnode

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/embassy-project/embassy/internal/atomicfile"
	"github.com/embassy-project/embassy/internal/guest"
	"github.com/embassy-project/embassy/internal/proof"
	"github.com/embassy-project/embassy/internal/shardstore"
	"github.com/embassy-project/embassy/internal/shardstore/fs"
)

// ErrQuota is returned when a write would take a guest over its quota.
var ErrQuota = errors.New("quota exceeded")

// tenant is one guest's storage on this host: its shard store, its outboards
// and its quota accounting.
type tenant struct {
	id    guest.ID
	ident atomic.Pointer[guest.Identity] // swapped by a governed identity update
	quota int64
	store shardstore.Store
	obDir string
	gov   *govTenant // nil: no agreement in force

	used     atomic.Int64 // bytes stored (objects only)
	reserved atomic.Int64 // bytes of writes in flight
	mu       sync.Mutex   // serialises quota reservations
}

// checkedPutter is a store that can take data whose address the caller has
// already computed and checked, without hashing it again (fs.Store).
type checkedPutter interface {
	PutChecked(ctx context.Context, kind shardstore.Kind, id shardstore.ID, data []byte) error
}

// retainer is a store that enforces retention (S3 Object Lock in
// compliance mode): objects cannot be deleted or overwritten before their
// retain-until time, which can be extended but never shortened.
type retainer interface {
	PutRetained(ctx context.Context, kind shardstore.Kind, id shardstore.ID, data []byte, until time.Time) error
	Retain(ctx context.Context, kind shardstore.Kind, id shardstore.ID, until time.Time) error
	RetainUntil(ctx context.Context, kind shardstore.Kind, id shardstore.ID) (time.Time, error)
}

// rangeReader is a store that reads parts of an object without fetching it
// whole (storage-proof slices).
type rangeReader interface {
	ReaderAt(ctx context.Context, kind shardstore.Kind, id shardstore.ID) (io.ReaderAt, int64, error)
}

// StoreOpener opens a guest's store at a URL (s3://…); registered by the
// command that links the implementation (hostnode itself knows only local
// directories).
type StoreOpener func(ctx context.Context, url string, guest string) (shardstore.Store, error)

func openTenant(ctx context.Context, dir string, cfg *Config, g Guest, id *guest.Identity, opener StoreOpener) (*tenant, error) {
	gid, _ := guest.ParseID(g.ID)
	var st shardstore.Store
	var err error
	switch {
	case cfg.Store == "":
		st, err = fs.Open(filepath.Join(dir, storeDir, g.ID))
	case opener == nil:
		err = fmt.Errorf("store %s: this build cannot open it", cfg.Store)
	default:
		st, err = opener(ctx, cfg.Store, g.ID)
	}
	if err != nil {
		return nil, err
	}
	t := &tenant{id: gid, quota: g.QuotaBytes, store: st, obDir: filepath.Join(dir, outboardDir, g.ID)}
	t.ident.Store(id)
	if err := os.MkdirAll(t.obDir, 0o700); err != nil {
		return nil, err
	}
	var used int64
	for _, k := range shardstore.Kinds() {
		err := st.List(ctx, k, func(_ shardstore.ID, size int64) error { used += size; return nil })
		if err != nil {
			return nil, fmt.Errorf("count stored bytes: %w", err)
		}
	}
	t.used.Store(used)
	return t, nil
}

// reserve claims n bytes of quota for a write in flight.
func (t *tenant) reserve(n int64) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.used.Load()+t.reserved.Load()+n > t.quota {
		return fmt.Errorf("%w: %d bytes used of %d", ErrQuota, t.used.Load(), t.quota)
	}
	t.reserved.Add(n)
	return nil
}

// settle releases a reservation, counting the bytes as used if stored.
func (t *tenant) settle(n int64, stored bool) {
	t.reserved.Add(-n)
	if stored {
		t.used.Add(n)
	}
}

func (t *tenant) outboardPath(id shardstore.ID) string {
	h := id.String()
	return filepath.Join(t.obDir, h[:2], h)
}

// writeOutboard stores ob, the Bao outboard of shard id (durably,
// atomically).
func (t *tenant) writeOutboard(id shardstore.ID, ob []byte) error {
	p := t.outboardPath(id)
	if _, err := os.Stat(p); err == nil {
		return nil
	}
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		return err
	}
	return atomicfile.Write(p, ob, 0o400)
}

// openForProof opens a shard and its outboard for a storage proof. A
// missing or wrong-sized outboard (a crash between storing a shard and its
// outboard) is rebuilt from the data and stored.
func (t *tenant) openForProof(ctx context.Context, id shardstore.ID) (io.ReaderAt, []byte, error) {
	var ra io.ReaderAt
	var size int64
	switch st := t.store.(type) {
	case *fs.Store:
		f, err := st.Open(ctx, shardstore.KindShard, id)
		if err != nil {
			return nil, nil, err
		}
		fi, err := f.Stat()
		if err != nil {
			f.Close()
			return nil, nil, err
		}
		ra, size = f, fi.Size()
	case rangeReader:
		r, n, err := st.ReaderAt(ctx, shardstore.KindShard, id)
		if err != nil {
			return nil, nil, err
		}
		ra, size = r, n
	default:
		data, err := t.store.Get(ctx, shardstore.KindShard, id)
		if err != nil {
			return nil, nil, err
		}
		ra, size = readAt(data), int64(len(data))
	}
	closeRA := func() {
		if c, ok := ra.(io.Closer); ok {
			c.Close()
		}
	}
	ob, err := os.ReadFile(t.outboardPath(id))
	if err == nil && len(ob) == proof.OutboardSize(int(size)) {
		return ra, ob, nil
	}
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		closeRA()
		return nil, nil, err
	}
	data, err := io.ReadAll(io.NewSectionReader(ra, 0, size))
	if err != nil {
		closeRA()
		return nil, nil, err
	}
	ob, sum := proof.OutboardSum(data)
	if sum != id {
		// Damaged data: answer from it anyway; the slices will not verify.
		return ra, ob, nil
	}
	os.Remove(t.outboardPath(id))
	if err := t.writeOutboard(id, ob); err != nil {
		closeRA()
		return nil, nil, err
	}
	return ra, ob, nil
}

// readAt serves proofs from an object held in memory.
type readAt []byte

func (b readAt) ReadAt(p []byte, off int64) (int, error) {
	if off >= int64(len(b)) {
		return 0, io.EOF
	}
	n := copy(p, b[off:])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

// identity returns the guest identity the host serves.
func (t *tenant) identity() *guest.Identity { return t.ident.Load() }
