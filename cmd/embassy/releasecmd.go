package main

import (
	"bytes"
	"encoding/hex"
	"fmt"
	"os"

	"github.com/embassy-project/embassy/internal/atomicfile"
	"github.com/embassy-project/embassy/internal/custodian"
	"github.com/embassy-project/embassy/internal/gov"
	"github.com/embassy-project/embassy/internal/share"
	"github.com/embassy-project/embassy/internal/transport"
)

const shareReleaseUsage = "usage: embassy share release --share FILE.share --identity CUSTODIAN.key --order ORDER.signed --host-descriptor HOST.json --out FILE.rel"

// shareRelease re-wraps a custodian's share of a dataset secret to the KEM
// key of the host an activate order names (docs/spec/share-release.md). The
// plaintext share exists only in memory; the output is encrypted to the host
// and signed by the custodian.
func (e *env) shareRelease(args []string) error {
	fs := newFlags("share release", e.stderr)
	shareFile := fs.String("share", "", "the custodian's share file of the dataset")
	identity := fs.String("identity", "", "the custodian's secret identity file")
	orderFile := fs.String("order", "", "the signed activate order")
	descFile := fs.String("host-descriptor", "", "the descriptor of the host the order activates")
	out := fs.String("out", "", "release file to write (never overwritten)")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *shareFile == "" || *identity == "" || *orderFile == "" || *descFile == "" || *out == "" || fs.NArg() != 0 {
		return usageErr(shareReleaseUsage)
	}

	orderBytes, err := os.ReadFile(*orderFile)
	if err != nil {
		return err
	}
	o, err := parseOrderText(orderBytes)
	if err != nil {
		return fmt.Errorf("order %s: %w", *orderFile, err)
	}
	if o.Kind != gov.Activate {
		return fmt.Errorf("order %s is a %s order: shares are released only for an activate order", *orderFile, o.Kind)
	}

	descBytes, err := os.ReadFile(*descFile)
	if err != nil {
		return err
	}
	d, err := transport.ParseDescriptor(descBytes)
	if err != nil {
		return fmt.Errorf("host descriptor %s: %w", *descFile, err)
	}
	if d.Name != o.Host {
		return fmt.Errorf("the order activates host %s, the descriptor %s is host %s: use host %s's descriptor", o.Host, *descFile, d.Name, o.Host)
	}
	hostKEM, err := d.KEM()
	if err != nil {
		return fmt.Errorf("host descriptor %s: %w", *descFile, err)
	}

	shareBytes, err := os.ReadFile(*shareFile)
	if err != nil {
		return err
	}
	h, err := share.Inspect(shareBytes)
	if err != nil {
		return fmt.Errorf("share %s: %w", *shareFile, err)
	}
	ds := h.Dataset
	if o.Dataset != ds.Name {
		return fmt.Errorf("the order activates dataset %s, the share %s is of dataset %s", o.Dataset, *shareFile, ds.Name)
	}
	if o.Guest != ds.Guest.String() {
		return fmt.Errorf("the order is for guest %s, the share %s is of guest %s (%s)", o.Guest, *shareFile, ds.GuestName, ds.Guest)
	}

	idBytes, err := os.ReadFile(*identity)
	if err != nil {
		return err
	}
	id, err := custodian.ParseIdentity(idBytes)
	clear(idBytes)
	if err != nil {
		return fmt.Errorf("identity %s: %w", *identity, err)
	}

	rel, err := share.Release(shareBytes, id, share.ReleaseTarget{Dataset: ds, Order: o.ID, Host: d.Name, HostKEM: hostKEM})
	if err != nil {
		return err
	}
	if err := atomicfile.WriteNew(*out, rel, 0o644); err != nil {
		return fmt.Errorf("write release: %w (existing files are never overwritten)", err)
	}
	fmt.Fprintf(e.stdout, "released %s's share of dataset %s (fingerprint %s) of guest %s to host %s for order %s: %s (send it to host %s)\n",
		id.Name, ds.Name, ds.Fingerprint(), ds.GuestName, d.Name, hex.EncodeToString(o.ID[:]), *out, d.Name)
	return nil
}

// parseOrderText parses the text part of a signed order file (a C2SP signed
// note: the text, a blank line, the signature lines). It checks no
// signatures: the host does that against the agreement before it acts, and
// a custodian releases only for an order they have read.
func parseOrderText(file []byte) (*gov.Order, error) {
	i := bytes.LastIndex(file, []byte("\n\n"))
	if i < 0 {
		return nil, fmt.Errorf("not a signed order: no blank line before the signatures")
	}
	return gov.ParseOrder(file[:i+1])
}
