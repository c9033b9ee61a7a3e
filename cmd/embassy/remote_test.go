package main

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/embassy-project/embassy/internal/access"
	"github.com/embassy-project/embassy/internal/ledger"
	"github.com/embassy-project/embassy/internal/sample"
	"github.com/embassy-project/embassy/internal/testenv"
	"github.com/embassy-project/embassy/internal/transport"
)

// TestMain lets the test binary act as the embassy binary: the end-to-end
// tests start host nodes as real processes by re-executing it.
func TestMain(m *testing.M) {
	if os.Getenv("EMBASSY_TEST_AS_MAIN") == "1" {
		main()
		return
	}
	os.Exit(m.Run())
}

// hostProc is one `embassy host serve` process.
type hostProc struct {
	name, dir, addr string
	args            []string // default: host serve --dir DIR
	env             []string // extra environment (S3 credentials)
	cmd             *exec.Cmd
	log             *os.File
}

func (h *hostProc) start(t *testing.T) {
	t.Helper()
	args := h.args
	if args == nil {
		args = []string{"host", "serve", "--dir", h.dir}
	}
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(append(os.Environ(), "EMBASSY_TEST_AS_MAIN=1"), h.env...)
	f, err := os.OpenFile(h.dir+".log", os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	h.cmd, h.log = cmd, f
	deadline := time.Now().Add(15 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", h.addr, time.Second)
		if err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			h.kill()
			t.Fatalf("host %s did not start listening on %s: %v\n%s", h.name, h.addr, err, h.logText())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (h *hostProc) logText() string {
	b, _ := os.ReadFile(h.dir + ".log")
	return string(b)
}

// stop sends SIGTERM and waits for a clean exit.
func (h *hostProc) stop(t *testing.T) {
	t.Helper()
	if h.cmd == nil {
		return
	}
	h.cmd.Process.Signal(syscall.SIGCONT) // in case it was stopped
	h.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- h.cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("host %s exited: %v\n%s", h.name, err, h.logText())
		}
	case <-time.After(30 * time.Second):
		h.cmd.Process.Kill()
		<-done
		t.Errorf("host %s did not stop within 30 s of SIGTERM", h.name)
	}
	h.log.Close()
	h.cmd = nil
}

func (h *hostProc) kill() {
	if h.cmd == nil {
		return
	}
	h.cmd.Process.Kill()
	h.cmd.Wait()
	h.log.Close()
	h.cmd = nil
}

// remoteGuest is a guest whose three hosts are host-node processes that
// witness each other.
type remoteGuest struct {
	*testGuest
	hosts  map[string]*hostProc
	grants int
}

func freePort(t *testing.T) string { return testenv.FreeAddr(t) }

func newRemoteGuest(t *testing.T, datasets ...string) *remoteGuest {
	t.Helper()
	return newRemoteGuestWith(t, remoteOptions{}, datasets...)
}

// remoteOptions vary the hosts and HOME of a remote guest.
type remoteOptions struct {
	hostArgs  map[string][]string // extra `host init` flags per host
	hostEnv   map[string][]string // extra environment per host process
	guestArgs []string            // extra `init` flags
}

func newRemoteGuestWith(t *testing.T, o remoteOptions, datasets ...string) *remoteGuest {
	t.Helper()
	g := &remoteGuest{testGuest: &testGuest{dir: t.TempDir()}, hosts: map[string]*hostProc{}}
	g.home, g.shares = g.p("home"), g.p("shares")
	names := []string{"a", "b", "c"}
	for _, n := range names {
		h := &hostProc{name: n, dir: g.p("hosts", n), addr: freePort(t), env: o.hostEnv[n]}
		mustRun(t, append([]string{"host", "init", "--dir", h.dir, "--name", n, "--listen", h.addr}, o.hostArgs[n]...)...)
		g.hosts[n] = h
	}
	for _, c := range custodianNames {
		mustRun(t, "custodian", "keygen", "--name", c, "--out", g.p("custodians", c+".key"))
	}
	args := append([]string{"init", "--home", g.home, "--data-shards", "2", "--threshold", "3", "--shares", g.shares}, o.guestArgs...)
	for _, n := range names {
		args = append(args, "--host", n+"="+g.desc(n))
	}
	for _, c := range custodianNames {
		args = append(args, "--custodian", c+"="+g.p("custodians", c+".key.pub"))
	}
	for _, d := range datasets {
		args = append(args, "--dataset", d)
	}
	mustRun(t, args...)
	for _, n := range names {
		h := g.hosts[n]
		mustRun(t, "host", "guest", "add", "--dir", h.dir, "--identity", filepath.Join(g.home, "identity.pub"), "--quota", "1G")
		peers := []string{"host", "peer", "add", "--dir", h.dir}
		for _, m := range names {
			if m != n {
				peers = append(peers, g.desc(m))
			}
		}
		mustRun(t, peers...)
	}
	for _, n := range names {
		g.hosts[n].start(t)
	}
	t.Cleanup(func() {
		for _, h := range g.hosts {
			h.stop(t)
		}
	})
	return g
}

func (g *remoteGuest) desc(name string) string { return g.p("hosts", name, "descriptor.json") }

func (g *remoteGuest) remoteHostFlags(names ...string) []string {
	var out []string
	for _, n := range names {
		out = append(out, "--host", n+"="+g.desc(n))
	}
	return out
}

// grant makes a read grant for dataset signed by three custodians.
func (g *remoteGuest) grant(t *testing.T, dataset string) string {
	t.Helper()
	g.grants++
	f := g.p(fmt.Sprintf("grant-%s-%d", dataset, g.grants))
	mustRun(t, "grant", "request", "--identity", filepath.Join(g.home, "identity.pub"), "--dataset", dataset,
		"--reason", "restore drill with the home data centre lost", "--out", f)
	mustRun(t, "grant", "sign", "--identity", g.p("custodians", "alice.key"), "--identity", g.p("custodians", "bob.key"), f)
	mustRun(t, "grant", "sign", "--identity", g.p("custodians", "carol.key"), f)
	return f
}

// waitWitnessed runs check until every host's log is witnessed (cosigning
// runs every few seconds) and returns the last report.
func (g *remoteGuest) waitWitnessed(t *testing.T, extra ...string) checkJSON {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		r := embassy(t, append([]string{"check", "--home", g.home, "--json"}, extra...)...)
		rep := parseJSON[checkJSON](t, r.stdout)
		if r.code == 0 && rep.Healthy {
			return rep
		}
		if time.Now().After(deadline) {
			t.Fatalf("check did not become healthy: exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// TestRemoteHostsJourney: three host-node processes over mTLS. Backup, an
// audit with logs and storage proofs, then the home is lost and one host is
// stopped: a read grant signed by three custodians restores from the two
// others, and each host logged the grant.
func TestRemoteHostsJourney(t *testing.T) {
	g := newRemoteGuest(t, "registry")
	src := g.p("src")
	if err := sample.Generate(src, 6<<20, 7); err != nil {
		t.Fatal(err)
	}
	mustRun(t, "backup", "--home", g.home, "--dataset", "registry", "--quiet", src)
	if err := sample.Edit(src, 0.01, 8); err != nil {
		t.Fatal(err)
	}
	mustRun(t, "backup", "--home", g.home, "--dataset", "registry", "--quiet", src)
	rep := g.waitWitnessed(t, "--read-data")
	if len(rep.Hosts) != 3 {
		t.Fatalf("report has %d hosts", len(rep.Hosts))
	}
	for _, h := range rep.Hosts {
		if h.Proof == nil || h.Proof.Items != 917 || h.Proof.OK != 917 || h.Log == nil || len(h.Log.Witnesses) < 2 {
			t.Fatalf("host %s: proof %+v log %+v", h.Name, h.Proof, h.Log)
		}
	}
	ev, _ := filepath.Glob(filepath.Join(g.home, "evidence", "a", "*.receipt"))
	if len(ev) == 0 {
		t.Fatal("no storage-proof evidence kept in HOME")
	}

	// The home is lost; host c is down.
	identity, err := os.ReadFile(filepath.Join(g.home, "identity.pub"))
	if err != nil {
		t.Fatal(err)
	}
	grant := g.grant(t, "registry")
	if err := os.RemoveAll(g.home); err != nil {
		t.Fatal(err)
	}
	g.hosts["c"].stop(t)
	out := g.p("out")
	args := append([]string{"restore", "--dataset", "registry", "--target", out, "--json", "--grant", grant}, g.remoteHostFlags("a", "b", "c")...)
	for _, c := range []string{"alice", "dave", "erin"} {
		args = append(args, "--share", g.p("shares", "registry."+c+".share"), "--identity", g.p("custodians", c+".key"))
	}
	mustRun(t, args...)
	if err := sample.Compare(src, filepath.Join(out, filepath.Base(src))); err != nil {
		t.Fatal(err)
	}
	// Host a's public log records the grant and the reads made with it
	// (once a checkpoint covers them: one is published every second).
	for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		grants, reads := 0, 0
		for _, e := range g.logEntries(t, "a") {
			switch ev := e.Event.(type) {
			case ledger.GrantPresented:
				grants++
			case ledger.ObjectRead:
				if ev.Grant != ([16]byte{}) {
					reads++
				}
			}
		}
		if grants == 1 && reads > 0 {
			break
		}
		if grants > 1 || time.Now().After(deadline) {
			t.Fatalf("host a logged %d grants and %d reads under a grant, want 1 and some", grants, reads)
		}
	}
	// An auditor with the grant and the identity file checks a and b.
	auditor := g.p("auditor")
	os.WriteFile(g.p("identity.pub"), identity, 0o644)
	r := embassy(t, append([]string{"check", "--identity", g.p("identity.pub"), "--grant", grant, "--state", auditor, "--json"}, g.remoteHostFlags("a", "b")...)...)
	arep := parseJSON[checkJSON](t, r.stdout)
	if !arep.Restorable {
		t.Fatalf("auditor check: %s\n%s", r.stdout, r.stderr)
	}
	for _, h := range arep.Hosts {
		if h.Proof == nil || h.Proof.OK != h.Proof.Items {
			t.Fatalf("auditor: host %s proof %+v", h.Name, h.Proof)
		}
	}
}

// logEntries reads and verifies a host's whole public log, as anyone can:
// no client certificate, the host's key pinned from its descriptor.
func (g *remoteGuest) logEntries(t *testing.T, name string) []ledger.Entry {
	t.Helper()
	b, err := os.ReadFile(g.desc(name))
	if err != nil {
		t.Fatal(err)
	}
	d, err := transport.ParseDescriptor(b)
	if err != nil {
		t.Fatal(err)
	}
	v, err := ledger.NewVerifier(d.Log.Origin, d.Log.Keys)
	if err != nil {
		t.Fatal(err)
	}
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: access.ClientConfig(nil, d.TLS)}, Timeout: 10 * time.Second}
	c := &ledger.Client{Verifier: v, Fetch: ledger.HTTPFetcher(d.BaseURL()+"/log", hc)}
	ctx := context.Background()
	cp, err := c.Latest(ctx)
	if err != nil {
		t.Fatal(err)
	}
	es, err := c.Entries(ctx, cp, 0, cp.Size)
	if err != nil {
		t.Fatal(err)
	}
	return es
}

// TestGuestWitness: the guest runs its own witness; every host submits its
// checkpoints to it, and the guest's check counts it with the other hosts.
func TestGuestWitness(t *testing.T) {
	g := newRemoteGuest(t, "registry")
	w := &hostProc{name: "home-witness", dir: g.p("witness"), addr: freePort(t)}
	w.args = []string{"witness", "serve", "--dir", w.dir}
	mustRun(t, "witness", "init", "--dir", w.dir, "--name", "home-witness", "--listen", w.addr)
	wdesc := filepath.Join(w.dir, "descriptor.json")
	mustRun(t, "witness", "add-log", "--dir", w.dir, g.desc("a"), g.desc("b"), g.desc("c"))
	w.start(t)
	t.Cleanup(func() { w.stop(t) })
	for _, n := range []string{"a", "b", "c"} {
		h := g.hosts[n]
		mustRun(t, "host", "peer", "add", "--dir", h.dir, wdesc)
		h.stop(t)
		h.start(t)
	}
	mustRun(t, "witness", "use", "--home", g.home, wdesc)
	g.backupSample(t, 51)
	deadline := time.Now().Add(40 * time.Second)
	for {
		rep := g.waitWitnessed(t)
		all := true
		for _, h := range rep.Hosts {
			has := false
			for _, n := range h.Log.Witnesses {
				has = has || n == "embassy.witness/home-witness"
			}
			all = all && has && len(h.Log.Witnesses) == 3
		}
		if all {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the guest's witness never cosigned every host's log: %+v", rep.Hosts)
		}
		time.Sleep(time.Second)
	}
}

// checkHas reports whether the report names a problem of kind on host.
func checkHas(rep checkJSON, kind, host string) bool {
	for _, p := range rep.Problems {
		if p.Kind == kind && (host == "" || p.Host == host) {
			return true
		}
	}
	return false
}

func checkKinds(rep checkJSON) string {
	var s []string
	for _, p := range rep.Problems {
		s = append(s, fmt.Sprintf("%s/%s/%s", p.Severity, p.Kind, p.Host))
		if testing.Verbose() {
			s = append(s, "\n    "+p.Message+"\n")
		}
	}
	return strings.Join(s, ", ")
}
