package testenv

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"sync"
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

// FreeAddr returns a loopback address with a port that is free now, for a
// server that will listen on it later (its address is written into a
// descriptor first). The port is drawn below Linux's ephemeral range
// (32768–60999), where outgoing connections and other ":0" listeners take
// theirs, so that nothing else grabs it in between; no port is handed out
// twice in one process. (Ports taken from ":0" collided under parallel
// tests: "bind: address already in use".) Nor in two test processes at once
// (go test runs packages in parallel): each port handed out is claimed with
// a lock on a file of its own (claimPort) that the process holds until it
// exits, so a server a test stops and starts again on its port does not
// find another package's server there (seen: a host restarted by
// TestMaliciousHostLog could not bind its port).
func FreeAddr(t testing.TB) string {
	t.Helper()
	freeMu.Lock()
	defer freeMu.Unlock()
	for range 1000 {
		port := 20000 + rand.IntN(12000)
		if freeGiven[port] {
			continue
		}
		if !claimPort(port) {
			freeGiven[port] = true // another process's
			continue
		}
		freeGiven[port] = true
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			continue
		}
		ln.Close()
		return addr
	}
	t.Fatal("no free loopback port between 20000 and 32000")
	return ""
}

var (
	freeMu    sync.Mutex
	freeGiven = map[int]bool{}
)
