package agent

import (
	"runtime"
	"testing"
)

// TestBufClass: every size up to 8 MiB gets a class at least as large and
// at most 25 % (or 256 bytes) larger; classes grow with the size and a
// class's own size maps back to it; larger sizes are not pooled.
func TestBufClass(t *testing.T) {
	prevIdx, prevSize := -1, 0
	check := func(n int) {
		idx, size, ok := bufClass(n)
		if !ok {
			t.Fatalf("%d bytes: not pooled", n)
		}
		if size < n || (n > 256 && size > n+n/4) || idx < prevIdx || (idx == prevIdx && size != prevSize) || (idx > prevIdx && size <= prevSize) {
			t.Fatalf("%d bytes: class %d of %d bytes (previous %d of %d)", n, idx, size, prevIdx, prevSize)
		}
		if i2, s2, _ := bufClass(size); i2 != idx || s2 != size {
			t.Fatalf("class %d's size %d maps to class %d of %d", idx, size, i2, s2)
		}
		prevIdx, prevSize = idx, size
	}
	for n := 1; n <= 1<<16; n++ {
		check(n)
	}
	for n := 1 << 16; n <= 1<<23; n += 997 {
		check(n)
	}
	check(1 << 23)
	if prevIdx != poolClasses-1 {
		t.Fatalf("largest class %d, want %d", prevIdx, poolClasses-1)
	}
	if _, _, ok := bufClass(1<<23 + 1); ok {
		t.Fatal("a buffer over 8 MiB is pooled")
	}
}

// TestBufPool: get returns the length asked for, put and get again reuse
// the buffer of that class, and buffers that are not the pool's are not
// kept.
func TestBufPool(t *testing.T) {
	var p bufPool
	b := p.get(1000)
	if len(*b) != 1000 || cap(*b) != 1024 {
		t.Fatalf("get(1000): len %d cap %d", len(*b), cap(*b))
	}
	(*b)[0] = 42
	p.put(b)
	c := p.get(900) // same class (896 < 900 ≤ 1024)
	if len(*c) != 900 || cap(*c) != 1024 {
		t.Fatalf("get(900): len %d cap %d", len(*c), cap(*c))
	}
	big := p.get(1<<23 + 5)
	if len(*big) != 1<<23+5 {
		t.Fatalf("get(8 MiB + 5): len %d", len(*big))
	}
	p.put(big)
	odd := make([]byte, 1000) // cap 1000 is no class size
	p.put(&odd)
	p.put(nil)
	if d := p.get(1000); cap(*d) != 1024 {
		t.Fatalf("an odd-sized buffer came back from the pool: cap %d", cap(*d))
	}
}

// TestBufPoolKept: buffers of keptMin bytes or more outlive a collection
// (a sync.Pool's would not), a request takes a free buffer of its class or
// of the next three (at most twice its size) and never a larger one, the
// free lists never hold more than keep bytes, and with keep 0 nothing is
// kept.
func TestBufPoolKept(t *testing.T) {
	p := bufPool{keep: 4 << 20}
	a := p.get(1 << 20)
	addr := &(*a)[0]
	p.put(a)
	runtime.GC()
	runtime.GC()
	if b := p.get(1 << 20); &(*b)[0] != addr {
		t.Fatal("a 1 MiB buffer put back did not survive two collections")
	} else {
		p.put(b)
	}
	// 700 KiB is in the 768 KiB class, two below 1 MiB's: the free 1 MiB
	// buffer will do.
	if b := p.get(700 << 10); len(*b) != 700<<10 || &(*b)[0] != addr {
		t.Fatalf("get(700 KiB) did not take the free 1 MiB buffer: len %d cap %d", len(*b), cap(*b))
	} else {
		p.put(b)
	}
	// 400 KiB is in the 448 KiB class, five below 1 MiB's: a buffer of its
	// own.
	if b := p.get(400 << 10); cap(*b) >= 1<<20 {
		t.Fatalf("get(400 KiB) took a buffer of %d bytes", cap(*b))
	}
	if p.kept != 1<<20 {
		t.Fatalf("kept %d bytes, want the one free 1 MiB buffer", p.kept)
	}

	// Put back more than keep: the free lists stop at keep.
	var bufs []*[]byte
	for range 10 {
		bufs = append(bufs, p.get(1<<20))
	}
	for _, b := range bufs {
		p.put(b)
	}
	if p.kept > p.keep || p.kept < p.keep-(1<<20) {
		t.Fatalf("kept %d bytes with keep %d", p.kept, p.keep)
	}
	n := 0
	for _, l := range p.free {
		for _, b := range l {
			n += cap(*b)
		}
	}
	if n != p.kept {
		t.Fatalf("free lists hold %d bytes, kept says %d", n, p.kept)
	}

	var none bufPool
	b := none.get(1 << 20)
	none.put(b)
	if none.kept != 0 {
		t.Fatalf("keep 0 kept %d bytes", none.kept)
	}
}
