package main

import (
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// TestMain lets the test binary stand in for `embassy host serve --dir DIR`
// when BENCH_FAKE_HOST is set: it listens on the address in DIR/addr until
// SIGTERM (mode "ok"), or exits at once with status 1 (mode "fail").
func TestMain(m *testing.M) {
	if mode := os.Getenv("BENCH_FAKE_HOST"); mode != "" {
		os.Exit(fakeHost(mode, os.Args[1:]))
	}
	os.Exit(m.Run())
}

func fakeHost(mode string, args []string) int {
	if len(args) != 4 || args[0] != "host" || args[1] != "serve" || args[2] != "--dir" {
		return 2
	}
	if mode == "fail" {
		os.Stderr.WriteString("fake host: refusing to start\n")
		return 1
	}
	addr, err := os.ReadFile(filepath.Join(args[3], "addr"))
	if err != nil {
		return 2
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM)
	l, err := net.Listen("tcp", string(addr))
	if err != nil {
		return 2
	}
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	<-sig
	l.Close()
	return 0
}

func fakeHosts(t *testing.T, mode string) ([]string, []string, []string) {
	t.Helper()
	t.Setenv("BENCH_FAKE_HOST", mode)
	addrs, err := freeAddrs(3)
	if err != nil {
		t.Fatal(err)
	}
	names := []string{"a", "b", "c"}
	var dirs []string
	for i, n := range names {
		d := filepath.Join(t.TempDir(), n)
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(d, "addr"), []byte(addrs[i]), 0o644); err != nil {
			t.Fatal(err)
		}
		dirs = append(dirs, d)
	}
	return names, dirs, addrs
}

func TestHostProcsStartStop(t *testing.T) {
	names, dirs, addrs := fakeHosts(t, "ok")
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	hp, err := startHosts(t.Context(), self, names, dirs, addrs, t.TempDir(), "r1-test")
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range addrs { // every host listens once startHosts returns
		c, err := net.Dial("tcp", a)
		if err != nil {
			t.Fatalf("%s: %v", a, err)
		}
		c.Close()
	}
	if hp.cpu() < 0 {
		t.Fatal("negative CPU")
	}
	u, err := hp.stop()
	if err != nil {
		t.Fatal(err)
	}
	if len(u.peakRSSKB) != 3 || u.peakRSSKB[0] <= 0 {
		t.Fatalf("usage %+v: want three positive peak RSS values", u)
	}
	for _, a := range addrs {
		if c, err := net.Dial("tcp", a); err == nil {
			c.Close()
			t.Fatalf("%s still listens after stop", a)
		}
	}
	if _, err := hp.stop(); err != nil { // stopping twice is harmless
		t.Fatal(err)
	}
	hp.kill()
}

func TestHostProcsExitAtStart(t *testing.T) {
	names, dirs, addrs := fakeHosts(t, "fail")
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	logs := t.TempDir()
	_, err = startHosts(t.Context(), self, names, dirs, addrs, logs, "r1-test")
	if err == nil || !strings.Contains(err.Error(), "exited at start-up") || !strings.Contains(err.Error(), "refusing to start") {
		t.Fatalf("err = %v, want an early exit quoting the log", err)
	}
}
