package main

import (
	"bufio"
	"context"
	"fmt"
	"maps"
	"os/exec"
	"regexp"
	"strconv"
	"strings"

	"github.com/embassy-project/embassy/internal/agent"
)

// stageBench is one package's stage benchmarks.
var stageBench = []struct{ pkg, pattern string }{
	{"./internal/chunk", "^Benchmark(Chunker|HasherSum)$"},
	{"./internal/pack", "^BenchmarkCompress$"},
	{"./internal/seal", "^BenchmarkSeal$"},
	{"./internal/erasure", "^BenchmarkEncode$"},
}

// StageResult is one benchmark's throughput on one core.
type StageResult struct {
	Package string  `json:"package"`
	Name    string  `json:"name"`
	MBps    float64 `json:"mb_per_s"` // 10^6 bytes per second, as testing.B reports
	NsPerOp float64 `json:"ns_per_op"`
}

// runStages runs the stage benchmarks on one core (-cpu 1: Reed–Solomon
// would otherwise spread a large pack across cores) and returns their
// results by name, e.g. "Chunker/random".
func runStages(ctx context.Context, repo, benchtime string) (map[string]StageResult, error) {
	out := map[string]StageResult{}
	for _, sb := range stageBench {
		cmd := exec.CommandContext(ctx, "go", "test", "-run", "^$", "-bench", sb.pattern, "-benchtime", benchtime, "-count", "1", "-cpu", "1", sb.pkg)
		cmd.Dir = repo
		cmd.Env = toolEnv(nil)
		b, err := cmd.CombinedOutput()
		if err != nil {
			return nil, fmt.Errorf("go test -bench %s %s: %w\n%s", sb.pattern, sb.pkg, err, b)
		}
		for name, r := range parseBench(string(b)) {
			r.Package = sb.pkg
			out[name] = r
		}
	}
	return out, nil
}

var benchLine = regexp.MustCompile(`^Benchmark(\S+?)(?:-\d+)?\s+\d+\s+([\d.]+) ns/op\s+([\d.]+) MB/s`)

// parseBench reads `go test -bench` output lines that report MB/s.
func parseBench(s string) map[string]StageResult {
	out := map[string]StageResult{}
	sc := bufio.NewScanner(strings.NewReader(s))
	for sc.Scan() {
		m := benchLine.FindStringSubmatch(sc.Text())
		if m == nil {
			continue
		}
		ns, _ := strconv.ParseFloat(m[2], 64)
		mbps, _ := strconv.ParseFloat(m[3], 64)
		out[m[1]] = StageResult{Name: m[1], MBps: mbps, NsPerOp: ns}
	}
	return out
}

// StageRow is one stage of the model: how many bytes it processes per input
// byte, at what single-core speed, and its share of the CPU time.
type StageRow struct {
	Stage         string  `json:"stage"`
	Benchmarks    string  `json:"benchmarks"`
	MBps          float64 `json:"mb_per_s"` // effective single-core speed on this corpus's mix
	BytesPerInput float64 `json:"bytes_per_input_byte"`
	NsPerInput    float64 `json:"ns_per_input_byte"`
	Share         float64 `json:"share"`
}

// Limit is the CPU-bound ceiling of a first backup on this machine, from
// the stage benchmarks, and embassy's measured throughput against it.
type Limit struct {
	Cores                  int        `json:"cores"`
	IncompressibleFraction float64    `json:"incompressible_fraction"` // of input: the land register's scans
	CompressedFraction     float64    `json:"compressed_fraction"`     // sealed bytes ÷ input bytes, first backup
	Expansion              float64    `json:"expansion"`               // n/k
	Stages                 []StageRow `json:"stages"`
	NsPerInputByte         float64    `json:"ns_per_input_byte"` // one core, all stages
	Slowest                string     `json:"slowest_stage"`
	LimitMBps              float64    `json:"limit_mb_per_s"`    // all cores, perfect parallelism
	MeasuredMBps           float64    `json:"measured_mb_per_s"` // corpus bytes ÷ median first backup
	Fraction               float64    `json:"fraction_of_limit"`

	// Reading the files is a stage too, measured (ReadFloor), not
	// benchmarked: a first backup takes at least the read floor's time, and
	// at least the CPU of the stages and of the reading spread over every
	// core. The larger bound is the limit the slowest stage implies.
	ReadFloorS      float64 `json:"read_floor_s,omitempty"`
	CPUBoundS       float64 `json:"cpu_bound_s,omitempty"`
	BoundS          float64 `json:"bound_s,omitempty"`
	BoundMBps       float64 `json:"bound_mb_per_s,omitempty"`
	BoundSlowest    string  `json:"bound_slowest,omitempty"`
	FractionOfBound float64 `json:"fraction_of_bound,omitempty"`

	// Rounds pairs each round's first backup with the limit from that
	// round's stage benchmarks and read floor, measured just before it;
	// Paired is the median of their fractions, PairedSpread the lowest
	// and highest. Medians taken apart (FractionOfBound) can come from
	// different moments of a machine whose speed drifts.
	Rounds       []RoundLimit `json:"rounds,omitempty"`
	Paired       float64      `json:"fraction_of_bound_paired,omitempty"`
	PairedSpread [2]float64   `json:"fraction_of_bound_paired_spread,omitempty"`
}

// RoundLimit is one round's limit and first backup.
type RoundLimit struct {
	Round    int     `json:"round"`
	StagesS  float64 `json:"stages_cpu_s"` // the model's CPU for the corpus, one core
	FloorCPU float64 `json:"read_floor_cpu_s"`
	BoundS   float64 `json:"bound_s"`
	BackupS  float64 `json:"backup_s"`
	Fraction float64 `json:"fraction_of_bound"`
}

// medianStages is each benchmark's median speed over the rounds.
func medianStages(rounds []map[string]StageResult) map[string]StageResult {
	out := map[string]StageResult{}
	names := map[string]bool{}
	for _, st := range rounds {
		for name := range st {
			names[name] = true
		}
	}
	for name := range names {
		var mbps, ns []float64
		var r StageResult
		for _, st := range rounds {
			if v, ok := st[name]; ok {
				r = v
				mbps, ns = append(mbps, v.MBps), append(ns, v.NsPerOp)
			}
		}
		r.MBps, _, _ = stats(mbps)
		r.NsPerOp, _, _ = stats(ns)
		out[name] = r
	}
	return out
}

// pairRounds fills l.Rounds and l.Paired: round i's limit from
// stageRounds[i] and floor[.][i] (both ways of reading, the cheaper taken,
// as for the medians) against embassy's first backup in round i. Rounds
// missing any of these are left out.
func (l *Limit) pairRounds(stageRounds []map[string]StageResult, floor [2][]readFloorSample, res *Results, emb map[string]float64) {
	backups := res.Samples["embassy"]["backup_s"]
	var fr []float64
	for i, st := range stageRounds {
		if i >= len(backups) || backups[i] <= 0 {
			break
		}
		rr := *res
		rr.ReadFloors, rr.ReadFloor = nil, nil
		for way, ss := range floor {
			if i < len(ss) {
				rr.ReadFloors = append(rr.ReadFloors, summariseReadFloor(ss[i:i+1], agent.Readers, agent.Walkers, way == 1))
			}
		}
		e := maps.Clone(emb)
		e["backup_s"] = backups[i]
		rl := limitModel(st, &rr, e)
		if rl.BoundS <= 0 {
			continue
		}
		r := RoundLimit{Round: i + 1, StagesS: rl.NsPerInputByte * float64(res.CorpusBytes) / 1e9, BoundS: rl.BoundS, BackupS: backups[i], Fraction: rl.FractionOfBound}
		if rr.ReadFloor != nil {
			r.FloorCPU = rr.ReadFloor.CPU
		}
		l.Rounds = append(l.Rounds, r)
		fr = append(fr, r.Fraction)
	}
	if len(fr) > 0 {
		l.Paired, l.PairedSpread[0], l.PairedSpread[1] = stats(fr)
	}
}

// limitModel computes the ceiling: each stage's single-core time per input
// byte is (bytes it handles per input byte) ÷ (its speed); their sum is one
// core's time per input byte; the ceiling spreads it over every core with
// perfect parallelism. Disk I/O, tree building, dedup look-ups, copies and
// garbage collection are left out, so the ceiling is optimistic.
func limitModel(st map[string]StageResult, res *Results, emb map[string]float64) *Limit {
	l := &Limit{Cores: res.Machine.CPUs, Expansion: float64(res.Embassy.Hosts) / float64(res.Embassy.DataShards)}
	l.IncompressibleFraction = incompressibleFraction(res)
	if in := emb["backup1_input_bytes"]; in > 0 && emb["backup1_sealed_bytes"] > 0 {
		l.CompressedFraction = emb["backup1_sealed_bytes"] / in
	} else if res.CorpusBytes > 0 {
		l.CompressedFraction = emb["stored_first_bytes"] / l.Expansion / float64(res.CorpusBytes)
	}
	fr, c := l.IncompressibleFraction, l.CompressedFraction
	rs := fmt.Sprintf("Encode/%d-of-%d/16MiB", res.Embassy.DataShards, res.Embassy.Hosts)
	type part struct {
		name string
		w    float64
	}
	stages := []struct {
		stage string
		bytes float64
		parts []part
	}{
		{"chunking (keyed FastCDC)", 1, []part{{"Chunker/random", fr}, {"Chunker/text", 1 - fr}}},
		{"keyed BLAKE3 chunk IDs", 1, []part{{"HasherSum/1024KiB", 1}}},
		{"zstd level 1", 1, []part{{"Compress/random/1MiB", fr}, {"Compress/text/1MiB", 1 - fr}}},
		{"AEAD seal (AES-256-GCM, HPKE-wrapped key)", c, []part{{"Seal/16384KiB", 1}}},
		{fmt.Sprintf("Reed–Solomon encode (%d of %d)", res.Embassy.DataShards, res.Embassy.Hosts), c, []part{{rs, 1}}},
		{"BLAKE3 shard addresses (one per shard, by its store)", l.Expansion * c, []part{{"HasherSum/1024KiB", 1}}},
	}
	var slowest float64
	for _, s := range stages {
		var nsPerByte float64 // per byte the stage handles
		var names []string
		ok := true
		for _, p := range s.parts {
			r, found := st[p.name]
			if !found || r.MBps <= 0 {
				ok = false
				break
			}
			nsPerByte += p.w * 1e3 / r.MBps
			if len(s.parts) > 1 {
				names = append(names, fmt.Sprintf("%s ×%.2f", p.name, p.w))
			} else {
				names = append(names, p.name)
			}
		}
		if !ok {
			continue
		}
		row := StageRow{Stage: s.stage, Benchmarks: strings.Join(names, " + "), MBps: 1e3 / nsPerByte,
			BytesPerInput: s.bytes, NsPerInput: s.bytes * nsPerByte}
		l.NsPerInputByte += row.NsPerInput
		if row.NsPerInput > slowest {
			slowest, l.Slowest = row.NsPerInput, s.stage
		}
		l.Stages = append(l.Stages, row)
	}
	for i := range l.Stages {
		l.Stages[i].Share = l.Stages[i].NsPerInput / l.NsPerInputByte
	}
	if l.NsPerInputByte > 0 {
		l.LimitMBps = float64(l.Cores) * 1e3 / l.NsPerInputByte
	}
	if s := emb["backup_s"]; s > 0 {
		l.MeasuredMBps = float64(res.CorpusBytes) / 1e6 / s
	}
	if l.LimitMBps > 0 {
		l.Fraction = l.MeasuredMBps / l.LimitMBps
	}
	stagesCPU := l.NsPerInputByte * float64(res.CorpusBytes) / 1e9
	if len(res.ReadFloors) > 0 && l.Cores > 0 {
		res.ReadFloor = cheapestReadFloor(res.ReadFloors, stagesCPU, l.Cores)
	}
	if f := res.ReadFloor; f != nil && f.Seconds > 0 && l.Cores > 0 && res.CorpusBytes > 0 {
		l.ReadFloorS = f.Seconds
		l.CPUBoundS = (stagesCPU + f.CPU) / float64(l.Cores)
		l.BoundS, l.BoundSlowest = l.CPUBoundS, "CPU (the stages and the reading together)"
		if f.Seconds > l.CPUBoundS {
			l.BoundS, l.BoundSlowest = f.Seconds, "reading the files"
		}
		l.BoundMBps = float64(res.CorpusBytes) / 1e6 / l.BoundS
		if s := emb["backup_s"]; s > 0 {
			l.FractionOfBound = l.BoundS / s
		}
	}
	return l
}

// incompressibleFraction is the share of the corpus in the land register's
// scans (random bytes), from the corpus summary, or 0.35 (the sample's mix).
func incompressibleFraction(res *Results) float64 {
	var s struct {
		Bytes     float64 `json:"bytes"`
		Registers map[string]struct {
			Bytes float64 `json:"bytes"`
		} `json:"registers"`
	}
	if res.Corpus != nil && jsonUnmarshal(res.Corpus, &s) == nil && s.Bytes > 0 {
		return s.Registers["land"].Bytes / s.Bytes
	}
	return 0.35
}

// cheapestReadFloor is the fastest way of reading, the one that leaves a
// backup the least room: the smallest bound max(its time, (stagesCPU + its
// CPU) / cores), stagesCPU being the model's CPU for the corpus (0 when not
// known).
func cheapestReadFloor(fs []*ReadFloor, stagesCPU float64, cores int) *ReadFloor {
	var best *ReadFloor
	var bestBound float64
	for _, f := range fs {
		if f == nil || f.Seconds <= 0 {
			continue
		}
		bound := max(f.Seconds, (stagesCPU+f.CPU)/float64(max(cores, 1)))
		if best == nil || bound < bestBound {
			best, bestBound = f, bound
		}
	}
	return best
}
