package agent

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/embassy-project/embassy/internal/home"
)

// Head returns the sequence number and envelope address of the newest
// snapshot of dataset that this HOME wrote, from its cache; zero when the
// cache has none. The guest's own check uses it to notice hosts that all
// withhold the newest snapshot, which no host-side comparison can show.
func Head(h *home.Home, dataset string) (uint64, [32]byte, error) {
	var seq uint64
	var hash [32]byte
	path := h.CachePath(dataset)
	if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
		return 0, hash, nil
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, Timeout: 5 * time.Second})
	if err != nil {
		return 0, hash, fmt.Errorf("read cache of %s: %w", dataset, err)
	}
	defer db.Close()
	err = db.View(func(tx *bolt.Tx) error {
		m := tx.Bucket(bMeta)
		if m == nil {
			return nil
		}
		if v := m.Get([]byte("head")); len(v) == 40 {
			seq = binary.BigEndian.Uint64(v)
			copy(hash[:], v[8:])
		}
		return nil
	})
	return seq, hash, err
}
