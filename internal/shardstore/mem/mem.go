// Package mem is an in-memory shardstore.Store for tests: the same contract
// as the fs store (hash check on Put and Get, write-once, idempotent), no
// durability.
package mem

import (
	"bytes"
	"context"
	"fmt"
	"sync"

	"github.com/embassy-project/embassy/internal/shardstore"
)

// Store keeps objects in maps guarded by a mutex.
type Store struct {
	mu      sync.RWMutex
	objects map[shardstore.Kind]map[shardstore.ID][]byte
}

var _ shardstore.Store = (*Store)(nil)

// New returns an empty store.
func New() *Store {
	return &Store{objects: make(map[shardstore.Kind]map[shardstore.ID][]byte)}
}

func check(ctx context.Context, kind shardstore.Kind) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return shardstore.CheckKind(kind)
}

// Put stores a copy of data under id.
func (s *Store) Put(ctx context.Context, kind shardstore.Kind, id shardstore.ID, data []byte) error {
	if err := check(ctx, kind); err != nil {
		return fmt.Errorf("put %s/%s: %w", kind, id, err)
	}
	if shardstore.Sum(data) != id {
		return fmt.Errorf("put %s/%s: %w", kind, id, shardstore.ErrMismatch)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	m := s.objects[kind]
	if m == nil {
		m = make(map[shardstore.ID][]byte)
		s.objects[kind] = m
	}
	if _, ok := m[id]; !ok {
		m[id] = bytes.Clone(data)
	}
	return nil
}

// Get returns a copy of the object.
func (s *Store) Get(ctx context.Context, kind shardstore.Kind, id shardstore.ID) ([]byte, error) {
	if err := check(ctx, kind); err != nil {
		return nil, fmt.Errorf("get %s/%s: %w", kind, id, err)
	}
	s.mu.RLock()
	data, ok := s.objects[kind][id]
	s.mu.RUnlock()
	if !ok {
		return nil, fmt.Errorf("get %s/%s: %w", kind, id, shardstore.ErrNotFound)
	}
	if shardstore.Sum(data) != id {
		return nil, fmt.Errorf("get %s/%s: %w", kind, id, shardstore.ErrMismatch)
	}
	return bytes.Clone(data), nil
}

// Stat returns the object's size.
func (s *Store) Stat(ctx context.Context, kind shardstore.Kind, id shardstore.ID) (int64, error) {
	if err := check(ctx, kind); err != nil {
		return 0, fmt.Errorf("stat %s/%s: %w", kind, id, err)
	}
	s.mu.RLock()
	data, ok := s.objects[kind][id]
	s.mu.RUnlock()
	if !ok {
		return 0, fmt.Errorf("stat %s/%s: %w", kind, id, shardstore.ErrNotFound)
	}
	return int64(len(data)), nil
}

// List calls fn for every object of kind, on a snapshot taken at the start so
// that fn may call back into the store.
func (s *Store) List(ctx context.Context, kind shardstore.Kind, fn func(shardstore.ID, int64) error) error {
	if err := check(ctx, kind); err != nil {
		return fmt.Errorf("list %s: %w", kind, err)
	}
	type entry struct {
		id   shardstore.ID
		size int64
	}
	s.mu.RLock()
	entries := make([]entry, 0, len(s.objects[kind]))
	for id, data := range s.objects[kind] {
		entries = append(entries, entry{id, int64(len(data))})
	}
	s.mu.RUnlock()
	for _, e := range entries {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("list %s: %w", kind, err)
		}
		if err := fn(e.id, e.size); err != nil {
			return err
		}
	}
	return nil
}
