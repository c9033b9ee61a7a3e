package main

import (
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/embassy-project/embassy/internal/atomicfile"
	"github.com/embassy-project/embassy/internal/custodian"
	"github.com/embassy-project/embassy/internal/gov"
	"github.com/embassy-project/embassy/internal/hostnode"
	"github.com/embassy-project/embassy/internal/transport"
)

const agreementUsage = `usage:
  embassy agreement init --guest GUEST.pub --guest-party NAME:JURISDICTION --governing-law TEXT
      --host-descriptor FILE ... --host-party HOST=PARTY:JURISDICTION ... --host-classes HOST=CLASS,... ...
      --custodian NAME=FILE.pub[:ROLE,...] ... --dataset NAME:CLASS:K ...
      [--witness FILE ...] [--witness-at-home FILE ...] [--witness-threshold W] [--tolerated-faulty F]
      [--quorum ACTION=T[:ROLE=COUNT,...] ...] [--host-quota HOST=BYTES ...] [--home-silent 15m]
      [--clock-skew 2m] [--retention-days 3650] [--rpo 1m] [--rto 1h] [--previous PREV [--version N]] --out FILE
  embassy agreement validate FILE
  embassy agreement sign --identity CUSTODIAN.key ... FILE
  embassy agreement ack --host-dir DIR [--host NAME] FILE
  embassy agreement verify [--previous PREV] FILE
  embassy agreement show [--previous PREV] FILE
classes: public, sensitive, confidential, highly-restricted
actions: activate, return, expire, grant, rotate, amend, revoke`

func (e *env) agreement(args []string) error {
	if len(args) == 0 {
		return usageErr(agreementUsage)
	}
	switch args[0] {
	case "init":
		return e.agreementInit(args[1:])
	case "validate":
		return e.agreementValidate(args[1:])
	case "sign":
		return e.agreementSign(args[1:])
	case "ack":
		return e.agreementAck(args[1:])
	case "verify":
		return e.agreementVerify(args[1:])
	case "show":
		return e.agreementShow(args[1:])
	}
	return usageErr("unknown agreement command %q\n%s", args[0], agreementUsage)
}

// agreementInit builds an agreement from flags, validates it (structure
// and safety) and writes its canonical text.
func (e *env) agreementInit(args []string) error {
	fs := newFlags("agreement init", e.stderr)
	guestFile := fs.String("guest", "", "the guest's public identity file (GUEST.pub)")
	guestParty := fs.String("guest-party", "", "the guest state as NAME:JURISDICTION, e.g. estonia:EE")
	law := fs.String("governing-law", "", "the governing law / treaty the agreement implements")
	var hostFiles, hostParties, hostClasses, hostQuotas, witnesses, homeWitnesses, custodians, datasets, quorums multi
	fs.Var(&hostFiles, "host-descriptor", "a host's descriptor.json (repeat; order is the shard order)")
	fs.Var(&hostParties, "host-party", "HOST=PARTY:JURISDICTION: the state operating a host (repeat, one per host)")
	fs.Var(&hostClasses, "host-classes", "HOST=CLASS,...: the classes a host may hold (repeat, one per host)")
	fs.Var(&hostQuotas, "host-quota", "HOST=BYTES: the host's quota (repeat; default 0, no quota set)")
	fs.Var(&witnesses, "witness", "a witness descriptor outside home (repeat)")
	fs.Var(&homeWitnesses, "witness-at-home", "a witness descriptor that runs in the guest's territory (repeat)")
	fs.Var(&custodians, "custodian", "NAME=FILE.pub[:ROLE,...]: a custodian's public key file and roles (repeat)")
	fs.Var(&datasets, "dataset", "NAME:CLASS:K: a dataset, its class and erasure k (repeat)")
	fs.Var(&quorums, "quorum", "ACTION=T[:ROLE=COUNT,...]: the quorum an action needs (repeat; default: a majority of custodians)")
	w := fs.Int("witness-threshold", 0, "w: cosignatures a checkpoint needs (default: the smallest w with 2w − W > f)")
	f := fs.Int("tolerated-faulty", 0, "f: witnesses that may collude with a lying host")
	homeSilent := fs.Duration("home-silent", 15*time.Minute, "arm the hosts when home is silent this long")
	skew := fs.Duration("clock-skew", 2*time.Minute, "the clock skew hosts tolerate on orders (at most 10m)")
	retention := fs.Int("retention-days", 3650, "retention of every dataset, in days")
	rpo := fs.Duration("rpo", time.Minute, "recovery point objective of every dataset")
	rto := fs.Duration("rto", time.Hour, "recovery time objective of every dataset")
	prevFile := fs.String("previous", "", "the agreement this one amends (makes an amendment)")
	version := fs.Uint64("version", 0, "the version (default 1, or PREVIOUS + 1)")
	out := fs.String("out", "", "agreement file to write (never overwritten)")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *guestFile == "" || *guestParty == "" || *law == "" || len(hostFiles) == 0 || len(custodians) == 0 || len(datasets) == 0 || *out == "" || fs.NArg() != 0 {
		return usageErr(agreementUsage)
	}
	id, err := readGuestIdentity(*guestFile)
	if err != nil {
		return err
	}
	a := &gov.Agreement{
		Format:                   gov.AgreementFormat,
		Guest:                    id.Guest.String(),
		GuestName:                id.Name,
		GuestIdentity:            id.Fingerprint(),
		Version:                  1,
		GoverningLaw:             *law,
		ToleratedFaultyWitnesses: *f,
		Quorums:                  map[gov.Action]gov.Quorum{},
		Activation:               gov.Activation{HomeSilentSeconds: int(homeSilent.Seconds())},
		ClockSkewSeconds:         int(skew.Seconds()),
	}
	if *prevFile != "" {
		prev, err := readAgreement(*prevFile)
		if err != nil {
			return err
		}
		a.Version, a.Previous = prev.Version+1, prev.Hash()
	}
	if *version != 0 && *version != a.Version {
		return usageErr("--version %d: this agreement is version %d (1, or the --previous version + 1)", *version, a.Version)
	}
	name, jur, ok := strings.Cut(*guestParty, ":")
	if !ok {
		return usageErr("--guest-party %q: want NAME:JURISDICTION", *guestParty)
	}
	a.Parties = append(a.Parties, gov.Party{Name: name, Role: "guest", Jurisdiction: jur})

	partyOf, err := keyValues("host-party", hostParties)
	if err != nil {
		return err
	}
	classesOf, err := keyValues("host-classes", hostClasses)
	if err != nil {
		return err
	}
	quotaOf, err := keyValues("host-quota", hostQuotas)
	if err != nil {
		return err
	}
	for _, file := range hostFiles {
		d, err := readDescriptor(file)
		if err != nil {
			return err
		}
		h := gov.Host{Name: d.Name, Descriptor: *d}
		p, ok := partyOf[d.Name]
		if !ok {
			return usageErr("host %s: give its party with --host-party %s=PARTY:JURISDICTION", d.Name, d.Name)
		}
		pname, pjur, ok := strings.Cut(p, ":")
		if !ok {
			return usageErr("--host-party %s=%s: want PARTY:JURISDICTION", d.Name, p)
		}
		if i := slices.IndexFunc(a.Parties, func(q gov.Party) bool { return q.Name == pname }); i < 0 {
			a.Parties = append(a.Parties, gov.Party{Name: pname, Role: "host", Jurisdiction: pjur})
		} else if a.Parties[i].Role != "host" || a.Parties[i].Jurisdiction != pjur {
			return usageErr("--host-party %s=%s: party %s is already given as %s in %s", d.Name, p, pname, a.Parties[i].Role, a.Parties[i].Jurisdiction)
		}
		h.Party = pname
		cs, ok := classesOf[d.Name]
		if !ok {
			return usageErr("host %s: give the classes it may hold with --host-classes %s=CLASS,...", d.Name, d.Name)
		}
		for _, c := range strings.Split(cs, ",") {
			h.Classes = append(h.Classes, gov.Class(c))
		}
		if q, ok := quotaOf[d.Name]; ok {
			if h.QuotaBytes, err = strconv.ParseInt(q, 10, 64); err != nil {
				return usageErr("--host-quota %s=%s: want a number of bytes", d.Name, q)
			}
		}
		a.Hosts = append(a.Hosts, h)
	}
	for k := range partyOf {
		if a.Host(k) == nil {
			return usageErr("--host-party %s: no --host-descriptor for host %s", k, k)
		}
	}
	for k := range classesOf {
		if a.Host(k) == nil {
			return usageErr("--host-classes %s: no --host-descriptor for host %s", k, k)
		}
	}
	for _, list := range []struct {
		files  []string
		atHome bool
	}{{witnesses, false}, {homeWitnesses, true}} {
		for _, file := range list.files {
			d, err := readDescriptor(file)
			if err != nil {
				return err
			}
			a.Witnesses = append(a.Witnesses, gov.Witness{Descriptor: *d, AtHome: list.atHome})
		}
	}
	a.WitnessThreshold = *w
	if *w == 0 {
		a.WitnessThreshold = (a.WitnessCount()+*f)/2 + 1
	}
	for _, c := range custodians {
		entry, err := custodianFlag(c)
		if err != nil {
			return err
		}
		a.Custodians = append(a.Custodians, entry)
	}
	for _, d := range datasets {
		parts := strings.Split(d, ":")
		if len(parts) != 3 {
			return usageErr("--dataset %q: want NAME:CLASS:K", d)
		}
		k, err := strconv.Atoi(parts[2])
		if err != nil {
			return usageErr("--dataset %q: K must be a number", d)
		}
		a.Datasets = append(a.Datasets, gov.Dataset{Name: parts[0], Class: gov.Class(parts[1]), DataShards: k,
			RetentionDays: *retention, RPOSeconds: int(rpo.Seconds()), RTOSeconds: int(rto.Seconds())})
	}
	for _, act := range gov.Actions {
		a.Quorums[act] = gov.Quorum{Threshold: len(a.Custodians)/2 + 1}
	}
	for _, q := range quorums {
		act, rule, ok := strings.Cut(q, "=")
		if !ok || !slices.Contains(gov.Actions, gov.Action(act)) {
			return usageErr("--quorum %q: want ACTION=T[:ROLE=COUNT,...] with ACTION one of activate, return, expire, grant, rotate, amend, revoke", q)
		}
		quorum, err := quorumFlag(rule)
		if err != nil {
			return usageErr("--quorum %q: %v", q, err)
		}
		a.Quorums[gov.Action(act)] = quorum
	}
	if err := a.Validate(); err != nil {
		return err
	}
	text := a.Marshal()
	if _, err := gov.ParseAgreement(text); err != nil { // e.g. text that JSON cannot carry as is
		return err
	}
	if err := atomicfile.WriteNew(*out, text, 0o644); err != nil {
		return fmt.Errorf("write agreement: %w (existing files are never overwritten)", err)
	}
	q := a.Quorum(gov.Amend)
	fmt.Fprintf(e.stdout, "agreement %s: version %d for guest %s, %d hosts, %d custodians, %d datasets (%s)\n",
		*out, a.Version, a.GuestName, len(a.Hosts), len(a.Custodians), len(a.Datasets), a.Hash())
	if a.Version == 1 {
		fmt.Fprintf(e.stdout, "next: %d custodian(s) sign it (embassy agreement sign --identity CUSTODIAN.key %s), every host acknowledges it (embassy agreement ack --host-dir DIR %s)\n",
			q.Threshold, *out, *out)
	} else {
		fmt.Fprintf(e.stdout, "next: the amend quorum of version %d signs it, every host acknowledges it, and an amend order carries its hash\n", a.Version-1)
	}
	return nil
}

// keyValues splits repeated KEY=VALUE flags, refusing a key given twice.
func keyValues(flagName string, vals []string) (map[string]string, error) {
	m := map[string]string{}
	for _, v := range vals {
		k, val, ok := strings.Cut(v, "=")
		if !ok || k == "" {
			return nil, usageErr("--%s %q: want KEY=VALUE", flagName, v)
		}
		if _, dup := m[k]; dup {
			return nil, usageErr("--%s: %s is given twice", flagName, k)
		}
		m[k] = val
	}
	return m, nil
}

// custodianFlag reads NAME=FILE.pub[:ROLE,...].
func custodianFlag(v string) (gov.Custodian, error) {
	name, rest, ok := strings.Cut(v, "=")
	if !ok {
		return gov.Custodian{}, usageErr("--custodian %q: want NAME=FILE.pub[:ROLE,...]", v)
	}
	file, roles := rest, ""
	if i := strings.LastIndex(rest, ":"); i >= 0 && !strings.ContainsAny(rest[i+1:], `/\`) {
		file, roles = rest[:i], rest[i+1:]
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return gov.Custodian{}, err
	}
	r, err := custodian.ParseRecipient(b)
	if err != nil {
		return gov.Custodian{}, fmt.Errorf("read %s: %w", file, err)
	}
	if r.Name != name {
		return gov.Custodian{}, usageErr("--custodian %s=%s: the key file is custodian %s's", name, file, r.Name)
	}
	var rs []string
	if roles != "" {
		rs = strings.Split(roles, ",")
	}
	return gov.NewCustodian(r, rs...), nil
}

// quorumFlag reads T[:ROLE=COUNT,...].
func quorumFlag(v string) (gov.Quorum, error) {
	t, roles, _ := strings.Cut(v, ":")
	var q gov.Quorum
	var err error
	if q.Threshold, err = strconv.Atoi(t); err != nil {
		return q, fmt.Errorf("threshold %q is not a number", t)
	}
	if roles == "" {
		return q, nil
	}
	for _, r := range strings.Split(roles, ",") {
		role, count, ok := strings.Cut(r, "=")
		n, err := strconv.Atoi(count)
		if !ok || err != nil {
			return q, fmt.Errorf("role %q: want ROLE=COUNT", r)
		}
		q.Roles = append(q.Roles, gov.RoleRequirement{Role: role, Count: n})
	}
	return q, nil
}

func readDescriptor(file string) (*transport.Descriptor, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	d, err := transport.ParseDescriptor(b)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", file, err)
	}
	return d, nil
}

// readAgreement parses the agreement in a bare or signed file, without
// checking signatures.
func readAgreement(file string) (*gov.Agreement, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	a, _, err := gov.ParseAgreementFile(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	return a, nil
}

func (e *env) agreementValidate(args []string) error {
	if len(args) != 1 {
		return usageErr("usage: embassy agreement validate FILE")
	}
	a, err := readAgreement(args[0])
	if err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "%s: agreement version %d for guest %s is valid and safe (%s)\n", args[0], a.Version, a.GuestName, a.Hash())
	return nil
}

func (e *env) agreementSign(args []string) error {
	file, b, ids, err := e.signArgs("agreement sign", "usage: embassy agreement sign --identity CUSTODIAN.key ... FILE", args)
	if err != nil {
		return err
	}
	a, _, err := gov.ParseAgreementFile(b)
	if err != nil {
		return fmt.Errorf("%s: %w", file, err)
	}
	for _, c := range ids {
		if b, err = gov.SignAgreement(b, c); err != nil {
			return fmt.Errorf("sign as %s: %w", c.Name, err)
		}
		fmt.Fprintf(e.stdout, "signed %s as custodian %s: agreement version %d for guest %s (%s)\n", file, c.Name, a.Version, a.GuestName, a.Hash())
	}
	return atomicfile.Write(file, b, 0o644)
}

func (e *env) agreementAck(args []string) error {
	fs := newFlags("agreement ack", e.stderr)
	dir := fs.String("host-dir", "", "the host's directory (its signing key is DIR/sign.key)")
	name := fs.String("host", "", "the host's name in the agreement (default: the host whose descriptor has this key)")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *dir == "" || fs.NArg() != 1 {
		return usageErr("usage: embassy agreement ack --host-dir DIR [--host NAME] FILE")
	}
	file := fs.Arg(0)
	b, err := os.ReadFile(file)
	if err != nil {
		return err
	}
	a, _, err := gov.ParseAgreementFile(b)
	if err != nil {
		return fmt.Errorf("%s: %w", file, err)
	}
	k, err := hostnode.LoadSigningKey(*dir)
	if err != nil {
		return err
	}
	host := *name
	if host == "" {
		for _, h := range a.Hosts {
			if pk, err := h.SigningKey(); err == nil && pk.Equal(k.Public()) {
				host = h.Name
			}
		}
		if host == "" {
			return fmt.Errorf("%w: the signing key in %s is not the key of any host of this agreement", gov.ErrUnknownSigner, *dir)
		}
	}
	if b, err = gov.AckAgreement(b, host, k); err != nil {
		return err
	}
	if err := atomicfile.Write(file, b, 0o644); err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "acknowledged %s as host %s: agreement version %d for guest %s (%s)\n", file, host, a.Version, a.GuestName, a.Hash())
	return nil
}

// openAgreementFile opens FILE (verifying every signature) with the
// optional --previous version as the rules.
func openAgreementFile(file, prevFile string) (*gov.SignedAgreement, *gov.Agreement, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, nil, err
	}
	var prev *gov.Agreement
	if prevFile != "" {
		if prev, err = readAgreement(prevFile); err != nil {
			return nil, nil, err
		}
	}
	s, err := gov.OpenAgreement(b, prev)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", file, err)
	}
	rules := prev
	if rules == nil {
		rules = s.Agreement
	}
	return s, rules, nil
}

func (e *env) agreementVerify(args []string) error {
	fs := newFlags("agreement verify", e.stderr)
	prevFile := fs.String("previous", "", "the version this one amends (needed for version 2 and later)")
	if err := parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return usageErr("usage: embassy agreement verify [--previous PREV] FILE")
	}
	s, rules, err := openAgreementFile(fs.Arg(0), *prevFile)
	if err != nil {
		return err
	}
	a := s.Agreement
	fmt.Fprintf(e.stdout, "agreement version %d for guest %s (%s)\n", a.Version, a.GuestName, a.Hash())
	fmt.Fprintf(e.stdout, "  signed by   %s\n", listOrNone(s.Custodians))
	fmt.Fprintf(e.stdout, "  acked by    %s\n", listOrNone(s.Acks))
	if err := s.InForce(rules); err != nil {
		fmt.Fprintln(e.stdout, "  in force    no")
		return err
	}
	fmt.Fprintln(e.stdout, "  in force    yes (revocations are checked by the hosts against their logs)")
	return nil
}

func (e *env) agreementShow(args []string) error {
	fs := newFlags("agreement show", e.stderr)
	prevFile := fs.String("previous", "", "the version this one amends (to verify the signatures of version 2 and later)")
	if err := parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return usageErr("usage: embassy agreement show [--previous PREV] FILE")
	}
	file := fs.Arg(0)
	b, err := os.ReadFile(file)
	if err != nil {
		return err
	}
	a, lines, err := gov.ParseAgreementFile(b)
	if err != nil {
		return fmt.Errorf("%s: %w", file, err)
	}
	out := e.stdout
	fmt.Fprintf(out, "agreement version %d for guest %s (%s)\n", a.Version, a.GuestName, a.Guest)
	fmt.Fprintf(out, "  hash            %s\n", a.Hash())
	if a.Previous != "" {
		fmt.Fprintf(out, "  amends          %s\n", a.Previous)
	}
	fmt.Fprintf(out, "  guest identity  %s\n", a.GuestIdentity)
	fmt.Fprintf(out, "  governing law   %s\n", a.GoverningLaw)
	fmt.Fprintln(out, "parties")
	for _, p := range a.Parties {
		fmt.Fprintf(out, "  %-16s %-6s %s\n", p.Name, p.Role, p.Jurisdiction)
	}
	fmt.Fprintln(out, "hosts (shard order)")
	for _, h := range a.Hosts {
		quota := "no quota"
		if h.QuotaBytes > 0 {
			quota = "quota " + humanBytes(uint64(h.QuotaBytes))
		}
		fmt.Fprintf(out, "  %-16s party %s, %s, %s; classes %s\n", h.Name, h.Party, h.Descriptor.URL, quota, joinClasses(h.Classes))
	}
	fmt.Fprintf(out, "witnesses: w=%d of W=%d per host log (the other hosts", a.WitnessThreshold, a.WitnessCount())
	for _, w := range a.Witnesses {
		where := ""
		if w.AtHome {
			where = " at home"
		}
		fmt.Fprintf(out, ", %s%s", w.Descriptor.Name, where)
	}
	fmt.Fprintf(out, "), tolerating f=%d faulty\n", a.ToleratedFaultyWitnesses)
	fmt.Fprintln(out, "datasets")
	for _, d := range a.Datasets {
		allowed := a.AllowedHosts(d.Class)
		fmt.Fprintf(out, "  %-16s %s, k=%d of n=%d (%s), retention %d days, RPO %s, RTO %s\n", d.Name, d.Class, d.DataShards, len(allowed),
			strings.Join(allowed, ","), d.RetentionDays, time.Duration(d.RPOSeconds)*time.Second, time.Duration(d.RTOSeconds)*time.Second)
	}
	fmt.Fprintln(out, "custodians")
	for _, c := range a.Custodians {
		fmt.Fprintf(out, "  %-16s %s  roles %s\n", c.Name, c.Fingerprint, listOrNone(c.Roles))
	}
	fmt.Fprintln(out, "quorums")
	for _, act := range gov.Actions {
		q := a.Quorum(act)
		var roles []string
		for _, r := range q.Roles {
			roles = append(roles, fmt.Sprintf("%d %s", r.Count, r.Role))
		}
		extra := ""
		if len(roles) > 0 {
			extra = " including " + strings.Join(roles, ", ")
		}
		fmt.Fprintf(out, "  %-9s %d of %d%s\n", act, q.Threshold, len(a.Custodians), extra)
	}
	fmt.Fprintf(out, "activation: hosts arm after home is silent %s; clock skew tolerated %s\n",
		a.Activation.HomeSilent(), time.Duration(a.ClockSkewSeconds)*time.Second)
	fmt.Fprintf(out, "signature lines: %s\n", listOrNone(lines))
	if len(lines) == 0 {
		return nil
	}
	if a.Version > 1 && *prevFile == "" {
		fmt.Fprintln(out, "signatures: not verified (give --previous, the version this one amends)")
		return nil
	}
	s, rules, err := openAgreementFile(file, *prevFile)
	if err != nil {
		fmt.Fprintf(out, "signatures: do not verify: %v\n", err)
		return nil
	}
	status := "in force"
	if err := s.InForce(rules); err != nil {
		status = "not in force: " + err.Error()
	}
	fmt.Fprintf(out, "signatures: verified; signed by %s; acked by %s; %s\n", listOrNone(s.Custodians), listOrNone(s.Acks), status)
	return nil
}

func listOrNone(s []string) string {
	if len(s) == 0 {
		return "none"
	}
	return strings.Join(s, ", ")
}

func joinClasses(cs []gov.Class) string {
	s := make([]string, len(cs))
	for i, c := range cs {
		s[i] = string(c)
	}
	return strings.Join(s, ", ")
}
