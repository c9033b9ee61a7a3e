package wire

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math"
	"testing"
)

// TestLens checks the size helpers against what the Writer writes, at every
// varint length boundary.
func TestLens(t *testing.T) {
	us := []uint64{0, 1, math.MaxUint64, math.MaxUint64 - 1}
	for shift := 7; shift < 64; shift += 7 {
		us = append(us, 1<<shift-1, 1<<shift, 1<<shift+1)
	}
	for _, u := range us {
		if got, want := UvarintLen(u), len(binary.AppendUvarint(nil, u)); got != want {
			t.Errorf("UvarintLen(%d) = %d, want %d", u, got, want)
		}
		for _, v := range []int64{int64(u), -int64(u), int64(u >> 1), -int64(u >> 1), math.MinInt64, math.MaxInt64} {
			if got, want := VarintLen(v), len(binary.AppendVarint(nil, v)); got != want {
				t.Errorf("VarintLen(%d) = %d, want %d", v, got, want)
			}
		}
	}
	for _, n := range []int{0, 1, 127, 128, 20000} {
		s := string(make([]byte, n))
		w := NewWriter(nil)
		w.String(s)
		if got := StringLen(s); got != w.Len() {
			t.Errorf("StringLen of %d bytes = %d, want %d", n, got, w.Len())
		}
	}
}

func TestRoundTrip(t *testing.T) {
	w := NewWriter(nil)
	w.Fixed([]byte("MAGC"))
	w.Byte(7)
	w.Uvarint(300)
	w.Varint(-5)
	w.Uint32(0xdeadbeef)
	w.Uint64(1 << 40)
	w.LenBytes([]byte("hello"))
	w.String("name")
	r := NewReader(w.Bytes(), "test")
	r.Magic("MAGC")
	if r.Byte() != 7 || r.Uvarint() != 300 || r.Varint() != -5 || r.Uint32() != 0xdeadbeef || r.Uint64() != 1<<40 {
		t.Fatal("mismatch")
	}
	if !bytes.Equal(r.LenBytes(10, "b"), []byte("hello")) || r.String(10, "s") != "name" {
		t.Fatal("mismatch")
	}
	if err := r.Done(); err != nil {
		t.Fatal(err)
	}
}

func TestErrors(t *testing.T) {
	cases := map[string]func(r *Reader){
		"truncated":   func(r *Reader) { r.Fixed(10) },
		"magic":       func(r *Reader) { r.Magic("XX") },
		"limit":       func(r *Reader) { r.LenBytes(1, "f") },
		"nonminimal":  func(r *Reader) { NewReader([]byte{0x80, 0x00}, "x").Uvarint(); r.Uvarint() },
		"trailing":    func(r *Reader) { r.Byte() },
		"bad varint":  func(r *Reader) { r.Fixed(3); r.Byte(); r.Uvarint() },
		"sticky fail": func(r *Reader) { r.Failf("nope"); r.Byte() },
	}
	for name, f := range cases {
		t.Run(name, func(t *testing.T) {
			r := NewReader([]byte{0x80, 0x00, 0x05, 0x01}, "test")
			f(r)
			if err := r.Done(); !errors.Is(err, ErrCorrupt) {
				t.Fatalf("got %v, want ErrCorrupt", err)
			}
		})
	}
	if _, err := func() (uint64, error) { r := NewReader([]byte{0x80, 0x00}, "x"); v := r.Uvarint(); return v, r.Err() }(); !errors.Is(err, ErrCorrupt) {
		t.Fatal("non-minimal varint accepted")
	}
}
