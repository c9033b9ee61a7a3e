// Command runner is the peer benchmark's measuring half (bench/run.sh calls
// it): embassy, restic and borg back up, back up again after a one-percent
// edit, restore and read-verify the same corpus, in rounds whose tool order
// rotates, each timed command under /usr/bin/time -v with the page cache
// dropped first where the kernel lets it. Every restore is checked against
// the edited source by a manifest of path, mode and SHA-256 of every file;
// a mismatch fails the run. It then runs the pipeline stages' testing.B
// benchmarks and computes how close embassy's end-to-end throughput is to
// the limit its stages imply on this machine.
//
// Output: a JSON file (--out) with medians, spreads, samples, versions and
// flags, and a markdown section written between the peers markers of --md.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/embassy-project/embassy/internal/agent"
	"github.com/embassy-project/embassy/internal/sample"
)

type config struct {
	repo        string   // module root (for go test and git)
	embassy     string   // built embassy binary
	readfloor   string   // built bench/readfloor binary (optional)
	corpus      string   // pristine corpus directory
	summary     string   // corpus summary JSON from bench/corpus
	work        string   // scratch directory (repositories, work copy, restores)
	rounds      int      // repetitions; the median is reported
	tools       []string // which tools to run
	out, md     string   // JSON and markdown outputs
	label       string   // run label for the markdown (quick, default, scale 10)
	command     string   // the command line that produced the run, for the record
	editSeed    uint64
	fraction    float64
	benchtime   string
	stages      bool
	dataShards  int
	hostsN      int
	dropCaches  bool
	keepWorkDir bool
	restoreMode string    // --restore-fs: fresh, dir or auto
	restoreFS   restoreFS // what the mode resolved to
	corpusBytes int64     // the pristine corpus, for sizing restore file systems
	corpusFiles int
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:])
	stop()
	if err != nil {
		fmt.Fprintf(os.Stderr, "runner: %v\n", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string) error {
	var c config
	fl := flag.NewFlagSet("runner", flag.ContinueOnError)
	fl.StringVar(&c.repo, "repo", ".", "embassy module root")
	fl.StringVar(&c.embassy, "embassy", "", "embassy binary (required)")
	fl.StringVar(&c.readfloor, "readfloor", "", "bench/readfloor binary: measure reading the corpus alone each round (optional)")
	fl.StringVar(&c.corpus, "corpus", "", "pristine corpus directory (required; never modified)")
	fl.StringVar(&c.summary, "summary", "", "corpus summary JSON written by bench/corpus (optional)")
	fl.StringVar(&c.work, "work", "", "scratch directory (required; its contents are replaced)")
	fl.IntVar(&c.rounds, "rounds", 3, "rounds; each tool runs once per round, order rotated")
	tools := fl.String("tools", strings.Join(allTools, ","), "tools to measure, comma-separated")
	fl.StringVar(&c.out, "out", "", "JSON results file")
	fl.StringVar(&c.md, "md", "docs/benchmarks.md", "markdown file whose peers section is replaced")
	fl.StringVar(&c.label, "label", "", "run label (quick, default, scale 10)")
	fl.StringVar(&c.command, "command", "", "the command line to record")
	fl.Uint64Var(&c.editSeed, "edit-seed", 2, "seed of the edit (the same every round)")
	fl.Float64Var(&c.fraction, "fraction", 0.01, "fraction of the corpus the edit changes")
	fl.StringVar(&c.benchtime, "benchtime", "500ms", "-benchtime of the stage benchmarks")
	fl.BoolVar(&c.stages, "stages", true, "run the stage benchmarks")
	fl.IntVar(&c.dataShards, "data-shards", 2, "embassy k")
	fl.IntVar(&c.hostsN, "hosts", 3, "embassy n (local-directory hosts)")
	fl.BoolVar(&c.dropCaches, "drop-caches", true, "drop the page cache before each timed operation when permitted")
	fl.BoolVar(&c.keepWorkDir, "keep", false, "keep the work copy and the last tool's repository")
	fl.StringVar(&c.restoreMode, "restore-fs", "auto", "restore into a fresh ext4 file system each time (fresh; needs root, mkfs.ext4, losetup), into a directory on the work disk (dir), or fresh if possible (auto)")
	if err := fl.Parse(args); err != nil {
		return err
	}
	if c.embassy == "" || c.corpus == "" || c.work == "" {
		return errors.New("--embassy, --corpus and --work are required")
	}
	if c.rounds < 1 {
		return errors.New("--rounds must be at least 1")
	}
	for _, t := range strings.Split(*tools, ",") {
		if t = strings.TrimSpace(t); t != "" {
			if !slices.Contains(allTools, t) {
				return fmt.Errorf("unknown tool %q (have %s)", t, strings.Join(allTools, ", "))
			}
			c.tools = append(c.tools, t)
		}
	}
	var err error
	if c.readfloor != "" {
		if c.readfloor, err = filepath.Abs(c.readfloor); err != nil {
			return err
		}
	}
	for _, p := range []*string{&c.repo, &c.embassy, &c.corpus, &c.work} {
		if *p, err = filepath.Abs(*p); err != nil {
			return err
		}
	}
	return bench(ctx, &c)
}

var allTools = []string{"embassy", "embassy-mtls", "restic", "borg"}

// sampleSet is every round's value of one metric for one tool.
type sampleSet map[string][]float64

func bench(ctx context.Context, c *config) error {
	start := time.Now()
	if err := os.MkdirAll(c.work, 0o755); err != nil {
		return err
	}
	res := &Results{
		Date:    time.Now().UTC().Format("2006-01-02 15:04 UTC"),
		Label:   c.label,
		Command: c.command,
		Rounds:  c.rounds,
		Tools:   c.tools,
		Runs:    map[string]map[string]float64{},
		Spread:  map[string]map[string][2]float64{},
		Samples: map[string]sampleSet{},
		Edit:    EditInfo{Fraction: c.fraction, Seed: c.editSeed},
		Embassy: EmbassyInfo{Hosts: c.hostsN, DataShards: c.dataShards},
	}
	res.Machine = describeMachine(c.work)
	res.Load.Start = loadAvg()
	var err error
	if res.CorpusBytes, res.CorpusFiles, err = treeSize(c.corpus); err != nil {
		return err
	}
	c.corpusBytes, c.corpusFiles = res.CorpusBytes, res.CorpusFiles
	if c.restoreFS, err = chooseRestoreFS(ctx, c.restoreMode, c.work); err != nil {
		return err
	}
	res.RestoreTarget = c.restoreFS.describe()
	logf("restore target: %s", res.RestoreTarget)
	if c.summary != "" {
		b, err := os.ReadFile(c.summary)
		if err != nil {
			return err
		}
		res.Corpus = json.RawMessage(b)
	}

	dropper := newDropper(c.dropCaches)
	m := &measurer{dropper: dropper, logs: filepath.Join(c.work, "logs")}
	if err := os.RemoveAll(m.logs); err != nil {
		return err
	}
	if err := os.MkdirAll(m.logs, 0o755); err != nil {
		return err
	}
	ts, err := newTools(ctx, c, m)
	if err != nil {
		return err
	}
	res.Versions = map[string]string{}
	res.Flags = map[string][]string{}
	for _, t := range ts {
		res.Versions[t.name] = t.version
		for k, v := range t.extra {
			res.Versions[k] = v
		}
		res.Flags[t.name] = t.flags()
		res.Samples[t.name] = sampleSet{}
	}
	res.Versions["go"] = goVersion(ctx)

	ref := &reference{}
	src := filepath.Join(c.work, "src", "registry")
	var floor [2][]readFloorSample // leaving the pages cached, dropping them behind
	// The limit is measured in every round just before embassy's first
	// backup, so that each round's backup is judged against what the
	// machine could do at that moment: on the benchmark VM the stage
	// benchmarks ran 23 % slower in one run than in the run before.
	var stageRounds []map[string]StageResult
	withEmbassy := slices.ContainsFunc(ts, func(t *tool) bool { return t.name == "embassy" })
	measureLimit := func(r int) error {
		if c.readfloor != "" {
			for _, drop := range []bool{r%2 == 0, r%2 != 0} { // alternating which goes first
				logf("round %d/%d: reading the files alone (bench/readfloor, drop-behind %v)", r, c.rounds, drop)
				s, err := readFloorOnce(ctx, c, m, src, r, drop)
				if err != nil {
					return fmt.Errorf("round %d, readfloor: %w", r, err)
				}
				i := 0
				if drop {
					i = 1
				}
				floor[i] = append(floor[i], s)
			}
		}
		if c.stages && withEmbassy {
			logf("round %d/%d: stage benchmarks (go test -bench, -cpu 1, -benchtime %s)", r, c.rounds, c.benchtime)
			st, err := runStages(ctx, c.repo, c.benchtime)
			if err != nil {
				return fmt.Errorf("round %d: %w", r, err)
			}
			stageRounds = append(stageRounds, st)
		}
		return nil
	}
	for r := 1; r <= c.rounds; r++ {
		if !withEmbassy {
			if err := measureLimit(r); err != nil {
				return err
			}
		}
		order := rotate(ts, r-1)
		for _, t := range order {
			if t.name == "embassy" {
				if err := measureLimit(r); err != nil {
					return err
				}
			}
			logf("round %d/%d: %s", r, c.rounds, t.name)
			s, err := runOnce(ctx, c, m, t, src, r, ref)
			if err != nil {
				return fmt.Errorf("round %d, %s: %w", r, t.name, err)
			}
			for k, v := range s {
				res.Samples[t.name][k] = append(res.Samples[t.name][k], v)
			}
		}
	}
	res.CacheState = dropper.state()
	res.Load.Max, res.Load.End = m.maxLoad, loadAvg()
	for name, ss := range res.Samples {
		res.Runs[name] = map[string]float64{}
		res.Spread[name] = map[string][2]float64{}
		for k, v := range ss {
			med, lo, hi := stats(v)
			res.Runs[name][k] = med
			res.Spread[name][k] = [2]float64{lo, hi}
		}
	}
	res.MTLS = mtlsRatios(res)
	for i, ss := range floor {
		if f := summariseReadFloor(ss, agent.Readers, agent.Walkers, i == 1); f != nil {
			res.ReadFloors = append(res.ReadFloors, f)
		}
	}
	res.ReadFloor = cheapestReadFloor(res.ReadFloors, 0, res.Machine.CPUs) // limitModel chooses again knowing the stages' CPU
	if c.stages {
		if len(stageRounds) == 0 {
			logf("stage benchmarks (go test -bench, -cpu 1, -benchtime %s)", c.benchtime)
			st, err := runStages(ctx, c.repo, c.benchtime)
			if err != nil {
				return err
			}
			stageRounds = append(stageRounds, st)
		}
		res.Stages = medianStages(stageRounds)
		res.StageRounds = stageRounds
		if e, ok := res.Runs["embassy"]; ok {
			res.Limit = limitModel(res.Stages, res, e)
			res.Limit.pairRounds(stageRounds, floor, res, e)
		}
	}
	res.WallSeconds = time.Since(start).Seconds()
	md := renderMarkdown(res)
	fmt.Println(md)
	if c.out != "" {
		b, err := json.MarshalIndent(res, "", "  ")
		if err != nil {
			return err
		}
		if err := os.WriteFile(c.out, append(b, '\n'), 0o644); err != nil {
			return err
		}
		logf("wrote %s", c.out)
	}
	if c.md != "" {
		if err := writeSection(c.md, md); err != nil {
			return err
		}
		logf("wrote the peers section of %s", c.md)
	}
	if !c.keepWorkDir {
		_ = os.RemoveAll(filepath.Join(c.work, "src"))
	}
	return nil
}

// rotate returns ts rotated left by n, so each round starts with another tool.
func rotate[T any](ts []T, n int) []T {
	if len(ts) == 0 {
		return nil
	}
	n %= len(ts)
	return append(slices.Clone(ts[n:]), ts[:n]...)
}

// reference is the edited work copy as the first run found it: a full
// manifest (content hashes) to check every restore against, and its
// metadata (path, type, mode, size, mtime) to check that every later run's
// edited work copy is the same tree without hashing it again.
type reference struct {
	full, meta manifest
}

// runOnce measures one tool once: fresh work copy and repository, first
// backup, edit, second backup, restore (checked against the edited copy by
// manifest), read-verify, stored bytes.
func runOnce(ctx context.Context, c *config, m *measurer, t *tool, src string, round int, ref *reference) (map[string]float64, error) {
	out := map[string]float64{}
	// Untimed: the pristine corpus at the same path every time, a fresh repository.
	if err := resetCopy(ctx, c.corpus, src); err != nil {
		return nil, err
	}
	dir := filepath.Join(c.work, "tool")
	if err := os.RemoveAll(dir); err != nil {
		return nil, err
	}
	if err := t.setup(ctx, dir); err != nil {
		return nil, fmt.Errorf("set up: %w", err)
	}
	tag := fmt.Sprintf("r%d-%s", round, t.name)

	// Server processes (embassy-mtls's host nodes) run from before the first
	// backup until after verify; their CPU time is recorded per operation.
	var srv *hostProcs
	if t.serve != nil {
		var err error
		if srv, err = t.serve(ctx, tag); err != nil {
			return nil, fmt.Errorf("start servers: %w", err)
		}
		defer srv.kill() // on error paths; a no-op after stop
	}
	var cpu0 float64
	serverCPU := func(key string) {
		if srv != nil {
			c := srv.cpu()
			if key != "" {
				out[key] = c - cpu0
			}
			cpu0 = c
		}
	}

	serverCPU("")
	op, err := m.timed(ctx, tag+"-backup1", t.backup(1, src))
	if err != nil {
		return nil, err
	}
	out["backup_s"], out["backup1_rss_kb"], out["backup1_cpu_s"] = op.seconds, op.rssKB, op.cpu
	serverCPU("backup1_host_cpu_s")
	if t.afterBackup != nil {
		t.afterBackup(op, out, "backup1")
	}
	if out["stored_first_bytes"], err = duBytes(ctx, t.storedDirs()...); err != nil {
		return nil, err
	}

	if err := sample.Edit(src, c.fraction, c.editSeed); err != nil {
		return nil, fmt.Errorf("edit: %w", err)
	}
	meta, err := buildManifest(src, false)
	if err != nil {
		return nil, err
	}
	if ref.full == nil {
		if ref.full, err = buildManifest(src, true); err != nil {
			return nil, err
		}
		ref.meta = meta
	} else if d := ref.meta.diff(meta); d != "" {
		return nil, fmt.Errorf("the edited work copy differs from the first run's: %s", d)
	}
	serverCPU("")
	op, err = m.timed(ctx, tag+"-backup2", t.backup(2, src))
	if err != nil {
		return nil, err
	}
	out["incremental_s"], out["backup2_rss_kb"], out["backup2_cpu_s"] = op.seconds, op.rssKB, op.cpu
	serverCPU("backup2_host_cpu_s")
	if t.afterBackup != nil {
		t.afterBackup(op, out, "backup2")
	}
	out["peak_rss_kb"] = max(out["backup1_rss_kb"], out["backup2_rss_kb"])

	target := filepath.Join(c.work, "restore")
	if err := os.RemoveAll(target); err != nil {
		return nil, err
	}
	var scratch *scratchFS
	if c.restoreFS.fresh {
		size, inodes := scratchSize(c.corpusBytes, c.corpusFiles)
		if scratch, err = makeScratchFS(ctx, c.work, size, inodes); err != nil {
			return nil, fmt.Errorf("restore file system: %w", err)
		}
		defer scratch.takeDown(context.WithoutCancel(ctx)) // on error paths
		target = filepath.Join(scratch.mnt, "restore")
	}
	rc, root := t.restore(target, src)
	serverCPU("")
	op, err = m.timed(ctx, tag+"-restore", rc)
	if err != nil {
		return nil, err
	}
	out["restore_s"], out["restore_rss_kb"], out["restore_cpu_s"] = op.seconds, op.rssKB, op.cpu
	serverCPU("restore_host_cpu_s")

	// Untimed: the restore must equal the edited work copy.
	got, err := buildManifest(root, true)
	if err != nil {
		return nil, fmt.Errorf("restored tree at %s: %w", root, err)
	}
	if d := ref.full.diff(got); d != "" {
		return nil, fmt.Errorf("restore does not match the edited source: %s", d)
	}
	logf("  restore verified: %d entries match (path, type, mode, size, sha256)", len(got))
	if scratch != nil {
		err = scratch.remove(ctx)
	} else {
		err = os.RemoveAll(target)
	}
	if err != nil {
		return nil, err
	}

	serverCPU("")
	op, err = m.timed(ctx, tag+"-verify", t.verify())
	if err != nil {
		return nil, err
	}
	out["verify_s"], out["verify_rss_kb"], out["verify_cpu_s"] = op.seconds, op.rssKB, op.cpu
	serverCPU("verify_host_cpu_s")

	if srv != nil {
		u, err := srv.stop()
		if err != nil {
			return nil, fmt.Errorf("stop servers: %w", err)
		}
		var peak, sum float64
		for _, v := range u.peakRSSKB {
			peak, sum = max(peak, v), sum+v
		}
		out["host_peak_rss_kb"], out["host_peak_rss_sum_kb"], out["host_cpu_s"] = peak, sum, u.cpu
	}

	if out["stored_bytes"], err = duBytes(ctx, t.storedDirs()...); err != nil {
		return nil, err
	}
	if out["local_bytes"], err = duBytes(ctx, t.localDirs()...); err != nil {
		return nil, err
	}
	if t.hostDirs != nil {
		if out["host_dir_bytes"], err = duBytes(ctx, t.hostDirs()...); err != nil {
			return nil, err
		}
	}
	if strings.HasPrefix(t.name, "embassy") {
		out["stored_per_copy_bytes"] = out["stored_bytes"] * float64(c.dataShards) / float64(c.hostsN)
	}
	if !c.keepWorkDir {
		if err := os.RemoveAll(dir); err != nil {
			return nil, err
		}
	}
	return out, nil
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "[%s] %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, args...))
}
