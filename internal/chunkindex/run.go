package chunkindex

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"slices"
	"sync"
)

// Sizes of the format.
const (
	RecordSize   = 64
	BlockRecords = 64
	BlockSize    = BlockRecords * RecordSize
	FenceSize    = 12
	TrailerSize  = 24

	magic = "EMBCIDX1"
	// MaxCount is the most records one run may hold (2⁴⁰, 64 TiB of
	// records): a bound that keeps every size computation in range.
	MaxCount = 1 << 40
)

// ErrCorrupt marks bytes of a run found wrong (as opposed to I/O errors).
var ErrCorrupt = errors.New("chunk index run corrupt")

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Entry is where one chunk lies: the frame holding it in a pack's plaintext.
type Entry struct {
	ID        [32]byte
	Pack      [16]byte
	Offset    uint64
	Length    uint32 // stored length of the frame
	RawLength uint32 // raw length of the chunk
}

func putRecord(b []byte, e *Entry) {
	copy(b[0:32], e.ID[:])
	copy(b[32:48], e.Pack[:])
	binary.BigEndian.PutUint64(b[48:56], e.Offset)
	binary.BigEndian.PutUint32(b[56:60], e.Length)
	binary.BigEndian.PutUint32(b[60:64], e.RawLength)
}

func getRecord(b []byte, e *Entry) {
	copy(e.ID[:], b[0:32])
	copy(e.Pack[:], b[32:48])
	e.Offset = binary.BigEndian.Uint64(b[48:56])
	e.Length = binary.BigEndian.Uint32(b[56:60])
	e.RawLength = binary.BigEndian.Uint32(b[60:64])
}

// Size is the length of a run of count records.
func Size(count int64) int64 {
	return count*RecordSize + blocks(count)*FenceSize + TrailerSize
}

func blocks(count int64) int64 { return (count + BlockRecords - 1) / BlockRecords }

// Writer writes one run. Entries must be added in strictly increasing ID
// order; Close writes the fences and trailer. The caller syncs the file.
type Writer struct {
	w      *bufio.Writer
	rec    [RecordSize]byte
	count  int64
	inBlk  int
	crc    uint32
	last   [32]byte
	fences []byte
	err    error
}

// NewWriter returns a Writer writing a run to w.
func NewWriter(w io.Writer) *Writer {
	return &Writer{w: bufio.NewWriterSize(w, 256<<10)}
}

// Add appends e, which must sort after every entry added before.
func (w *Writer) Add(e *Entry) error {
	if w.err != nil {
		return w.err
	}
	if w.count > 0 && bytes.Compare(e.ID[:], w.last[:]) <= 0 {
		w.err = fmt.Errorf("chunk index: entry %x added after %x (entries must be in increasing order)", e.ID[:8], w.last[:8])
		return w.err
	}
	if w.count >= MaxCount {
		w.err = fmt.Errorf("chunk index: more than %d entries in one run", int64(MaxCount))
		return w.err
	}
	putRecord(w.rec[:], e)
	if w.inBlk == 0 {
		w.fences = append(w.fences, e.ID[:8]...)
		w.crc = 0
	}
	w.crc = crc32.Update(w.crc, castagnoli, w.rec[:])
	if _, err := w.w.Write(w.rec[:]); err != nil {
		w.err = err
		return err
	}
	w.last = e.ID
	w.count++
	w.inBlk++
	if w.inBlk == BlockRecords {
		w.closeBlock()
	}
	return nil
}

func (w *Writer) closeBlock() {
	w.fences = binary.BigEndian.AppendUint32(w.fences, w.crc)
	w.inBlk = 0
}

// Count is how many entries were added.
func (w *Writer) Count() int64 { return w.count }

// Close writes the fences and trailer and flushes. A run holds at least
// one entry.
func (w *Writer) Close() error {
	if w.err != nil {
		return w.err
	}
	if w.count == 0 {
		return errors.New("chunk index: a run holds at least one entry")
	}
	if w.inBlk > 0 {
		w.closeBlock()
	}
	w.fences = appendTrailer(w.fences, w.count)
	if _, err := w.w.Write(w.fences); err != nil {
		return err
	}
	w.err = errors.New("chunk index: writer closed")
	return w.w.Flush()
}

// appendTrailer appends the trailer of a run of count records to fences
// (the whole fence table).
func appendTrailer(fences []byte, count int64) []byte {
	n := len(fences)
	fences = binary.BigEndian.AppendUint64(fences, uint64(count))
	crc := crc32.Checksum(fences[:n+8], castagnoli)
	fences = binary.BigEndian.AppendUint32(fences, crc)
	fences = append(fences, 0, 0, 0, 0)
	return append(fences, magic...)
}

// Run is an open run: its fences in memory, records read on demand.
// Safe for concurrent use if its ReaderAt is.
type Run struct {
	r      io.ReaderAt
	count  int64
	fences []fence
}

type fence struct {
	prefix uint64
	crc    uint32
}

// Open reads the trailer and fences of the run of size bytes in r.
func Open(r io.ReaderAt, size int64) (*Run, error) {
	if size < TrailerSize {
		return nil, fmt.Errorf("%w: %d bytes, shorter than a trailer", ErrCorrupt, size)
	}
	var t [TrailerSize]byte
	if _, err := r.ReadAt(t[:], size-TrailerSize); err != nil {
		return nil, fmt.Errorf("read chunk index trailer: %w", err)
	}
	if string(t[16:]) != magic {
		return nil, fmt.Errorf("%w: no %s trailer", ErrCorrupt, magic)
	}
	if t[12]|t[13]|t[14]|t[15] != 0 {
		return nil, fmt.Errorf("%w: reserved trailer bytes not zero", ErrCorrupt)
	}
	count64 := binary.BigEndian.Uint64(t[0:8])
	if count64 == 0 || count64 > MaxCount {
		return nil, fmt.Errorf("%w: count %d out of range", ErrCorrupt, count64)
	}
	count := int64(count64)
	if Size(count) != size {
		return nil, fmt.Errorf("%w: %d bytes for %d records, want %d", ErrCorrupt, size, count, Size(count))
	}
	nb := blocks(count)
	ft := make([]byte, nb*FenceSize+8)
	if _, err := r.ReadAt(ft[:nb*FenceSize], count*RecordSize); err != nil {
		return nil, fmt.Errorf("read chunk index fences: %w", err)
	}
	copy(ft[nb*FenceSize:], t[0:8])
	if crc32.Checksum(ft, castagnoli) != binary.BigEndian.Uint32(t[8:12]) {
		return nil, fmt.Errorf("%w: fence checksum mismatch", ErrCorrupt)
	}
	run := &Run{r: r, count: count, fences: make([]fence, nb)}
	for i := range run.fences {
		f := ft[i*FenceSize:]
		run.fences[i] = fence{binary.BigEndian.Uint64(f), binary.BigEndian.Uint32(f[8:])}
		if i > 0 && run.fences[i].prefix < run.fences[i-1].prefix {
			return nil, fmt.Errorf("%w: fence %d out of order", ErrCorrupt, i)
		}
	}
	return run, nil
}

// Len is how many entries the run holds.
func (r *Run) Len() int64 { return r.count }

// blockLen is how many records block b holds.
func (r *Run) blockLen(b int) int {
	return int(min(BlockRecords, r.count-int64(b)*BlockRecords))
}

// readBlock reads block b into buf and checks it against its fence.
func (r *Run) readBlock(b int, buf []byte) ([]byte, error) {
	buf = buf[:r.blockLen(b)*RecordSize]
	if _, err := r.r.ReadAt(buf, int64(b)*BlockSize); err != nil {
		return nil, fmt.Errorf("read chunk index block %d: %w", b, err)
	}
	return buf, r.checkBlock(b, buf)
}

func (r *Run) checkBlock(b int, buf []byte) error {
	f := r.fences[b]
	if crc32.Checksum(buf, castagnoli) != f.crc {
		return fmt.Errorf("%w: block %d checksum mismatch", ErrCorrupt, b)
	}
	if binary.BigEndian.Uint64(buf) != f.prefix {
		return fmt.Errorf("%w: block %d does not start at its fence", ErrCorrupt, b)
	}
	return nil
}

// Lookup finds id. Blocks it reads are checked; a block found wrong
// returns an error wrapping ErrCorrupt.
func (r *Run) Lookup(id *[32]byte, e *Entry) (bool, error) {
	p := binary.BigEndian.Uint64(id[:8])
	// Blocks [lo, hi) may hold id: those starting with its prefix, and the
	// one before them.
	lo, _ := slices.BinarySearchFunc(r.fences, p, func(f fence, p uint64) int {
		if f.prefix < p {
			return -1
		}
		return 1
	})
	hi := lo
	for hi < len(r.fences) && r.fences[hi].prefix == p {
		hi++
	}
	lo = max(lo-1, 0)
	buf := blockPool.Get().(*[BlockSize]byte)
	defer blockPool.Put(buf)
	for b := lo; b < hi; b++ {
		blk, err := r.readBlock(b, buf[:])
		if err != nil {
			return false, err
		}
		n := len(blk) / RecordSize
		i := searchBlock(blk, id[:])
		if i < n && bytes.Equal(blk[i*RecordSize:i*RecordSize+32], id[:]) {
			getRecord(blk[i*RecordSize:], e)
			return true, nil
		}
	}
	return false, nil
}

var blockPool = sync.Pool{New: func() any { return new([BlockSize]byte) }}

// searchBlock returns the index of the first record in blk whose ID is not
// less than id.
func searchBlock(blk, id []byte) int {
	lo, hi := 0, len(blk)/RecordSize
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if bytes.Compare(blk[m*RecordSize:m*RecordSize+32], id) < 0 {
			lo = m + 1
		} else {
			hi = m
		}
	}
	return lo
}

// Iter returns an iterator over the run's entries in order, checking every
// block and the order of every record as it reads.
func (r *Run) Iter() *Iter {
	return &Iter{run: r, rd: bufio.NewReaderSize(io.NewSectionReader(r.r, 0, r.count*RecordSize), 256<<10)}
}

// Iter reads a run sequentially.
type Iter struct {
	run  *Run
	rd   *bufio.Reader
	buf  [BlockSize]byte
	blk  []byte
	b    int // next block to read
	i    int // next record in blk
	last [32]byte
	n    int64
	err  error
}

// Next returns the next entry, or false at the end or on an error (Err).
func (it *Iter) Next(e *Entry) bool {
	if it.err != nil {
		return false
	}
	if it.i*RecordSize >= len(it.blk) {
		if it.b >= len(it.run.fences) {
			return false
		}
		blk := it.buf[:it.run.blockLen(it.b)*RecordSize]
		if _, err := io.ReadFull(it.rd, blk); err != nil {
			it.err = fmt.Errorf("read chunk index block %d: %w", it.b, err)
			return false
		}
		if err := it.run.checkBlock(it.b, blk); err != nil {
			it.err = err
			return false
		}
		it.blk, it.i = blk, 0
		it.b++
	}
	rec := it.blk[it.i*RecordSize : (it.i+1)*RecordSize]
	if it.n > 0 && bytes.Compare(rec[:32], it.last[:]) <= 0 {
		it.err = fmt.Errorf("%w: record %d out of order", ErrCorrupt, it.n)
		return false
	}
	getRecord(rec, e)
	it.last = e.ID
	it.i++
	it.n++
	return true
}

// Err is the error that ended the iteration, if any.
func (it *Iter) Err() error { return it.err }
