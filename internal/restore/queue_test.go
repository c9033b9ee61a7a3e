package restore

import (
	"context"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"
)

// TestJobQueueOrder: jobs come out least key first, whatever order they
// went in, and close lets the workers drain what is queued.
func TestJobQueueOrder(t *testing.T) {
	q := testQueue(t, 1000)
	rng := rand.New(rand.NewPCG(1, 2))
	var keys []jobKey
	for range 500 {
		k := jobKey{pack: rng.Uint32N(20), offset: rng.Uint64N(1 << 24)}
		keys = append(keys, k)
		if !q.push(fileJob{key: k}) {
			t.Fatal("push refused")
		}
	}
	q.close()
	slices.SortFunc(keys, func(a, b jobKey) int {
		if a.less(b) {
			return -1
		}
		if b.less(a) {
			return 1
		}
		return 0
	})
	wantPops(t, q, keys...)
	if _, ok := q.pop(); ok {
		t.Fatal("pop from a closed, drained queue succeeded")
	}
}

// TestJobQueueBounded: a push waits while the queue is full and goes on
// once a job is taken; a pop waits while it is empty.
func TestJobQueueBounded(t *testing.T) {
	q := testQueue(t, 2)
	q.push(fileJob{key: jobKey{pack: 5}})
	q.push(fileJob{key: jobKey{pack: 3}})
	pushed := make(chan struct{})
	go func() {
		q.push(fileJob{key: jobKey{pack: 1}})
		close(pushed)
	}()
	select {
	case <-pushed:
		t.Fatal("push into a full queue did not wait")
	case <-time.After(50 * time.Millisecond):
	}
	if j, _ := q.pop(); j.key.pack != 3 {
		t.Fatalf("popped pack %d, want 3", j.key.pack)
	}
	<-pushed
	if j, _ := q.pop(); j.key.pack != 1 {
		t.Fatalf("popped pack %d, want 1 (pushed after the wait)", j.key.pack)
	}
	got := make(chan jobKey)
	go func() {
		q.pop() // pack 5
		j, _ := q.pop()
		got <- j.key
	}()
	select {
	case k := <-got:
		t.Fatalf("pop from an empty queue returned %+v", k)
	case <-time.After(50 * time.Millisecond):
	}
	q.push(fileJob{key: jobKey{pack: 9}})
	if k := <-got; k.pack != 9 {
		t.Fatalf("popped pack %d, want 9", k.pack)
	}
}

// TestJobQueueCancel: ending the context releases walkers waiting on a
// full queue and workers waiting on an empty one.
func TestJobQueueCancel(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	full, stop1 := newJobQueue(ctx, 1)
	defer stop1()
	empty, stop2 := newJobQueue(ctx, 1)
	defer stop2()
	full.push(fileJob{})
	var wg sync.WaitGroup
	var pushed, popped bool
	wg.Add(2)
	go func() { defer wg.Done(); pushed = full.push(fileJob{}) }()
	go func() { defer wg.Done(); _, popped = empty.pop() }()
	time.Sleep(20 * time.Millisecond)
	cancel()
	wg.Wait()
	if pushed || popped {
		t.Fatalf("after cancel: push %v, pop %v; want both refused", pushed, popped)
	}
	if _, ok := full.pop(); ok {
		t.Fatal("pop after cancel returned a job")
	}
}

// TestJobQueueBatch: a batch (a file's chunks) goes in whole even beyond
// the bound, and comes out in key order among the rest.
func TestJobQueueBatch(t *testing.T) {
	q := testQueue(t, 2)
	q.push(fileJob{key: jobKey{pack: 7}})
	q.push(fileJob{key: jobKey{pack: 2}, chunk: 0}, fileJob{key: jobKey{pack: 9}, chunk: 1}, fileJob{key: jobKey{pack: 3}, chunk: 2})
	wantPops(t, q, jobKey{pack: 2}, jobKey{pack: 3}, jobKey{pack: 7}, jobKey{pack: 9})
}

// wantPops pops as many jobs as keys and checks their keys in order.
func wantPops(t *testing.T, q *jobQueue, keys ...jobKey) {
	t.Helper()
	for i, want := range keys {
		j, ok := q.pop()
		if !ok || j.key != want {
			t.Fatalf("pop %d: %+v, %v; want %+v", i, j.key, ok, want)
		}
	}
}

// testQueue is a queue whose context never ends.
func testQueue(t *testing.T, max int) *jobQueue {
	q, stop := newJobQueue(context.Background(), max)
	t.Cleanup(func() { stop() })
	return q
}
