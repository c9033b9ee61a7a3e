package main

import (
	"crypto/ed25519"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/embassy-project/embassy/internal/access"
	"github.com/embassy-project/embassy/internal/atomicfile"
	"github.com/embassy-project/embassy/internal/guest"
	"github.com/embassy-project/embassy/internal/hosts"
	"github.com/embassy-project/embassy/internal/shardstore"
	"github.com/embassy-project/embassy/internal/transport"
)

func (e *env) grant(args []string) error {
	if len(args) == 0 {
		return usageErr("usage: embassy grant request|sign|show ...")
	}
	switch args[0] {
	case "request":
		return e.grantRequest(args[1:])
	case "sign":
		return e.grantSign(args[1:])
	case "show":
		return e.grantShow(args[1:])
	}
	return usageErr("unknown grant command %q (request, sign, show)", args[0])
}

// grantRequest writes an unsigned read grant and its reader key.
func (e *env) grantRequest(args []string) error {
	fs := newFlags("grant request", e.stderr)
	identity := fs.String("identity", "", "the guest's public identity file (GUEST.pub)")
	dataset := fs.String("dataset", "", "the dataset whose custodians will sign")
	reason := fs.String("reason", "", "why read access is needed (shown to custodians, logged by hosts)")
	valid := fs.Duration("valid", 72*time.Hour, "how long the grant is valid from now")
	out := fs.String("out", "", "grant file to write; OUT.key gets the reader's secret TLS key")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *identity == "" || *dataset == "" || *reason == "" || *out == "" {
		return usageErr("usage: embassy grant request --identity GUEST.pub --dataset NAME --reason TEXT [--valid 72h] --out FILE")
	}
	id, err := readGuestIdentity(*identity)
	if err != nil {
		return err
	}
	if id.Dataset(*dataset) == nil {
		return fmt.Errorf("the guest identity has no dataset %q", *dataset)
	}
	now := time.Now()
	g, key, err := access.NewGrantRequest(id.Guest, *dataset, *reason, now, now.Add(*valid))
	if err != nil {
		return err
	}
	if err := atomicfile.WriteNew(*out+".key", access.MarshalReaderKey(key), 0o600); err != nil {
		return fmt.Errorf("write reader key: %w (existing files are never overwritten)", err)
	}
	if err := atomicfile.WriteNew(*out, g.Marshal(), 0o644); err != nil {
		return fmt.Errorf("write grant: %w", err)
	}
	d := id.Dataset(*dataset)
	fmt.Fprintf(e.stdout, "grant request %s for guest %s: needs %d of %d custodians of dataset %s to sign (embassy grant sign --identity CUSTODIAN.key %s)\n",
		*out, id.Name, d.Threshold, len(d.Custodians), d.Name, *out)
	fmt.Fprintf(e.stdout, "reader key %s.key: keep it secret; it is useless without the signed grant.\n", *out)
	return nil
}

// grantSign adds one custodian's signature to a grant file.
func (e *env) grantSign(args []string) error {
	fs := newFlags("grant sign", e.stderr)
	var idFlags multi
	fs.Var(&idFlags, "identity", "a custodian's secret identity file (repeat)")
	if err := parse(fs, args); err != nil {
		return err
	}
	if len(idFlags) == 0 || fs.NArg() != 1 {
		return usageErr("usage: embassy grant sign --identity CUSTODIAN.key ... GRANT")
	}
	file := fs.Arg(0)
	b, err := os.ReadFile(file)
	if err != nil {
		return err
	}
	g, err := access.ParseGrant(b)
	if err != nil {
		return fmt.Errorf("%s: %w", file, err)
	}
	ids, err := readIdentities(idFlags)
	if err != nil {
		return err
	}
	for _, c := range ids {
		if err := g.Sign(c); err != nil {
			return fmt.Errorf("sign as %s: %w", c.Name, err)
		}
		fmt.Fprintf(e.stdout, "signed %s as %s (dataset %s, reason %q, valid %s to %s)\n", file, c.Name, g.Dataset, g.Reason,
			g.NotBefore.Format(time.RFC3339), g.NotAfter.Format(time.RFC3339))
	}
	return atomicfile.Write(file, g.Marshal(), 0o644)
}

func (e *env) grantShow(args []string) error {
	if len(args) != 1 {
		return usageErr("usage: embassy grant show GRANT")
	}
	b, err := os.ReadFile(args[0])
	if err != nil {
		return err
	}
	g, err := access.ParseGrant(b)
	if err != nil {
		return fmt.Errorf("%s: %w", args[0], err)
	}
	var signers []string
	for _, s := range g.Signatures {
		signers = append(signers, s.Custodian.Name+" ("+s.Custodian.Fingerprint()+")")
	}
	fmt.Fprintf(e.stdout, "grant %x\n  guest    %s\n  dataset  %s\n  reason   %s\n  valid    %s to %s\n  signed   %d: %s\n",
		g.ID, g.Guest, g.Dataset, g.Reason, g.NotBefore.Format(time.RFC3339), g.NotAfter.Format(time.RFC3339),
		len(g.Signatures), strings.Join(signers, ", "))
	return nil
}

func readGuestIdentity(file string) (*guest.Identity, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	id, err := guest.ParseIdentity(b)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", file, err)
	}
	return id, nil
}

// grantConnector returns a hosts.Connector acting as the holder of a read
// grant: GRANT and its reader key (GRANT.key unless keyFile is given).
func grantConnector(grantFile, keyFile string) (hosts.Connector, error) {
	if grantFile == "" {
		return nil, nil
	}
	if keyFile == "" {
		keyFile = grantFile + ".key"
	}
	b, err := os.ReadFile(grantFile)
	if err != nil {
		return nil, err
	}
	g, err := access.ParseGrant(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", grantFile, err)
	}
	kb, err := os.ReadFile(keyFile)
	if err != nil {
		return nil, err
	}
	key, err := access.ParseReaderKey(kb)
	clear(kb)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", keyFile, err)
	}
	if !key.Public().(ed25519.PublicKey).Equal(g.Reader) {
		return nil, fmt.Errorf("%s is not the reader key of %s", keyFile, grantFile)
	}
	cert, err := access.GrantCertificate(g, key)
	if err != nil {
		return nil, err
	}
	return func(d *transport.Descriptor) (shardstore.Store, error) {
		return transport.NewClient(d, g.Guest, cert), nil
	}, nil
}
