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

// TestBatchBuffer: a batch's small files are read into slices of one
// buffer whose budget is taken once; it goes back, with the budget, only
// when the reader and every chunk in it are done with it, in either order,
// and also when the unit is failed by send. newBatch on a failed backup
// takes nothing.
func TestBatchBuffer(t *testing.T) {
	batch := []readJob{{size: 10}, {size: 0}, {size: 300}, {size: 1}}
	fill := func(b *backup, bb *batchBuf, u *unit) []*pendingFile {
		var pfs []*pendingFile
		for i, j := range batch {
			if j.size == 0 {
				continue // an empty file makes no chunk
			}
			end := bb.off + int(j.size) + 1
			raw := (*bb.bp)[bb.off:end:end][:j.size:j.size]
			raw[0] = byte(i)
			bb.off += int(j.size)
			pf := &pendingFile{}
			pfs = append(pfs, pf)
			b.pushBatched(u, raw, bb, pf)
		}
		return pfs
	}

	b, cancel := unitBackup(context.Background(), 1<<20)
	defer cancel(nil)
	bb := b.newBatch(batch)
	held := b.budget.used
	if held < 10+1+1+300+1+1+1 || held != cap(*bb.bp) {
		t.Fatalf("the batch holds %d bytes of budget for a buffer of %d", held, cap(*bb.bp))
	}
	var u unit
	pfs := fill(b, bb, &u)
	if err := b.send(&u); err != nil {
		t.Fatal(err)
	}
	// The reader is done first: the chunks still hold the buffer.
	b.releaseBatch(bb)
	if b.budget.used != held || bb.refs.Load() != int32(len(pfs)) {
		t.Fatalf("after the reader: budget %d of %d, %d references", b.budget.used, held, bb.refs.Load())
	}
	var order []byte
	for j := <-b.jobs; j != nil; {
		next := j.next
		order = append(order, j.raw[0])
		if n := b.release(j.raw, j.buf, j.batch); n != 0 {
			t.Fatalf("a batch's chunk returned %d bytes of budget of its own", n)
		}
		j.wg.Done()
		j = next
	}
	if string(order) != "\x00\x02\x03" {
		t.Fatalf("chunks arrived as %v", order)
	}
	if b.budget.used != 0 || bb.refs.Load() != 0 {
		t.Fatalf("after the last chunk: budget %d, %d references", b.budget.used, bb.refs.Load())
	}
	for _, pf := range pfs {
		pf.wg.Wait()
	}

	// A failed unit gives its references back; the reader's is the last.
	b2, cancel2 := unitBackup(context.Background(), 1<<20)
	b2.jobs = make(chan *chunkJob) // no worker
	bb2 := b2.newBatch(batch)
	var u2 unit
	pfs2 := fill(b2, bb2, &u2)
	cause := errors.New("a host failed")
	cancel2(cause)
	if err := b2.send(&u2); !errors.Is(err, cause) {
		t.Fatalf("send after the failure: %v, want %v", err, cause)
	}
	for i, pf := range pfs2 {
		pf.wg.Wait()
		if j := pf.jobs[0]; !errors.Is(j.err, cause) || j.raw != nil || j.batch != nil {
			t.Fatalf("file %d: job err %v, raw %v, batch %v", i, j.err, j.raw != nil, j.batch != nil)
		}
	}
	if b2.budget.used == 0 {
		t.Fatal("the batch was given back while its reader held it")
	}
	b2.releaseBatch(bb2)
	if b2.budget.used != 0 {
		t.Fatalf("budget holds %d bytes after the failed batch", b2.budget.used)
	}
	if b2.newBatch(batch) != nil || b2.budget.used != 0 {
		t.Fatalf("newBatch after the failure: budget %d", b2.budget.used)
	}
}
