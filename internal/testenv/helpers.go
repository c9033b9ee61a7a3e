package testenv

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"os"
	"testing"

	"github.com/embassy-project/embassy/internal/wire"
)

// ReadFile reads path or fails the test.
func ReadFile(t testing.TB, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// WriteFile writes b to path (0644) or fails the test.
func WriteFile(t testing.TB, path string, b []byte) {
	t.Helper()
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// RandBytes returns n deterministic pseudo-random bytes for seed.
func RandBytes(seed byte, n int) []byte {
	r := rand.NewChaCha8([32]byte{seed})
	b := make([]byte, n)
	_, _ = r.Read(b)
	return b
}

// RoundTrip is the property every format parser's fuzz test checks: parse
// either fails with an error wrapping wire.ErrCorrupt, or what it returns
// marshals back to exactly b (encodings are canonical). marshal may also
// reject a parsed value, which fails the test.
func RoundTrip[T any](t *testing.T, b []byte, parse func([]byte) (T, error), marshal func(T) ([]byte, error)) {
	t.Helper()
	v, err := parse(b)
	if err != nil {
		if !errors.Is(err, wire.ErrCorrupt) {
			t.Fatalf("error does not wrap ErrCorrupt: %v", err)
		}
		return
	}
	out, err := marshal(v)
	if err != nil {
		t.Fatalf("parsed value does not marshal: %v", err)
	}
	if !bytes.Equal(out, b) {
		t.Fatal("Marshal(Parse(b)) != b")
	}
}
