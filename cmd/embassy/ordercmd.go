package main

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/embassy-project/embassy/internal/atomicfile"
	"github.com/embassy-project/embassy/internal/custodian"
	"github.com/embassy-project/embassy/internal/gov"
	"github.com/embassy-project/embassy/internal/guest"
	"github.com/embassy-project/embassy/internal/sig"
)

func (e *env) order(args []string) error {
	if len(args) == 0 {
		return usageErr("usage: embassy order draft|sign|show|verify|submit ...")
	}
	switch args[0] {
	case "draft":
		return e.orderDraft(args[1:])
	case "sign":
		return e.orderSign(args[1:])
	case "show":
		return e.orderShow(args[1:])
	case "verify":
		return e.orderVerify(args[1:])
	case "submit":
		return e.orderSubmit(args[1:])
	}
	return usageErr("unknown order command %q (draft, sign, show, verify, submit)", args[0])
}

// readOrderAgreement returns the agreement of a signed agreement file.
// Version 1 is opened with its signatures verified; a later version cannot
// be verified alone (its rules are the previous version's), so its text is
// read without them and verified says so.
func readOrderAgreement(file string) (a *gov.Agreement, verified bool, err error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, false, err
	}
	sa, err := gov.OpenAgreement(b, nil)
	if err == nil {
		return sa.Agreement, true, nil
	}
	a, _, perr := gov.ParseAgreementFile(b)
	if perr != nil || a.Version == 1 {
		return nil, false, fmt.Errorf("agreement %s: %w", file, err)
	}
	return a, false, nil
}

// readWriterKey reads the public key a writer is named by: a file holding
// the base64 (standard) sig public key (embassy writer keygen's FILE.pub,
// or any such text), a guest identity file (identity.pub: its agent key,
// the home writer), or a HOME directory (its identity.pub).
func readWriterKey(file string) (string, error) {
	if fi, err := os.Stat(file); err == nil && fi.IsDir() {
		file = filepath.Join(file, "identity.pub")
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return "", err
	}
	if id, err := guest.ParseIdentity(b); err == nil {
		return base64.StdEncoding.EncodeToString(id.Agent.Bytes()), nil
	}
	raw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(string(b)))
	if err != nil {
		return "", fmt.Errorf("writer key %s: neither a base64 public key nor a guest identity file", file)
	}
	pk, err := sig.ParsePublicKey(raw)
	if err != nil {
		return "", fmt.Errorf("writer key %s: %v (a secret key file? give its .pub)", file, err)
	}
	return base64.StdEncoding.EncodeToString(pk.Bytes()), nil
}

// textHashFlag returns an amend order's text hash: the value itself when it
// is "blake3:…", else the hash of the agreement in that file.
func textHashFlag(v string) (string, error) {
	if strings.HasPrefix(v, gov.HashPrefix) {
		return v, nil
	}
	b, err := os.ReadFile(v)
	if err != nil {
		return "", fmt.Errorf("--text: neither blake3:HEX nor a readable agreement file: %w", err)
	}
	a, _, err := gov.ParseAgreementFile(b)
	if err != nil {
		return "", fmt.Errorf("--text %s: %w", v, err)
	}
	return a.Hash(), nil
}

// newKeysFlag returns a rotate order's new-keys: a custodian fingerprint,
// or the fingerprint of a custodian public key file.
func newKeysFlag(v string) (string, error) {
	if len(v) == 32 && strings.Trim(v, "0123456789abcdef") == "" {
		return v, nil
	}
	b, err := os.ReadFile(v)
	if err != nil {
		return "", fmt.Errorf("--new-keys: neither a fingerprint (32 hex) nor a readable custodian .pub file: %w", err)
	}
	r, err := custodian.ParseRecipient(b)
	if err != nil {
		return "", fmt.Errorf("--new-keys %s: %w", v, err)
	}
	return r.Fingerprint(), nil
}

// orderDraft writes an unsigned order for the custodians to sign.
func (e *env) orderDraft(args []string) error {
	fs := newFlags("order draft", e.stderr)
	agreementFile := fs.String("agreement", "", "the signed agreement in force (gives the guest and version)")
	kind := fs.String("kind", "", "activate, return, expire, grant, rotate, amend or revoke")
	dataset := fs.String("dataset", "", "the dataset (activate, return, expire, grant; rotate: re-share its key)")
	host := fs.String("host", "", "activate: the host that takes over")
	epoch := fs.Uint64("epoch", 0, "activate, return: the dataset's new epoch (its current epoch + 1)")
	writerKey := fs.String("writer-key", "", "activate, return: the new writer's public key: a base64 key file (writer keygen's .pub), identity.pub or a HOME directory")
	snapshot := fs.String("snapshot", "", "activate: the snapshot to continue from (64 hex: the envelope hash)")
	before := fs.String("before", "", "expire: objects written before this RFC 3339 time may go")
	reader := fs.String("reader", "", "grant: the reader key fingerprint (sha256:HEX)")
	cust := fs.String("custodian", "", "rotate, revoke: the custodian concerned")
	newKeys := fs.String("new-keys", "", "rotate: the custodian's new keys: a fingerprint or their .pub file")
	text := fs.String("text", "", "amend: the new agreement file, or its hash blake3:HEX")
	reason := fs.String("reason", "", "why (shown to custodians, logged by every host)")
	valid := fs.Duration("valid", 24*time.Hour, "how long the order is valid from now (at most 720h)")
	out := fs.String("out", "", "order file to write (never overwritten)")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *agreementFile == "" || *kind == "" || *reason == "" || *out == "" || fs.NArg() != 0 {
		return usageErr("usage: embassy order draft --agreement FILE --kind KIND [kind's flags] --reason TEXT [--valid 24h] --out FILE")
	}
	a, _, err := readOrderAgreement(*agreementFile)
	if err != nil {
		return err
	}
	id, err := gov.NewOrderID()
	if err != nil {
		return err
	}
	now := time.Now().UTC().Truncate(time.Second)
	o := &gov.Order{
		Kind: gov.Action(*kind), ID: id, Guest: a.Guest, Agreement: a.Version,
		Issued: now, NotBefore: now, NotAfter: now.Add(valid.Truncate(time.Second)),
		Reason: *reason, Dataset: *dataset, Epoch: *epoch, Host: *host, Snapshot: *snapshot,
		Reader: *reader, Custodian: *cust,
	}
	if *writerKey != "" {
		if o.Writer, err = readWriterKey(*writerKey); err != nil {
			return err
		}
	}
	if *before != "" {
		t, err := time.Parse(time.RFC3339, *before)
		if err != nil {
			return usageErr("--before: %v (want RFC 3339, e.g. 2030-01-01T00:00:00Z)", err)
		}
		o.Before = t.UTC().Truncate(time.Second)
	}
	if *text != "" {
		if o.Text, err = textHashFlag(*text); err != nil {
			return err
		}
	}
	if *newKeys != "" {
		if o.NewKeys, err = newKeysFlag(*newKeys); err != nil {
			return err
		}
	}
	if err := o.Validate(); err != nil {
		return fmt.Errorf("draft %s order: %w (docs/spec/order.md lists each kind's fields)", *kind, err)
	}
	if err := atomicfile.WriteNew(*out, o.Marshal(), 0o644); err != nil {
		return fmt.Errorf("write order: %w (existing files are never overwritten)", err)
	}
	q := a.Quorum(o.Kind)
	fmt.Fprintf(e.stdout, "order %s (%s) drafted in %s, valid until %s: needs %d of %d custodians%s to sign (embassy order sign --identity CUSTODIAN.key %s)\n",
		o.IDString(), o.Kind, *out, o.NotAfter.Format(time.RFC3339), q.Threshold, len(a.Custodians), roleText(q), *out)
	return nil
}

func roleText(q gov.Quorum) string {
	var roles []string
	for _, r := range q.Roles {
		roles = append(roles, fmt.Sprintf("%d %s", r.Count, r.Role))
	}
	if len(roles) == 0 {
		return ""
	}
	return " including " + strings.Join(roles, ", ")
}

// orderSign adds custodians' signatures to an order file, in place.
func (e *env) orderSign(args []string) error {
	file, b, ids, err := e.signArgs("order sign", "usage: embassy order sign --identity CUSTODIAN.key ... ORDER", args)
	if err != nil {
		return err
	}
	o, err := orderOfFile(b)
	if err != nil {
		return fmt.Errorf("%s: %w", file, err)
	}
	for _, c := range ids {
		if b, err = gov.SignOrder(b, c); err != nil {
			return fmt.Errorf("sign as %s: %w", c.Name, err)
		}
		fmt.Fprintf(e.stdout, "signed %s as custodian %s: %s order %s, reason %q, valid %s to %s\n", file, c.Name, o.Kind, o.IDString(), o.Reason,
			o.NotBefore.Format(time.RFC3339), o.NotAfter.Format(time.RFC3339))
	}
	return atomicfile.Write(file, b, 0o644)
}

// orderOfFile parses the order in a bare or signed order file without
// checking signatures.
func orderOfFile(b []byte) (*gov.Order, error) {
	text := b
	if i := bytes.LastIndex(b, []byte("\n\n")); i >= 0 {
		text = b[:i+1]
	}
	return gov.ParseOrder(text)
}

// signatureNames lists the names on an order file's signature lines.
func signatureNames(b []byte) []string {
	i := bytes.LastIndex(b, []byte("\n\n"))
	if i < 0 {
		return nil
	}
	var names []string
	for _, l := range strings.Split(strings.TrimSuffix(string(b[i+2:]), "\n"), "\n") {
		if f := strings.Fields(strings.TrimPrefix(l, "— ")); len(f) == 2 {
			names = append(names, f[0])
		}
	}
	return names
}

func (e *env) printOrder(o *gov.Order) {
	out := e.stdout
	fmt.Fprintf(out, "order %s\n", o.IDString())
	row := func(k, v string) {
		if v != "" {
			fmt.Fprintf(out, "  %-11s %s\n", k, v)
		}
	}
	row("kind", string(o.Kind))
	row("guest", o.Guest)
	row("agreement", fmt.Sprintf("v%d", o.Agreement))
	row("issued", o.Issued.Format(time.RFC3339))
	row("valid", o.NotBefore.Format(time.RFC3339)+" to "+o.NotAfter.Format(time.RFC3339))
	row("dataset", o.Dataset)
	if o.Epoch != 0 {
		row("epoch", fmt.Sprint(o.Epoch))
	}
	row("host", o.Host)
	if o.Writer != "" {
		fp := "(not a valid key)"
		if raw, err := base64.StdEncoding.DecodeString(o.Writer); err == nil {
			if pk, err := sig.ParsePublicKey(raw); err == nil {
				fp = "key " + pk.Fingerprint()
			}
		}
		row("writer", fp)
	}
	row("snapshot", o.Snapshot)
	if !o.Before.IsZero() {
		row("before", o.Before.Format(time.RFC3339))
	}
	row("reader", o.Reader)
	row("custodian", o.Custodian)
	row("new-keys", o.NewKeys)
	row("text", o.Text)
	row("reason", o.Reason)
}

// orderShow prints an order file without verifying its signatures.
func (e *env) orderShow(args []string) error {
	if len(args) != 1 {
		return usageErr("usage: embassy order show ORDER")
	}
	b, err := os.ReadFile(args[0])
	if err != nil {
		return err
	}
	o, err := orderOfFile(b)
	if err != nil {
		return fmt.Errorf("%s: %w", args[0], err)
	}
	e.printOrder(o)
	fmt.Fprintf(e.stdout, "  %-11s %s (not verified; embassy order verify --agreement FILE %s)\n", "signatures", listOrNone(signatureNames(b)), args[0])
	return nil
}

// orderVerify verifies an order's signatures against the agreement and
// reports the quorum and validity window. It fails unless the order has its
// quorum and is valid now; what the hosts check beyond that (epochs,
// replays, revocations) needs their state.
func (e *env) orderVerify(args []string) error {
	fs := newFlags("order verify", e.stderr)
	agreementFile := fs.String("agreement", "", "the signed agreement in force")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *agreementFile == "" || fs.NArg() != 1 {
		return usageErr("usage: embassy order verify --agreement FILE ORDER")
	}
	a, verified, err := readOrderAgreement(*agreementFile)
	if err != nil {
		return err
	}
	b, err := os.ReadFile(fs.Arg(0))
	if err != nil {
		return err
	}
	so, err := gov.OpenOrder(b, a)
	if err != nil {
		return fmt.Errorf("%s: %w", fs.Arg(0), err)
	}
	o := so.Order
	e.printOrder(o)
	out := e.stdout
	if !verified {
		fmt.Fprintf(out, "  %-11s agreement v%d read without verifying its own signatures (embassy agreement verify --previous)\n", "note", a.Version)
	}
	fmt.Fprintf(out, "  %-11s %s\n", "signed by", listOrNone(so.Signers))
	if len(so.Unknown) > 0 {
		fmt.Fprintf(out, "  %-11s %s (not keys of agreement v%d)\n", "unknown", strings.Join(so.Unknown, ", "), a.Version)
	}
	var errs []error
	if o.Guest != a.Guest || o.Agreement != a.Version {
		err := fmt.Errorf("%w: the order is for guest %s under agreement v%d; this agreement is guest %s v%d",
			gov.ErrWrongAgreement, o.Guest, o.Agreement, a.Guest, a.Version)
		if o.Guest != a.Guest {
			err = fmt.Errorf("%w: the order is for guest %s; this agreement is for guest %s", gov.ErrWrongGuest, o.Guest, a.Guest)
		}
		errs = append(errs, err)
	}
	q := a.Quorum(o.Kind)
	if err := gov.CheckSignatures(so, a, nil); err != nil {
		fmt.Fprintf(out, "  %-11s NOT met: %v\n", "quorum", err)
		errs = append(errs, err)
	} else {
		fmt.Fprintf(out, "  %-11s met (%d of %d custodians%s needed)\n", "quorum", q.Threshold, len(a.Custodians), roleText(q))
	}
	now := time.Now()
	skew := time.Duration(a.ClockSkewSeconds) * time.Second
	switch {
	case now.Add(skew).Before(o.NotBefore):
		err = fmt.Errorf("%w: valid from %s", gov.ErrNotYetValid, o.NotBefore.Format(time.RFC3339))
	case now.Add(-skew).After(o.NotAfter):
		err = fmt.Errorf("%w: valid until %s", gov.ErrExpired, o.NotAfter.Format(time.RFC3339))
	default:
		err = nil
	}
	if err != nil {
		fmt.Fprintf(out, "  %-11s NOT now: %v\n", "validity", err)
		errs = append(errs, err)
	} else {
		fmt.Fprintf(out, "  %-11s now (until %s)\n", "validity", o.NotAfter.Format(time.RFC3339))
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	fmt.Fprintln(out, "ready to submit (hosts also check epochs, replays and revocations against their state)")
	return nil
}
