package main

import (
	"context"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/embassy-project/embassy/internal/access"
	"github.com/embassy-project/embassy/internal/home"
	"github.com/embassy-project/embassy/internal/ledger"
	"github.com/embassy-project/embassy/internal/sample"
	"github.com/embassy-project/embassy/internal/shardstore"
	"github.com/embassy-project/embassy/internal/sig"
	"github.com/embassy-project/embassy/internal/transport"
)

// govGuest is a remote guest with a guest witness outside home and an
// agreement in force at its three hosts.
type govGuest struct {
	*remoteGuest
	agreement string
}

func newGovGuest(t *testing.T) *govGuest {
	t.Helper()
	g := newRemoteGuest(t, "registry", "ministry")
	w := &hostProc{name: "w1", dir: g.p("witness"), addr: freePort(t)}
	w.args = []string{"witness", "serve", "--dir", w.dir}
	mustRun(t, "witness", "init", "--dir", w.dir, "--name", "w1", "--listen", w.addr)
	mustRun(t, "witness", "add-log", "--dir", w.dir, g.desc("a"), g.desc("b"), g.desc("c"))
	w.start(t)
	t.Cleanup(func() { w.stop(t) })

	ag := g.p("agreement.signed")
	args := []string{"agreement", "init", "--guest", filepath.Join(g.home, "identity.pub"), "--guest-party", "estonia:EE",
		"--governing-law", "Agreement between EE and LU on the hosting of data and information systems (2017)",
		"--witness", filepath.Join(w.dir, "descriptor.json"), "--witness-threshold", "2",
		"--dataset", "registry:highly-restricted:2", "--dataset", "ministry:confidential:1", "--home-silent", "1h",
		"--quorum", "activate=3:minister=1", "--quorum", "return=3", "--quorum", "amend=3", "--quorum", "expire=4",
		"--quorum", "grant=3", "--quorum", "rotate=3", "--quorum", "revoke=3", "--out", ag}
	for _, n := range []string{"a", "b", "c"} {
		classes := "public,sensitive,confidential,highly-restricted"
		if n == "c" {
			classes = "public,sensitive,highly-restricted" // c may not hold confidential data
		}
		args = append(args, "--host-descriptor", g.desc(n), "--host-party", n+"=luxembourg:LU", "--host-classes", n+"="+classes)
	}
	for _, c := range custodianNames {
		role := "official"
		if c == "alice" {
			role = "minister"
		}
		args = append(args, "--custodian", c+"="+g.p("custodians", c+".key.pub")+":"+role)
	}
	mustRun(t, args...)
	for _, c := range []string{"alice", "bob", "carol"} {
		mustRun(t, "agreement", "sign", "--identity", g.p("custodians", c+".key"), ag)
	}
	for _, n := range []string{"a", "b", "c"} {
		mustRun(t, "agreement", "ack", "--host-dir", g.hosts[n].dir, ag)
	}
	mustRun(t, "agreement", "verify", ag)
	for _, n := range []string{"a", "b", "c"} {
		h := g.hosts[n]
		h.stop(t)
		mustRun(t, "host", "agreement", "install", "--dir", h.dir, ag)
		h.start(t)
	}
	mustRun(t, "agreement", "use", "--home", g.home, ag)
	return &govGuest{remoteGuest: g, agreement: ag}
}

// order drafts an order, has the custodians sign it, and returns its file.
func (g *govGuest) order(t *testing.T, name string, signers []string, draft ...string) string {
	t.Helper()
	f := g.p(name + ".order")
	mustRun(t, append(append([]string{"order", "draft", "--agreement", g.agreement}, draft...), "--out", f)...)
	for _, c := range signers {
		mustRun(t, "order", "sign", "--identity", g.p("custodians", c+".key"), f)
	}
	return f
}

type govStatusJSON struct {
	Synced bool `json:"synced"`
	State  struct {
		Datasets map[string]struct {
			Phase  string `json:"phase"`
			Epoch  uint64 `json:"epoch"`
			Writer string `json:"writer"`
			Host   string `json:"host"`
		} `json:"datasets"`
	} `json:"state"`
}

// status reads host n's governance for the guest.
func (g *govGuest) status(t *testing.T, h *home.Home, n string) (govStatusJSON, error) {
	t.Helper()
	d, err := transport.ParseDescriptor(mustRead(t, g.desc(n)))
	if err != nil {
		t.Fatal(err)
	}
	st, err := h.Connect(d)
	if err != nil {
		t.Fatal(err)
	}
	c := st.(*transport.Client)
	c.Retries, c.Timeout = 0, 5*time.Second
	b, err := c.Governance(context.Background())
	var s govStatusJSON
	if err == nil {
		err = json.Unmarshal(b, &s)
	}
	return s, err
}

// put writes one object to host n with the given writer key and epoch.
func (g *govGuest) put(t *testing.T, n string, writer *sig.PrivateKey, guestID [16]byte, epoch uint64, data string) error {
	return g.putDataset(t, n, "registry", writer, guestID, epoch, data)
}

func (g *govGuest) putDataset(t *testing.T, n, dataset string, writer *sig.PrivateKey, guestID [16]byte, epoch uint64, data string) error {
	t.Helper()
	d, err := transport.ParseDescriptor(mustRead(t, g.desc(n)))
	if err != nil {
		t.Fatal(err)
	}
	cert, err := access.NewAgentCertificate(writer, guestID, time.Now(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	c := transport.NewClient(d, guestID, cert)
	c.Dataset, c.Epoch, c.Retries = dataset, epoch, 0
	b := []byte(data)
	return c.Put(context.Background(), shardstore.KindShard, shardstore.Sum(b), b)
}

func mustRead(t *testing.T, f string) []byte {
	t.Helper()
	b, err := os.ReadFile(f)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestGovernanceActivation: with home gone and host c stopped, a quorum
// including the minister activates host b from a named snapshot. The old
// home's writes are then refused by every host (c too, once it is back and
// has read the order from the others' logs); the new writer's are
// accepted; forged, under-quorum and replayed orders are refused and
// logged; a return order hands writing back to home.
func TestGovernanceActivation(t *testing.T) {
	g := newGovGuest(t)
	g.backupSample(t, 61)
	h, err := home.Open(g.home)
	if err != nil {
		t.Fatal(err)
	}
	gid := h.Identity.Guest

	// Placement: host c may not hold confidential data. The agent refuses
	// before any byte leaves home, and host c refuses such writes itself.
	if r := embassy(t, "backup", "--home", g.home, "--dataset", "ministry", "--quiet", g.p("src")); r.code == 0 ||
		!strings.Contains(r.stderr, "before any data left home") || !strings.Contains(r.stderr, "host c") {
		t.Fatalf("backup of a confidential dataset to a host not allowed for it: %d\n%s", r.code, r.stderr)
	}
	if err := g.putDataset(t, "c", "ministry", h.Agent, gid, 1, "confidential"); !errors.Is(err, transport.ErrRefused) {
		t.Fatalf("host c on a confidential write: %v", err)
	}
	if err := g.putDataset(t, "a", "ministry", h.Agent, gid, 1, "confidential"); err != nil {
		t.Fatalf("host a on a confidential write: %v", err)
	}
	var snaps struct {
		Snapshots []struct {
			Envelope string `json:"envelope"`
		} `json:"snapshots"`
	}
	if err := json.Unmarshal([]byte(mustRun(t, "snapshots", "--home", g.home, "--json")), &snaps); err != nil || len(snaps.Snapshots) == 0 {
		t.Fatalf("snapshots: %v %v", snaps, err)
	}
	snapshot := snaps.Snapshots[len(snaps.Snapshots)-1].Envelope

	// Home is lost (its agent key is in the adversary's hands) and host c is down.
	g.hosts["c"].stop(t)
	mustRun(t, "writer", "keygen", "--out", g.p("writer-b.key"))
	newWriter := loadWriter(t, g.p("writer-b.key"))
	activate := []string{"--kind", "activate", "--dataset", "registry", "--host", "b", "--epoch", "2",
		"--writer-key", g.p("writer-b.key.pub"), "--snapshot", snapshot, "--reason", "home data centre lost; continuity from host b"}

	// Refusals first: below quorum, wrong role (no minister), forged.
	below := g.order(t, "below", []string{"alice", "bob"}, activate...)
	if r := embassy(t, "order", "submit", "--agreement", g.agreement, "--host", "a", below); r.code == 0 || !strings.Contains(r.stdout, "quorum") {
		t.Fatalf("an order below quorum was not refused for quorum: %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	noMinister := g.order(t, "nominister", []string{"bob", "carol", "dave"}, activate...)
	if r := embassy(t, "order", "submit", "--agreement", g.agreement, "--host", "a", noMinister); r.code == 0 || !strings.Contains(r.stdout, "minister") {
		t.Fatalf("an order without the minister was not refused: %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	forged := g.order(t, "forged", []string{"alice", "bob", "carol"}, activate...)
	fb := mustRead(t, forged)
	fb = []byte(strings.Replace(string(fb), "home data centre lost", "home data centre LOST", 1))
	os.WriteFile(forged, fb, 0o644)
	if r := embassy(t, "order", "submit", "--agreement", g.agreement, "--host", "a", forged); r.code == 0 {
		t.Fatalf("a forged order was carried out:\n%s", r.stdout)
	}
	// The submit command checks signatures itself; send it to host a directly.
	da, err := transport.ParseDescriptor(mustRead(t, g.desc("a")))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := transport.NewClient(da, gid, tls.Certificate{}).SubmitOrder(context.Background(), fb); !errors.Is(err, transport.ErrRefused) || !strings.Contains(err.Error(), "signature") {
		t.Fatalf("host a on a forged order: %v", err)
	}

	act := g.order(t, "activate", []string{"alice", "bob", "carol"}, activate...)
	out := mustRun(t, "order", "submit", "--agreement", g.agreement, act)
	if !strings.Contains(out, "a: carried out") || !strings.Contains(out, "b: carried out") || !strings.Contains(out, "c: NOT carried out") {
		t.Fatalf("activation:\n%s", out)
	}
	if r := embassy(t, "order", "submit", "--agreement", g.agreement, "--host", "a", act); r.code == 0 || !strings.Contains(r.stdout, "already") {
		t.Fatalf("a replayed order was not refused as a replay: %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	for _, n := range []string{"a", "b"} {
		s, err := g.status(t, h, n)
		if err != nil {
			t.Fatal(err)
		}
		ds := s.State.Datasets["registry"]
		if ds.Phase != "active" || ds.Epoch != 2 || ds.Host != "b" {
			t.Fatalf("host %s after activation: %+v", n, ds)
		}
	}

	// The seized home: its agent refuses to write, and the hosts refuse its
	// writes at the old epoch and at the new one.
	if r := embassy(t, "backup", "--home", g.home, "--dataset", "registry", "--quiet", g.p("src")); r.code == 0 || !strings.Contains(r.stderr, "fenced") {
		t.Fatalf("backup from the fenced home: %d\n%s", r.code, r.stderr)
	}
	for _, n := range []string{"a", "b"} {
		for _, epoch := range []uint64{1, 2, 3} {
			if err := g.put(t, n, h.Agent, gid, epoch, "seized home "+n); !errors.Is(err, transport.ErrFenced) {
				t.Fatalf("host %s accepted (or failed oddly on) a write from the old home at epoch %d: %v", n, epoch, err)
			}
		}
	}
	// The writer the order named may write at epoch 2, not at 1.
	if err := g.put(t, "a", newWriter, gid, 2, "continuity journal"); err != nil {
		t.Fatalf("the new writer's write was refused: %v", err)
	}
	if err := g.put(t, "a", newWriter, gid, 1, "continuity journal old epoch"); !errors.Is(err, transport.ErrFenced) {
		t.Fatalf("the new writer's write at the old epoch: %v", err)
	}

	// The custodians release their shares to host b alone; b rebuilds the key
	// in memory and restores the snapshot the order named.
	var rels []string
	for _, c := range []string{"alice", "bob", "carol"} {
		rel := g.p(c + ".rel")
		mustRun(t, "share", "release", "--share", g.p("shares", "registry."+c+".share"), "--identity", g.p("custodians", c+".key"),
			"--order", act, "--host-descriptor", g.desc("b"), "--out", rel)
		rels = append(rels, rel)
	}
	if _, err := transport.NewClient(da, gid, tls.Certificate{}).SubmitRelease(context.Background(), mustRead(t, rels[0])); !errors.Is(err, transport.ErrRefused) {
		t.Fatalf("host a accepted a share released to host b: %v", err)
	}
	if r := embassy(t, "host", "restore", "--dir", g.hosts["b"].dir, "--guest", gid.String(), "--dataset", "registry",
		"--writer-key", g.p("writer-b.key"), "--target", g.p("restored-b")); r.code == 0 {
		t.Fatal("host b restored with no share released to it")
	}
	mustRun(t, append([]string{"share", "submit", "--agreement", g.agreement}, rels...)...)
	res := parseJSON[restoreJSON](t, mustRun(t, "host", "restore", "--dir", g.hosts["b"].dir, "--guest", gid.String(), "--dataset", "registry",
		"--writer-key", g.p("writer-b.key"), "--target", g.p("restored-b"), "--json"))
	if err := sample.Compare(g.p("src"), res.Path); err != nil {
		t.Fatalf("host b's restore of the named snapshot differs: %v", err)
	}
	var released int
	for deadline := time.Now().Add(20 * time.Second); released != 3 && time.Now().Before(deadline); time.Sleep(300 * time.Millisecond) {
		released = 0
		for _, e := range g.logEntries(t, "b") {
			if _, ok := e.Event.(ledger.ShareReleased); ok {
				released++
			}
		}
	}
	if released != 3 {
		t.Fatalf("host b logged %d share releases, want 3", released)
	}

	// Host c returns: it reads the order from a's and b's logs and fences too.
	g.hosts["c"].start(t)
	deadline := time.Now().Add(60 * time.Second)
	for {
		s, err := g.status(t, h, "c")
		if err == nil && s.Synced && s.State.Datasets["registry"].Epoch == 2 {
			break
		}
		if err := g.put(t, "c", h.Agent, gid, 1, "seized home c"); err == nil {
			t.Fatal("host c accepted a write from the old home before it caught up")
		}
		if time.Now().After(deadline) {
			t.Fatalf("host c never caught up with the activation: %+v %v\n%s", s, err, g.hosts["c"].logText())
		}
		time.Sleep(500 * time.Millisecond)
	}
	for _, epoch := range []uint64{1, 2} {
		if err := g.put(t, "c", h.Agent, gid, epoch, "seized home c"); !errors.Is(err, transport.ErrFenced) {
			t.Fatalf("host c accepted a write from the old home at epoch %d: %v", epoch, err)
		}
	}

	// The refusals and the order are in host a's public log.
	var refused, logged, carried, fenced int
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(300 * time.Millisecond) {
		refused, logged, carried, fenced = 0, 0, 0, 0
		for _, e := range g.logEntries(t, "a") {
			switch e.Event.(type) {
			case ledger.OrderRefused:
				refused++
			case ledger.OrderLogged:
				logged++
			case ledger.OrderCarriedOut:
				carried++
			case ledger.WriteFenced:
				fenced++
			}
		}
		if (refused >= 4 && logged == 1 && carried == 1 && fenced > 0) || time.Now().After(deadline) {
			break
		}
	}
	if refused < 4 || logged != 1 || carried != 1 || fenced == 0 {
		t.Fatalf("host a's log: %d refused, %d logged, %d carried out, %d fenced", refused, logged, carried, fenced)
	}

	// A return order hands writing back to home's agent key.
	homeKey := g.p("home-writer.pub")
	os.WriteFile(homeKey, []byte(base64.StdEncoding.EncodeToString(h.Agent.Public().Bytes())+"\n"), 0o644)
	ret := g.order(t, "return", []string{"alice", "dave", "erin"}, "--kind", "return", "--dataset", "registry", "--epoch", "3",
		"--writer-key", homeKey, "--reason", "home data centre restored")
	out = mustRun(t, "order", "submit", "--agreement", g.agreement, ret)
	if strings.Count(out, ": carried out (logged") != 3 {
		t.Fatalf("return:\n%s", out)
	}
	// Its key is no writer any more: refused in the TLS handshake.
	if err := g.put(t, "b", newWriter, gid, 3, "continuity after return"); !errors.Is(err, transport.ErrRefused) {
		t.Fatalf("host b accepted the activated writer after the return: %v", err)
	}
	// Host b held the dataset's key: home writes again only under new keys.
	if r := embassy(t, "backup", "--home", g.home, "--dataset", "registry", "--quiet", g.p("src")); r.code == 0 || !strings.Contains(r.stderr, "new keys") {
		t.Fatalf("backup after the return, before rotation: %d\n%s", r.code, r.stderr)
	}
	out = mustRun(t, "dataset", "rotate", "--home", g.home, "--shares", g.p("shares2"), "registry")
	fp := regexp.MustCompile(`fingerprint ([0-9a-f]{32})`).FindStringSubmatch(out)
	if fp == nil {
		t.Fatalf("dataset rotate:\n%s", out)
	}
	// What the old keys made at home is gone: the cache and its chunk
	// index (chunk IDs under the old MAC key).
	for _, f := range []string{"cache.db", "chunkindex"} {
		if _, err := os.Stat(filepath.Join(g.home, "datasets", "registry", f)); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("after rotate, %s: %v", f, err)
		}
	}
	if r := embassy(t, "identity", "push", "--home", g.home); r.code == 0 {
		t.Fatal("hosts took the new dataset keys before any rotate order")
	}
	rot := g.order(t, "rotate", []string{"bob", "carol", "dave"}, "--kind", "rotate", "--dataset", "registry", "--new-keys", fp[1],
		"--reason", "host b held the key while the dataset was active")
	if out := mustRun(t, "order", "submit", "--agreement", g.agreement, rot); strings.Count(out, ": carried out (logged") != 3 {
		t.Fatalf("rotate:\n%s", out)
	}
	mustRun(t, "identity", "push", "--home", g.home)
	// A host restarted after the rotation still serves the guest.
	g.hosts["a"].stop(t)
	g.hosts["a"].start(t)
	g.backupSample(t, 62)

	// The newest snapshot opens with the new shares only.
	restoreWith := func(sharesDir, target string) result {
		args := []string{"restore", "--grant", g.grant(t, "registry"), "--dataset", "registry", "--snapshot", "latest", "--target", target, "--json"}
		args = append(args, g.remoteHostFlags("a", "b")...)
		for _, c := range []string{"alice", "bob", "carol"} {
			args = append(args, "--share", filepath.Join(sharesDir, "registry."+c+".share"), "--identity", g.p("custodians", c+".key"))
		}
		return embassy(t, args...)
	}
	if r := restoreWith(g.p("shares"), g.p("restored-old-keys")); r.code == 0 {
		t.Fatal("the old shares (which host b held) opened the snapshot written after the rotation")
	}
	r := restoreWith(g.p("shares2"), g.p("restored-new-keys"))
	if r.code != 0 {
		t.Fatalf("restore with the new shares: %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if err := sample.Compare(g.p("src"), parseJSON[restoreJSON](t, r.stdout).Path); err != nil {
		t.Fatal(err)
	}
}

func loadWriter(t *testing.T, f string) *sig.PrivateKey {
	t.Helper()
	b, err := base64.StdEncoding.DecodeString(strings.TrimSpace(string(mustRead(t, f))))
	if err != nil {
		t.Fatal(err)
	}
	k, err := sig.NewPrivateKey(b)
	if err != nil {
		t.Fatal(err)
	}
	return k
}
