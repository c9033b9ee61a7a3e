package restore

import (
	"container/heap"
	"context"
	"sync"

	"github.com/embassy-project/embassy/internal/tree"
)

// QueueSize bounds the file and chunk jobs the walkers have queued for the
// workers: the walk runs at most this far ahead of the writing, whatever
// the size of the tree.
const QueueSize = 8192

// fileJob writes a file, or one chunk of a file of several chunks.
type fileJob struct {
	key  jobKey
	path string
	node *tree.Node
	// For a chunk of a file of several: the file exists already, chunk is
	// the index in node.Content, off where it goes, and part counts the
	// chunks still to write (the one that writes the last applies the
	// metadata).
	part  *partialFile
	chunk int
	off   int64
}

type partialFile struct {
	mu   sync.Mutex
	left int
}

// jobKey orders jobs by where their data lies: the pack, numbered in the
// order the walk first needed it, and the offset in it. A file's or
// chunk's key is that of its (first) blob; an empty file sorts first.
type jobKey struct {
	pack   uint32
	offset uint64
}

func (k jobKey) less(o jobKey) bool {
	return k.pack < o.pack || (k.pack == o.pack && k.offset < o.offset)
}

// jobQueue hands the workers the queued job whose data comes first. The
// backup packed the blobs of several subtrees side by side in the order it
// read them, and walkers going through those subtrees at their own paces (a
// small file costs a restore far more than a chunk of a large one) made
// workers taking files in tree order need packs far apart at once: a 1 GB
// restore fetched its 46 packs 85 times, and 56–59 times through this
// queue. The queue is bounded: a walker waits while it is full.
type jobQueue struct {
	mu       sync.Mutex
	notEmpty sync.Cond
	notFull  sync.Cond
	jobs     jobHeap
	max      int
	closed   bool
	done     bool // ctx ended
}

func newJobQueue(ctx context.Context, max int) (*jobQueue, func() bool) {
	q := &jobQueue{max: max}
	q.notEmpty.L = &q.mu
	q.notFull.L = &q.mu
	stop := context.AfterFunc(ctx, func() {
		q.mu.Lock()
		q.done = true
		q.mu.Unlock()
		q.notEmpty.Broadcast()
		q.notFull.Broadcast()
	})
	return q, stop
}

// push queues js, waiting while the queue is full; false if the context
// ended. The jobs of one call go in together even beyond the bound: all the
// chunks of a file (which its tree node holds in memory anyway) are queued
// at once, so that its later chunks never wait for room behind other
// walkers' small files while the workers move on past their packs.
func (q *jobQueue) push(js ...fileJob) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	for len(q.jobs) >= q.max && !q.done {
		q.notFull.Wait()
	}
	if q.done {
		return false
	}
	for _, j := range js {
		heap.Push(&q.jobs, j)
	}
	if len(js) == 1 {
		q.notEmpty.Signal()
	} else {
		q.notEmpty.Broadcast()
	}
	return true
}

// pop returns the job with the least key, waiting while the queue is empty
// and open; false once it is closed and drained, or the context ended.
func (q *jobQueue) pop() (fileJob, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for len(q.jobs) == 0 && !q.closed && !q.done {
		q.notEmpty.Wait()
	}
	if q.done || len(q.jobs) == 0 {
		return fileJob{}, false
	}
	j := heap.Pop(&q.jobs).(fileJob)
	q.notFull.Signal()
	return j, true
}

// close tells the workers no more jobs come.
func (q *jobQueue) close() {
	q.mu.Lock()
	q.closed = true
	q.mu.Unlock()
	q.notEmpty.Broadcast()
}

type jobHeap []fileJob

func (h jobHeap) Len() int           { return len(h) }
func (h jobHeap) Less(i, j int) bool { return h[i].key.less(h[j].key) }
func (h jobHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *jobHeap) Push(x any)        { *h = append(*h, x.(fileJob)) }
func (h *jobHeap) Pop() any {
	old := *h
	j := old[len(old)-1]
	old[len(old)-1] = fileJob{}
	*h = old[:len(old)-1]
	return j
}
