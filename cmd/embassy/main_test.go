package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/embassy-project/embassy/internal/sample"
	"github.com/embassy-project/embassy/internal/shardstore"
	"github.com/embassy-project/embassy/internal/shardstore/fs"
	"github.com/embassy-project/embassy/internal/sig"
	"github.com/embassy-project/embassy/internal/snapshot"
	"github.com/embassy-project/embassy/internal/testenv"
)

// result of one in-process command.
type result struct {
	stdout, stderr string
	code           int
}

func embassy(t *testing.T, args ...string) result {
	t.Helper()
	var out, errb bytes.Buffer
	err := run(context.Background(), args, strings.NewReader(""), &out, &errb)
	code := exitCode(err, &errb)
	return result{out.String(), errb.String(), code}
}

func mustRun(t *testing.T, args ...string) string {
	t.Helper()
	r := embassy(t, args...)
	if r.code != 0 {
		t.Fatalf("embassy %s: exit %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), r.code, r.stdout, r.stderr)
	}
	return r.stdout
}

// guest is a set-up guest: five custodians, three local hosts (k=2), threshold 3.
type testGuest struct {
	dir, home, shares string
}

func (g *testGuest) p(parts ...string) string {
	return filepath.Join(append([]string{g.dir}, parts...)...)
}

func (g *testGuest) hostFlags(names ...string) []string {
	var out []string
	for _, n := range names {
		out = append(out, "--host", n+"="+g.p("hosts", n))
	}
	return out
}

func (g *testGuest) restoreArgs(dataset, target string, custodians []string, hosts ...string) []string {
	args := append([]string{"restore", "--dataset", dataset, "--target", target, "--json"}, g.hostFlags(hosts...)...)
	for _, c := range custodians {
		args = append(args, "--share", g.p("shares", dataset+"."+c+".share"), "--identity", g.p("custodians", c+".key"))
	}
	return args
}

var custodianNames = []string{"alice", "bob", "carol", "dave", "erin"}

func newGuest(t *testing.T, datasets ...string) *testGuest {
	t.Helper()
	g := &testGuest{dir: t.TempDir()}
	g.home, g.shares = g.p("home"), g.p("shares")
	for _, c := range custodianNames {
		mustRun(t, "custodian", "keygen", "--name", c, "--out", g.p("custodians", c+".key"))
	}
	args := []string{"init", "--home", g.home, "--data-shards", "2", "--threshold", "3", "--shares", g.shares}
	args = append(args, g.hostFlags("a", "b", "c")...)
	for _, c := range custodianNames {
		args = append(args, "--custodian", c+"="+g.p("custodians", c+".key.pub"))
	}
	for _, d := range datasets {
		args = append(args, "--dataset", d)
	}
	mustRun(t, args...)
	return g
}

type restoreJSON struct {
	Seq      uint64   `json:"seq"`
	Path     string   `json:"path"`
	Files    uint64   `json:"files"`
	Warnings []string `json:"warnings"`
}

type checkJSON struct {
	Healthy    bool `json:"healthy"`
	Restorable bool `json:"restorable"`
	Hosts      []struct {
		Name      string `json:"name"`
		Retention string `json:"retention"`
		Proof     *struct {
			Items, OK, Missing, Bad int
		} `json:"proof"`
		Log *struct {
			Size         uint64   `json:"size"`
			CosignedSize uint64   `json:"cosigned_size"`
			Witnesses    []string `json:"witnesses"`
		} `json:"log"`
	} `json:"hosts"`
	Problems []struct {
		Severity, Kind, Host, Shard, Message string
	} `json:"problems"`
}

func parseJSON[T any](t *testing.T, s string) T {
	t.Helper()
	var v T
	if err := json.Unmarshal([]byte(s), &v); err != nil {
		t.Fatalf("parse JSON: %v\n%s", err, s)
	}
	return v
}

// TestJourneyRealTree backs up a file tree nobody wrote for this project (Go's
// own crypto sources), loses a host and HOME, and restores from the others.
func TestJourneyRealTree(t *testing.T) {
	src := filepath.Join(runtime.GOROOT(), "src", "crypto")
	if _, err := os.Stat(src); err != nil {
		testenv.SkipOrFail(t, "no Go source tree at %s", src)
	}
	g := newGuest(t, "code")
	out := mustRun(t, "backup", "--home", g.home, "--dataset", "code", "--json", src)
	first := parseJSON[struct{ Seq, Files, NewPacks uint64 }](t, out)
	if first.Seq != 1 || first.Files < 100 {
		t.Fatalf("first backup: %+v", first)
	}
	// An unchanged tree: no file is read again, no data pack is written.
	out = mustRun(t, "backup", "--home", g.home, "--dataset", "code", "--json", src)
	second := parseJSON[struct{ Seq, ReadBytes, NewPacks uint64 }](t, parseOK(out))
	if second.Seq != 2 || second.ReadBytes != 0 || second.NewPacks > 1 {
		t.Fatalf("unchanged backup read or wrote data: %+v", second)
	}
	c := parseJSON[checkJSON](t, mustRun(t, "check", "--home", g.home, "--read-data", "--json"))
	if !c.Healthy || !c.Restorable {
		t.Fatalf("check: %+v", c)
	}
	snaps := mustRun(t, "snapshots", "--home", g.home, "--json")
	if !strings.Contains(snaps, `"seq": 2`) {
		t.Fatalf("snapshots: %s", snaps)
	}
	os.RemoveAll(g.p("hosts", "c"))
	os.RemoveAll(g.home)
	r := parseJSON[restoreJSON](t, mustRun(t, g.restoreArgs("code", g.p("out"), []string{"bob", "dave", "erin"}, "a", "b")...))
	if r.Seq != 2 {
		t.Fatalf("restored seq %d, want 2", r.Seq)
	}
	if err := sample.Compare(src, g.p("out", "crypto")); err != nil {
		t.Fatal(err)
	}
}

func parseOK(s string) string { return s }

func shardFiles(t *testing.T, host string) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(host, "shards", "*", "*"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no shards under %s: %v", host, err)
	}
	return files
}

func TestCheckFindsFlippedByteAndRestoreSurvives(t *testing.T) {
	g := newGuest(t, "population")
	if err := sample.Generate(g.p("registry"), 4<<20, 7); err != nil {
		t.Fatal(err)
	}
	mustRun(t, "backup", "--home", g.home, "--dataset", "population", "--quiet", g.p("registry"))
	files := shardFiles(t, g.p("hosts", "b"))
	victim := files[len(files)/2]
	b, _ := os.ReadFile(victim)
	b[len(b)/2] ^= 0x40
	if err := os.WriteFile(victim, b, 0o444); err != nil {
		t.Fatal(err)
	}
	r := embassy(t, "check", "--home", g.home, "--read-data", "--json")
	if r.code != exitDamage {
		t.Fatalf("check --read-data exit %d, want %d\n%s%s", r.code, exitDamage, r.stdout, r.stderr)
	}
	c := parseJSON[checkJSON](t, r.stdout)
	found := false
	for _, p := range c.Problems {
		if p.Kind == "corrupt-shard" && p.Host == "b" && p.Shard == filepath.Base(victim) {
			found = true
		}
	}
	if !found || !c.Restorable {
		t.Fatalf("flipped shard %s on host b not named: %+v", filepath.Base(victim), c)
	}
	// Restore from b and c (b damaged): the pack is rebuilt from the good shards.
	rj := parseJSON[restoreJSON](t, mustRun(t, g.restoreArgs("population", g.p("out"), []string{"alice", "bob", "carol"}, "a", "b", "c")...))
	if err := sample.Compare(g.p("registry"), g.p("out", "registry")); err != nil {
		t.Fatal(err)
	}
	_ = rj
	// With a truncated shard too on host c, the damaged pack has one good shard left: loss.
	addr := filepath.Base(victim)
	for _, f := range shardFiles(t, g.p("hosts", "c")) {
		os.Remove(f)
	}
	r = embassy(t, "check", "--home", g.home, "--json")
	c = parseJSON[checkJSON](t, r.stdout)
	if r.code != exitDamage || !c.Restorable {
		t.Fatalf("presence check with host c emptied: exit %d %+v", r.code, c)
	}
	r = embassy(t, "check", "--home", g.home, "--read-data", "--json")
	if r.code != exitLoss {
		t.Fatalf("read-data check with b corrupt and c empty: exit %d, want %d (shard %s)\n%s", r.code, exitLoss, addr, r.stdout)
	}
}

func TestRestoreRefusals(t *testing.T) {
	g := newGuest(t, "population", "land")
	if err := sample.Generate(g.p("registry"), 2<<20, 3); err != nil {
		t.Fatal(err)
	}
	mustRun(t, "backup", "--home", g.home, "--dataset", "population", "--quiet", g.p("registry", "population"))
	target := g.p("out")
	share := func(ds, c string) string { return g.p("shares", ds+"."+c+".share") }
	id := func(c string) string { return g.p("custodians", c+".key") }
	base := append([]string{"restore", "--dataset", "population", "--target", target}, g.hostFlags("a", "b", "c")...)
	cases := []struct {
		name string
		args []string
		want string
	}{
		{"below threshold", []string{"--share", share("population", "alice"), "--share", share("population", "bob"), "--identity", id("alice"), "--identity", id("bob")}, "have 2"},
		{"same share twice", []string{"--share", share("population", "alice"), "--share", share("population", "alice"), "--share", share("population", "bob"), "--identity", id("alice"), "--identity", id("bob")}, "alice"},
		{"identity opens none", []string{"--share", share("population", "alice"), "--share", share("population", "bob"), "--share", share("population", "carol"), "--identity", id("dave")}, "alice"},
		{"other dataset's share", []string{"--share", share("population", "alice"), "--share", share("population", "bob"), "--share", share("land", "carol"), "--identity", id("alice"), "--identity", id("bob"), "--identity", id("carol")}, "land"},
		{"no identity", []string{"--share", share("population", "alice")}, "identity"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := embassy(t, append(append([]string{}, base...), tc.args...)...)
			if r.code != exitFailure || !strings.Contains(r.stderr, tc.want) {
				t.Fatalf("exit %d, stderr %q; want exit 1 mentioning %q", r.code, r.stderr, tc.want)
			}
			if ents, _ := os.ReadDir(target); len(ents) > 0 {
				t.Fatalf("a refused restore left %v in the target", ents)
			}
		})
	}
	t.Run("corrupted share file", func(t *testing.T) {
		b, _ := os.ReadFile(share("population", "carol"))
		b[len(b)-5] ^= 1
		bad := g.p("carol-bad.share")
		os.WriteFile(bad, b, 0o600)
		r := embassy(t, append(append([]string{}, base...), "--share", share("population", "alice"), "--share", share("population", "bob"), "--share", bad,
			"--identity", id("alice"), "--identity", id("bob"), "--identity", id("carol"))...)
		if r.code != exitFailure || !strings.Contains(r.stderr, "corrupt") {
			t.Fatalf("exit %d, stderr %q", r.code, r.stderr)
		}
	})
	t.Run("fewer than k hosts", func(t *testing.T) {
		r := embassy(t, g.restoreArgs("population", target, []string{"alice", "bob", "carol"}, "a")...)
		if r.code != exitFailure || !strings.Contains(r.stderr, "good shards") {
			t.Fatalf("exit %d, stderr %q", r.code, r.stderr)
		}
		if ents, _ := os.ReadDir(target); len(ents) > 0 {
			t.Fatalf("a failed restore left %v in the target", ents)
		}
	})
	t.Run("unknown host name", func(t *testing.T) {
		args := g.restoreArgs("population", target, []string{"alice", "bob", "carol"}, "a", "b")
		args = append(args, "--host", "x="+g.p("hosts", "c"))
		r := embassy(t, args...)
		if r.code == 0 || !strings.Contains(r.stderr, "x") {
			t.Fatalf("exit %d, stderr %q", r.code, r.stderr)
		}
	})
}

// TestForgedAndStaleSnapshots: a snapshot signed with the dataset's public
// identity but a fresh agent key is refused; an older snapshot served as the
// latest by one host is named.
func TestForgedAndStaleSnapshots(t *testing.T) {
	g := newGuest(t, "population")
	src := g.p("registry")
	if err := sample.Generate(src, 2<<20, 5); err != nil {
		t.Fatal(err)
	}
	mustRun(t, "backup", "--home", g.home, "--dataset", "population", "--quiet", src)
	if err := sample.Edit(src, 0.05, 6); err != nil {
		t.Fatal(err)
	}
	mustRun(t, "backup", "--home", g.home, "--dataset", "population", "--quiet", src)

	// Forge seq 3 from the real seq 2, re-signed with a fresh agent key, on every host.
	var latest []byte
	st, err := fs.Open(g.p("hosts", "a"))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	st.List(ctx, shardstore.KindEnvelope, func(id shardstore.ID, _ int64) error {
		b, _ := st.Get(ctx, shardstore.KindEnvelope, id)
		if e, err := snapshot.Parse(b); err == nil && e.Seq == 2 {
			latest = b
		}
		return nil
	})
	env, err := snapshot.Parse(latest)
	if err != nil {
		t.Fatal(err)
	}
	env.Seq, env.Prev, env.Packs = 3, snapshot.Hash(latest), env.Packs[:1]
	evil, _ := sig.Generate()
	forged, err := env.Sign(evil)
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range []string{"a", "b", "c"} {
		s, err := fs.Open(g.p("hosts", h))
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Put(ctx, shardstore.KindEnvelope, shardstore.Sum(forged), forged); err != nil {
			t.Fatal(err)
		}
	}
	// Host a withholds snapshot 2: it serves 1 as its latest.
	if err := os.Remove(filepath.Join(g.p("hosts", "a"), "envelopes", fmt.Sprintf("%x", snapshot.Hash(latest))[:2], fmt.Sprintf("%x", snapshot.Hash(latest)))); err != nil {
		t.Fatal(err)
	}

	r := parseJSON[restoreJSON](t, mustRun(t, g.restoreArgs("population", g.p("out"), []string{"carol", "dave", "erin"}, "a", "b")...))
	if r.Seq != 2 {
		t.Fatalf("restored seq %d, want the real latest 2", r.Seq)
	}
	warn := strings.Join(r.Warnings, "\n")
	if !strings.Contains(warn, "not signed by the guest's agent key") || !strings.Contains(warn, "host a serves 1 as the latest") {
		t.Fatalf("warnings do not name the forgery and the stale host:\n%s", warn)
	}
	if err := sample.Compare(src, g.p("out", "registry")); err != nil {
		t.Fatal(err)
	}
	res := embassy(t, "check", "--host", "a="+g.p("hosts", "a"), "--host", "b="+g.p("hosts", "b"), "--host", "c="+g.p("hosts", "c"),
		"--identity", g.p("home", "identity.pub"), "--json")
	c := parseJSON[checkJSON](t, res.stdout)
	kinds := map[string]string{}
	for _, p := range c.Problems {
		kinds[p.Kind] += p.Host
	}
	if res.code != exitDamage || !strings.Contains(kinds["forged-envelope"], "a") || kinds["stale-latest"] != "a" {
		t.Fatalf("check exit %d, problems %v", res.code, kinds)
	}
}

func TestRestoreToFullDisk(t *testing.T) {
	g := newGuest(t, "land")
	if err := sample.Generate(g.p("registry"), 3<<20, 9); err != nil {
		t.Fatal(err)
	}
	mustRun(t, "backup", "--home", g.home, "--dataset", "land", "--quiet", g.p("registry", "land"))
	target := g.p("small")
	os.MkdirAll(target, 0o755)
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=512k", "tmpfs", target).CombinedOutput(); err != nil {
		testenv.SkipOrFail(t, "cannot mount a small tmpfs (needs root): %v %s", err, out)
	}
	defer exec.Command("umount", target).Run()
	r := embassy(t, g.restoreArgs("land", target, []string{"alice", "bob", "carol"}, "a", "b")...)
	if r.code != exitFailure || !strings.Contains(r.stderr, syscall.ENOSPC.Error()) {
		t.Fatalf("exit %d, stderr %q; want a no-space failure", r.code, r.stderr)
	}
	if ents, _ := os.ReadDir(target); len(ents) > 0 {
		t.Fatalf("a failed restore left %v on the full disk", ents)
	}
}

func TestUsageAndExitCodes(t *testing.T) {
	for _, args := range [][]string{{}, {"frobnicate"}, {"backup"}, {"restore", "--dataset", "x"}, {"init", "--home"}, {"check"}} {
		if r := embassy(t, args...); r.code != exitUsage {
			t.Errorf("embassy %v: exit %d, want %d (%s)", args, r.code, exitUsage, r.stderr)
		}
	}
	if r := embassy(t, "--help"); r.code != 0 || !strings.Contains(r.stdout, "Exit codes") {
		t.Errorf("--help: exit %d", r.code)
	}
	if r := embassy(t, "backup", "--home", t.TempDir(), "--dataset", "x", "/"); r.code != exitFailure || !strings.Contains(r.stderr, "embassy init") {
		t.Errorf("backup without HOME: exit %d %q", r.code, r.stderr)
	}
	// init refuses bad set-ups with a reason.
	g := t.TempDir()
	mustRun(t, "custodian", "keygen", "--name", "solo", "--out", filepath.Join(g, "solo.key"))
	r := embassy(t, "custodian", "keygen", "--name", "solo", "--out", filepath.Join(g, "solo.key"))
	if r.code != exitFailure {
		t.Errorf("keygen over an existing key: exit %d", r.code)
	}
	r = embassy(t, "init", "--home", filepath.Join(g, "h"), "--host", "a="+filepath.Join(g, "a"), "--data-shards", "2",
		"--custodian", "solo="+filepath.Join(g, "solo.key.pub"), "--threshold", "1", "--shares", filepath.Join(g, "s"))
	if r.code != exitFailure || !strings.Contains(r.stderr, "data-shards") {
		t.Errorf("init with k > n: exit %d %q", r.code, r.stderr)
	}
}

func TestDemo(t *testing.T) {
	var out bytes.Buffer
	if err := run(context.Background(), []string{"demo", "--dir", t.TempDir(), "--size", "8"}, strings.NewReader(""), &out, &out); err != nil {
		t.Fatalf("demo: %v\n%s", err, out.String())
	}
	for _, want := range []string{"refused, as expected", "population: identical", "gazette: identical", "exit 3, as expected"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("demo output lacks %q", want)
		}
	}
}

// TestCheckHomeNoticesRollback: every host drops the newest envelope; only
// the guest's own check, which knows the head it wrote, can tell.
func TestCheckHomeNoticesRollback(t *testing.T) {
	g := newGuest(t, "population")
	src := g.p("registry")
	if err := sample.Generate(src, 1<<20, 11); err != nil {
		t.Fatal(err)
	}
	mustRun(t, "backup", "--home", g.home, "--dataset", "population", "--quiet", src)
	if err := sample.Edit(src, 0.05, 12); err != nil {
		t.Fatal(err)
	}
	out := mustRun(t, "backup", "--home", g.home, "--dataset", "population", "--json", src)
	env := parseJSON[struct{ Envelope string }](t, out).Envelope
	for _, h := range []string{"a", "b", "c"} {
		if err := os.Remove(filepath.Join(g.p("hosts", h), "envelopes", env[:2], env)); err != nil {
			t.Fatal(err)
		}
	}
	r := embassy(t, "check", "--home", g.home, "--json")
	c := parseJSON[checkJSON](t, r.stdout)
	if r.code != exitLoss || len(c.Problems) != 1 || c.Problems[0].Kind != "rolled-back" {
		t.Fatalf("exit %d, problems %+v", r.code, c.Problems)
	}
	// An auditor without HOME sees a consistent (older) history: the
	// witnessed log of the host node is what closes this gap.
	r = embassy(t, append([]string{"check", "--identity", g.p("home", "identity.pub")}, g.hostFlags("a", "b", "c")...)...)
	if r.code != 0 {
		t.Fatalf("auditor check: exit %d %s", r.code, r.stdout)
	}
}

// TestNoPlaintextOnHosts: neither file content nor file names reach a host;
// only HOME's cache knows the names (as the threat model says).
func TestNoPlaintextOnHosts(t *testing.T) {
	g := newGuest(t, "population")
	src := g.p("src")
	const canary = "CANARY-7f3a9c-registry-secret"
	os.MkdirAll(filepath.Join(src, "dir-"+canary), 0o755)
	body := bytes.Repeat([]byte(canary+" row\n"), 5000)
	if err := os.WriteFile(filepath.Join(src, "dir-"+canary, "file-"+canary+".csv"), body, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(src, "tiny.txt"), []byte(canary), 0o644); err != nil {
		t.Fatal(err)
	}
	mustRun(t, "backup", "--home", g.home, "--dataset", "population", "--quiet", src)
	found := func(root string) (names, content bool) {
		filepath.Walk(root, func(p string, fi os.FileInfo, err error) error {
			if err != nil {
				return err
			}
			if strings.Contains(p, canary) {
				names = true
			}
			if fi.Mode().IsRegular() {
				b, _ := os.ReadFile(p)
				if bytes.Contains(b, []byte(canary)) || bytes.Contains(b, []byte("CANARY-7f3a9c")) {
					content = true
				}
			}
			return nil
		})
		return
	}
	for _, h := range []string{"a", "b", "c"} {
		if names, content := found(g.p("hosts", h)); names || content {
			t.Fatalf("host %s holds plaintext: names %v, content %v", h, names, content)
		}
	}
	// The threat model says HOME's cache holds file names (for change
	// detection); if that ever changes, change docs/threat-model.md too.
	if _, content := found(g.home); !content {
		t.Fatal("HOME's cache no longer holds file names: update docs/threat-model.md")
	}
}

// TestRestoreModesAndOwners: set-user-ID, set-group-ID, sticky, read-only
// and unreadable files, and (as root) other owners, come back exactly,
// with their times: restore applies ownership, then mode, then times
// through the open file, after writing.
func TestRestoreModesAndOwners(t *testing.T) {
	g := newGuest(t, "modes")
	src := g.p("src")
	if err := os.MkdirAll(src, 0o755); err != nil {
		t.Fatal(err)
	}
	files := []struct {
		name     string
		mode     os.FileMode
		uid, gid int
	}{
		{"setuid", 0o755 | os.ModeSetuid, 1234, 0},
		{"setgid", 0o750 | os.ModeSetgid, 0, 4321},
		{"sticky", 0o644 | os.ModeSticky, 0, 0},
		{"readonly", 0o444, 2000, 2000},
		{"none", 0o000, 0, 0},
		{"empty-setuid", 0o711 | os.ModeSetuid, 7, 7},
		// Created with their mode where the umask (022 or 002 here) leaves
		// it whole, chmod-ed after the writes where not.
		{"plain", 0o644, 0, 0},
		{"group-write", 0o664, 0, 0},
		{"other-write", 0o666, 0, 0},
		{"all", 0o777, 1234, 0},
	}
	mtime := time.Date(2020, 2, 29, 12, 34, 56, 789000000, time.UTC)
	for i, f := range files {
		p := filepath.Join(src, f.name)
		content := []byte(strings.Repeat(f.name, 100*i))
		if err := os.WriteFile(p, content, 0o600); err != nil {
			t.Fatal(err)
		}
		if os.Geteuid() == 0 {
			if err := os.Chown(p, f.uid, f.gid); err != nil {
				t.Fatal(err)
			}
		}
		if err := os.Chmod(p, f.mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(p, mtime, mtime.Add(time.Duration(i)*time.Second)); err != nil {
			t.Fatal(err)
		}
	}
	mustRun(t, "backup", "--home", g.home, "--dataset", "modes", "--quiet", src)
	mustRun(t, g.restoreArgs("modes", g.p("out"), []string{"bob", "dave", "erin"}, "a", "b")...)
	if err := sample.Compare(src, g.p("out", "src")); err != nil {
		t.Fatal(err)
	}
	// Compare checks type, mode, mtime, owner (as root) and content; make
	// sure the special bits really were there to compare.
	fi, err := os.Stat(filepath.Join(g.p("out", "src"), "setuid"))
	if err != nil || fi.Mode()&os.ModeSetuid == 0 {
		t.Fatalf("setuid bit lost: %v %v", fi.Mode(), err)
	}
	if os.Geteuid() != 0 {
		return
	}
	// Into a set-group-ID directory of another group, new files start with
	// that group, not root's: restore skips fchown only for files that
	// already have their owner, so those of root's group are changed back.
	sg := g.p("sgid")
	if err := os.MkdirAll(sg, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(sg, 0, 5555); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(sg, 0o775|os.ModeSetgid); err != nil {
		t.Fatal(err)
	}
	mustRun(t, g.restoreArgs("modes", sg, []string{"bob", "dave", "erin"}, "a", "b")...)
	if err := sample.Compare(src, filepath.Join(sg, "src")); err != nil {
		t.Fatalf("into a set-group-ID target: %v", err)
	}
}
