package agent

import (
	"math/bits"
	"sync"

	"github.com/embassy-project/embassy/internal/chunk"
)

// bufPool recycles the copies of chunks between the readers and the
// workers. A 1 GB first backup copies about 1 GB into them: allocated
// afresh, each large one costs page faults and zeroing and all of them
// garbage collections, which a lower heap limit makes more frequent.
// Buffers come in size classes four to a doubling, so a buffer is at most
// 25 % larger than asked for (256 bytes for the smallest).
//
// Buffers of keptMin bytes or more are kept in free lists of their own, up
// to keep bytes in all, instead of in a sync.Pool: a collection empties a
// sync.Pool, and the heap limit has the collector run every few hundred
// milliseconds, so a large chunk's copy was allocated afresh about once in
// three (250 MB of a 1 GB first backup's 1.6 GB of allocations).
type bufPool struct {
	classes [poolClasses]sync.Pool

	mu   sync.Mutex
	free [poolClasses][]*[]byte // classes from keptClass on
	kept int                    // bytes in free
	keep int                    // the most bytes free may hold
}

// keptMin is the smallest buffer kept across collections (see bufPool).
const keptMin = 64 << 10

// keptClass is keptMin's class.
var keptClass, _, _ = bufClass(keptMin)

// poolClasses covers 256 bytes to 8 MiB: chunks up to chunk.MaxSize and
// the buffers small files are read into a batch at a time (newBatch), each
// with one byte more than its size. Larger requests are allocated.
const poolClasses = 1 + 4*(23-8)

// The largest class holds the largest chunk (a compile-time check).
const _ = uint(1<<23 - chunk.MaxSize)

// bufClass returns the class of an n-byte buffer and that class's size;
// ok is false if n is too large to pool.
func bufClass(n int) (idx, size int, ok bool) {
	if n <= 256 {
		return 0, 256, true
	}
	e := bits.Len(uint(n - 1)) // 2^(e-1) < n ≤ 2^e, e ≥ 9
	step := 1 << (e - 3)
	q := (n + step - 1) / step // 5…8
	idx = 1 + (e-9)*4 + (q - 5)
	if idx >= poolClasses {
		return 0, 0, false
	}
	return idx, q * step, true
}

// get returns a buffer of length n from the pool or newly allocated. Its
// bytes are not zeroed.
func (p *bufPool) get(n int) *[]byte {
	idx, size, ok := bufClass(n)
	if !ok {
		b := make([]byte, n)
		return &b
	}
	if idx >= keptClass {
		// A free buffer up to three classes larger will do too (less
		// than twice n): chunk sizes spread over several classes.
		p.mu.Lock()
		for c := idx; c <= idx+3 && c < poolClasses; c++ {
			if l := len(p.free[c]); l > 0 {
				b := p.free[c][l-1]
				p.free[c][l-1] = nil
				p.free[c] = p.free[c][:l-1]
				p.kept -= cap(*b)
				p.mu.Unlock()
				*b = (*b)[:n]
				return b
			}
		}
		p.mu.Unlock()
	} else if v := p.classes[idx].Get(); v != nil {
		b := v.(*[]byte)
		*b = (*b)[:n]
		return b
	}
	b := make([]byte, n, size)
	return &b
}

// put gives b back for reuse; the caller no longer touches its bytes.
func (p *bufPool) put(b *[]byte) {
	if b == nil {
		return
	}
	idx, size, ok := bufClass(cap(*b))
	if !ok || size != cap(*b) {
		return // not one of ours
	}
	if idx < keptClass {
		p.classes[idx].Put(b)
		return
	}
	p.mu.Lock()
	if p.kept+size <= p.keep {
		p.free[idx] = append(p.free[idx], b)
		p.kept += size
	}
	p.mu.Unlock()
}
