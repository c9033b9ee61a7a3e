package snapshot

import (
	"bytes"
	"errors"
	"github.com/embassy-project/embassy/internal/testenv"
	"math"
	"reflect"
	"strings"
	"testing"

	"github.com/embassy-project/embassy/internal/tree"
	"github.com/embassy-project/embassy/internal/wire"
)

// testRecord is the fixture of testdata/snapshot/record.bin.
func testRecord() *Record {
	r := &Record{
		Time:     1763700000123456789,
		Hostname: "registry-db-01.example.gov",
		Paths:    []string{"/srv/registry", "/etc/registry", "/var/lib/\xffnot-utf8"},
		Files:    123456,
		Dirs:     7890,
		Symlinks: 12,
		Bytes:    987654321012,
	}
	var root tree.Ref
	for i := range root.ID {
		root.ID[i] = byte(i)
	}
	for i := range root.Pack {
		root.Pack[i] = byte(0xa0 + i)
	}
	root.Offset, root.Length, root.RawLength = 16<<20-4096, 1234, 5678
	r.Root = []tree.Ref{root}
	return r
}

func TestRecordRoundTrip(t *testing.T) {
	for name, r := range map[string]*Record{
		"fixture":  testRecord(),
		"no paths": func() *Record { r := testRecord(); r.Paths, r.Hostname = nil, ""; return r }(),
		"extremes": func() *Record {
			r := testRecord()
			r.Time, r.Files, r.Dirs, r.Symlinks, r.Bytes = math.MinInt64, math.MaxUint64, 0, math.MaxUint64, math.MaxUint64
			r.Hostname = strings.Repeat("h", MaxHostname)
			r.Paths = []string{strings.Repeat("p", MaxPath)}
			return r
		}(),
	} {
		t.Run(name, func(t *testing.T) {
			if err := r.Validate(); err != nil {
				t.Fatal(err)
			}
			b := r.Marshal()
			got, err := ParseRecord(b)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, r) {
				t.Fatalf("round trip differs:\n got %+v\nwant %+v", got, r)
			}
			if !bytes.Equal(got.Marshal(), b) {
				t.Fatal("re-marshal differs")
			}
		})
	}
}

func TestRecordValidate(t *testing.T) {
	cases := []struct {
		name string
		mod  func(r *Record)
		ok   bool
	}{
		{"valid", func(r *Record) {}, true},
		{"hostname too long", func(r *Record) { r.Hostname = strings.Repeat("h", MaxHostname+1) }, false},
		{"empty path", func(r *Record) { r.Paths[1] = "" }, false},
		{"path too long", func(r *Record) { r.Paths[0] = strings.Repeat("p", MaxPath+1) }, false},
		{"path with NUL", func(r *Record) { r.Paths[0] = "/a\x00b" }, false},
		{"relative path ok", func(r *Record) { r.Paths[0] = "data" }, true},
		{"too many paths", func(r *Record) { r.Paths = make([]string, MaxPaths+1) }, false},
		{"max paths ok", func(r *Record) {
			r.Paths = make([]string, MaxPaths)
			for i := range r.Paths {
				r.Paths[i] = "/p"
			}
		}, true},
		{"encoding too large", func(r *Record) {
			r.Paths = make([]string, 200)
			for i := range r.Paths {
				r.Paths[i] = strings.Repeat("p", MaxPath)
			}
		}, false},
		{"root zero", func(r *Record) { r.Root = []tree.Ref{{}} }, false},
		{"root empty", func(r *Record) { r.Root = nil }, false},
		{"root zero length", func(r *Record) { r.Root[0].Length = 0 }, false},
		{"root zero raw length", func(r *Record) { r.Root[0].RawLength = 0 }, false},
		{"root overflow", func(r *Record) { r.Root[0].Offset = math.MaxUint64 }, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := testRecord()
			c.mod(r)
			if err := r.Validate(); (err == nil) != c.ok {
				t.Fatalf("Validate = %v, want ok=%v", err, c.ok)
			}
			_, err := ParseRecord(r.Marshal())
			if c.ok && err != nil {
				t.Fatalf("ParseRecord of valid record: %v", err)
			}
			if !c.ok && !errors.Is(err, wire.ErrCorrupt) {
				t.Fatalf("ParseRecord of invalid record = %v, want ErrCorrupt", err)
			}
		})
	}
}

func TestParseRecordCorrupt(t *testing.T) {
	good := testRecord().Marshal()
	w := wire.NewWriter([]byte(RecordMagic))
	w.Varint(0)
	w.String("")
	w.Uvarint(MaxPaths)
	manyPaths := w.Bytes()
	cases := map[string][]byte{
		"nil":                nil,
		"bad magic":          append([]byte("EMBRECD2"), good[8:]...),
		"trailing":           append(bytes.Clone(good), 0),
		"too large":          append(bytes.Clone(good), make([]byte, MaxRecordSize)...),
		"paths beyond input": manyPaths,
	}
	for name, b := range cases {
		t.Run(name, func(t *testing.T) {
			if _, err := ParseRecord(b); !errors.Is(err, wire.ErrCorrupt) {
				t.Fatalf("got %v, want ErrCorrupt", err)
			}
		})
	}
	t.Run("every truncation", func(t *testing.T) {
		for n := range len(good) {
			if _, err := ParseRecord(good[:n]); !errors.Is(err, wire.ErrCorrupt) {
				t.Fatalf("truncated to %d: got %v, want ErrCorrupt", n, err)
			}
		}
	})
	// A record is authenticated by sealing, not by its own bytes: a flip must
	// fail cleanly or give a valid record that encodes back to the same bytes.
	t.Run("every byte flip", func(t *testing.T) {
		for i := range good {
			b := bytes.Clone(good)
			b[i] ^= 0x01
			r, err := ParseRecord(b)
			if err != nil {
				if !errors.Is(err, wire.ErrCorrupt) {
					t.Fatalf("flip at %d: got %v, want ErrCorrupt", i, err)
				}
				continue
			}
			if !bytes.Equal(r.Marshal(), b) {
				t.Fatalf("flip at %d: parsed but does not re-encode", i)
			}
		}
	})
}

func TestGoldenRecord(t *testing.T) {
	if *update {
		writeGolden(t, "record.bin", testRecord().Marshal())
	}
	b := readGolden(t, "record.bin")
	got, err := ParseRecord(b)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, testRecord()) {
		t.Fatal("parsed record differs from fixture")
	}
	if !bytes.Equal(testRecord().Marshal(), b) {
		t.Fatal("Marshal no longer produces the committed bytes")
	}
}

func FuzzParseRecord(f *testing.F) {
	f.Add(readGolden(f, "record.bin"))
	r := testRecord()
	r.Paths = nil
	f.Add(r.Marshal())
	f.Fuzz(func(t *testing.T, b []byte) {
		testenv.RoundTrip(t, b, ParseRecord, func(r *Record) ([]byte, error) {
			if err := r.Validate(); err != nil {
				return nil, err
			}
			return r.Marshal(), nil
		})
	})
}
