package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
	"slices"
	"strings"
)

// Results is the JSON written to --out. runs holds the medians; spread the
// [min, max] of the same metrics; samples every round's value.
type Results struct {
	CorpusBytes   int64                            `json:"corpus_bytes"`
	Runs          map[string]map[string]float64    `json:"runs"`
	Versions      map[string]string                `json:"versions"`
	Spread        map[string]map[string][2]float64 `json:"spread"`
	Samples       map[string]sampleSet             `json:"samples"`
	Flags         map[string][]string              `json:"flags"`
	Machine       Machine                          `json:"machine"`
	CacheState    string                           `json:"cache_state"`
	RestoreTarget string                           `json:"restore_target"`
	Load          LoadInfo                         `json:"load_average"`
	CorpusFiles   int                              `json:"corpus_files"`
	Corpus        json.RawMessage                  `json:"corpus,omitempty"`
	Edit          EditInfo                         `json:"edit"`
	Embassy       EmbassyInfo                      `json:"embassy"`
	Date          string                           `json:"date"`
	Label         string                           `json:"label"`
	Command       string                           `json:"command"`
	Rounds        int                              `json:"rounds"`
	Tools         []string                         `json:"tools"`
	Stages        map[string]StageResult           `json:"stage_benchmarks,omitempty"` // each benchmark's median over StageRounds
	StageRounds   []map[string]StageResult         `json:"stage_benchmarks_rounds,omitempty"`
	Limit         *Limit                           `json:"limit,omitempty"`
	ReadFloor     *ReadFloor                       `json:"read_floor,omitempty"`  // the one the limit uses
	ReadFloors    []*ReadFloor                     `json:"read_floors,omitempty"` // each way of reading measured
	MTLS          *MTLSRatios                      `json:"mtls_vs_local,omitempty"`
	WallSeconds   float64                          `json:"wall_seconds"`
}

// LoadInfo is the machine's 1-minute load average at the start of the run,
// the largest seen just before a timed command, and at the end: other work
// on the machine shows here.
type LoadInfo struct {
	Start float64 `json:"start"`
	Max   float64 `json:"max_before_timed"`
	End   float64 `json:"end"`
}

// EditInfo is the edit applied between the two backups.
type EditInfo struct {
	Fraction float64 `json:"fraction"`
	Seed     uint64  `json:"seed"`
}

// EmbassyInfo is embassy's erasure layout in this run.
type EmbassyInfo struct {
	Hosts      int `json:"n"`
	DataShards int `json:"k"`
}

var jsonUnmarshal = json.Unmarshal

// MTLSRatios compares embassy against host nodes over mutual TLS with
// embassy against local directories, in the same run: each is throughput
// over mTLS ÷ throughput to local directories (the local median time ÷ the
// mTLS median time), so 1 means no cost for the network path. Issue 3's
// goal is a first backup at BackupGoal or better.
type MTLSRatios struct {
	Backup        float64 `json:"backup_throughput"`
	Incremental   float64 `json:"incremental_throughput"`
	Restore       float64 `json:"restore_throughput"`
	Verify        float64 `json:"verify_throughput"`
	BackupGoal    float64 `json:"backup_goal"`
	BackupGoalMet bool    `json:"backup_goal_met"`
}

// mtlsGoal is issue 3's goal: mTLS backup throughput ≥ 80 % of local.
const mtlsGoal = 0.80

// mtlsRatios returns the comparison when both embassy variants ran.
func mtlsRatios(r *Results) *MTLSRatios {
	l, ok1 := r.Runs["embassy"]
	m, ok2 := r.Runs["embassy-mtls"]
	if !ok1 || !ok2 {
		return nil
	}
	q := func(k string) float64 {
		if m[k] <= 0 {
			return 0
		}
		return l[k] / m[k]
	}
	x := &MTLSRatios{Backup: q("backup_s"), Incremental: q("incremental_s"), Restore: q("restore_s"), Verify: q("verify_s"), BackupGoal: mtlsGoal}
	x.BackupGoalMet = x.Backup >= mtlsGoal
	return x
}

// stats returns the median, minimum and maximum of v.
func stats(v []float64) (med, lo, hi float64) {
	if len(v) == 0 {
		return math.NaN(), math.NaN(), math.NaN()
	}
	s := slices.Clone(v)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		med = s[n/2]
	} else {
		med = (s[n/2-1] + s[n/2]) / 2
	}
	return med, s[0], s[n-1]
}

type metric struct {
	key, label, unit string
}

// mainMetrics are the table rows; all are costs (lower is better).
var mainMetrics = []metric{
	{"backup_s", "first backup", "s"},
	{"incremental_s", "second backup, after the 1 % edit", "s"},
	{"restore_s", "restore of the second snapshot", "s"},
	{"verify_s", "full read-verify", "s"},
	{"stored_bytes", "stored bytes, both snapshots", "MB"},
	{"peak_rss_kb", "peak RSS of the two backups", "MiB"},
}

var moreMetrics = []metric{
	{"stored_first_bytes", "stored bytes after the first backup", "MB"},
	{"local_bytes", "local state (embassy HOME, restic cache, borg cache + config)", "MB"},
	{"restore_rss_kb", "peak RSS of restore", "MiB"},
	{"verify_rss_kb", "peak RSS of read-verify", "MiB"},
	{"backup1_cpu_s", "CPU time (user + system) of the first backup", "s"},
	{"backup2_cpu_s", "CPU time of the second backup", "s"},
	{"restore_cpu_s", "CPU time of restore", "s"},
	{"verify_cpu_s", "CPU time of read-verify", "s"},
}

func scale(unit string, v float64) float64 {
	switch unit {
	case "MB":
		return v / 1e6
	case "MiB":
		return v / 1024 // from KiB
	}
	return v
}

func num(v float64) string {
	switch a := math.Abs(v); {
	case math.IsNaN(v):
		return "–"
	case a >= 100:
		return fmt.Sprintf("%.0f", v)
	case a >= 10:
		return fmt.Sprintf("%.1f", v)
	default:
		return fmt.Sprintf("%.2f", v)
	}
}

func (r *Results) cell(tool string, m metric) string {
	med, ok := r.Runs[tool][m.key]
	if !ok {
		return "–"
	}
	sp := r.Spread[tool][m.key]
	s := num(scale(m.unit, med))
	if r.Rounds > 1 {
		s += fmt.Sprintf(" (%s–%s)", num(scale(m.unit, sp[0])), num(scale(m.unit, sp[1])))
	}
	return s
}

func (r *Results) ratio(a, b string, key string) string {
	x, ok1 := r.Runs[a][key]
	y, ok2 := r.Runs[b][key]
	if !ok1 || !ok2 || y == 0 {
		return "–"
	}
	return fmt.Sprintf("%.2f×", x/y)
}

func (r *Results) table(b *strings.Builder, metrics []metric) {
	peers := []string{}
	for _, t := range []string{"restic", "borg"} {
		if _, ok := r.Runs[t]; ok {
			peers = append(peers, t)
		}
	}
	_, haveEmb := r.Runs["embassy"]
	b.WriteString("| metric |")
	for _, t := range r.Tools {
		fmt.Fprintf(b, " %s |", t)
	}
	if haveEmb {
		for _, p := range peers {
			fmt.Fprintf(b, " embassy/%s |", p)
		}
	}
	b.WriteString("\n|---|")
	for range r.Tools {
		b.WriteString("---:|")
	}
	if haveEmb {
		for range peers {
			b.WriteString("---:|")
		}
	}
	b.WriteString("\n")
	for _, m := range metrics {
		fmt.Fprintf(b, "| %s (%s) |", m.label, m.unit)
		for _, t := range r.Tools {
			fmt.Fprintf(b, " %s |", r.cell(t, m))
		}
		if haveEmb {
			for _, p := range peers {
				fmt.Fprintf(b, " %s |", r.ratio("embassy", p, m.key))
			}
		}
		b.WriteString("\n")
	}
}

func gib(v int64) string { return fmt.Sprintf("%.1f GiB", float64(v)/(1<<30)) }

// renderMarkdown writes the peers section: machine, corpus, cache state, the
// peer table, the stage table and limit, versions and flags.
func renderMarkdown(r *Results) string {
	var b strings.Builder
	label := r.Label
	if label == "" {
		label = "custom"
	}
	fmt.Fprintf(&b, "## Peers: embassy, restic and borg on the same corpus\n\n")
	fmt.Fprintf(&b, "Written by `bench/run.sh` (see [bench/README.md](../bench/README.md)); do not edit by hand. ")
	plural := "s, tool order rotated each round"
	if r.Rounds == 1 {
		plural = ""
	}
	fmt.Fprintf(&b, "Run %s, size **%s**, %d round%s; whole run %.0f s.\n", r.Date, label, r.Rounds, plural, r.WallSeconds)
	if r.Command != "" {
		fmt.Fprintf(&b, "Command: `%s`.\n", r.Command)
	}
	b.WriteString("\n")
	m := r.Machine
	fmt.Fprintf(&b, "- **Machine:** %d CPUs (%s), %s RAM, %s; work directory on %s. 1-minute load average %.1f at the start, at most %.1f before a timed command, %.1f at the end.\n",
		m.CPUs, m.CPUModel, gib(m.MemBytes), m.Kernel, m.Disk, r.Load.Start, r.Load.Max, r.Load.End)
	fmt.Fprintf(&b, "- **Corpus:** %s bytes (%.1f MB) in %d files", commas(r.CorpusBytes), float64(r.CorpusBytes)/1e6, r.CorpusFiles)
	var cs struct {
		Seed      uint64 `json:"seed"`
		Rows      int    `json:"population_rows"`
		Registers map[string]struct {
			Bytes int64 `json:"bytes"`
			Files int   `json:"files"`
		} `json:"registers"`
	}
	if r.Corpus != nil && json.Unmarshal(r.Corpus, &cs) == nil {
		fmt.Fprintf(&b, ", seed %d: population register %s rows (%.0f MB CSV)", cs.Seed, commas(int64(cs.Rows)), float64(cs.Registers["population"].Bytes)/1e6)
		fmt.Fprintf(&b, ", land register %d incompressible scans (%.0f MB)", cs.Registers["land"].Files, float64(cs.Registers["land"].Bytes)/1e6)
		fmt.Fprintf(&b, ", %d State Gazette texts (%.0f MB)", cs.Registers["gazette"].Files, float64(cs.Registers["gazette"].Bytes)/1e6)
		fmt.Fprintf(&b, ", business register %s small JSON files (%.0f MB)", commas(int64(cs.Registers["business"].Files)), float64(cs.Registers["business"].Bytes)/1e6)
	}
	fmt.Fprintf(&b, ". Edit between the backups: `sample.Edit` fraction %.2f, seed %d, identical every round.\n", r.Edit.Fraction, r.Edit.Seed)
	cache := r.CacheState
	if cache == "dropped" {
		cache = "dropped (`sync; echo 3 > /proc/sys/vm/drop_caches`) before every timed operation"
	}
	fmt.Fprintf(&b, "- **Page cache:** %s.\n", cache)
	if r.RestoreTarget != "" {
		fmt.Fprintf(&b, "- **Restore target:** %s.\n", r.RestoreTarget)
	}
	fmt.Fprintf(&b, "- **embassy:** %d local-directory hosts, n=%d, k=%d (every byte stored %.2f times), custodian threshold 2 of 3; restore from exactly k hosts and 2 custodians.\n",
		r.Embassy.Hosts, r.Embassy.Hosts, r.Embassy.DataShards, float64(r.Embassy.Hosts)/float64(r.Embassy.DataShards))
	if _, ok := r.Runs["embassy-mtls"]; ok {
		fmt.Fprintf(&b, "- **embassy-mtls:** the same guest, custodians and k, but the %d hosts are `embassy host serve` processes on 127.0.0.1 (each with the others as witness peers), started before the first backup and stopped with SIGTERM after verify; "+
			"every shard goes over mutual TLS, and each host re-hashes it, fsyncs it, writes its BLAKE3 outboard and logs the write in its transparency log. Restore presents a read grant signed by the 2 restoring custodians.\n",
			r.Embassy.Hosts)
	}
	b.WriteString("- **Peers** run with their defaults, as their users run them; every restore of every tool was checked against the edited source (path, mode and SHA-256 of every file) before its time was kept.\n\n")

	b.WriteString("Median of the rounds, (min–max) in brackets. Every metric is a cost: a ratio below 1× means embassy needs less.\n\n")
	r.table(&b, mainMetrics)
	if e, ok := r.Runs["embassy"]; ok {
		if v, ok := e["stored_per_copy_bytes"]; ok {
			fmt.Fprintf(&b, "\nembassy's stored bytes ÷ (n/k) = %.1f MB: what one copy costs, to compare with the peers' single repository.", v/1e6)
			for _, p := range []string{"restic", "borg"} {
				if pr, ok := r.Runs[p]["stored_bytes"]; ok && pr > 0 {
					fmt.Fprintf(&b, " Against %s: %.2f×.", p, v/pr)
				}
			}
			b.WriteString("\n")
		}
	}
	if _, ok := r.Runs["embassy"]; ok {
		b.WriteString("\nNot the same work in every row: **read-verify** in restic and borg decrypts and authenticates every blob with the repository key; " +
			"embassy's `check --read-data` needs no key (an auditor runs the same check), reads every shard, checks it against its BLAKE3 address " +
			"(which the agent-signed envelope lists) and checks each pack's Reed–Solomon consistency; decryption is first exercised by restore. " +
			"embassy's **stored bytes** include n/k redundancy by design. For its **peak RSS**: the CLI sets a 224 MiB soft limit on the Go heap; RSS also counts the runtime, stacks and page tables.\n")
	}
	b.WriteString("\nMore, same runs:\n\n")
	r.table(&b, moreMetrics)
	var tp []string
	for _, t := range r.Tools {
		if s := r.Runs[t]["backup_s"]; s > 0 {
			tp = append(tp, fmt.Sprintf("%s %.1f MB/s first backup, %.1f MB/s restore", t,
				float64(r.CorpusBytes)/1e6/s, float64(r.CorpusBytes)/1e6/r.Runs[t]["restore_s"]))
		}
	}
	if len(tp) > 0 {
		fmt.Fprintf(&b, "\nThroughput (corpus bytes ÷ median time): %s.\n", strings.Join(tp, "; "))
	}
	r.mtlsSection(&b)
	if l := r.Limit; l != nil {
		b.WriteString("\n### How close embassy is to this machine's limit\n\n")
		fmt.Fprintf(&b, "Stage throughputs from the `testing.B` benchmarks on one core (`go test -run '^$' -bench … -cpu 1`)")
		if n := len(r.StageRounds); n > 1 {
			fmt.Fprintf(&b, ", run in each of the %d rounds just before embassy's first backup (with the read floor below); each benchmark's median over the rounds", n)
		}
		b.WriteString(". ")
		fmt.Fprintf(&b, "Per input byte of a first backup, each stage handles the bytes in the third column: every byte is chunked, hashed and compressed; "+
			"the sealed bytes (%.3f of the input here: zstd output plus pack overhead, measured from embassy's own first backup) are sealed and Reed–Solomon coded; "+
			"the %.2f×-expanded shards are BLAKE3-hashed once (each host's store computes the address as it writes). "+
			"Where a stage's speed depends on the data, the random and text benchmarks are weighted by the corpus's incompressible share (%.2f, the land register's scans).\n\n",
			l.CompressedFraction, l.Expansion, l.IncompressibleFraction)
		b.WriteString("| stage | benchmark | MB/s, one core | bytes per input byte | ns per input byte | share of CPU |\n|---|---|---:|---:|---:|---:|\n")
		for _, s := range l.Stages {
			fmt.Fprintf(&b, "| %s | %s | %.0f | %.3f | %.2f | %.0f %% |\n", s.Stage, s.Benchmarks, s.MBps, s.BytesPerInput, s.NsPerInput, 100*s.Share)
		}
		fmt.Fprintf(&b, "| **all stages** | | %.0f | | %.2f | 100 %% |\n\n", 1e3/l.NsPerInputByte, l.NsPerInputByte)
		fmt.Fprintf(&b, "Model: time per input byte on one core = Σ (bytes the stage handles per input byte ÷ its speed) = %.2f ns; "+
			"spread over %d cores with perfect parallelism, the ceiling is **%.0f MB/s**. It leaves out reading the files, writing and fsyncing %.2f× the sealed bytes, "+
			"trees, dedup look-ups, copies and garbage collection, so no real backup reaches it. The most expensive stage is %s.\n\n",
			l.NsPerInputByte, l.Cores, l.LimitMBps, l.Expansion, l.Slowest)
		if f := r.ReadFloor; f != nil && l.BoundS > 0 {
			fmt.Fprintf(&b, "Reading the files is a stage too, the one the model leaves out: `bench/readfloor` (the same tree, %s like the backup, %s cache, same rounds) "+
				"reads every file and does nothing with the bytes in **%.2f s** (%.2f–%.2f; %.1f MB/s), using %.2f s of CPU, %s.",
				readersText(f), map[bool]string{true: "cold", false: "warm"}[r.CacheState == "dropped"], f.Seconds, f.Spread[0], f.Spread[1], f.MBps, f.CPU, readWay(f))
			for _, o := range r.ReadFloors {
				if o != f && o != nil {
					fmt.Fprintf(&b, " %s, it takes %.2f s (%.2f–%.2f) and %.2f s of CPU; the limit takes the cheaper way.", upperFirst(readWay(o)), o.Seconds, o.Spread[0], o.Spread[1], o.CPU)
				}
			}
			fmt.Fprintf(&b, " So a first backup takes at least %.2f s (the read floor) and at least %.2f s (the model's CPU plus the reading's, over %d cores): "+
				"**%.1f MB/s** is the limit here, set by %s.\n\n",
				l.ReadFloorS, l.CPUBoundS, l.Cores, l.BoundMBps, l.BoundSlowest)
		}
		fmt.Fprintf(&b, "embassy's first backup ran at **%.1f MB/s** (corpus bytes ÷ median time, %s cache), **%.0f %% of the %d-core CPU-stage ceiling**",
			l.MeasuredMBps, map[bool]string{true: "cold", false: "warm"}[r.CacheState == "dropped"], 100*l.Fraction, l.Cores)
		if l.BoundS > 0 {
			fmt.Fprintf(&b, " and **%.0f %% of the limit with reading** (%s)", 100*l.FractionOfBound, l.BoundSlowest)
		}
		b.WriteString(".")
		if len(l.Rounds) > 0 {
			var rs []string
			for _, x := range l.Rounds {
				rs = append(rs, fmt.Sprintf("round %d: limit %.2f s (stages %.2f s and reading %.2f s of CPU), backup %.2f s, %.1f %%", x.Round, x.BoundS, x.StagesS, x.FloorCPU, x.BackupS, 100*x.Fraction))
			}
			fmt.Fprintf(&b, " Round by round, each first backup against the limit from the stage benchmarks and read floor measured just before it: **%.1f %%** (median; %.1f–%.1f %%; %s).",
				100*l.Paired, 100*l.PairedSpread[0], 100*l.PairedSpread[1], strings.Join(rs, "; "))
		}
		if e := r.Runs["embassy"]; e["backup1_cpu_s"] > 0 && e["backup_s"] > 0 {
			fmt.Fprintf(&b, " It used %.2f s of CPU (user + system) in %.2f s of wall time, %.0f %% of the %d cores; the model's stages account for %.2f s of one core.",
				e["backup1_cpu_s"], e["backup_s"], 100*e["backup1_cpu_s"]/e["backup_s"]/float64(l.Cores), l.Cores, l.NsPerInputByte*float64(r.CorpusBytes)/1e9)
		}
		b.WriteString("\n")
	}

	b.WriteString("\n### Versions and flags\n\n")
	keys := make([]string, 0, len(r.Versions))
	for k := range r.Versions {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		fmt.Fprintf(&b, "- %s: `%s`\n", k, r.Versions[k])
	}
	b.WriteString("\nEach timed command ran as `/usr/bin/time -v CMD` (peak RSS from \"Maximum resident set size\"), its standard input closed; `$W` is the work directory. Secrets are in files or the environment, never in arguments.\n")
	for _, t := range r.Tools {
		fmt.Fprintf(&b, "\n%s:\n\n```\n%s\n```\n", t, strings.Join(r.Flags[t], "\n"))
	}
	return b.String()
}

// mtlsSection compares the two embassy variants: times, throughput ratio,
// client and host CPU, the issue 3 goal line, and the host processes' RSS.
func (r *Results) mtlsSection(b *strings.Builder) {
	x := r.MTLS
	if x == nil {
		return
	}
	l, m := r.Runs["embassy"], r.Runs["embassy-mtls"]
	b.WriteString("\n### embassy over mutual TLS against embassy on local directories\n\n")
	b.WriteString("Same runs. The throughput ratio is the local median time ÷ the mTLS median time (1 = the network path costs nothing). " +
		"Client CPU is the embassy command's (`/usr/bin/time`); host CPU is the three `host serve` processes' user + system time during the operation (`/proc/PID/stat`).\n\n")
	b.WriteString("| operation | embassy, local dirs (s) | embassy-mtls (s) | mTLS ÷ local throughput | client CPU, local (s) | client CPU, mTLS (s) | 3 hosts' CPU (s) |\n|---|---:|---:|---:|---:|---:|---:|\n")
	rows := []struct {
		label, time, cpu, host string
		ratio                  float64
	}{
		{"first backup", "backup_s", "backup1_cpu_s", "backup1_host_cpu_s", x.Backup},
		{"second backup, after the 1 % edit", "incremental_s", "backup2_cpu_s", "backup2_host_cpu_s", x.Incremental},
		{"restore of the second snapshot", "restore_s", "restore_cpu_s", "restore_host_cpu_s", x.Restore},
		{"full read-verify", "verify_s", "verify_cpu_s", "verify_host_cpu_s", x.Verify},
	}
	for _, row := range rows {
		fmt.Fprintf(b, "| %s | %s | %s | %.2f× | %s | %s | %s |\n", row.label,
			r.cell("embassy", metric{key: row.time}), r.cell("embassy-mtls", metric{key: row.time}), row.ratio,
			num(l[row.cpu]), num(m[row.cpu]), num(m[row.host]))
	}
	met := "**not met**"
	if x.BackupGoalMet {
		met = "met"
	}
	fmt.Fprintf(b, "\n**embassy-mtls / embassy (local dirs):** first backup at **%.2f×** the local throughput (issue 3's goal ≥ %.2f×: %s), restore at **%.2f×**; second backup %.2f×, read-verify %.2f×.\n",
		x.Backup, x.BackupGoal, met, x.Restore, x.Incremental, x.Verify)
	b.WriteString("\nNot the same work in the verify row: against host nodes, `check --read-data` also audits each host's transparency log and its witnesses' cosignatures " +
		"and has each host answer a storage proof (917 random 16 KiB slices, checked against the shard addresses); the signed receipts are kept in HOME's `evidence/`, " +
		"which is why embassy-mtls's local state is larger.\n")
	if v, ok := m["host_peak_rss_kb"]; ok {
		fmt.Fprintf(b, "\nHost processes: the largest peak RSS of one host was %.0f MiB (the three together %.0f MiB), and they used %.2f s of CPU from start to stop.",
			v/1024, m["host_peak_rss_sum_kb"]/1024, m["host_cpu_s"])
	}
	if v, ok := m["host_dir_bytes"]; ok {
		fmt.Fprintf(b, " The host directories hold %.1f MB in all, %.1f MB of it the shards under store/ (the rest: outboards, transparency logs, witness state).", v/1e6, m["stored_bytes"]/1e6)
	}
	b.WriteString("\n")
}

func commas(n int64) string {
	s := fmt.Sprint(n)
	var out []byte
	for i := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			out = append(out, ' ')
		}
		out = append(out, s[i])
	}
	return string(out)
}

const (
	beginMarker = "<!-- peers:begin -->"
	endMarker   = "<!-- peers:end -->"
)

// writeSection puts section between the peers markers of file, appending
// the markers at the end when they are absent and creating the file when
// it is missing. Nothing outside the markers changes.
func writeSection(file, section string) error {
	b, err := os.ReadFile(file)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return os.WriteFile(file, []byte(spliceSection(string(b), section)), 0o644)
}

func spliceSection(doc, section string) string {
	block := beginMarker + "\n" + strings.TrimRight(section, "\n") + "\n" + endMarker
	if i := strings.Index(doc, beginMarker); i >= 0 {
		if j := strings.Index(doc[i:], endMarker); j >= 0 {
			return doc[:i] + block + doc[i+j+len(endMarker):]
		}
	}
	if doc != "" && !strings.HasSuffix(doc, "\n") {
		doc += "\n"
	}
	if doc != "" {
		doc += "\n"
	}
	return doc + block + "\n"
}

// readWay says whether the read floor dropped the pages it read.
func readWay(f *ReadFloor) string {
	if f.DropBehind {
		return "dropping the pages it read from the page cache as the backup does (`-drop-behind`)"
	}
	return "leaving the pages it read in the page cache"
}

func upperFirst(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}

// readersText is how the read floor read: its readers and, if recorded
// (older results have neither), its walkers and batches of small files.
func readersText(f *ReadFloor) string {
	s := fmt.Sprintf("%d readers", f.Readers)
	if f.Walkers > 0 {
		s += fmt.Sprintf(", %d walkers", f.Walkers)
	}
	if f.Batch > 0 {
		s += fmt.Sprintf(", small files in batches of up to %d", f.Batch)
	}
	return s
}
