package snapshot

import (
	"fmt"
	"strings"

	"github.com/embassy-project/embassy/internal/tree"
	"github.com/embassy-project/embassy/internal/wire"
)

// RecordMagic opens every encoded record.
const RecordMagic = "EMBRECD1"

// Limits of a record. The encoded record is kept well below MaxRecord so it
// still fits an envelope once sealed.
const (
	MaxHostname   = 255
	MaxPaths      = 4096
	MaxPath       = 4096
	MaxRecordSize = 1 << 19 // bytes of encoded (unsealed) record
)

// Record is the snapshot's private metadata. The caller seals it (encrypts it
// to the dataset key) and carries the ciphertext in Envelope.Record.
type Record struct {
	Time     int64      // unix nanoseconds when the snapshot was taken
	Hostname string     // the machine the agent ran on
	Paths    []string   // the backed-up source paths, as given; nil when none
	Root     []tree.Ref // the root tree's encoding, as pieces (tree blobs) to concatenate
	Files    uint64
	Dirs     uint64
	Symlinks uint64
	Bytes    uint64 // sum of file sizes
}

// Validate checks the record's rules: Hostname at most MaxHostname bytes; at
// most MaxPaths paths, each 1..MaxPath bytes without NUL; a valid Root; and
// an encoding of at most MaxRecordSize bytes.
func (r *Record) Validate() error {
	if len(r.Hostname) > MaxHostname {
		return fmt.Errorf("record: hostname is %d bytes, limit %d", len(r.Hostname), MaxHostname)
	}
	if len(r.Paths) > MaxPaths {
		return fmt.Errorf("record: %d paths exceeds limit %d", len(r.Paths), MaxPaths)
	}
	// size over-estimates the encoding; encode only when it might not fit.
	size := len(RecordMagic) + 10 + 2 + len(r.Hostname) + 3 + 48 + 30 + 40
	for i, p := range r.Paths {
		switch {
		case p == "":
			return fmt.Errorf("record: path %d is empty", i)
		case len(p) > MaxPath:
			return fmt.Errorf("record: path %d is %d bytes, limit %d", i, len(p), MaxPath)
		case strings.IndexByte(p, 0) >= 0:
			return fmt.Errorf("record: path %d contains NUL", i)
		}
		size += 2 + len(p)
	}
	if err := tree.ValidatePieces(r.Root); err != nil {
		return fmt.Errorf("record: root: %w", err)
	}
	if size > MaxRecordSize && len(r.encode()) > MaxRecordSize {
		return fmt.Errorf("record: encoding exceeds %d bytes", MaxRecordSize)
	}
	return nil
}

// Marshal returns the record's canonical encoding. It does not validate:
// call Validate first when r did not come from ParseRecord, or ParseRecord
// will refuse what Marshal wrote.
func (r *Record) Marshal() []byte { return r.encode() }

func (r *Record) encode() []byte {
	w := wire.NewWriter(nil)
	w.Fixed([]byte(RecordMagic))
	w.Varint(r.Time)
	w.String(r.Hostname)
	w.Uvarint(uint64(len(r.Paths)))
	for _, p := range r.Paths {
		w.String(p)
	}
	tree.WritePieces(w, r.Root)
	w.Uvarint(r.Files)
	w.Uvarint(r.Dirs)
	w.Uvarint(r.Symlinks)
	w.Uvarint(r.Bytes)
	return w.Bytes()
}

// ParseRecord decodes and validates an encoded record, accepting only the
// canonical encoding. Every error wraps wire.ErrCorrupt.
func ParseRecord(b []byte) (*Record, error) {
	if len(b) > MaxRecordSize {
		return nil, wire.Corruptf("record: %d bytes exceeds limit %d", len(b), MaxRecordSize)
	}
	rd := wire.NewReader(b, "record")
	rd.Magic(RecordMagic)
	r := &Record{}
	r.Time = rd.Varint()
	r.Hostname = rd.String(MaxHostname, "hostname")
	n := rd.UvarintMax(MaxPaths, "path count")
	if rd.Err() == nil && n > 0 {
		if n > uint64(rd.Remaining()/2) {
			rd.Failf("%d paths cannot fit in %d bytes", n, rd.Remaining())
		} else {
			r.Paths = make([]string, 0, n)
			for i := uint64(0); i < n && rd.Err() == nil; i++ {
				r.Paths = append(r.Paths, rd.String(MaxPath, "path"))
			}
		}
	}
	r.Root = tree.ReadPieces(rd)
	r.Files = rd.Uvarint()
	r.Dirs = rd.Uvarint()
	r.Symlinks = rd.Uvarint()
	r.Bytes = rd.Uvarint()
	if err := rd.Done(); err != nil {
		return nil, err
	}
	if err := r.Validate(); err != nil {
		return nil, wire.Corruptf("%v", err)
	}
	return r, nil
}
