// Package storetest is the conformance suite every shardstore.Store
// implementation runs (after restic's backend tests): one call to Run from the
// implementation's own tests.
package storetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"

	"github.com/embassy-project/embassy/internal/shardstore"
	"github.com/embassy-project/embassy/internal/wire"
)

// Run runs the conformance suite. newStore must return an empty store; it is
// called once per subtest.
func Run(t *testing.T, newStore func(t *testing.T) shardstore.Store) {
	t.Helper()
	for _, tc := range []struct {
		name string
		fn   func(t *testing.T, s shardstore.Store)
	}{
		{"PutGetStat", testPutGetStat},
		{"KindsIsolated", testKindsIsolated},
		{"MismatchRefused", testMismatchRefused},
		{"IdempotentPut", testIdempotentPut},
		{"EmptyObject", testEmptyObject},
		{"LargeObject", testLargeObject},
		{"ConcurrentSamePut", testConcurrentSamePut},
		{"ConcurrentDistinctPuts", testConcurrentDistinctPuts},
		{"NotFound", testNotFound},
		{"ContextCancelled", testContextCancelled},
		{"ListMany", testListMany},
		{"ListStops", testListStops},
		{"InvalidKind", testInvalidKind},
		{"NoAliasing", testNoAliasing},
		{"PutSum", testPutSum},
	} {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, newStore(t)) })
	}
}

// Object returns deterministic pseudo-random bytes of the given size and their ID.
func Object(seed uint64, size int) ([]byte, shardstore.ID) {
	b := make([]byte, size)
	rand.NewChaCha8([32]byte{0: byte(seed), 1: byte(seed >> 8), 2: byte(seed >> 16), 7: 0xe5}).Read(b)
	return b, shardstore.Sum(b)
}

func put(t *testing.T, s shardstore.Store, kind shardstore.Kind, data []byte) shardstore.ID {
	t.Helper()
	id := shardstore.Sum(data)
	if err := s.Put(context.Background(), kind, id, data); err != nil {
		t.Fatalf("Put(%s, %s): %v", kind, id, err)
	}
	return id
}

func mustGet(t *testing.T, s shardstore.Store, kind shardstore.Kind, id shardstore.ID, want []byte) {
	t.Helper()
	got, err := s.Get(context.Background(), kind, id)
	if err != nil {
		t.Fatalf("Get(%s, %s): %v", kind, id, err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("Get(%s, %s): %d bytes, want %d equal bytes", kind, id, len(got), len(want))
	}
	size, err := s.Stat(context.Background(), kind, id)
	if err != nil || size != int64(len(want)) {
		t.Fatalf("Stat(%s, %s) = %d, %v; want %d", kind, id, size, err, len(want))
	}
}

// listAll returns the IDs and sizes List reports, failing on duplicates.
func listAll(t *testing.T, s shardstore.Store, kind shardstore.Kind) map[shardstore.ID]int64 {
	t.Helper()
	m := make(map[shardstore.ID]int64)
	err := s.List(context.Background(), kind, func(id shardstore.ID, size int64) error {
		if _, dup := m[id]; dup {
			return fmt.Errorf("List reported %s twice", id)
		}
		m[id] = size
		return nil
	})
	if err != nil {
		t.Fatalf("List(%s): %v", kind, err)
	}
	return m
}

func wantNotFound(t *testing.T, s shardstore.Store, kind shardstore.Kind, id shardstore.ID) {
	t.Helper()
	if _, err := s.Get(context.Background(), kind, id); !errors.Is(err, shardstore.ErrNotFound) {
		t.Fatalf("Get(%s, %s) = %v, want ErrNotFound", kind, id, err)
	}
	if _, err := s.Stat(context.Background(), kind, id); !errors.Is(err, shardstore.ErrNotFound) {
		t.Fatalf("Stat(%s, %s) = %v, want ErrNotFound", kind, id, err)
	}
}

func testPutGetStat(t *testing.T, s shardstore.Store) {
	for _, kind := range shardstore.Kinds() {
		want := make(map[shardstore.ID]int64)
		for i, size := range []int{1, 100, 4096, 65537} {
			data, _ := Object(uint64(i), size)
			id := put(t, s, kind, data)
			mustGet(t, s, kind, id, data)
			want[id] = int64(size)
		}
		got := listAll(t, s, kind)
		if len(got) != len(want) {
			t.Fatalf("List(%s) gave %d objects, want %d", kind, len(got), len(want))
		}
		for id, size := range want {
			if got[id] != size {
				t.Fatalf("List(%s): %s has size %d, want %d", kind, id, got[id], size)
			}
		}
	}
}

func testKindsIsolated(t *testing.T, s shardstore.Store) {
	data, id := Object(1, 1000)
	put(t, s, shardstore.KindShard, data)
	wantNotFound(t, s, shardstore.KindEnvelope, id)
	if n := len(listAll(t, s, shardstore.KindEnvelope)); n != 0 {
		t.Fatalf("List(envelopes) gave %d objects after a shard Put", n)
	}
	put(t, s, shardstore.KindEnvelope, data)
	mustGet(t, s, shardstore.KindEnvelope, id, data)
	mustGet(t, s, shardstore.KindShard, id, data)
}

func testMismatchRefused(t *testing.T, s shardstore.Store) {
	data, _ := Object(2, 5000)
	_, wrong := Object(3, 5000)
	for _, kind := range shardstore.Kinds() {
		err := s.Put(context.Background(), kind, wrong, data)
		if !errors.Is(err, shardstore.ErrMismatch) || !errors.Is(err, wire.ErrCorrupt) {
			t.Fatalf("Put with the wrong id = %v, want ErrMismatch wrapping wire.ErrCorrupt", err)
		}
		wantNotFound(t, s, kind, wrong)
		wantNotFound(t, s, kind, shardstore.Sum(data))
		if n := len(listAll(t, s, kind)); n != 0 {
			t.Fatalf("List(%s) gave %d objects after a refused Put", kind, n)
		}
	}
}

func testIdempotentPut(t *testing.T, s shardstore.Store) {
	data, id := Object(4, 3000)
	for range 3 {
		put(t, s, shardstore.KindShard, data)
	}
	mustGet(t, s, shardstore.KindShard, id, data)
	if got := listAll(t, s, shardstore.KindShard); len(got) != 1 || got[id] != 3000 {
		t.Fatalf("List after repeated Puts = %v", got)
	}
}

func testEmptyObject(t *testing.T, s shardstore.Store) {
	id := put(t, s, shardstore.KindEnvelope, nil)
	if id != shardstore.Sum([]byte{}) {
		t.Fatal("Sum(nil) != Sum([]byte{})")
	}
	mustGet(t, s, shardstore.KindEnvelope, id, nil)
	put(t, s, shardstore.KindEnvelope, []byte{})
	if got := listAll(t, s, shardstore.KindEnvelope); len(got) != 1 || got[id] != 0 {
		t.Fatalf("List after empty Put = %v", got)
	}
}

func testLargeObject(t *testing.T, s shardstore.Store) {
	data, id := Object(5, 32<<20)
	put(t, s, shardstore.KindShard, data)
	mustGet(t, s, shardstore.KindShard, id, data)
}

func testConcurrentSamePut(t *testing.T, s shardstore.Store) {
	data, id := Object(6, 256<<10)
	const n = 32
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for range n {
		wg.Go(func() { errs <- s.Put(context.Background(), shardstore.KindShard, id, data) })
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("concurrent Put: %v", err)
		}
	}
	mustGet(t, s, shardstore.KindShard, id, data)
	if got := listAll(t, s, shardstore.KindShard); len(got) != 1 {
		t.Fatalf("List after concurrent Puts of one id gave %d objects", len(got))
	}
}

func testConcurrentDistinctPuts(t *testing.T, s shardstore.Store) {
	const n = 64
	var wg sync.WaitGroup
	errs := make(chan error, n)
	objs := make([][]byte, n)
	for i := range n {
		objs[i], _ = Object(uint64(1000+i), 1000+i)
		wg.Go(func() {
			errs <- s.Put(context.Background(), shardstore.KindShard, shardstore.Sum(objs[i]), objs[i])
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("concurrent Put: %v", err)
		}
	}
	for _, o := range objs {
		mustGet(t, s, shardstore.KindShard, shardstore.Sum(o), o)
	}
	if got := listAll(t, s, shardstore.KindShard); len(got) != n {
		t.Fatalf("List gave %d objects, want %d", len(got), n)
	}
}

func testNotFound(t *testing.T, s shardstore.Store) {
	_, id := Object(7, 10)
	for _, kind := range shardstore.Kinds() {
		wantNotFound(t, s, kind, id)
		wantNotFound(t, s, kind, shardstore.ID{})
	}
}

func testContextCancelled(t *testing.T, s shardstore.Store) {
	data, id := Object(8, 2000)
	other, otherID := Object(9, 2000)
	put(t, s, shardstore.KindShard, other)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := s.Put(ctx, shardstore.KindShard, id, data); !errors.Is(err, context.Canceled) {
		t.Fatalf("Put with a cancelled context = %v", err)
	}
	wantNotFound(t, s, shardstore.KindShard, id)
	if _, err := s.Get(ctx, shardstore.KindShard, otherID); !errors.Is(err, context.Canceled) {
		t.Fatalf("Get with a cancelled context = %v", err)
	}
	if _, err := s.Stat(ctx, shardstore.KindShard, otherID); !errors.Is(err, context.Canceled) {
		t.Fatalf("Stat with a cancelled context = %v", err)
	}
	called := false
	err := s.List(ctx, shardstore.KindShard, func(shardstore.ID, int64) error { called = true; return nil })
	if !errors.Is(err, context.Canceled) || called {
		t.Fatalf("List with a cancelled context = %v (fn called: %v)", err, called)
	}

	// Cancelling during List stops the walk.
	for i := range 10 {
		o, _ := Object(uint64(100+i), 10)
		put(t, s, shardstore.KindShard, o)
	}
	ctx, cancel = context.WithCancel(context.Background())
	defer cancel()
	calls := 0
	err = s.List(ctx, shardstore.KindShard, func(shardstore.ID, int64) error { calls++; cancel(); return nil })
	if !errors.Is(err, context.Canceled) || calls != 1 {
		t.Fatalf("List cancelled in fn = %v after %d calls, want context.Canceled after 1", err, calls)
	}
}

func testListMany(t *testing.T, s shardstore.Store) {
	const n = 600 // more than the fs store's 256 fan-out directories
	want := make(map[shardstore.ID]int64)
	for i := range n {
		o, _ := Object(uint64(i), i%50)
		kind := shardstore.KindShard
		if i%5 == 0 {
			kind = shardstore.KindEnvelope
		}
		id := put(t, s, kind, o)
		if kind == shardstore.KindShard {
			want[id] = int64(len(o))
		}
	}
	got := listAll(t, s, shardstore.KindShard)
	if len(got) != len(want) {
		t.Fatalf("List gave %d shards, want %d", len(got), len(want))
	}
	for id, size := range want {
		if s, ok := got[id]; !ok || s != size {
			t.Fatalf("List: %s size %d (present %v), want %d", id, s, ok, size)
		}
	}
}

func testListStops(t *testing.T, s shardstore.Store) {
	for i := range 20 {
		o, _ := Object(uint64(200+i), 10)
		put(t, s, shardstore.KindEnvelope, o)
	}
	stop := errors.New("stop")
	calls := 0
	err := s.List(context.Background(), shardstore.KindEnvelope, func(shardstore.ID, int64) error {
		calls++
		if calls == 3 {
			return stop
		}
		return nil
	})
	if !errors.Is(err, stop) || calls != 3 {
		t.Fatalf("List = %v after %d calls, want the fn error after 3", err, calls)
	}
}

func testInvalidKind(t *testing.T, s shardstore.Store) {
	data, id := Object(10, 100)
	for _, kind := range []shardstore.Kind{"", "tmp", "shard", "../shards", "shards/..", "/etc"} {
		if err := s.Put(context.Background(), kind, id, data); !errors.Is(err, shardstore.ErrInvalidKind) {
			t.Errorf("Put(kind %q) = %v, want ErrInvalidKind", kind, err)
		}
		if _, err := s.Get(context.Background(), kind, id); !errors.Is(err, shardstore.ErrInvalidKind) {
			t.Errorf("Get(kind %q) = %v, want ErrInvalidKind", kind, err)
		}
		if _, err := s.Stat(context.Background(), kind, id); !errors.Is(err, shardstore.ErrInvalidKind) {
			t.Errorf("Stat(kind %q) = %v, want ErrInvalidKind", kind, err)
		}
		err := s.List(context.Background(), kind, func(shardstore.ID, int64) error { return nil })
		if !errors.Is(err, shardstore.ErrInvalidKind) {
			t.Errorf("List(kind %q) = %v, want ErrInvalidKind", kind, err)
		}
	}
	for _, kind := range shardstore.Kinds() {
		wantNotFound(t, s, kind, id)
	}
}

func testNoAliasing(t *testing.T, s shardstore.Store) {
	data, id := Object(11, 1000)
	orig := bytes.Clone(data)
	put(t, s, shardstore.KindShard, data)
	data[0] ^= 0xff // the caller reuses its buffer
	got, err := s.Get(context.Background(), shardstore.KindShard, id)
	if err != nil || !bytes.Equal(got, orig) {
		t.Fatalf("Get after the caller changed its buffer: %v", err)
	}
	got[1] ^= 0xff // the caller changes what Get returned
	mustGet(t, s, shardstore.KindShard, id, orig)
}

// testPutSum: storing by content (the store's own PutSum where it has one)
// returns the address Sum gives, stores the bytes under it, is idempotent,
// and refuses an invalid kind and a cancelled context.
func testPutSum(t *testing.T, s shardstore.Store) {
	ctx := context.Background()
	data, want := Object(21, 70000)
	for range 2 {
		id, err := shardstore.PutSum(ctx, s, shardstore.KindShard, data)
		if err != nil {
			t.Fatal(err)
		}
		if id != want {
			t.Fatalf("PutSum returned %s; the bytes' address is %s", id, want)
		}
	}
	mustGet(t, s, shardstore.KindShard, want, data)
	if got := listAll(t, s, shardstore.KindShard); len(got) != 1 || got[want] != int64(len(data)) {
		t.Fatalf("List after PutSum twice = %v", got)
	}
	if _, err := shardstore.PutSum(ctx, s, shardstore.Kind("../x"), data); !errors.Is(err, shardstore.ErrInvalidKind) {
		t.Fatalf("PutSum of an invalid kind: %v; want ErrInvalidKind", err)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	other, oid := Object(22, 100)
	if _, err := shardstore.PutSum(cctx, s, shardstore.KindShard, other); err == nil {
		t.Fatal("PutSum with a cancelled context succeeded")
	}
	wantNotFound(t, s, shardstore.KindShard, oid)
}
