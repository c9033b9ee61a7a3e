package witness

import (
	"errors"
	"testing"
	"time"
)

func TestBatcher(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	b := NewBatcher(time.Minute)
	root := func(n byte) [HashSize]byte { return [HashSize]byte{n} }

	if got := b.Flush(t0); got != nil {
		t.Fatalf("empty flush: %v", got)
	}
	b.Add("log-b", 5, root(5))
	b.Add("log-a", 3, root(3))
	b.Add("log-a", 7, root(7))
	b.Add("log-a", 6, root(6)) // out of order: the larger stays
	got := b.Flush(t0)
	want := []Cosign{{"log-a", 7, root(7)}, {"log-b", 5, root(5)}}
	if len(got) != 2 || got[0] != want[0] || got[1] != want[1] {
		t.Fatalf("first flush: %v", got)
	}

	// Re-cosigning what was flushed is not new; nothing new, no flush even
	// after the interval.
	b.Add("log-a", 7, root(7))
	b.Add("log-b", 4, root(4))
	if got := b.Flush(t0.Add(time.Hour)); got != nil {
		t.Fatalf("nothing new: %v", got)
	}

	// Something new, but within the interval: held back.
	b.Add("log-b", 9, root(9))
	if got := b.Flush(t0.Add(30 * time.Second)); got != nil {
		t.Fatalf("within interval: %v", got)
	}
	got = b.Flush(t0.Add(time.Minute))
	if len(got) != 1 || got[0] != (Cosign{"log-b", 9, root(9)}) {
		t.Fatalf("after interval: %v", got)
	}

	// A failed record is retried with anything newer.
	t1 := t0.Add(time.Minute)
	b.Retry(got)
	b.Add("log-c", 1, root(1))
	if got := b.Flush(t1.Add(59 * time.Second)); got != nil {
		t.Fatalf("retry within interval: %v", got)
	}
	got = b.Flush(t1.Add(time.Minute))
	if len(got) != 2 || got[0] != (Cosign{"log-b", 9, root(9)}) || got[1].Origin != "log-c" {
		t.Fatalf("retried flush: %v", got)
	}
	// Retry of an old batch does not replace a newer pending cosign.
	b.Add("log-b", 12, root(12))
	b.Retry([]Cosign{{"log-b", 9, root(9)}})
	got = b.Flush(t1.Add(2 * time.Minute))
	if len(got) != 1 || got[0].Size != 12 {
		t.Fatalf("retry vs newer: %v", got)
	}
}

// TestBatcherAsOnCosign wires a Batcher into a witness.
func TestBatcherAsOnCosign(t *testing.T) {
	l := newTestLog(t, "example.com/log", 10, 1)
	k, _ := keysFor(t, "witness.example/w1")
	b := NewBatcher(time.Minute)
	w, err := New(Config{Dir: t.TempDir(), Keys: k, Logs: []Log{l.config()}, OnCosign: b.Add, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	for _, step := range [][2]uint64{{0, 4}, {4, 10}, {10, 10}} {
		if _, err := w.AddCheckpoint(t.Context(), l.request(t, step[0], step[1])); err != nil {
			t.Fatal(err)
		}
	}
	got := b.Flush(time.Now())
	if len(got) != 1 || got[0].Origin != l.origin || got[0].Size != 10 || got[0].Root != l.state(10).Root {
		t.Fatalf("batch: %v", got)
	}
}

func TestNeedsCosign(t *testing.T) {
	// Entries 0..9 are ordinary, 10..14 cosign batches, 15 ordinary, 16..19 batches.
	isBatch := func(i uint64) (bool, error) {
		if i >= 20 {
			t.Fatalf("asked about entry %d beyond the log", i)
		}
		return i >= 10 && i < 15 || i >= 16, nil
	}
	for _, tc := range []struct {
		witnessed, size uint64
		want            bool
	}{
		{0, 0, false},
		{0, 5, true},
		{10, 10, false},
		{10, 15, false}, // only cosign batches since the last cosigned checkpoint
		{12, 15, false},
		{10, 16, true}, // entry 15 is ordinary
		{15, 20, true},
		{16, 20, false},
		{20, 20, false},
		{20, 19, false}, // size below witnessed: nothing new
	} {
		got, err := NeedsCosign(tc.witnessed, tc.size, isBatch)
		if err != nil || got != tc.want {
			t.Errorf("NeedsCosign(%d, %d) = %v, %v; want %v", tc.witnessed, tc.size, got, err, tc.want)
		}
	}
	// It stops at the newest ordinary entry.
	asked := 0
	if ok, _ := NeedsCosign(0, 1000, func(uint64) (bool, error) { asked++; return false, nil }); !ok || asked != 1 {
		t.Fatalf("asked %d entries, want 1", asked)
	}
	boom := errors.New("read failed")
	if _, err := NeedsCosign(0, 3, func(uint64) (bool, error) { return false, boom }); !errors.Is(err, boom) {
		t.Fatalf("predicate error: %v", err)
	}
}
