package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/term"

	"github.com/embassy-project/embassy/internal/agent"
	"github.com/embassy-project/embassy/internal/catalog"
	"github.com/embassy-project/embassy/internal/check"
	"github.com/embassy-project/embassy/internal/custodian"
	"github.com/embassy-project/embassy/internal/guest"
	"github.com/embassy-project/embassy/internal/home"
	"github.com/embassy-project/embassy/internal/hosts"
	"github.com/embassy-project/embassy/internal/restore"
	"github.com/embassy-project/embassy/internal/share"
	"github.com/embassy-project/embassy/internal/transport"
)

// multi is a repeatable string flag.
type multi []string

func (m *multi) String() string     { return strings.Join(*m, ",") }
func (m *multi) Set(v string) error { *m = append(*m, v); return nil }

func newFlags(name string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("embassy "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	return fs
}

func parse(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return &exitError{code: exitOK, err: errors.New("")}
		}
		return &exitError{code: exitUsage, err: err}
	}
	return nil
}

func (e *env) printJSON(v any) error {
	enc := json.NewEncoder(e.stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func (e *env) isTerminal() bool {
	f, ok := e.stderr.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

func (e *env) custodianKeygen(args []string) error {
	fs := newFlags("custodian keygen", e.stderr)
	name := fs.String("name", "", "custodian name (lower-case letters, digits, . _ -)")
	out := fs.String("out", "", "secret identity file to write; FILE.pub gets the public key")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *name == "" || *out == "" {
		return usageErr("custodian keygen needs --name and --out")
	}
	id, err := custodian.Generate(*name)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(*out), 0o700); err != nil {
		return err
	}
	if err := home.WriteFileNew(*out, id.Marshal(), 0o600); err != nil {
		return fmt.Errorf("write identity: %w (existing keys are never overwritten)", err)
	}
	if err := home.WriteFileNew(*out+".pub", id.Recipient().Marshal(), 0o644); err != nil {
		return fmt.Errorf("write public key: %w", err)
	}
	fmt.Fprintf(e.stdout, "custodian %s: secret identity %s, public key %s.pub (fingerprint %s)\n", *name, *out, *out, id.Recipient().Fingerprint())
	fmt.Fprintln(e.stdout, "Keep the identity file offline; hand only the .pub file to the guest's operator.")
	return nil
}

func parseHosts(specs []string) ([]hosts.Spec, error) {
	var out []hosts.Spec
	for _, s := range specs {
		h, err := hosts.ParseSpec(s)
		if err != nil {
			return nil, usageErr("%v", err)
		}
		out = append(out, h)
	}
	return out, nil
}

func (e *env) init(args []string) error {
	fs := newFlags("init", e.stderr)
	homeDir := fs.String("home", "", "HOME directory to create")
	var hostFlags, custFlags, datasets multi
	fs.Var(&hostFlags, "host", "NAME=DIR of a host (repeat; shard i goes to the i-th host)")
	k := fs.Int("data-shards", 0, "k: shards needed to rebuild a pack (n = number of hosts)")
	fs.Var(&custFlags, "custodian", "NAME=FILE.pub of a custodian (repeat)")
	threshold := fs.Int("threshold", 0, "custodian shares needed to rebuild a dataset key")
	fs.Var(&datasets, "dataset", "dataset to create (repeat)")
	shares := fs.String("shares", "", "directory to write the custodians' share files into")
	guestName := fs.String("guest-name", "guest", "the guest state's name")
	retention := fs.Int("retention-days", 3650, "days host nodes must keep each write (Object Lock retain-until; 0: none)")
	asJSON := fs.Bool("json", false, "print JSON")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *homeDir == "" {
		return usageErr("init needs --home")
	}
	hs, err := parseHosts(hostFlags)
	if err != nil {
		return err
	}
	var cs []*custodian.Recipient
	for _, c := range custFlags {
		name, file, ok := strings.Cut(c, "=")
		if !ok {
			return usageErr("--custodian %q: want NAME=FILE.pub", c)
		}
		b, err := os.ReadFile(file)
		if err != nil {
			return fmt.Errorf("custodian %s: %w", name, err)
		}
		r, err := custodian.ParseRecipient(b)
		if err != nil {
			return fmt.Errorf("custodian %s (%s): %w", name, file, err)
		}
		if r.Name != name {
			return usageErr("--custodian %s: the key in %s belongs to %q", name, file, r.Name)
		}
		cs = append(cs, r)
	}
	if *k == 0 {
		*k = (len(hs) + 1) / 2
	}
	h, files, err := home.Init(*homeDir, home.InitOptions{
		GuestName: *guestName, Hosts: hs, DataShards: *k, Custodians: cs, Threshold: *threshold,
		Datasets: datasets, SharesDir: *shares, RetentionDays: *retention,
	})
	if err != nil {
		return err
	}
	if *asJSON {
		return e.printJSON(map[string]any{"home": h.Dir, "guest": h.Config.Guest, "shares": files})
	}
	fmt.Fprintf(e.stdout, "guest %s (%s): HOME %s, %d hosts, k=%d, custodian threshold %d of %d\n",
		h.Config.GuestName, h.Config.Guest, h.Dir, len(hs), *k, *threshold, len(cs))
	for _, d := range h.Identity.Datasets {
		fmt.Fprintf(e.stdout, "dataset %s: fingerprint %s\n", d.Name, d.Fingerprint())
	}
	for _, f := range files {
		fmt.Fprintf(e.stdout, "  share for %s: %s\n", f.Custodian, f.Path)
	}
	fmt.Fprintln(e.stdout, "Hand each custodian their share files; publish the dataset fingerprints; give auditors", filepath.Join(h.Dir, "identity.pub"))
	return nil
}

func (e *env) datasetAdd(args []string) error {
	_, _, err := e.datasetKeys("dataset add", "directory to write the custodians' share files into", args,
		func(h *home.Home, name, shares string) (*guest.Dataset, []home.ShareFile, error) {
			files, err := h.AddDataset(name, shares)
			if err != nil {
				return nil, nil, err
			}
			d, err := h.Dataset(name)
			return d, files, err
		})
	return err
}

// datasetKeys runs a command that makes a dataset's keys and shares (add,
// rotate) and prints the dataset's fingerprint and the share files.
func (e *env) datasetKeys(name, sharesHelp string, args []string, op func(h *home.Home, dataset, shares string) (*guest.Dataset, []home.ShareFile, error)) (*guest.Dataset, string, error) {
	fs := newFlags(name, e.stderr)
	homeDir := fs.String("home", "", "HOME directory")
	shares := fs.String("shares", "", sharesHelp)
	if err := parse(fs, args); err != nil {
		return nil, "", err
	}
	if *homeDir == "" || *shares == "" || fs.NArg() != 1 {
		return nil, "", usageErr("usage: embassy %s --home HOME --shares DIR NAME", name)
	}
	h, err := home.Open(*homeDir)
	if err != nil {
		return nil, "", err
	}
	d, files, err := op(h, fs.Arg(0), *shares)
	if err != nil {
		return nil, "", err
	}
	fmt.Fprintf(e.stdout, "dataset %s: fingerprint %s\n", d.Name, d.Fingerprint())
	for _, f := range files {
		fmt.Fprintf(e.stdout, "  share for %s: %s\n", f.Custodian, f.Path)
	}
	return d, *homeDir, nil
}

func humanBytes(n uint64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := uint64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

func (e *env) backup(args []string) error {
	fs := newFlags("backup", e.stderr)
	homeDir := fs.String("home", "", "HOME directory")
	dataset := fs.String("dataset", "", "dataset to back up into")
	name := fs.String("name", "stdin", "file name to record when PATH is -")
	asJSON := fs.Bool("json", false, "print the result as JSON")
	quiet := fs.Bool("quiet", false, "print nothing but errors")
	keepCache := fs.Bool("keep-cache", false, "leave the files read in the page cache (by default those not cached before are dropped as read)")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *homeDir == "" || *dataset == "" || fs.NArg() != 1 {
		return usageErr("usage: embassy backup --home HOME --dataset NAME PATH|-")
	}
	h, err := home.Open(*homeDir)
	if err != nil {
		return err
	}
	hostname, _ := os.Hostname()
	opts := agent.Options{Dataset: *dataset, Path: fs.Arg(0), Stdin: e.stdin, StdinName: *name, Hostname: hostname, KeepCache: *keepCache}
	showProgress := !*asJSON && !*quiet && e.isTerminal()
	if showProgress {
		start := time.Now()
		opts.Progress = func(p agent.Progress) {
			rate := float64(p.Bytes) / time.Since(start).Seconds() / (1 << 20)
			fmt.Fprintf(e.stderr, "\r\033[K%d files, %d dirs, %s processed (%.0f MiB/s), %s new, %s uploaded",
				p.Files, p.Dirs, humanBytes(p.Bytes), rate, humanBytes(p.NewBytes), humanBytes(p.UploadedBytes))
		}
	}
	restoreProcs := raiseProcs(backupProcs())
	res, err := agent.Backup(e.ctx, h, opts)
	restoreProcs()
	if showProgress {
		fmt.Fprintln(e.stderr)
	}
	if err != nil {
		return err
	}
	// A backup is a sign of life: hosts under an agreement count home's
	// silence from the last heartbeat.
	if err := h.Heartbeat(e.ctx); err != nil {
		fmt.Fprintf(e.stderr, "embassy: warning: heartbeat: %v\n", err)
	}
	switch {
	case *asJSON:
		return e.printJSON(res)
	case *quiet:
	default:
		for _, s := range res.Skipped {
			fmt.Fprintf(e.stderr, "embassy: skipped %s: not a regular file, directory or symlink\n", s)
		}
		fmt.Fprintf(e.stdout, "snapshot %d of %s: %d files, %d dirs, %s; %s new, %s sealed in %d new packs, %s written to hosts; %.1fs\n",
			res.Seq, res.Dataset, res.Files, res.Dirs, humanBytes(res.Bytes), humanBytes(res.NewBytes), humanBytes(res.StoredBytes), res.NewPacks,
			humanBytes(res.UploadedBytes), res.Seconds)
		fmt.Fprintf(e.stdout, "envelope %s\n", res.Envelope)
	}
	return nil
}

type snapshotRow struct {
	Dataset  string    `json:"dataset"`
	Seq      uint64    `json:"seq"`
	Time     time.Time `json:"time"`
	Envelope string    `json:"envelope"`
	Packs    int       `json:"packs"`
	Bytes    uint64    `json:"sealed_bytes"`
	Hosts    []string  `json:"hosts"`
}

func (e *env) snapshots(args []string) error {
	fs := newFlags("snapshots", e.stderr)
	homeDir := fs.String("home", "", "HOME directory")
	dataset := fs.String("dataset", "", "only this dataset")
	asJSON := fs.Bool("json", false, "print JSON")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *homeDir == "" {
		return usageErr("usage: embassy snapshots --home HOME [--dataset NAME] [--json]")
	}
	h, err := home.Open(*homeDir)
	if err != nil {
		return err
	}
	hs, err := hosts.Open(h.Config.Hosts, hosts.Options{Connect: h.Connect})
	if err != nil {
		return err
	}
	served := catalog.Read(e.ctx, hs)
	rows := []snapshotRow{}
	var problems []catalog.Problem
	for _, ds := range h.Identity.Datasets {
		if *dataset != "" && ds.Name != *dataset {
			continue
		}
		v := catalog.Assess(ds, served)
		problems = append(problems, v.Problems...)
		for _, s := range v.Snapshots {
			var size uint64
			for _, p := range s.Env.Packs {
				size += p.Size
			}
			rows = append(rows, snapshotRow{Dataset: ds.Name, Seq: s.Env.Seq, Time: time.Unix(0, s.Env.Time).UTC(),
				Envelope: fmt.Sprintf("%x", s.Hash), Packs: len(s.Env.Packs), Bytes: size, Hosts: s.Hosts})
		}
	}
	if *asJSON {
		return e.printJSON(map[string]any{"snapshots": rows, "problems": problems})
	}
	fmt.Fprintf(e.stdout, "%-12s %5s  %-20s  %-16s  %6s  %10s  %s\n", "DATASET", "SEQ", "TIME (UTC)", "ENVELOPE", "PACKS", "SEALED", "HOSTS")
	for _, r := range rows {
		fmt.Fprintf(e.stdout, "%-12s %5d  %-20s  %-16s  %6d  %10s  %s\n", r.Dataset, r.Seq, r.Time.Format("2006-01-02 15:04:05"),
			r.Envelope[:16], r.Packs, humanBytes(r.Bytes), strings.Join(r.Hosts, ","))
	}
	for _, p := range problems {
		fmt.Fprintf(e.stderr, "warning: %s\n", p.Message)
	}
	return nil
}

func (e *env) check(args []string) error {
	fs := newFlags("check", e.stderr)
	homeDir := fs.String("home", "", "HOME directory (the guest's own check)")
	var hostFlags, datasets multi
	fs.Var(&hostFlags, "host", "NAME=DIR of a host to audit (repeat; auditors without HOME)")
	identity := fs.String("identity", "", "the guest's public identity file (auditors without HOME)")
	fs.Var(&datasets, "dataset", "only this dataset (repeat)")
	readData := fs.Bool("read-data", false, "read every shard in full and check its hash and the erasure code")
	asJSON := fs.Bool("json", false, "print the report as JSON")
	grantFile := fs.String("grant", "", "a read grant signed by the custodians (auditors of remote hosts)")
	grantKey := fs.String("grant-key", "", "the grant's reader key file (default GRANT.key)")
	stateDir := fs.String("state", "", "auditor state: trusted log checkpoints and proof evidence (default HOME)")
	witnesses := fs.Int("witness-threshold", 0, "witness cosignatures required per host log (default min(2, witnesses))")
	retentionDays := fs.Int("retention-days", -1, "audit that host nodes keep shards this long (default: HOME's setting; auditors: none)")
	var witnessFlags multi
	fs.Var(&witnessFlags, "witness", "descriptor of one of the guest's own witnesses (repeat; auditors without HOME)")
	if err := parse(fs, args); err != nil {
		return err
	}
	var specs []hosts.Spec
	var id *guest.Identity
	var witnessDescs []*transport.Descriptor
	for _, f := range witnessFlags {
		b, err := os.ReadFile(f)
		if err != nil {
			return err
		}
		d, err := transport.ParseDescriptor(b)
		if err != nil {
			return fmt.Errorf("%s: %w", f, err)
		}
		witnessDescs = append(witnessDescs, d)
	}
	heads := map[string]uint64{}
	var homeGov *check.HomeGov
	connect, err := grantConnector(*grantFile, *grantKey)
	if err != nil {
		return err
	}
	switch {
	case *homeDir != "":
		h, err := home.Open(*homeDir)
		if err != nil {
			return err
		}
		specs, id = h.Config.Hosts, h.Identity
		homeGov = &check.HomeGov{Writer: check.WriterID(h.Agent.Public())}
		if a, err := h.Agreement(); err != nil {
			homeGov.Err = err.Error()
		} else if a != nil {
			homeGov.Agreement, homeGov.Hash = a.Version, a.Hash()
		}
		if connect == nil {
			connect = h.Connect
		}
		if *stateDir == "" {
			*stateDir = h.Dir
		}
		witnessDescs = h.Config.Witnesses
		if *retentionDays < 0 {
			*retentionDays = h.Config.RetentionDays
		}
		for _, d := range h.Identity.Datasets {
			seq, _, err := agent.Head(h, d.Name)
			if err != nil {
				return err
			}
			heads[d.Name] = seq
		}
		if len(hostFlags) > 0 {
			if specs, err = parseHosts(hostFlags); err != nil {
				return err
			}
		}
	case *identity != "" && len(hostFlags) > 0:
		b, err := os.ReadFile(*identity)
		if err != nil {
			return err
		}
		if id, err = guest.ParseIdentity(b); err != nil {
			return fmt.Errorf("read %s: %w", *identity, err)
		}
		if specs, err = parseHosts(hostFlags); err != nil {
			return err
		}
	default:
		return usageErr("check needs --home HOME, or --host NAME=DIR ... with --identity GUEST.pub")
	}
	hs, err := hosts.Open(specs, hosts.Options{Connect: connect})
	if err != nil {
		return usageErr("%v", err)
	}
	audit := check.Audit{WitnessThreshold: *witnesses, Witnesses: guestWitnesses(id.Guest, witnessDescs),
		Retention: time.Duration(max(*retentionDays, 0)) * 24 * time.Hour}
	if *stateDir != "" {
		st := check.DirState{Dir: *stateDir}
		audit.Trust, audit.Evidence = st, st.Evidence
	}
	rep, err := check.Run(e.ctx, check.Options{Hosts: hs, Identity: id, Datasets: datasets, ReadData: *readData, Heads: heads, Audit: audit, Home: homeGov})
	if err != nil {
		return err
	}
	if *asJSON {
		if err := e.printJSON(rep); err != nil {
			return err
		}
	} else {
		e.printCheck(rep)
	}
	switch {
	case !rep.Restorable:
		return &exitError{code: exitLoss, err: errors.New("check: data loss: some snapshots can no longer be restored")}
	case !rep.Healthy:
		return &exitError{code: exitDamage, err: fmt.Errorf("check: %d problems found; every snapshot is still restorable", len(rep.Problems))}
	}
	return nil
}

func (e *env) printCheck(rep *check.Report) {
	mode := "presence and size of every shard"
	if rep.ReadData {
		mode = "every shard read and hashed, erasure code verified"
	}
	fmt.Fprintf(e.stdout, "check (%s)\n", mode)
	for _, h := range rep.Hosts {
		state := fmt.Sprintf("%d shards checked, %d bad", h.Shards, h.Bad)
		if !h.Available {
			state = "UNAVAILABLE: " + h.Error
		}
		fmt.Fprintf(e.stdout, "  host %-8s %s\n", h.Name, state)
		if h.Retention != "" {
			fmt.Fprintf(e.stdout, "    retention: %s\n", h.Retention)
		}
		if l := h.Log; l != nil {
			fmt.Fprintf(e.stdout, "    log %s: %d entries, witnessed up to %d by %d of %d required %v\n", l.Origin, l.Size, l.CosignedSize, len(l.Witnesses), l.Threshold, l.Witnesses)
		}
		if p := h.Proof; p != nil {
			fmt.Fprintf(e.stdout, "    storage proof: %d/%d sampled slices of %d shards proven (catches %.0f%% loss with %.4f%% confidence)\n",
				p.OK, p.Items, p.Shards, p.Loss*100, p.Confidence*100)
		}
		if g := h.Governance; g != nil {
			fmt.Fprintf(e.stdout, "    governance: %s\n", g.Summary())
		}
	}
	for _, d := range rep.Datasets {
		fmt.Fprintf(e.stdout, "  dataset %-12s %d snapshots (latest %d), %d packs, %d unrecoverable\n", d.Name, d.Snapshots, d.Latest, d.Packs, d.Unrecoverable)
	}
	for _, n := range rep.Notes {
		fmt.Fprintf(e.stdout, "  %-7s %s\n", "NOTE", n.Message)
	}
	gov := 0
	for _, p := range rep.Problems {
		fmt.Fprintf(e.stdout, "  %-7s %s\n", strings.ToUpper(p.Severity), p.Message)
		if check.GovernanceKind(p.Kind) {
			gov++
		}
	}
	switch {
	case !rep.Restorable:
		fmt.Fprintln(e.stdout, "result: DATA LOSS")
	case !rep.Healthy:
		fmt.Fprintln(e.stdout, "result: damaged, still restorable")
	case gov > 0:
		fmt.Fprintf(e.stdout, "result: healthy (storage); %d governance warnings above\n", gov)
	default:
		fmt.Fprintln(e.stdout, "result: healthy")
	}
}

func readIdentities(files []string) ([]*custodian.Identity, error) {
	var out []*custodian.Identity
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		id, err := custodian.ParseIdentity(b)
		if err != nil {
			return nil, fmt.Errorf("identity %s: %w", f, err)
		}
		out = append(out, id)
	}
	return out, nil
}

func (e *env) restore(args []string) error {
	fs := newFlags("restore", e.stderr)
	var hostFlags, shareFlags, idFlags multi
	fs.Var(&hostFlags, "host", "NAME=DIR of a host (repeat; any k of them suffice)")
	fs.Var(&shareFlags, "share", "a custodian's share file (repeat; threshold needed)")
	fs.Var(&idFlags, "identity", "a custodian's secret identity file (repeat)")
	dataset := fs.String("dataset", "", "dataset to restore")
	snap := fs.String("snapshot", "latest", "latest, a sequence number, or an envelope hash prefix")
	target := fs.String("target", "", "directory to restore into")
	asJSON := fs.Bool("json", false, "print the result as JSON")
	grantFile := fs.String("grant", "", "a read grant signed by the custodians (needed for remote hosts)")
	grantKey := fs.String("grant-key", "", "the grant's reader key file (default GRANT.key)")
	if err := parse(fs, args); err != nil {
		return err
	}
	if len(hostFlags) == 0 || *target == "" || *dataset == "" {
		return usageErr("usage: embassy restore --host NAME=DIR ... --share FILE ... --identity FILE ... --dataset NAME --target DIR")
	}
	specs, err := parseHosts(hostFlags)
	if err != nil {
		return err
	}
	connect, err := grantConnector(*grantFile, *grantKey)
	if err != nil {
		return err
	}
	hs, err := hosts.Open(specs, hosts.Options{Connect: connect})
	if err != nil {
		return usageErr("%v", err)
	}
	ids, err := readIdentities(idFlags)
	if err != nil {
		return err
	}
	var shares []restore.ShareFile
	for _, f := range shareFlags {
		b, err := os.ReadFile(f)
		if err != nil {
			return err
		}
		shares = append(shares, restore.ShareFile{Name: f, Data: b})
	}
	res, err := e.runRestore(restore.Options{
		Hosts: hs, Shares: shares, Identities: ids, Dataset: *dataset, Snapshot: *snap, Target: *target,
	}, *asJSON)
	if err != nil || res == nil {
		return err
	}
	fmt.Fprintf(e.stdout, "restored snapshot %d of %s (dataset fingerprint %s) to %s: %d files, %d dirs, %d symlinks, %s\n",
		res.Seq, res.Dataset, res.Fingerprint, res.Path, res.Files, res.Dirs, res.Symlinks, humanBytes(res.Bytes))
	return nil
}

func (e *env) shareInspect(args []string) error {
	if len(args) == 0 {
		return usageErr("usage: embassy share inspect FILE ...")
	}
	for _, f := range args {
		b, err := os.ReadFile(f)
		if err != nil {
			return err
		}
		h, err := share.Inspect(b)
		if err != nil {
			return fmt.Errorf("%s: %w", f, err)
		}
		fmt.Fprintf(e.stdout, "%s: share of dataset %s (fingerprint %s) of guest %s, for custodian %s (%s), threshold %d of %d\n",
			f, h.Dataset.Name, h.Dataset.Fingerprint(), h.Dataset.GuestName, h.Custodian, h.Fingerprint, h.Dataset.Threshold, len(h.Dataset.Custodians))
	}
	return nil
}

// runRestore runs a restore with warnings on stderr (none with --json). With
// asJSON it prints the result and returns nil; otherwise the caller prints it.
func (e *env) runRestore(o restore.Options, asJSON bool) (*restore.Result, error) {
	o.Warn = func(s string) {
		if !asJSON {
			fmt.Fprintf(e.stderr, "warning: %s\n", s)
		}
	}
	res, err := restore.Run(e.ctx, o)
	if err != nil {
		return nil, fmt.Errorf("restore failed, nothing was restored: %w", err)
	}
	if asJSON {
		return nil, e.printJSON(res)
	}
	return res, nil
}
