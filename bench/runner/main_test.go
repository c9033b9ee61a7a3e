package main

import (
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestSpliceSection(t *testing.T) {
	tests := []struct {
		name, doc, want string
	}{
		{"empty file", "", "<!-- peers:begin -->\nNEW\n<!-- peers:end -->\n"},
		{"no markers", "# Benchmarks\n\nstages", "# Benchmarks\n\nstages\n\n<!-- peers:begin -->\nNEW\n<!-- peers:end -->\n"},
		{"replace", "a\n<!-- peers:begin -->\nOLD\nOLD\n<!-- peers:end -->\nb\n", "a\n<!-- peers:begin -->\nNEW\n<!-- peers:end -->\nb\n"},
		{"end before begin", "<!-- peers:end -->\nx\n<!-- peers:begin -->\n",
			"<!-- peers:end -->\nx\n<!-- peers:begin -->\n\n<!-- peers:begin -->\nNEW\n<!-- peers:end -->\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := spliceSection(tt.doc, "NEW\n"); got != tt.want {
				t.Fatalf("got %q\nwant %q", got, tt.want)
			}
		})
	}
}

func TestWriteSectionCreatesAndReplaces(t *testing.T) {
	f := filepath.Join(t.TempDir(), "sub.md")
	if err := writeSection(f, "one"); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(f, []byte("head\n"+mustRead(t, f)+"tail\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := writeSection(f, "two"); err != nil {
		t.Fatal(err)
	}
	want := "head\n<!-- peers:begin -->\ntwo\n<!-- peers:end -->\ntail\n"
	if got := mustRead(t, f); got != want {
		t.Fatalf("got %q, want %q", got, want)
	}
}

func mustRead(t *testing.T, f string) string {
	t.Helper()
	b, err := os.ReadFile(f)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestParseTimeV(t *testing.T) {
	out := `	Command being timed: "restic backup /x"
	User time (seconds): 3.02
	System time (seconds): 1.73
	Percent of CPU this job got: 82%
	Elapsed (wall clock) time (h:mm:ss or m:ss): 0:05.77
	Maximum resident set size (kbytes): 119808
	Exit status: 0
`
	tv, err := parseTimeV(out)
	if err != nil {
		t.Fatal(err)
	}
	if tv[maxRSS] != 119808 || tv["User time (seconds)"] != 3.02 || tv["System time (seconds)"] != 1.73 {
		t.Fatalf("parsed %v", tv)
	}
	if _, err := parseTimeV("Exit status: 0\n"); err == nil {
		t.Fatal("no error without the peak RSS line")
	}
}

func TestParseBench(t *testing.T) {
	out := `goos: linux
BenchmarkChunker/random         	      10	  50214305 ns/op	1336.88 MB/s	       0 B/op	       0 allocs/op
BenchmarkEncode/2-of-3/16MiB-2  	     100	   3683210 ns/op	4554.94 MB/s	25165962 B/op	       5 allocs/op
BenchmarkSign 	    1000	   1000 ns/op
PASS
`
	got := parseBench(out)
	if len(got) != 2 || got["Chunker/random"].MBps != 1336.88 || got["Encode/2-of-3/16MiB"].MBps != 4554.94 {
		t.Fatalf("parsed %+v", got)
	}
}

func TestStatsAndRotate(t *testing.T) {
	if m, lo, hi := stats([]float64{3, 1, 2}); m != 2 || lo != 1 || hi != 3 {
		t.Fatalf("stats = %v %v %v", m, lo, hi)
	}
	if m, _, _ := stats([]float64{4, 1, 2, 3}); m != 2.5 {
		t.Fatalf("even median = %v", m)
	}
	if got := strings.Join(rotate([]string{"a", "b", "c"}, 4), ""); got != "bca" {
		t.Fatalf("rotate = %s", got)
	}
}

func TestManifest(t *testing.T) {
	mk := func(mode os.FileMode, content string) string {
		d := t.TempDir()
		if err := os.MkdirAll(filepath.Join(d, "sub"), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(d, "sub", "f"), []byte(content), mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(filepath.Join(d, "sub", "f"), mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink("sub/f", filepath.Join(d, "link")); err != nil {
			t.Fatal(err)
		}
		return d
	}
	a, err := buildManifest(mk(0o644, "hello"), true)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := buildManifest(mk(0o644, "hello"), true)
	if d := a.diff(b); d != "" {
		t.Fatalf("equal trees differ: %s", d)
	}
	c, _ := buildManifest(mk(0o600, "hello"), true)
	if d := a.diff(c); !strings.Contains(d, "sub/f") {
		t.Fatalf("mode change not found: %q", d)
	}
	e, _ := buildManifest(mk(0o644, "hellO"), true)
	if d := a.diff(e); !strings.Contains(d, "sha256") {
		t.Fatalf("content change not found: %q", d)
	}
	delete(e, "link")
	if d := a.diff(e); !strings.Contains(d, "link: missing") {
		t.Fatalf("missing entry not found: %q", d)
	}
}

func TestResetCopy(t *testing.T) {
	base := t.TempDir()
	src, dst := filepath.Join(base, "pristine"), filepath.Join(base, "work", "copy")
	write := func(p, s string, mode os.FileMode) {
		t.Helper()
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(s), mode); err != nil {
			t.Fatal(err)
		}
	}
	write(filepath.Join(src, "a", "one.csv"), "rows\n", 0o644)
	write(filepath.Join(src, "a", "two.json"), "{}", 0o640)
	write(filepath.Join(src, "b", "deed.scan"), "scan", 0o600)
	if err := os.Symlink("a/one.csv", filepath.Join(src, "current.csv")); err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	if err := resetCopy(ctx, src, dst); err != nil { // first time: cp -a
		t.Fatal(err)
	}
	want, _ := buildManifest(src, true)
	wantMeta, _ := buildManifest(src, false)
	// A run edits the copy: same-size rewrite, append, new files and
	// directories, a removal, a mode change, a replaced symlink.
	write(filepath.Join(dst, "a", "one.csv"), "ROWS\n", 0o644)
	write(filepath.Join(dst, "a", "two.json"), `{"x":1}`, 0o640)
	write(filepath.Join(dst, "b", "deed-new.scan"), "new", 0o600)
	write(filepath.Join(dst, "c", "d", "issue.txt"), "gazette", 0o644)
	if err := os.Remove(filepath.Join(dst, "b", "deed.scan")); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Join(dst, "a"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(dst, "current.csv")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("elsewhere", filepath.Join(dst, "current.csv")); err != nil {
		t.Fatal(err)
	}
	if err := resetCopy(ctx, src, dst); err != nil {
		t.Fatal(err)
	}
	got, _ := buildManifest(dst, true)
	gotMeta, _ := buildManifest(dst, false)
	if d := want.diff(got); d != "" {
		t.Fatalf("after reset: %s", d)
	}
	if d := wantMeta.diff(gotMeta); d != "" {
		t.Fatalf("after reset (metadata): %s", d)
	}
}

func TestParseProcStat(t *testing.T) {
	// A real line's shape, with a command name holding spaces and a ')'.
	line := "4242 (embassy (x) y) S 1 4242 4242 0 -1 4194560 1234 0 0 0 250 75 0 0 20 0 9 0 100 2000000 5000 18446744073709551615\n"
	if v, ok := parseProcStat(line); !ok || v != 3.25 {
		t.Fatalf("parseProcStat = %v, %v; want 3.25 s", v, ok)
	}
	for _, bad := range []string{"", "4242 embassy S 1", "4242 (e) S 1 2 3", "4242 (e) S 1 2 3 4 5 6 7 8 9 x 75"} {
		if _, ok := parseProcStat(bad); ok {
			t.Errorf("parseProcStat(%q) accepted", bad)
		}
	}
	if procCPU(os.Getpid()) < 0 {
		t.Fatal("negative CPU time for this process")
	}
}

func TestMTLSRatios(t *testing.T) {
	r := &Results{Runs: map[string]map[string]float64{
		"embassy":      {"backup_s": 2, "incremental_s": 0.5, "restore_s": 1.5, "verify_s": 0.2},
		"embassy-mtls": {"backup_s": 2.5, "incremental_s": 0.5, "restore_s": 3, "verify_s": 0},
	}}
	x := mtlsRatios(r)
	if x == nil || x.Backup != 0.8 || x.Incremental != 1 || x.Restore != 0.5 || x.Verify != 0 || !x.BackupGoalMet {
		t.Fatalf("mtlsRatios = %+v", x)
	}
	r.Runs["embassy-mtls"]["backup_s"] = 2.6
	if x := mtlsRatios(r); x.BackupGoalMet {
		t.Fatalf("2 s vs 2.6 s (%.3f) meets the 0.80 goal", x.Backup)
	}
	delete(r.Runs, "embassy")
	if mtlsRatios(r) != nil {
		t.Fatal("ratios without the local run")
	}
}

func TestRenderMTLSSection(t *testing.T) {
	r := &Results{Rounds: 1, Tools: []string{"embassy", "embassy-mtls"},
		Runs: map[string]map[string]float64{
			"embassy":      {"backup_s": 2, "incremental_s": 0.5, "restore_s": 1.5, "verify_s": 0.2},
			"embassy-mtls": {"backup_s": 4, "incremental_s": 0.5, "restore_s": 3, "verify_s": 0.4, "host_peak_rss_kb": 102400, "host_dir_bytes": 2e6, "stored_bytes": 1e6},
		},
		Spread: map[string]map[string][2]float64{}}
	r.MTLS = mtlsRatios(r)
	md := renderMarkdown(r)
	for _, want := range []string{"### embassy over mutual TLS", "| first backup | 2.00 | 4.00 | 0.50× |", "first backup at **0.50×** the local throughput (issue 3's goal ≥ 0.80×: **not met**)", "100 MiB"} {
		if !strings.Contains(md, want) {
			t.Errorf("markdown lacks %q", want)
		}
	}
	r.Runs["embassy-mtls"] = nil
	r.MTLS = nil
	if md := renderMarkdown(r); strings.Contains(md, "mutual TLS against") {
		t.Error("mTLS section without an mTLS run")
	}
}

func TestFreeAddrs(t *testing.T) {
	a, err := freeAddrs(3)
	if err != nil {
		t.Fatal(err)
	}
	if len(a) != 3 || a[0] == a[1] || a[1] == a[2] || a[0] == a[2] || !strings.HasPrefix(a[0], "127.0.0.1:") {
		t.Fatalf("freeAddrs = %v", a)
	}
}

// TestLimitWithReadFloor: the limit is the larger of the read floor and the
// CPU of the stages plus the reading over every core, and the markdown
// states which one binds.
func TestLimitWithReadFloor(t *testing.T) {
	st := map[string]StageResult{}
	for _, n := range []string{"Chunker/random", "Chunker/text", "HasherSum/1024KiB", "Compress/random/1MiB", "Compress/text/1MiB", "Seal/16384KiB", "Encode/2-of-3/16MiB"} {
		st[n] = StageResult{MBps: 1000} // 1 ns a byte each
	}
	r := &Results{CorpusBytes: 1e9, Machine: Machine{CPUs: 2}, Embassy: EmbassyInfo{Hosts: 3, DataShards: 2}, CacheState: "dropped",
		Runs:      map[string]map[string]float64{"embassy": {"backup_s": 20, "backup1_input_bytes": 1e9, "backup1_sealed_bytes": 5e8}},
		ReadFloor: summariseReadFloor([]readFloorSample{{seconds: 9, cpu: 12, bytes: 1e9}, {seconds: 10, cpu: 12, bytes: 1e9}, {seconds: 14, cpu: 13, bytes: 1e9}}, 16, 4, false)}
	// Stages: 1+1+1 (chunk, hash, zstd) + 0.5 + 0.5 (seal, RS) + 1.5·0.5 (shard hashes) = 4.75 ns a byte.
	l := limitModel(st, r, r.Runs["embassy"])
	if math.Abs(l.NsPerInputByte-4.75) > 1e-9 || r.ReadFloor.Seconds != 10 || r.ReadFloor.CPU != 12 {
		t.Fatalf("model %.3f ns/B, floor %+v", l.NsPerInputByte, r.ReadFloor)
	}
	// CPU bound: (4.75 s + 12 s) / 2 = 8.375 s < 10 s read floor.
	if math.Abs(l.CPUBoundS-8.375) > 1e-9 || l.BoundS != 10 || l.BoundSlowest != "reading the files" || l.FractionOfBound != 0.5 || l.BoundMBps != 100 {
		t.Fatalf("limit %+v", l)
	}
	r.Limit = l
	md := renderMarkdown(r)
	for _, want := range []string{"**10.00 s** (9.00–14.00; 100.0 MB/s)", "**100.0 MB/s** is the limit here, set by reading the files", "**50 % of the limit with reading**"} {
		if !strings.Contains(md, want) {
			t.Errorf("markdown lacks %q", want)
		}
	}
	// A fast disk: CPU binds.
	r.ReadFloor = summariseReadFloor([]readFloorSample{{seconds: 2, cpu: 12, bytes: 1e9}}, 16, 4, false)
	if l := limitModel(st, r, r.Runs["embassy"]); math.Abs(l.BoundS-8.375) > 1e-9 || !strings.HasPrefix(l.BoundSlowest, "CPU") {
		t.Fatalf("fast disk: %+v", l)
	}
	// Both ways measured: the limit takes the one that leaves the backup the least room,
	// and the markdown names both. Dropping behind: 3.5 s and 6.5 s of CPU,
	// bound (4.75 + 6.5) / 2 = 5.625 s (medians of two); leaving the pages cached: 2 s but
	// 12 s of CPU, bound 8.375 s.
	cached := summariseReadFloor([]readFloorSample{{seconds: 2, cpu: 12, bytes: 1e9}}, 16, 4, false)
	dropped := summariseReadFloor([]readFloorSample{{seconds: 3, cpu: 6, bytes: 1e9}, {seconds: 4, cpu: 7, bytes: 1e9}}, 16, 4, true)
	r.ReadFloor, r.ReadFloors = nil, []*ReadFloor{cached, dropped}
	if l := limitModel(st, r, r.Runs["embassy"]); math.Abs(l.BoundS-5.625) > 1e-9 || r.ReadFloor != dropped {
		t.Fatalf("two ways: %+v, floor %+v", l, r.ReadFloor)
	} else {
		r.Limit = l
	}
	md = renderMarkdown(r)
	for _, want := range []string{"in **3.50 s** (3.00–4.00; 285.7 MB/s), using 6.50 s of CPU, dropping the pages it read", "Leaving the pages it read in the page cache, it takes 2.00 s (2.00–2.00) and 12.00 s of CPU; the limit takes the cheaper way."} {
		if !strings.Contains(md, want) {
			t.Errorf("markdown lacks %q", want)
		}
	}
	// A machine where dropping costs more: the cached way is the floor.
	dropped.CPU = 13
	if l := limitModel(st, r, r.Runs["embassy"]); math.Abs(l.BoundS-8.375) > 1e-9 || r.ReadFloor != cached {
		t.Fatalf("dropping dearer: %+v, floor %+v", l, r.ReadFloor)
	}
	r.ReadFloors = nil
	// No read floor measured: no bound, as before.
	r.ReadFloor = nil
	if l := limitModel(st, r, r.Runs["embassy"]); l.BoundS != 0 {
		t.Fatalf("bound without a read floor: %+v", l)
	}
}

// TestLimitPairedRounds: each round's backup is judged against the limit
// from that round's stage benchmarks and read floor; the median of those
// fractions is reported beside the one from medians, and the stage table
// takes each benchmark's median over the rounds.
func TestLimitPairedRounds(t *testing.T) {
	names := []string{"Chunker/random", "Chunker/text", "HasherSum/1024KiB", "Compress/random/1MiB", "Compress/text/1MiB", "Seal/16384KiB", "Encode/2-of-3/16MiB"}
	round := func(mbps float64) map[string]StageResult {
		st := map[string]StageResult{}
		for _, n := range names {
			st[n] = StageResult{Name: n, MBps: mbps, NsPerOp: 1e6 / mbps}
		}
		return st
	}
	// 4.75 ns a byte at 1000 MB/s (see TestLimitWithReadFloor); a round
	// at 500 MB/s is twice as slow: 9.5 ns.
	rounds := []map[string]StageResult{round(1000), round(500), round(1000)}
	med := medianStages(rounds)
	if med["Compress/text/1MiB"].MBps != 1000 || med["Seal/16384KiB"].NsPerOp != 1000 {
		t.Fatalf("medians %+v", med)
	}
	r := &Results{CorpusBytes: 1e9, Machine: Machine{CPUs: 2}, Embassy: EmbassyInfo{Hosts: 3, DataShards: 2}, CacheState: "dropped",
		Runs:        map[string]map[string]float64{"embassy": {"backup_s": 10, "backup1_input_bytes": 1e9, "backup1_sealed_bytes": 5e8}},
		Samples:     map[string]sampleSet{"embassy": {"backup_s": {10, 12, 8}}},
		StageRounds: rounds}
	floor := [2][]readFloorSample{
		{{seconds: 2, cpu: 12, bytes: 1e9}, {seconds: 2, cpu: 12, bytes: 1e9}, {seconds: 2, cpu: 12, bytes: 1e9}},
		{{seconds: 3, cpu: 5.25, bytes: 1e9}, {seconds: 3, cpu: 6.5, bytes: 1e9}, {seconds: 3, cpu: 3.25, bytes: 1e9}},
	}
	l := limitModel(med, r, r.Runs["embassy"])
	l.pairRounds(rounds, floor, r, r.Runs["embassy"])
	// Round 1: (4.75 + 5.25) / 2 = 5 s against 10 s; round 2: (9.5 + 6.5) / 2
	// = 8 s against 12 s; round 3: (4.75 + 3.25) / 2 = 4 s against 8 s.
	want := []float64{0.5, 8.0 / 12, 0.5}
	if len(l.Rounds) != 3 {
		t.Fatalf("rounds %+v", l.Rounds)
	}
	for i, x := range l.Rounds {
		if math.Abs(x.Fraction-want[i]) > 1e-9 || x.Round != i+1 {
			t.Errorf("round %d: %+v, want fraction %.4f", i+1, x, want[i])
		}
	}
	if l.Paired != 0.5 || l.PairedSpread != [2]float64{0.5, 8.0 / 12} {
		t.Fatalf("paired %.4f (%v)", l.Paired, l.PairedSpread)
	}
	if l.Rounds[1].StagesS != 9.5 || l.Rounds[1].FloorCPU != 6.5 {
		t.Fatalf("round 2: %+v", l.Rounds[1])
	}
	// A round without its backup is left out.
	l2 := limitModel(med, r, r.Runs["embassy"])
	r.Samples["embassy"]["backup_s"] = []float64{10}
	l2.pairRounds(rounds, floor, r, r.Runs["embassy"])
	if len(l2.Rounds) != 1 || l2.Paired != 0.5 {
		t.Fatalf("one backup: %+v", l2.Rounds)
	}
	r.Limit = l
	md := renderMarkdown(r)
	for _, want := range []string{"run in each of the 3 rounds just before embassy's first backup", "**50.0 %** (median; 50.0–66.7 %; round 1: limit 5.00 s (stages 4.75 s and reading 5.25 s of CPU), backup 10.00 s, 50.0 %"} {
		if !strings.Contains(md, want) {
			t.Errorf("markdown lacks %q", want)
		}
	}
}
