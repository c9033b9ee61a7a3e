package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/embassy-project/embassy/internal/guest"
	"github.com/embassy-project/embassy/internal/sample"
	"github.com/embassy-project/embassy/internal/witnessnode"
)

// demo runs the whole journey on embedded defaults, through the same
// commands an operator types: custodians make keys, three host nodes run on
// loopback (mutual TLS, logs, witnessing each other), a guest backs up a
// generated registry, edits one percent and backs up again, audits (storage
// proofs, logs), loses a host and its HOME, is audited with a read grant, is
// refused a restore below the custodian threshold, and restores with a
// quorum, verified byte for byte.
func (e *env) demo(args []string) error {
	fs := newFlags("demo", e.stderr)
	dir := fs.String("dir", "", "working directory (default: a new temporary directory)")
	sizeMB := fs.Int("size", 64, "size of the generated registry in MB")
	seed := fs.Uint64("seed", 1, "seed of the generated registry")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *dir == "" {
		d, err := os.MkdirTemp("", "embassy-demo-")
		if err != nil {
			return err
		}
		*dir = d
	} else if err := os.MkdirAll(*dir, 0o755); err != nil {
		return err
	}
	if ents, _ := os.ReadDir(*dir); len(ents) > 0 {
		return usageErr("demo --dir %s is not empty", *dir)
	}
	w := *dir
	p := func(parts ...string) string { return filepath.Join(append([]string{w}, parts...)...) }
	step := 0
	say := func(format string, args ...any) {
		step++
		fmt.Fprintf(e.stdout, "\n== %d. %s\n", step, fmt.Sprintf(format, args...))
	}
	// sh runs one embassy command in-process, echoing it, and returns its error.
	sh := func(args ...string) error {
		fmt.Fprintf(e.stdout, "$ embassy %s\n", strings.Join(shorten(w, args), " "))
		return run(e.ctx, args, e.stdin, e.stdout, e.stdout)
	}
	must := func(args ...string) error {
		if err := sh(args...); err != nil {
			return fmt.Errorf("demo step %d (embassy %s): %w", step, args[0], err)
		}
		return nil
	}
	start := time.Now()
	fmt.Fprintf(e.stdout, "embassy demo in %s (paths below are relative to it)\n", w)

	custodians := []string{"alice", "bob", "carol", "dave", "erin"}
	say("Five custodians each make their own key pair, on their own machines")
	for _, c := range custodians {
		if err := must("custodian", "keygen", "--name", c, "--out", p("custodians", c+".key")); err != nil {
			return err
		}
	}

	say("Three allied host states each set up a host node (here on loopback)")
	names := []string{"a", "b", "c"}
	for _, h := range names {
		addr, err := freeLoopback()
		if err != nil {
			return err
		}
		if err := must("host", "init", "--dir", p("hosts", h), "--name", h, "--listen", addr); err != nil {
			return err
		}
	}

	say("The guest sets up HOME with the three host descriptors (k=2 of n=3) and a 3-of-5 custodian threshold")
	initArgs := []string{"init", "--home", p("home"), "--guest-name", "demo-state", "--data-shards", "2", "--threshold", "3",
		"--shares", p("shares"), "--dataset", "population", "--dataset", "land", "--dataset", "business"}
	for _, h := range names {
		initArgs = append(initArgs, "--host", h+"="+p("hosts", h, "descriptor.json"))
	}
	for _, c := range custodians {
		initArgs = append(initArgs, "--custodian", c+"="+p("custodians", c+".key.pub"))
	}
	if err := must(initArgs...); err != nil {
		return err
	}
	if err := must("dataset", "add", "--home", p("home"), "--shares", p("shares"), "gazette"); err != nil {
		return err
	}
	// The public identity is published for auditors (it is not secret).
	pub, err := os.ReadFile(p("home", "identity.pub"))
	if err != nil {
		return err
	}
	if err := os.MkdirAll(p("public"), 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(p("public", "guest.pub"), pub, 0o644); err != nil {
		return err
	}

	say("The guest runs its own witness of the hosts' logs, outside home (here on loopback)")
	waddr, err := freeLoopback()
	if err != nil {
		return err
	}
	if err := must("witness", "init", "--dir", p("witness"), "--name", "w1", "--listen", waddr); err != nil {
		return err
	}
	if err := must("witness", "add-log", "--dir", p("witness"), p("hosts", "a", "descriptor.json"), p("hosts", "b", "descriptor.json"), p("hosts", "c", "descriptor.json")); err != nil {
		return err
	}

	say("Each host operator agrees to serve the guest (quota 10 GiB)")
	for _, h := range names {
		if err := must("host", "guest", "add", "--dir", p("hosts", h), "--identity", p("public", "guest.pub"), "--quota", "10G"); err != nil {
			return err
		}
	}

	say("The agreement as code: classes per host, k, witness threshold 2 of 3, activation needs 3 custodians including the minister")
	agreement := p("public", "agreement.signed")
	agArgs := []string{"agreement", "init", "--guest", p("public", "guest.pub"), "--guest-party", "demo-state:EE",
		"--governing-law", "Demo treaty on the hosting of state data (2026)", "--witness", p("witness", "descriptor.json"),
		"--witness-threshold", "2", "--home-silent", "15m", "--quorum", "activate=3:minister=1",
		"--dataset", "population:highly-restricted:2", "--dataset", "land:confidential:2",
		"--dataset", "business:public:2", "--dataset", "gazette:public:2", "--out", agreement}
	for _, h := range names {
		agArgs = append(agArgs, "--host-descriptor", p("hosts", h, "descriptor.json"), "--host-party", h+"=host-state-"+h+":LU",
			"--host-classes", h+"=public,sensitive,confidential,highly-restricted")
	}
	for _, c := range custodians {
		role := "official"
		if c == "alice" {
			role = "minister"
		}
		agArgs = append(agArgs, "--custodian", c+"="+p("custodians", c+".key.pub")+":"+role)
	}
	if err := must(agArgs...); err != nil {
		return err
	}
	for _, c := range []string{"alice", "bob", "carol"} {
		if err := must("agreement", "sign", "--identity", p("custodians", c+".key"), agreement); err != nil {
			return err
		}
	}
	for _, h := range names {
		if err := must("agreement", "ack", "--host-dir", p("hosts", h), agreement); err != nil {
			return err
		}
	}
	for _, h := range names {
		if err := must("host", "agreement", "install", "--dir", p("hosts", h), agreement); err != nil {
			return err
		}
	}
	if err := must("agreement", "use", "--home", p("home"), agreement); err != nil {
		return err
	}
	wlog, err := os.OpenFile(p("witness.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	defer wlog.Close()
	wctx, stopWitness := context.WithCancel(e.ctx)
	wdone := make(chan error, 1)
	go func() { wdone <- witnessnode.Serve(wctx, p("witness"), "", slog.New(slog.NewJSONHandler(wlog, nil))) }()
	defer func() { stopWitness(); <-wdone }()
	nodes, err := startDemoHosts(e.ctx, p("hosts"), names)
	if err != nil {
		return err
	}
	defer nodes.stopAll()
	fmt.Fprintf(e.stdout, "$ embassy host serve --dir hosts/a & (and b, c; logs in hosts/*.log)\n")
	fmt.Fprintf(e.stdout, "$ embassy witness serve --dir witness & (log in witness.log)\n")

	say("Generate a %d MB sample registry (population CSV, land deeds, gazette, business JSON)", *sizeMB)
	if err := sample.Generate(p("registry"), int64(*sizeMB)<<20, *seed); err != nil {
		return err
	}
	datasets := []string{"population", "land", "business", "gazette"}
	say("First backup of each register")
	for _, d := range datasets {
		if err := must("backup", "--home", p("home"), "--dataset", d, p("registry", d)); err != nil {
			return err
		}
	}
	say("A day of registry work changes about 1%%; the second backup uploads only what changed")
	if err := sample.Edit(p("registry"), 0.01, *seed+1); err != nil {
		return err
	}
	for _, d := range datasets {
		if err := must("backup", "--home", p("home"), "--dataset", d, p("registry", d)); err != nil {
			return err
		}
	}
	if err := must("snapshots", "--home", p("home")); err != nil {
		return err
	}
	say("The guest audits: every shard read back, each host's log checked against its witnesses, storage proofs")
	// The hosts cosign each other's newest checkpoints every few seconds.
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(500 * time.Millisecond) {
		if run(e.ctx, []string{"check", "--home", p("home")}, e.stdin, io.Discard, io.Discard) == nil {
			break
		}
	}
	if err := must("check", "--home", p("home"), "--read-data"); err != nil {
		return err
	}

	for _, h := range names {
		// The descriptors are public; the guest keeps copies outside HOME.
		if b, err := os.ReadFile(p("hosts", h, "descriptor.json")); err == nil {
			os.WriteFile(p("public", h+".json"), b, 0o644)
		}
	}
	var snaps struct {
		Snapshots []struct {
			Dataset  string `json:"dataset"`
			Envelope string `json:"envelope"`
		} `json:"snapshots"`
	}
	var sbuf bytes.Buffer
	if err := run(e.ctx, []string{"snapshots", "--home", p("home"), "--dataset", "population", "--json"}, e.stdin, &sbuf, io.Discard); err != nil {
		return err
	}
	if err := json.Unmarshal(sbuf.Bytes(), &snaps); err != nil || len(snaps.Snapshots) == 0 {
		return fmt.Errorf("demo: no population snapshot: %v", err)
	}
	latest := snaps.Snapshots[len(snaps.Snapshots)-1].Envelope
	// The adversary who seizes the home data centre keeps a copy of HOME.
	if err := os.CopyFS(p("seized-home"), os.DirFS(p("home"))); err != nil {
		return err
	}

	say("Disaster: host c is lost for good and HOME is destroyed (an adversary holds a copy of it)")
	nodes.stop("c")
	for _, d := range []string{p("hosts", "c"), p("home")} {
		if err := os.RemoveAll(d); err != nil {
			return err
		}
		fmt.Fprintf(e.stdout, "$ rm -rf %s\n", shorten(w, []string{d})[0])
	}
	hostArgs := func(hs ...string) []string {
		var out []string
		for _, h := range hs {
			out = append(out, "--host", h+"="+p("public", h+".json"))
		}
		return out
	}
	say("Alice, Bob and Carol sign a read grant, so that hosts serve shards without HOME's agent key")
	grant := p("grant")
	if err := must("grant", "request", "--identity", p("public", "guest.pub"), "--dataset", "population",
		"--reason", "restore after the loss of the home data centre", "--out", grant); err != nil {
		return err
	}
	if err := must("grant", "sign", "--identity", p("custodians", "alice.key"), "--identity", p("custodians", "bob.key"),
		"--identity", p("custodians", "carol.key"), grant); err != nil {
		return err
	}

	say("An auditor with the public identity and the grant checks the hosts (expect exit 3: damaged, still restorable)")
	err = sh(append([]string{"check", "--identity", p("public", "guest.pub"), "--grant", grant, "--state", p("auditor")}, hostArgs("a", "b", "c")...)...)
	var ee *exitError
	if !errors.As(err, &ee) || ee.code != exitDamage {
		return fmt.Errorf("demo: the audit should report damage (exit %d), got %v", exitDamage, err)
	}
	fmt.Fprintf(e.stdout, "(exit %d, as expected)\n", ee.code)

	say("Two custodians alone cannot restore (threshold is 3)")
	err = sh(append([]string{"restore", "--grant", grant,
		"--share", p("shares", "population.alice.share"), "--share", p("shares", "population.bob.share"),
		"--identity", p("custodians", "alice.key"), "--identity", p("custodians", "bob.key"),
		"--dataset", "population", "--target", p("restored-refused")}, hostArgs("a", "b")...)...)
	if err == nil {
		return errors.New("demo: a restore below the threshold succeeded")
	}
	fmt.Fprintf(e.stdout, "refused, as expected: %v\n", err)
	if _, serr := os.Stat(p("restored-refused", "population")); serr == nil {
		return errors.New("demo: a refused restore left files behind")
	}

	say("Alice, Carol and Erin restore every register from hosts a and b alone")
	quorum := []string{"alice", "carol", "erin"}
	for _, d := range datasets {
		args := append([]string{"restore", "--grant", grant, "--dataset", d, "--snapshot", "latest", "--target", p("restored")}, hostArgs("a", "b")...)
		for _, c := range quorum {
			args = append(args, "--share", p("shares", d+"."+c+".share"), "--identity", p("custodians", c+".key"))
		}
		if err := must(args...); err != nil {
			return err
		}
	}

	say("Verify: every restored file is byte-identical, with modes, mtimes and symlinks")
	for _, d := range datasets {
		if err := sample.Compare(p("registry", d), p("restored", d)); err != nil {
			return fmt.Errorf("demo: restored %s differs: %w", d, err)
		}
		fmt.Fprintf(e.stdout, "%s: identical\n", d)
	}

	say("A quorum including the minister activates host b for the population register, from snapshot %s", latest[:16])
	if err := must("writer", "keygen", "--out", p("hosts", "b", "writer.key")); err != nil {
		return err
	}
	order := p("public", "activate-population.order")
	if err := must("order", "draft", "--agreement", agreement, "--kind", "activate", "--dataset", "population", "--host", "b",
		"--epoch", "2", "--writer-key", p("hosts", "b", "writer.key.pub"), "--snapshot", latest,
		"--reason", "home data centre lost; population register continues from host b", "--out", order); err != nil {
		return err
	}
	for _, c := range []string{"alice", "bob", "carol"} {
		if err := must("order", "sign", "--identity", p("custodians", c+".key"), order); err != nil {
			return err
		}
	}
	fmt.Fprintln(e.stdout, "(each host logs the order and waits for two witnesses to cosign it before carrying it out; host c is gone)")
	if err := must("order", "submit", "--agreement", agreement, "--host", "a", "--host", "b", order); err != nil {
		return err
	}

	say("The adversary's copy of HOME tries to keep writing the population register: fenced out")
	err = sh("backup", "--home", p("seized-home"), "--dataset", "population", "--quiet", p("registry", "population"))
	if err == nil || !strings.Contains(err.Error(), "fenced") {
		return fmt.Errorf("demo: the seized home was not fenced out: %v", err)
	}
	fmt.Fprintf(e.stdout, "refused, as expected: %v\n", err)

	say("Alice, Bob and Carol re-wrap their population shares to host b alone (nothing else can open them)")
	for _, c := range []string{"alice", "bob", "carol"} {
		rel := p("public", "population."+c+".rel")
		if err := must("share", "release", "--share", p("shares", "population."+c+".share"), "--identity", p("custodians", c+".key"),
			"--order", order, "--host-descriptor", p("public", "b.json"), "--out", rel); err != nil {
			return err
		}
		if err := must("share", "submit", "--agreement", agreement, rel); err != nil {
			return err
		}
	}

	say("Host b rebuilds the population key from the released shares, in memory, and restores the snapshot the order named")
	gid, err := guestIDOf(pub)
	if err != nil {
		return err
	}
	if err := must("host", "restore", "--dir", p("hosts", "b"), "--guest", gid, "--dataset", "population",
		"--writer-key", p("hosts", "b", "writer.key"), "--target", p("host-b")); err != nil {
		return err
	}
	if err := sample.Compare(p("registry", "population"), p("host-b", "population")); err != nil {
		return fmt.Errorf("demo: host b's restore differs: %w", err)
	}
	fmt.Fprintln(e.stdout, "population: identical (host b can now run the register under epoch 2)")
	fmt.Fprintf(e.stdout, "\ndemo complete in %.1fs: everything in %s\n", time.Since(start).Seconds(), w)
	return nil
}

func shorten(dir string, args []string) []string {
	out := make([]string, len(args))
	for i, a := range args {
		out[i] = strings.ReplaceAll(a, dir+string(filepath.Separator), "")
	}
	return out
}

// guestIDOf returns the guest ID of a public identity file.
func guestIDOf(pub []byte) (string, error) {
	id, err := guest.ParseIdentity(pub)
	if err != nil {
		return "", err
	}
	return id.Guest.String(), nil
}
