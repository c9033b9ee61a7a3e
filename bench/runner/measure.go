package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// dropper empties the page cache (and dentries and inodes) before a timed
// operation, and remembers whether it could.
type dropper struct {
	enabled bool
	tried   int
	failed  error
}

func newDropper(enabled bool) *dropper { return &dropper{enabled: enabled} }

func (d *dropper) drop() {
	if !d.enabled || d.failed != nil {
		return
	}
	d.tried++
	syscall.Sync()
	if err := os.WriteFile("/proc/sys/vm/drop_caches", []byte("3\n"), 0o200); err != nil {
		d.failed = err
		logf("cannot drop caches (%v); timings are with a warm cache", err)
	}
}

// state is "dropped" or "warm: <reason>".
func (d *dropper) state() string {
	switch {
	case !d.enabled:
		return "warm: dropping disabled (--drop-caches=false)"
	case d.failed != nil:
		return "warm: " + d.failed.Error()
	default:
		return "dropped"
	}
}

type measurer struct {
	dropper *dropper
	logs    string
	maxLoad float64 // the largest 1-minute load average seen before a timed command
}

// loadAvg is the 1-minute load average (/proc/loadavg), or -1.
func loadAvg() float64 {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return -1
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return -1
	}
	v, err := strconv.ParseFloat(f[0], 64)
	if err != nil {
		return -1
	}
	return v
}

type opResult struct {
	seconds float64 // wall
	cpu     float64 // user + system
	rssKB   float64
	stdout  []byte
}

// timed drops caches, then runs spec under /usr/bin/time -v and returns its
// wall time and peak RSS. Output goes to a log file under m.logs; a failure
// returns an error quoting the log's tail.
func (m *measurer) timed(ctx context.Context, tag string, spec cmdSpec) (opResult, error) {
	if spec.dir != "" {
		if err := os.MkdirAll(spec.dir, 0o755); err != nil {
			return opResult{}, err
		}
	}
	timeFile := filepath.Join(m.logs, tag+".time")
	logFile := filepath.Join(m.logs, tag+".log")
	lf, err := os.Create(logFile)
	if err != nil {
		return opResult{}, err
	}
	defer lf.Close()
	argv := append([]string{"-v", "-o", timeFile}, spec.argv...)
	cmd := exec.CommandContext(ctx, "/usr/bin/time", argv...)
	cmd.Env = toolEnv(spec.env)
	cmd.Dir = spec.dir
	cmd.Stdin = nil // /dev/null: nothing may prompt
	var stdout bytes.Buffer
	cmd.Stdout = io.MultiWriter(&stdout, lf)
	cmd.Stderr = lf
	m.maxLoad = max(m.maxLoad, loadAvg())
	m.dropper.drop()
	t0 := time.Now()
	err = cmd.Run()
	secs := time.Since(t0).Seconds()
	if err != nil {
		return opResult{}, fmt.Errorf("%s: %s: %w\n%s", tag, strings.Join(spec.argv, " "), err, tail(logFile, 20))
	}
	tb, err := os.ReadFile(timeFile)
	if err != nil {
		return opResult{}, err
	}
	tv, err := parseTimeV(string(tb))
	if err != nil {
		return opResult{}, fmt.Errorf("%s: %w", tag, err)
	}
	cpu := tv["User time (seconds)"] + tv["System time (seconds)"]
	logf("  %-22s %8.2f s wall %7.2f s CPU %6.0f MiB peak RSS", tag, secs, cpu, tv[maxRSS]/1024)
	return opResult{seconds: secs, cpu: cpu, rssKB: tv[maxRSS], stdout: stdout.Bytes()}, nil
}

// toolEnv is the runner's environment without any inherited restic or borg
// settings, plus extra.
func toolEnv(extra []string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "RESTIC_") || strings.HasPrefix(kv, "BORG_") || strings.HasPrefix(kv, "GOMEMLIMIT=") || strings.HasPrefix(kv, "GOGC=") {
			continue
		}
		env = append(env, kv)
	}
	return append(env, extra...)
}

const maxRSS = "Maximum resident set size (kbytes)"

// parseTimeV reads the numeric fields of GNU time -v's report, which must
// include the peak RSS ("Maximum resident set size (kbytes)").
func parseTimeV(s string) (map[string]float64, error) {
	out := map[string]float64{}
	sc := bufio.NewScanner(strings.NewReader(s))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		i := strings.LastIndex(line, ": ")
		if i < 0 {
			continue
		}
		if v, err := strconv.ParseFloat(strings.TrimSpace(line[i+2:]), 64); err == nil {
			out[line[:i]] = v
		}
	}
	if _, ok := out[maxRSS]; !ok {
		return nil, errors.New("no \"Maximum resident set size\" in /usr/bin/time -v output")
	}
	return out, nil
}

func tail(file string, n int) string {
	b, _ := os.ReadFile(file)
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// runQuiet runs an untimed command, returning its output in the error.
func runQuiet(ctx context.Context, dir string, env []string, argv ...string) error {
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Env = toolEnv(env)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s: %w\n%s", argv[0], err, out)
	}
	return nil
}

// duBytes is `du -sb` summed over dirs (apparent sizes, directories included).
func duBytes(ctx context.Context, dirs ...string) (float64, error) {
	if len(dirs) == 0 {
		return 0, nil
	}
	out, err := exec.CommandContext(ctx, "du", append([]string{"-sb"}, dirs...)...).Output()
	if err != nil {
		return 0, fmt.Errorf("du -sb %s: %w", strings.Join(dirs, " "), err)
	}
	var sum float64
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		v, err := strconv.ParseFloat(f[0], 64)
		if err != nil {
			return 0, fmt.Errorf("du output %q: %w", line, err)
		}
		sum += v
	}
	return sum, nil
}

// treeSize sums the sizes of the regular files under dir.
func treeSize(dir string) (int64, int, error) {
	var size int64
	var files int
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type().IsRegular() {
			fi, err := d.Info()
			if err != nil {
				return err
			}
			size += fi.Size()
			files++
		}
		return nil
	})
	return size, files, err
}

// Machine describes where the benchmark ran.
type Machine struct {
	CPUs     int    `json:"cpus"`
	CPUModel string `json:"cpu_model"`
	MemBytes int64  `json:"mem_bytes"`
	Kernel   string `json:"kernel"`
	Disk     string `json:"disk"`
}

func describeMachine(work string) Machine {
	m := Machine{CPUs: runtime.NumCPU()}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPUModel = strings.TrimSpace(v)
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "MemTotal:"); ok {
				f := strings.Fields(v)
				if len(f) > 0 {
					kb, _ := strconv.ParseInt(f[0], 10, 64)
					m.MemBytes = kb << 10
				}
			}
		}
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = "Linux " + strings.TrimSpace(string(b))
	}
	m.Disk = describeDisk(work)
	return m
}

// describeDisk names the device and filesystem holding dir, and whether the
// kernel calls the device rotational.
func describeDisk(dir string) string {
	out, err := exec.Command("df", "-PT", dir).Output()
	if err != nil {
		return "unknown"
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if len(lines) < 2 {
		return "unknown"
	}
	f := strings.Fields(lines[len(lines)-1])
	if len(f) < 3 {
		return "unknown"
	}
	dev, fstype := f[0], f[1]
	s := fmt.Sprintf("%s (%s)", dev, fstype)
	if strings.HasPrefix(dev, "/dev/") {
		base := filepath.Base(dev)
		cands := []string{base, strings.TrimRightFunc(base, func(r rune) bool { return r >= '0' && r <= '9' })}
		if m := nvmePart.FindStringSubmatch(base); m != nil {
			cands = append(cands, m[1])
		}
		for _, n := range cands {
			b, err := os.ReadFile("/sys/block/" + n + "/queue/rotational")
			if err != nil {
				continue
			}
			if strings.TrimSpace(string(b)) == "0" {
				s += ", the kernel reports it non-rotational"
			} else {
				s += ", the kernel reports it rotational"
			}
			if strings.HasPrefix(n, "vd") {
				s += " (a virtual machine's virtio disk: dropping the guest's page cache does not drop the host's)"
			}
			break
		}
	}
	return s
}

var nvmePart = regexp.MustCompile(`^(nvme\d+n\d+)p\d+$`)

func goVersion(ctx context.Context) string {
	out, err := exec.CommandContext(ctx, "go", "version").Output()
	if err != nil {
		return runtime.Version() + " (runner)"
	}
	return strings.TrimSpace(string(out))
}

// gitCommit is the module's HEAD, with "-dirty" when the work tree has
// uncommitted changes to tracked files.
func gitCommit(ctx context.Context, repo string) string {
	out, err := exec.CommandContext(ctx, "git", "-C", repo, "rev-parse", "HEAD").Output()
	if err != nil {
		return "unknown"
	}
	commit := strings.TrimSpace(string(out))
	if st, err := exec.CommandContext(ctx, "git", "-C", repo, "status", "--porcelain", "--untracked-files=no").Output(); err == nil && len(bytes.TrimSpace(st)) > 0 {
		commit += "-dirty"
	}
	return commit
}
