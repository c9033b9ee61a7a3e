package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/embassy-project/embassy/internal/access"
	"github.com/embassy-project/embassy/internal/atomicfile"
	"github.com/embassy-project/embassy/internal/custodian"
	"github.com/embassy-project/embassy/internal/gov"
	"github.com/embassy-project/embassy/internal/guest"
	"github.com/embassy-project/embassy/internal/home"
	"github.com/embassy-project/embassy/internal/hostnode"
	"github.com/embassy-project/embassy/internal/hosts"
	"github.com/embassy-project/embassy/internal/restore"
	"github.com/embassy-project/embassy/internal/shardstore"
	"github.com/embassy-project/embassy/internal/share"
	"github.com/embassy-project/embassy/internal/sig"
	"github.com/embassy-project/embassy/internal/transport"
)

// orderSubmit posts a signed order to the agreement's hosts.
func (e *env) orderSubmit(args []string) error {
	fs := newFlags("order submit", e.stderr)
	agreementFile := fs.String("agreement", "", "the signed agreement in force")
	var only multi
	fs.Var(&only, "host", "submit only to this host (repeat; default: every host of the agreement)")
	timeout := fs.Duration("timeout", 2*time.Minute, "how long each host may take to log the order and get it cosigned")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *agreementFile == "" || fs.NArg() != 1 {
		return usageErr("usage: embassy order submit --agreement AGREEMENT [--host NAME ...] ORDER")
	}
	ab, err := os.ReadFile(*agreementFile)
	if err != nil {
		return err
	}
	sa, err := gov.OpenAgreement(ab, nil)
	if err != nil {
		// An amended agreement cannot be checked alone; its text still names the hosts.
		a, _, perr := gov.ParseAgreementFile(ab)
		if perr != nil {
			return fmt.Errorf("agreement: %w", err)
		}
		sa = &gov.SignedAgreement{Agreement: a}
	}
	a := sa.Agreement
	order, err := os.ReadFile(fs.Arg(0))
	if err != nil {
		return err
	}
	so, err := gov.OpenOrder(order, a)
	if err != nil {
		return fmt.Errorf("order: %w", err)
	}
	g, err := guest.ParseID(a.Guest)
	if err != nil {
		return err
	}
	type result struct {
		host string
		out  []byte
		err  error
	}
	var targets []*gov.Host
	for i := range a.Hosts {
		h := &a.Hosts[i]
		if len(only) == 0 || slices.Contains(only, h.Name) {
			targets = append(targets, h)
		}
	}
	if len(targets) == 0 {
		return usageErr("no host of the agreement is named by --host")
	}
	res := make([]result, len(targets))
	var wg sync.WaitGroup
	for i, h := range targets {
		wg.Add(1)
		go func() {
			defer wg.Done()
			d := h.Descriptor
			c := transport.NewClient(&d, g, tls.Certificate{})
			c.Timeout, c.Retries = *timeout, 0
			ctx, cancel := context.WithTimeout(e.ctx, *timeout+10*time.Second)
			defer cancel()
			out, err := c.SubmitOrder(ctx, order)
			res[i] = result{h.Name, out, err}
		}()
	}
	wg.Wait()
	done := 0
	var errs []error
	for _, r := range res {
		if r.err != nil {
			fmt.Fprintf(e.stdout, "%s: NOT carried out: %v\n", r.host, r.err)
			errs = append(errs, r.err)
			continue
		}
		var out struct {
			Logged uint64 `json:"logged"`
		}
		json.Unmarshal(r.out, &out)
		fmt.Fprintf(e.stdout, "%s: carried out (logged at index %d, cosigned before it took effect)\n", r.host, out.Logged)
		done++
	}
	fmt.Fprintf(e.stdout, "order %s (%s): carried out by %d of %d hosts\n", so.Order.IDString(), so.Order.Kind, done, len(res))
	if done == 0 {
		return fmt.Errorf("no host carried out the order: %w", errors.Join(errs...))
	}
	if len(errs) > 0 {
		fmt.Fprintln(e.stdout, "hosts that were down read the order from the others' logs when they return")
	}
	return nil
}

// heartbeat tells the hosts that home is alive.
func (e *env) heartbeat(args []string) error {
	fs := newFlags("heartbeat", e.stderr)
	homeDir := fs.String("home", "", "HOME directory")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *homeDir == "" || fs.NArg() != 0 {
		return usageErr("usage: embassy heartbeat --home HOME")
	}
	h, err := home.Open(*homeDir)
	if err != nil {
		return err
	}
	return h.Heartbeat(e.ctx)
}

// agreementUse makes HOME follow an agreement.
func (e *env) agreementUse(args []string) error {
	fs := newFlags("agreement use", e.stderr)
	homeDir := fs.String("home", "", "HOME directory")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *homeDir == "" || fs.NArg() != 1 {
		return usageErr("usage: embassy agreement use --home HOME AGREEMENT")
	}
	h, err := home.Open(*homeDir)
	if err != nil {
		return err
	}
	b, err := os.ReadFile(fs.Arg(0))
	if err != nil {
		return err
	}
	a, err := h.UseAgreement(b)
	if err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "HOME follows agreement v%d (%s)\n", a.Version, a.Hash())
	return nil
}

// hostAgreementInstall puts an agreement in force at a (stopped) host.
func (e *env) hostAgreementInstall(args []string) error {
	fs := newFlags("host agreement install", e.stderr)
	dir := fs.String("dir", "", "host directory")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *dir == "" || fs.NArg() != 1 {
		return usageErr("usage: embassy host agreement install --dir DIR AGREEMENT")
	}
	b, err := os.ReadFile(fs.Arg(0))
	if err != nil {
		return err
	}
	a, err := hostnode.InstallAgreement(*dir, b, time.Now())
	if err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "agreement v%d (%s) in force for guest %s; peers and witness threshold %d set from it; restart the host\n", a.Version, a.Hash(), a.GuestName, a.WitnessThreshold)
	return nil
}

// writerKeygen makes a writer key an activation order can name: FILE holds
// the secret (0600), FILE.pub the public key in base64.
func (e *env) writerKeygen(args []string) error {
	fs := newFlags("writer keygen", e.stderr)
	out := fs.String("out", "", "secret key file to write; FILE.pub gets the public key")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *out == "" || fs.NArg() != 0 {
		return usageErr("usage: embassy writer keygen --out FILE")
	}
	k, err := sig.Generate()
	if err != nil {
		return err
	}
	seed := k.Bytes()
	defer clear(seed)
	if err := atomicfile.WriteNew(*out, []byte(base64.StdEncoding.EncodeToString(seed)+"\n"), 0o600); err != nil {
		return err
	}
	pub := base64.StdEncoding.EncodeToString(k.Public().Bytes())
	if err := atomicfile.WriteNew(*out+".pub", []byte(pub+"\n"), 0o644); err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "writer key %s written to %s (public key in %s.pub)\n", k.Public().Fingerprint(), *out, *out)
	return nil
}

// shareSubmit sends release files to the host they are sealed to.
func (e *env) shareSubmit(args []string) error {
	fs := newFlags("share submit", e.stderr)
	agreementFile := fs.String("agreement", "", "the signed agreement in force (names the host's address and key)")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *agreementFile == "" || fs.NArg() == 0 {
		return usageErr("usage: embassy share submit --agreement AGREEMENT RELEASE ...")
	}
	ab, err := os.ReadFile(*agreementFile)
	if err != nil {
		return err
	}
	a, _, err := gov.ParseAgreementFile(ab)
	if err != nil {
		return err
	}
	g, err := guest.ParseID(a.Guest)
	if err != nil {
		return err
	}
	for _, f := range fs.Args() {
		b, err := os.ReadFile(f)
		if err != nil {
			return err
		}
		rh, err := share.InspectRelease(b)
		if err != nil {
			return fmt.Errorf("%s: %w", f, err)
		}
		h := a.Host(rh.Host)
		if h == nil {
			return fmt.Errorf("%s: host %s is not in agreement v%d", f, rh.Host, a.Version)
		}
		d := h.Descriptor
		c := transport.NewClient(&d, g, tls.Certificate{})
		out, err := c.SubmitRelease(e.ctx, b)
		if err != nil {
			return fmt.Errorf("%s: %w", f, err)
		}
		var res struct {
			Released  int `json:"released"`
			Threshold int `json:"threshold"`
		}
		json.Unmarshal(out, &res)
		fmt.Fprintf(e.stdout, "%s: share of %s for dataset %s released to host %s (%d of %d needed)\n", f, rh.Custodian, rh.Dataset.Name, rh.Host, res.Released, res.Threshold)
	}
	return nil
}

// signArgs parses the flags of a command that signs a file in place with
// custodian identities (--identity ... FILE) and reads both.
func (e *env) signArgs(name, usage string, args []string) (string, []byte, []*custodian.Identity, error) {
	fs := newFlags(name, e.stderr)
	var idFlags multi
	fs.Var(&idFlags, "identity", "a custodian's secret identity file (repeat)")
	if err := parse(fs, args); err != nil {
		return "", nil, nil, err
	}
	if len(idFlags) == 0 || fs.NArg() != 1 {
		return "", nil, nil, usageErr("%s", usage)
	}
	file := fs.Arg(0)
	b, err := os.ReadFile(file)
	if err != nil {
		return "", nil, nil, err
	}
	ids, err := readIdentities(idFlags)
	if err != nil {
		return "", nil, nil, err
	}
	return file, b, ids, nil
}

// hostRestore runs on an activated host: it rebuilds the dataset key from
// the shares custodians released to this host (in memory) and restores the
// snapshot the activation order named, reading the agreement's hosts as the
// new writer.
func (e *env) hostRestore(args []string) error {
	fs := newFlags("host restore", e.stderr)
	dir := fs.String("dir", "", "the activated host's directory")
	guestFlag := fs.String("guest", "", "the guest ID (32 hex digits)")
	dataset := fs.String("dataset", "", "the activated dataset")
	writerFile := fs.String("writer-key", "", "the writer key the activation order named (embassy writer keygen)")
	target := fs.String("target", "", "directory to restore into")
	snap := fs.String("snapshot", "", "snapshot to restore (default: the one the activation order named)")
	asJSON := fs.Bool("json", false, "print the result as JSON")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *dir == "" || *guestFlag == "" || *dataset == "" || *writerFile == "" || *target == "" || fs.NArg() != 0 {
		return usageErr("usage: embassy host restore --dir DIR --guest ID --dataset NAME --writer-key FILE --target DIR")
	}
	g, err := guest.ParseID(*guestFlag)
	if err != nil {
		return usageErr("--guest: %v", err)
	}
	writer, err := loadWriterKey(*writerFile)
	if err != nil {
		return err
	}
	act, err := hostnode.LoadActivation(*dir, g, *dataset)
	if err != nil {
		return err
	}
	defer act.Wipe()
	cert, err := access.NewAgentCertificate(writer, g, time.Now(), home.AgentCertTTL)
	if err != nil {
		return err
	}
	var specs []hosts.Spec
	for i := range act.Hosts {
		d := act.Hosts[i]
		specs = append(specs, hosts.Spec{Name: d.Name, Remote: &d})
	}
	hs, err := hosts.Open(specs, hosts.Options{Connect: func(d *transport.Descriptor) (shardstore.Store, error) {
		return transport.NewClient(d, g, cert), nil
	}})
	if err != nil {
		return err
	}
	if *snap == "" {
		*snap = act.Snapshot
	}
	res, err := e.runRestore(restore.Options{Hosts: hs, Opened: act.Shares, Dataset: *dataset, Snapshot: *snap, Target: *target}, *asJSON)
	if err != nil || res == nil {
		return err
	}
	fmt.Fprintf(e.stdout, "host restored snapshot %d (%s…) of %s, named by order %s, from %d released shares to %s: %d files, %s\n",
		res.Seq, res.Envelope[:16], res.Dataset, act.Order, len(act.Shares), res.Path, res.Files, humanBytes(res.Bytes))
	return nil
}

// loadWriterKey reads a writer key file (embassy writer keygen).
func loadWriterKey(file string) (*sig.PrivateKey, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	defer clear(b)
	seed, err := base64.StdEncoding.DecodeString(string(bytes.TrimSpace(b)))
	if err != nil {
		return nil, fmt.Errorf("%s: not a writer key file (base64 of the secret seed)", file)
	}
	defer clear(seed)
	return sig.NewPrivateKey(seed)
}

// datasetRotate gives a dataset new keys and shares.
func (e *env) datasetRotate(args []string) error {
	ds, homeDir, err := e.datasetKeys("dataset rotate", "directory to write the custodians' new share files into (without the old ones)", args,
		func(h *home.Home, name, shares string) (*guest.Dataset, []home.ShareFile, error) {
			return h.RotateDataset(name, shares)
		})
	if err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "the next backup uploads everything again under the new keys; under an agreement: custodians sign `embassy order draft --kind rotate --dataset %s --new-keys %s ...`, submit it, then `embassy identity push --home %s`\n", ds.Name, ds.Fingerprint(), homeDir)
	return nil
}

// identityPush sends HOME's identity to the host nodes.
func (e *env) identityPush(args []string) error {
	fs := newFlags("identity push", e.stderr)
	homeDir := fs.String("home", "", "HOME directory")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *homeDir == "" || fs.NArg() != 0 {
		return usageErr("usage: embassy identity push --home HOME")
	}
	h, err := home.Open(*homeDir)
	if err != nil {
		return err
	}
	if err := h.PushIdentity(e.ctx); err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "identity %s accepted by the hosts\n", h.Identity.Fingerprint())
	return nil
}
