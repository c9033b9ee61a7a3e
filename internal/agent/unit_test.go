package agent

import (
	"context"
	"errors"
	"testing"
	"time"
)

// unitBackup is the part of a backup that push and send use, with a
// read-ahead budget of max bytes.
func unitBackup(ctx context.Context, max int) (*backup, context.CancelCauseFunc) {
	ctx, cancel := context.WithCancelCause(ctx)
	return &backup{ctx: ctx, cancel: cancel, jobs: make(chan *chunkJob, 4), budget: newBudget(max)}, cancel
}

// TestUnitSendsBeforeWaiting: a reader whose unit holds the whole budget
// sends it before it waits for more, so the workers can release it; every
// job arrives once, in order, and the budget ends empty.
func TestUnitSendsBeforeWaiting(t *testing.T) {
	const files, size = 40, 1000
	b, cancel := unitBackup(context.Background(), 3*size) // room for three jobs of a 40-job unit
	defer cancel(nil)
	pfs := make([]*pendingFile, files)
	got := make(chan []int, 1)
	go func() { // a worker
		var order []int
		for len(order) < files {
			held := 0
			for j := <-b.jobs; j != nil; j = j.next {
				order = append(order, int(j.raw[0]))
				held += cap(j.raw)
				j.wg.Done()
			}
			b.budget.release(held)
		}
		got <- order
	}()
	done := make(chan error, 1)
	go func() { // a reader
		var u unit
		for i := range pfs {
			pfs[i] = &pendingFile{}
			bp := b.cbuf.get(size)
			(*bp)[0] = byte(i)
			if err := b.push(&u, bp, pfs[i]); err != nil {
				done <- err
				return
			}
		}
		done <- b.send(&u)
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the reader waits on a budget its own unsent unit holds")
	}
	order := <-got
	for i, n := range order {
		if n != i {
			t.Fatalf("job %d arrived as %d: %v", i, n, order)
		}
	}
	for i, pf := range pfs {
		pf.wg.Wait()
		if len(pf.jobs) != 1 || pf.jobs[0] != &pf.one {
			t.Fatalf("file %d: %d jobs, first inline %v", i, len(pf.jobs), len(pf.jobs) > 0 && pf.jobs[0] == &pf.one)
		}
	}
	if b.budget.used != 0 {
		t.Fatalf("budget holds %d bytes after every job was released", b.budget.used)
	}
}

// TestUnitSendCancelled: a unit sent after the backup has failed fails
// every job with the cause, and gives its budget and buffers back.
func TestUnitSendCancelled(t *testing.T) {
	b, cancel := unitBackup(context.Background(), 1<<20)
	b.jobs = make(chan *chunkJob) // no worker
	var u unit
	pfs := make([]*pendingFile, 5)
	for i := range pfs {
		pfs[i] = &pendingFile{}
		if err := b.push(&u, b.cbuf.get(100+i), pfs[i]); err != nil {
			t.Fatal(err)
		}
	}
	if b.budget.used == 0 {
		t.Fatal("pushed jobs hold no budget")
	}
	cause := errors.New("a host failed")
	cancel(cause)
	if err := b.send(&u); !errors.Is(err, cause) {
		t.Fatalf("send after the failure: %v, want %v", err, cause)
	}
	for i, pf := range pfs {
		pf.wg.Wait()
		if j := pf.jobs[0]; !errors.Is(j.err, cause) || j.raw != nil || j.buf != nil {
			t.Fatalf("file %d: job err %v, raw %v, buf %v", i, j.err, j.raw != nil, j.buf != nil)
		}
	}
	if b.budget.used != 0 {
		t.Fatalf("budget holds %d bytes after the unit failed", b.budget.used)
	}
	if u.head != nil || u.tail != nil {
		t.Fatal("the unit still holds jobs")
	}
	// A push once the budget is short and the backup has failed gives
	// the buffer back and reports the cause.
	b2, cancel2 := unitBackup(context.Background(), 100)
	defer cancel2(nil)
	var u2 unit
	if err := b2.push(&u2, b2.cbuf.get(100), &pendingFile{}); err != nil {
		t.Fatal(err)
	}
	b2.jobs = make(chan *chunkJob) // no worker: the send waits
	cancel2(cause)
	if err := b2.push(&u2, b2.cbuf.get(100), &pendingFile{}); !errors.Is(err, cause) {
		t.Fatalf("push on a short budget after the failure: %v, want %v", err, cause)
	}
	if b2.budget.used != 0 {
		t.Fatalf("budget holds %d bytes", b2.budget.used)
	}
}
