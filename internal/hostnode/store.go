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
	id       guest.ID
	identity *guest.Identity
	quota    int64
	store    *fs.Store
	obDir    string

	used     atomic.Int64 // bytes stored (objects only)
	reserved atomic.Int64 // bytes of writes in flight
	mu       sync.Mutex   // serialises quota reservations
}

func openTenant(ctx context.Context, dir string, g Guest, id *guest.Identity) (*tenant, error) {
	gid, _ := guest.ParseID(g.ID)
	st, err := fs.Open(filepath.Join(dir, storeDir, g.ID))
	if err != nil {
		return nil, err
	}
	t := &tenant{id: gid, identity: id, quota: g.QuotaBytes, store: st, obDir: filepath.Join(dir, outboardDir, g.ID)}
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

// writeOutboard stores the Bao outboard of a shard (durably, atomically).
func (t *tenant) writeOutboard(id shardstore.ID, data []byte) error {
	p := t.outboardPath(id)
	if _, err := os.Stat(p); err == nil {
		return nil
	}
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		return err
	}
	return atomicfile.Write(p, proof.Outboard(data), 0o400)
}

// openForProof opens a shard and its outboard for a storage proof. A
// missing or wrong-sized outboard (a crash between storing a shard and its
// outboard) is rebuilt from the data and stored.
func (t *tenant) openForProof(ctx context.Context, id shardstore.ID) (io.ReaderAt, []byte, error) {
	f, err := t.store.Open(ctx, shardstore.KindShard, id)
	if err != nil {
		return nil, nil, err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, nil, err
	}
	ob, err := os.ReadFile(t.outboardPath(id))
	if err == nil && len(ob) == proof.OutboardSize(int(fi.Size())) {
		return f, ob, nil
	}
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		f.Close()
		return nil, nil, err
	}
	data, err := io.ReadAll(io.NewSectionReader(f, 0, fi.Size()))
	if err != nil {
		f.Close()
		return nil, nil, err
	}
	if shardstore.Sum(data) != id {
		// Damaged data: answer from it anyway; the slices will not verify.
		return f, proof.Outboard(data), nil
	}
	os.Remove(t.outboardPath(id))
	if err := t.writeOutboard(id, data); err != nil {
		f.Close()
		return nil, nil, err
	}
	return f, proof.Outboard(data), nil
}
