package ledger

import (
	"bufio"
	"bytes"
	"context"
	"encoding/hex"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"k8s.io/klog/v2"
)

// Environment of the child process in TestKillSafety.
const (
	envKillDir   = "EMBASSY_LEDGER_KILL_DIR"
	envKillKey   = "EMBASSY_LEDGER_KILL_KEY"
	envKillRound = "EMBASSY_LEDGER_KILL_ROUND"
)

func TestMain(m *testing.M) {
	flag.Parse()
	if !testing.Verbose() {
		// tessera logs through klog at info level; keep test output readable.
		klog.LogToStderr(false)
		klog.SetOutput(io.Discard)
	}
	if dir := os.Getenv(envKillDir); dir != "" {
		os.Exit(killChild(dir))
	}
	os.Exit(m.Run())
}

// killChild appends entries from many goroutines until it is killed,
// printing "INDEX HEX(entry)" for every Append that returned.
func killChild(dir string) int {
	ctx := context.Background()
	priv, err := os.ReadFile(os.Getenv(envKillKey))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	k, err := ParseKeys(priv)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	round, _ := strconv.Atoi(os.Getenv(envKillRound))
	l, err := Open(ctx, Config{Dir: dir, Keys: k, CheckpointInterval: MinCheckpointInterval, BatchMaxAge: 5 * time.Millisecond})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	var mu sync.Mutex
	out := bufio.NewWriter(os.Stdout)
	for g := range 64 {
		go func() {
			for i := 0; ; i++ {
				e := testEntry(round<<24 | g<<16 | i)
				idx, err := l.Append(ctx, e)
				if err != nil {
					fmt.Fprintln(os.Stderr, err)
					os.Exit(3)
				}
				mu.Lock()
				b, _ := MarshalEntry(e)
				fmt.Fprintf(out, "%d %x\n", idx, b)
				out.Flush()
				mu.Unlock()
			}
		}()
	}
	select {}
}

// TestKillSafety appends in a child process killed with SIGKILL mid-append,
// three times over; after each kill the log passes fsck, and in the end
// every entry whose Append returned is in the log, at its index.
func TestKillSafety(t *testing.T) {
	if testing.Short() {
		t.Skip("re-executes the test binary; skipped with -short")
	}
	dir := t.TempDir()
	keyFile := filepath.Join(t.TempDir(), "log.key")
	priv, _, err := GenerateKeys("embassy.host/kill")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, priv, 0o600); err != nil {
		t.Fatal(err)
	}
	k, err := ParseKeys(priv)
	if err != nil {
		t.Fatal(err)
	}
	ctx := testCtx(t)
	acked := map[uint64][]byte{}
	for round := range 3 {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), envKillDir+"="+dir, envKillKey+"="+keyFile, envKillRound+"="+strconv.Itoa(round))
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(stdout)
		n, target := 0, 300+round*200
		killed := false
		for sc.Scan() {
			f := strings.Fields(sc.Text())
			if len(f) != 2 {
				t.Fatalf("child printed %q", sc.Text())
			}
			idx, err1 := strconv.ParseUint(f[0], 10, 64)
			e, err2 := hex.DecodeString(f[1])
			if err1 != nil || err2 != nil {
				t.Fatalf("child printed %q", sc.Text())
			}
			if _, dup := acked[idx]; dup {
				t.Fatalf("index %d acknowledged twice", idx)
			}
			acked[idx] = e
			if n++; n == target && !killed {
				// Mid-append: 64 appends are in flight.
				if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
					t.Fatal(err)
				}
				killed = true
			}
		}
		err = cmd.Wait()
		if !killed {
			t.Fatalf("child exited early: %v\n%s", err, stderr.String())
		}
		if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
			t.Fatalf("child ended with %v\n%s", err, stderr.String())
		}
		// The published checkpoint and everything it covers are intact.
		if err := Fsck(ctx, dir, k.Verifier()); err != nil {
			t.Fatalf("round %d: fsck after SIGKILL: %v", round, err)
		}
	}

	l := openLog(t, dir, k)
	var top uint64
	for idx := range acked {
		top = max(top, idx)
	}
	// The log continues after the acknowledged entries.
	idx, err := l.Append(ctx, testEntry(-1))
	if err != nil {
		t.Fatal(err)
	}
	if idx <= top {
		t.Fatalf("new entry got index %d, but %d was acknowledged before the kill", idx, top)
	}
	cp := awaitParsed(t, l, idx)
	c := &Client{Verifier: k.Verifier(), Fetch: HTTPFetcher(serve(t, l.Handler()), nil)}
	entries, err := c.Entries(ctx, cp, 0, cp.Size)
	if err != nil {
		t.Fatal(err)
	}
	for i, want := range acked {
		got, err := MarshalEntry(entries[i])
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("acknowledged entry %d lost or changed", i)
		}
	}
	if err := l.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if err := Fsck(ctx, dir, k.Verifier()); err != nil {
		t.Fatal(err)
	}
	t.Logf("%d acknowledged entries over 3 kills, log size %d", len(acked), cp.Size)
}
