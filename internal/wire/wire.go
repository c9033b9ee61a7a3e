// Package wire is the binary encoding shared by embassy's on-disk and wire
// formats (varints, length-prefixed byte strings, fixed fields) and the one
// corruption error category every parser reports.
//
// A Reader has a sticky error: after the first failure every call returns a
// zero value and Err reports the failure, so parsers read a whole structure and
// check once. Every failure wraps ErrCorrupt, which callers use to tell bytes
// that are wrong from I/O that failed.
package wire

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math/bits"
)

// ErrCorrupt marks data whose bytes are wrong: a malformed encoding, a hash or
// authentication tag that does not match, a truncated object. It is distinct
// from I/O errors (a missing file, a refused connection).
var ErrCorrupt = errors.New("corrupt data")

// Corruptf returns an error wrapping ErrCorrupt with the formatted context.
func Corruptf(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrCorrupt, fmt.Sprintf(format, args...))
}

// Writer appends encoded fields to a byte slice.
type Writer struct {
	buf []byte
}

// NewWriter returns a Writer that appends to buf (which may be nil).
func NewWriter(buf []byte) *Writer { return &Writer{buf: buf} }

// Bytes returns the encoded bytes.
func (w *Writer) Bytes() []byte { return w.buf }

// Len returns the number of bytes written so far.
func (w *Writer) Len() int { return len(w.buf) }

// Byte appends one byte.
func (w *Writer) Byte(b byte) { w.buf = append(w.buf, b) }

// Fixed appends b as is; the reader must know its length.
func (w *Writer) Fixed(b []byte) { w.buf = append(w.buf, b...) }

// Uvarint appends an unsigned LEB128 varint.
func (w *Writer) Uvarint(v uint64) { w.buf = binary.AppendUvarint(w.buf, v) }

// Varint appends a zig-zag signed varint.
func (w *Writer) Varint(v int64) { w.buf = binary.AppendVarint(w.buf, v) }

// Uint32 appends a big-endian uint32.
func (w *Writer) Uint32(v uint32) { w.buf = binary.BigEndian.AppendUint32(w.buf, v) }

// Uint64 appends a big-endian uint64.
func (w *Writer) Uint64(v uint64) { w.buf = binary.BigEndian.AppendUint64(w.buf, v) }

// LenBytes appends uvarint(len(b)) followed by b.
func (w *Writer) LenBytes(b []byte) {
	w.Uvarint(uint64(len(b)))
	w.buf = append(w.buf, b...)
}

// String appends uvarint(len(s)) followed by s.
func (w *Writer) String(s string) {
	w.Uvarint(uint64(len(s)))
	w.buf = append(w.buf, s...)
}

// Reader decodes fields from a byte slice with a sticky error.
type Reader struct {
	buf  []byte
	off  int
	err  error
	what string
}

// NewReader returns a Reader over b; what names the structure in errors.
func NewReader(b []byte, what string) *Reader { return &Reader{buf: b, what: what} }

func (r *Reader) fail(format string, args ...any) {
	if r.err == nil {
		r.err = Corruptf("%s at byte %d: %s", r.what, r.off, fmt.Sprintf(format, args...))
	}
}

// Err returns the first error met, or nil.
func (r *Reader) Err() error { return r.err }

// Offset returns the number of bytes consumed.
func (r *Reader) Offset() int { return r.off }

// Remaining returns the number of unread bytes.
func (r *Reader) Remaining() int { return len(r.buf) - r.off }

// Done returns the sticky error, or an error if bytes remain unread.
func (r *Reader) Done() error {
	if r.err == nil && r.off != len(r.buf) {
		r.fail("%d trailing bytes", len(r.buf)-r.off)
	}
	return r.err
}

// Byte reads one byte.
func (r *Reader) Byte() byte {
	b := r.Fixed(1)
	if b == nil {
		return 0
	}
	return b[0]
}

// Fixed reads n bytes. The result aliases the input.
func (r *Reader) Fixed(n int) []byte {
	if r.err != nil {
		return nil
	}
	if n < 0 || n > len(r.buf)-r.off {
		r.fail("truncated: need %d bytes, have %d", n, len(r.buf)-r.off)
		return nil
	}
	b := r.buf[r.off : r.off+n : r.off+n]
	r.off += n
	return b
}

// FixedInto reads len(dst) bytes into dst.
func (r *Reader) FixedInto(dst []byte) {
	if b := r.Fixed(len(dst)); b != nil {
		copy(dst, b)
	}
}

// Uvarint reads an unsigned varint in its shortest encoding.
func (r *Reader) Uvarint() uint64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Uvarint(r.buf[r.off:])
	if n <= 0 {
		r.fail("bad varint")
		return 0
	}
	if n != uvarintLen(v) {
		r.fail("non-minimal varint")
		return 0
	}
	r.off += n
	return v
}

func uvarintLen(v uint64) int { return (bits.Len64(v|1) + 6) / 7 }

// UvarintLen is the length of v as Writer.Uvarint writes it, for sizing a
// buffer exactly.
func UvarintLen(v uint64) int { return uvarintLen(v) }

// VarintLen is the length of v as Writer.Varint writes it.
func VarintLen(v int64) int { return uvarintLen(uint64(v<<1) ^ uint64(v>>63)) }

// StringLen is the length of s as Writer.String writes it.
func StringLen(s string) int { return uvarintLen(uint64(len(s))) + len(s) }

// UvarintMax reads an unsigned varint and fails if it exceeds max.
func (r *Reader) UvarintMax(max uint64, field string) uint64 {
	v := r.Uvarint()
	if r.err == nil && v > max {
		r.fail("%s %d exceeds limit %d", field, v, max)
		return 0
	}
	return v
}

// Varint reads a zig-zag signed varint in its shortest encoding.
func (r *Reader) Varint() int64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Varint(r.buf[r.off:])
	if n <= 0 {
		r.fail("bad varint")
		return 0
	}
	ux := uint64(v) << 1
	if v < 0 {
		ux = ^ux
	}
	if n != uvarintLen(ux) {
		r.fail("non-minimal varint")
		return 0
	}
	r.off += n
	return v
}

// Uint32 reads a big-endian uint32.
func (r *Reader) Uint32() uint32 {
	b := r.Fixed(4)
	if b == nil {
		return 0
	}
	return binary.BigEndian.Uint32(b)
}

// Uint64 reads a big-endian uint64.
func (r *Reader) Uint64() uint64 {
	b := r.Fixed(8)
	if b == nil {
		return 0
	}
	return binary.BigEndian.Uint64(b)
}

// LenBytes reads a uvarint length (at most max) followed by that many bytes.
// The result aliases the input.
func (r *Reader) LenBytes(max int, field string) []byte {
	n := r.Uvarint()
	if r.err == nil && n > uint64(max) {
		r.fail("%s length %d exceeds limit %d", field, n, max)
	}
	if r.err != nil {
		return nil
	}
	return r.Fixed(int(n))
}

// String reads a length-prefixed string of at most max bytes.
func (r *Reader) String(max int, field string) string {
	return string(r.LenBytes(max, field))
}

// Magic reads len(m) bytes and fails unless they equal m.
func (r *Reader) Magic(m string) {
	b := r.Fixed(len(m))
	if r.err == nil && string(b) != m {
		r.fail("bad magic %q, want %q", b, m)
	}
}

// Failf records a semantic error (a field out of range) at the current offset.
func (r *Reader) Failf(format string, args ...any) { r.fail(format, args...) }

// MaxNameLen is the longest name ValidName accepts.
const MaxNameLen = 64

// ValidName reports whether s is a name in the syntax every embassy format
// uses for guests, datasets, custodians and hosts: [a-z0-9][a-z0-9._-]{0,63}.
// Names end up in file names and paths, so the syntax is deliberately small.
func ValidName(s string) bool {
	if len(s) == 0 || len(s) > MaxNameLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', '0' <= c && c <= '9':
		case i > 0 && (c == '.' || c == '_' || c == '-'):
		default:
			return false
		}
	}
	return true
}
