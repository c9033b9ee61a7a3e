package restore

import (
	"sync/atomic"
	"testing"
	"time"
)

// TestFlushEvery: the flusher syncs the directory it was given, again and
// again while the restore runs, and not once more after it is stopped.
func TestFlushEvery(t *testing.T) {
	var calls atomic.Int64
	dir := t.TempDir()
	stop := flushEvery(dir, 5*time.Millisecond, func(d string) error {
		if d != dir {
			t.Errorf("synced %s, want %s", d, dir)
		}
		calls.Add(1)
		return nil
	})
	deadline := time.Now().Add(10 * time.Second)
	for calls.Load() < 3 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	stop()
	n := calls.Load()
	if n < 3 {
		t.Fatalf("%d syncs in 10 s, want at least 3", n)
	}
	time.Sleep(30 * time.Millisecond)
	if m := calls.Load(); m != n {
		t.Fatalf("%d syncs after stop", m-n)
	}
}
