package shardstore

import (
	"errors"
	"strings"
	"testing"

	"github.com/embassy-project/embassy/internal/wire"
)

func TestSumEmpty(t *testing.T) {
	// The BLAKE3 test vector for the empty input.
	const want = "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262"
	if got := Sum(nil).String(); got != want {
		t.Fatalf("Sum(nil) = %s, want %s", got, want)
	}
}

func TestParseID(t *testing.T) {
	id := Sum([]byte("embassy"))
	got, err := ParseID(id.String())
	if err != nil || got != id {
		t.Fatalf("ParseID(String()) = %v, %v", got, err)
	}
	var u ID
	if err := u.UnmarshalText([]byte(id.String())); err != nil || u != id {
		t.Fatalf("UnmarshalText = %v, %v", u, err)
	}
	for _, s := range []string{
		"",
		id.String()[:63],
		id.String() + "0",
		strings.ToUpper(id.String()),
		"g" + id.String()[1:],
		"../" + id.String()[3:],
	} {
		if _, err := ParseID(s); !errors.Is(err, wire.ErrCorrupt) {
			t.Errorf("ParseID(%q) = %v, want ErrCorrupt", s, err)
		}
	}
}

func TestKind(t *testing.T) {
	for _, k := range Kinds() {
		if !k.Valid() || CheckKind(k) != nil {
			t.Errorf("kind %q not valid", k)
		}
	}
	for _, k := range []Kind{"", "tmp", "shard", "../shards", "SHARDS"} {
		if k.Valid() || !errors.Is(CheckKind(k), ErrInvalidKind) {
			t.Errorf("kind %q valid", k)
		}
	}
}

func TestErrMismatchIsCorrupt(t *testing.T) {
	if !errors.Is(ErrMismatch, wire.ErrCorrupt) {
		t.Fatal("ErrMismatch does not wrap wire.ErrCorrupt")
	}
}

func FuzzParseID(f *testing.F) {
	f.Add(Sum(nil).String())
	f.Add(strings.ToUpper(Sum(nil).String()))
	f.Add("")
	f.Add(strings.Repeat("0", 64))
	f.Fuzz(func(t *testing.T, s string) {
		id, err := ParseID(s)
		if err != nil {
			if !errors.Is(err, wire.ErrCorrupt) {
				t.Fatalf("error does not wrap ErrCorrupt: %v", err)
			}
			return
		}
		if id.String() != s {
			t.Fatalf("ParseID(%q).String() = %q", s, id.String())
		}
	})
}
