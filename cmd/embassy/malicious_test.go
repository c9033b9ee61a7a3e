package main

import (
	"crypto/rand"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/embassy-project/embassy/internal/sample"
)

// The malicious-host harness: three real host processes; the test tampers
// with one host's directory between operations, as a host operator could.
// Every tampering must be named by `embassy check --json` on the right host,
// and restore must still succeed from the honest hosts.

// storeFiles lists a host's stored objects of kind, largest first.
func (g *remoteGuest) storeFiles(t *testing.T, host, kind string) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(g.hosts[host].dir, "store", "*", kind, "*", "*"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no %s on host %s: %v", kind, host, err)
	}
	sort.Slice(files, func(i, j int) bool { return fileSize(files[i]) > fileSize(files[j]) })
	return files
}

func fileSize(p string) int64 {
	fi, err := os.Stat(p)
	if err != nil {
		return 0
	}
	return fi.Size()
}

// overwrite replaces a read-only object file's bytes, as its owner can.
func overwrite(t *testing.T, p string, data []byte) {
	t.Helper()
	os.Chmod(p, 0o600)
	if err := os.WriteFile(p, data, 0o400); err != nil {
		t.Fatal(err)
	}
}

func (g *remoteGuest) backupSample(t *testing.T, seed uint64) string {
	t.Helper()
	src := g.p("src")
	if _, err := os.Stat(src); err != nil {
		if err := sample.Generate(src, 5<<20, seed); err != nil {
			t.Fatal(err)
		}
	} else if err := sample.Edit(src, 0.05, seed); err != nil {
		t.Fatal(err)
	}
	mustRun(t, "backup", "--home", g.home, "--dataset", "registry", "--quiet", src)
	return src
}

func (g *remoteGuest) check(t *testing.T, args ...string) (checkJSON, result) {
	t.Helper()
	r := embassy(t, append([]string{"check", "--json"}, args...)...)
	return parseJSON[checkJSON](t, r.stdout), r
}

// restoreWithGrant restores the latest snapshot from every host that
// answers, with a read grant and three custodians' shares.
func (g *remoteGuest) restoreWithGrant(t *testing.T, src string, hosts ...string) {
	t.Helper()
	grant := g.grant(t, "registry")
	out := g.p("out-" + time.Now().Format("150405.000"))
	args := append([]string{"restore", "--dataset", "registry", "--target", out, "--json", "--grant", grant}, g.remoteHostFlags(hosts...)...)
	for _, c := range []string{"bob", "carol", "erin"} {
		args = append(args, "--share", g.p("shares", "registry."+c+".share"), "--identity", g.p("custodians", c+".key"))
	}
	mustRun(t, args...)
	if err := sample.Compare(src, filepath.Join(out, filepath.Base(src))); err != nil {
		t.Fatalf("restore after tampering: %v", err)
	}
}

// TestMaliciousHostData: host c flips a bit in one shard, replaces another
// with made-up bytes (keeping its hash tree, so it could still answer with
// valid-looking tree nodes) and deletes a third; host a hides the newest
// envelope. Check names each; restore succeeds from what is honest.
func TestMaliciousHostData(t *testing.T) {
	g := newRemoteGuest(t, "registry")
	g.backupSample(t, 11)
	src := g.backupSample(t, 12)
	g.waitWitnessed(t)

	shards := g.storeFiles(t, "c", "shards")
	if len(shards) < 3 {
		t.Fatalf("host c has %d shards, the test needs 3", len(shards))
	}
	madeUp, deleted, flipped := shards[0], shards[1], shards[2]
	junk := make([]byte, fileSize(madeUp))
	rand.Read(junk)
	overwrite(t, madeUp, junk)
	os.Remove(deleted)
	b, _ := os.ReadFile(flipped)
	b[len(b)/2] ^= 0x20
	overwrite(t, flipped, b)
	envs := g.storeFiles(t, "a", "envelopes")
	newest := envs[0]
	for _, e := range envs {
		if fi, _ := os.Stat(e); fi.ModTime().After(mustStat(t, newest).ModTime()) {
			newest = e
		}
	}
	os.Remove(newest)

	rep, r := g.check(t, "--home", g.home, "--read-data")
	if r.code != exitDamage {
		t.Fatalf("check exit %d, want %d (damage, restorable)\n%s\n%s", r.code, exitDamage, r.stdout, r.stderr)
	}
	for _, want := range []struct{ kind, host, shard string }{
		{"corrupt-shard", "c", filepath.Base(flipped)},
		{"corrupt-shard", "c", filepath.Base(madeUp)},
		{"missing-shard", "c", filepath.Base(deleted)},
		{"proof-failed", "c", filepath.Base(madeUp)},
		{"proof-failed", "c", filepath.Base(deleted)},
		{"stale-latest", "a", ""},
	} {
		found := false
		for _, p := range rep.Problems {
			found = found || p.Kind == want.kind && p.Host == want.host && (want.shard == "" || p.Shard == want.shard)
		}
		if !found {
			t.Errorf("check does not report %s on host %s %s: %s", want.kind, want.host, want.shard, checkKinds(rep))
		}
	}
	for _, p := range rep.Problems {
		if p.Host == "b" {
			t.Errorf("honest host b blamed: %s %s", p.Kind, p.Message)
		}
	}
	// The lost and damaged shards do not block the next backup, which
	// reuses their packs (and asks every host to extend their retention).
	src = g.backupSample(t, 13)
	g.restoreWithGrant(t, src, "a", "b", "c")
}

func mustStat(t *testing.T, p string) os.FileInfo {
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	return fi
}

// TestMaliciousHostLog: host b rolls its whole directory (log and store)
// back to an earlier copy and keeps serving, so its log forks from the
// history its witnesses cosigned. The guest's check (which remembers the
// last checkpoint it accepted) and a fresh auditor (who remembers nothing
// and must rely on the witnesses) both detect it.
func TestMaliciousHostLog(t *testing.T) {
	g := newRemoteGuest(t, "registry")
	g.backupSample(t, 21)
	g.waitWitnessed(t)
	hb := g.hosts["b"]
	copied := uint64(0) // host b's log size when it is copied (an upper bound)
	hb.stop(t)
	old := g.p("b-copy")
	if out, err := exec.Command("cp", "-a", hb.dir, old).CombinedOutput(); err != nil {
		t.Fatalf("copy host b: %v\n%s", err, out)
	}
	hb.start(t)
	for _, h := range g.waitWitnessed(t).Hosts {
		if h.Name == "b" {
			copied = h.Log.Size
		}
	}
	src := g.backupSample(t, 22)
	// The witnesses must have cosigned some of b's history after the copy:
	// entries nobody witnessed can be rewritten without any witness
	// noticing (the guest's own trusted state still catches that).
	deadline := time.Now().Add(30 * time.Second)
	for witnessed := false; !witnessed; {
		for _, h := range g.waitWitnessed(t).Hosts {
			witnessed = witnessed || h.Name == "b" && h.Log.CosignedSize > copied
		}
		if time.Now().After(deadline) {
			t.Fatal("host b's log was not cosigned beyond the copy")
		}
	}

	hb.stop(t)
	os.RemoveAll(hb.dir)
	if out, err := exec.Command("cp", "-a", old, hb.dir).CombinedOutput(); err != nil {
		t.Fatalf("restore old copy of host b: %v\n%s", err, out)
	}
	hb.start(t)

	rep, r := g.check(t, "--home", g.home)
	if r.code == 0 || !(checkHas(rep, "log-rollback", "b") || checkHas(rep, "log-fork", "b")) {
		t.Fatalf("the guest's check missed host b's rolled-back log: exit %d: %s", r.code, checkKinds(rep))
	}
	if !checkHas(rep, "stale-latest", "b") {
		t.Errorf("the guest's check missed host b's stale envelopes: %s", checkKinds(rep))
	}
	// Make the forked log grow past the size the guest trusted: every
	// read is logged.
	for i := 0; i < 3; i++ {
		g.check(t, "--home", g.home, "--read-data")
	}
	rep, _ = g.check(t, "--home", g.home)
	if !(checkHas(rep, "log-fork", "b") || checkHas(rep, "log-rollback", "b")) {
		t.Fatalf("forked log of host b not detected: %s", checkKinds(rep))
	}

	// A fresh auditor has no trusted state: the witnesses' views expose
	// the split view.
	grant := g.grant(t, "registry")
	fresh := g.p("fresh-auditor")
	rep, r = g.check(t, append([]string{"--identity", filepath.Join(g.home, "identity.pub"), "--grant", grant, "--state", fresh}, g.remoteHostFlags("a", "b", "c")...)...)
	if !(checkHas(rep, "log-fork", "b") || checkHas(rep, "log-rollback", "b")) {
		t.Fatalf("a fresh auditor missed host b's split view: exit %d: %s\n%s", r.code, checkKinds(rep), r.stderr)
	}
	for _, p := range rep.Problems {
		if (p.Host == "a" || p.Host == "c") && p.Severity != "warning" {
			t.Errorf("honest host %s blamed: %s %s", p.Host, p.Kind, p.Message)
		}
	}
	g.restoreWithGrant(t, src, "a", "b", "c")
}

// TestStoppedWitness: host c is frozen with SIGSTOP (it accepts TCP
// connections and never answers). Check degrades as documented: it names
// c as unavailable and finishes within its timeouts instead of hanging, and
// the other hosts keep serving; after SIGCONT everything is healthy again.
func TestStoppedWitness(t *testing.T) {
	g := newRemoteGuest(t, "registry")
	src := g.backupSample(t, 31)
	g.waitWitnessed(t)
	hc := g.hosts["c"]
	if err := hc.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	rep, r := g.check(t, "--home", g.home)
	took := time.Since(start)
	hc.cmd.Process.Signal(syscall.SIGCONT)
	if took > 90*time.Second {
		t.Errorf("check with a stopped host took %s", took)
	}
	if r.code != exitDamage || !rep.Restorable || !checkHas(rep, "host-unavailable", "c") && !checkHas(rep, "log-unavailable", "c") {
		t.Fatalf("check with host c stopped: exit %d in %s: %s\n%s", r.code, took, checkKinds(rep), r.stderr)
	}
	t.Logf("check with host c stopped took %s: %s", took.Round(time.Millisecond), checkKinds(rep))
	g.restoreWithGrant(t, src, "a", "b")
	g.waitWitnessed(t)
}

// TestHostKilledDuringBackup: host b is killed with SIGKILL while a backup
// uploads to it. The backup fails without writing an envelope; host b's
// fsck finds no partial object and a log that checks; after b restarts,
// the next backup succeeds and the data restores.
func TestHostKilledDuringBackup(t *testing.T) {
	g := newRemoteGuest(t, "registry")
	src := g.p("src")
	if err := sample.Generate(src, 40<<20, 41); err != nil {
		t.Fatal(err)
	}
	hb := g.hosts["b"]
	done := make(chan result, 1)
	go func() { done <- embassy(t, "backup", "--home", g.home, "--dataset", "registry", "--quiet", src) }()
	// Kill b once it has started receiving shards.
	deadline := time.Now().Add(60 * time.Second)
	for {
		files, _ := filepath.Glob(filepath.Join(hb.dir, "store", "*", "shards", "*", "*"))
		if len(files) > 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	hb.kill()
	r := <-done
	if r.code == 0 {
		t.Log("the backup finished before host b was killed; the kill landed after it")
	} else if !strings.Contains(r.stderr, "host") {
		t.Fatalf("backup with host b killed: exit %d: %s", r.code, r.stderr)
	}
	if out := mustRun(t, "host", "fsck", "--dir", hb.dir); !strings.Contains(out, "log: clean") {
		t.Fatalf("fsck after kill -9:\n%s", out)
	}
	hb.start(t)
	mustRun(t, "backup", "--home", g.home, "--dataset", "registry", "--quiet", src)
	g.waitWitnessed(t)
	g.restoreWithGrant(t, src, "a", "b", "c")
}
