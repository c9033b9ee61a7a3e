package main

import (
	"context"
	"crypto/tls"
	"encoding/base64"
	"encoding/hex"
	"strings"
	"testing"
	"time"

	"github.com/embassy-project/embassy/internal/custodian"
	"github.com/embassy-project/embassy/internal/gov"
	"github.com/embassy-project/embassy/internal/guest"
	"github.com/embassy-project/embassy/internal/ledger"
	"github.com/embassy-project/embassy/internal/sig"
	"github.com/embassy-project/embassy/internal/transport"
)

// TestGovernanceRefusalsLogged submits to a real host process every kind of
// bad order the issue lists and checks that each is refused with its reason
// and that the reason is in the host's public log.
func TestGovernanceRefusalsLogged(t *testing.T) {
	g := newGovGuest(t)
	sa, err := gov.OpenAgreement(mustRead(t, g.agreement), nil)
	if err != nil {
		t.Fatal(err)
	}
	a := sa.Agreement
	ids := map[string]*custodian.Identity{}
	for _, c := range custodianNames {
		id, err := custodian.ParseIdentity(mustRead(t, g.p("custodians", c+".key")))
		if err != nil {
			t.Fatal(err)
		}
		ids[c] = id
	}
	mallory, err := custodian.Generate("mallory")
	if err != nil {
		t.Fatal(err)
	}
	writer, err := sig.Generate()
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC().Truncate(time.Second)
	activate := func(mod func(o *gov.Order)) *gov.Order {
		id, err := gov.NewOrderID()
		if err != nil {
			t.Fatal(err)
		}
		o := &gov.Order{Kind: gov.Activate, ID: id, Guest: a.Guest, Agreement: a.Version, Issued: now, NotBefore: now.Add(-time.Minute),
			NotAfter: now.Add(time.Hour), Reason: "refusal test", Dataset: "registry", Epoch: 2, Host: "b",
			Writer: base64.StdEncoding.EncodeToString(writer.Public().Bytes()), Snapshot: strings.Repeat("ab", 32)}
		if mod != nil {
			mod(o)
		}
		return o
	}
	sign := func(o *gov.Order, signers ...*custodian.Identity) []byte {
		f := o.Marshal()
		for _, s := range signers {
			var err error
			if f, err = gov.SignOrder(f, s); err != nil {
				t.Fatal(err)
			}
		}
		return f
	}
	otherGuest, _ := guest.NewID()
	quorum := []*custodian.Identity{ids["alice"], ids["bob"], ids["carol"]}
	da, err := transport.ParseDescriptor(mustRead(t, g.desc("a")))
	if err != nil {
		t.Fatal(err)
	}
	gid, _ := guest.ParseID(a.Guest)
	submit := func(f []byte) error {
		c := transport.NewClient(da, gid, tls.Certificate{})
		c.Retries = 0
		_, err := c.SubmitOrder(context.Background(), f)
		return err
	}

	// Revoke erin first (a valid order), so that her signature is refused later.
	rid, _ := gov.NewOrderID()
	revoke := &gov.Order{Kind: gov.Revoke, ID: rid, Guest: a.Guest, Agreement: a.Version, Issued: now, NotBefore: now.Add(-time.Minute),
		NotAfter: now.Add(time.Hour), Reason: "erin's key was lost", Custodian: "erin"}
	if err := submit(sign(revoke, quorum...)); err != nil {
		t.Fatalf("revoke: %v", err)
	}

	cases := []struct {
		name string
		file []byte
		want error
	}{
		{"expired", sign(activate(func(o *gov.Order) {
			o.Issued, o.NotBefore, o.NotAfter = now.Add(-48*time.Hour), now.Add(-48*time.Hour), now.Add(-24*time.Hour)
		}), quorum...), gov.ErrExpired},
		{"not yet valid", sign(activate(func(o *gov.Order) { o.NotBefore, o.NotAfter = now.Add(time.Hour), now.Add(2*time.Hour) }), quorum...), gov.ErrNotYetValid},
		{"another guest", sign(activate(func(o *gov.Order) { o.Guest = otherGuest.String() }), quorum...), gov.ErrWrongGuest},
		{"another agreement version", sign(activate(func(o *gov.Order) { o.Agreement = 2 }), quorum...), gov.ErrWrongAgreement},
		{"stale epoch", sign(activate(func(o *gov.Order) { o.Epoch = 1 }), quorum...), gov.ErrStaleEpoch},
		{"epoch gap", sign(activate(func(o *gov.Order) { o.Epoch = 5 }), quorum...), gov.ErrEpochGap},
		{"unknown key", sign(activate(nil), ids["alice"], ids["bob"], ids["carol"], mallory), gov.ErrUnknownSigner},
		{"revoked key", sign(activate(nil), ids["alice"], ids["bob"], ids["erin"]), gov.ErrRevoked},
		{"same custodian twice", sign(activate(nil), ids["alice"], ids["alice"], ids["bob"]), gov.ErrQuorum},
		{"wrong role", sign(activate(nil), ids["bob"], ids["carol"], ids["dave"]), gov.ErrRole},
		{"return while not active", sign(activate(func(o *gov.Order) { o.Kind, o.Host, o.Snapshot = gov.Return, "", "" }), quorum...), gov.ErrTransition},
		{"malformed", []byte("embassy order v1\nkind: launch\n\n— custodian:alice AAAAAAA=\n"), gov.ErrMalformed},
	}
	for _, c := range cases {
		err := submit(c.file)
		if err == nil {
			t.Fatalf("%s: carried out", c.name)
		}
		if !strings.Contains(err.Error(), c.want.Error()) {
			t.Fatalf("%s: refused for another reason: %v (want %q)", c.name, err, c.want)
		}
	}
	// Every refusal is in host a's public log with its reason; nothing was
	// carried out but the revocation. (The log publishes a checkpoint every
	// second or so: wait for one that covers them.)
	var reasons []string
	carried := 0
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(300 * time.Millisecond) {
		reasons, carried = nil, 0
		for _, e := range g.logEntries(t, "a") {
			switch ev := e.Event.(type) {
			case ledger.OrderRefused:
				reasons = append(reasons, ev.Reason)
			case ledger.OrderCarriedOut:
				carried++
				if hex.EncodeToString(ev.Order[:]) != revoke.IDString() {
					t.Fatalf("host a carried out order %x", ev.Order)
				}
			}
		}
		if (carried == 1 && len(reasons) >= len(cases)) || time.Now().After(deadline) {
			break
		}
	}
	if carried != 1 {
		t.Fatalf("host a carried out %d orders, want the revocation only", carried)
	}
	all := strings.Join(reasons, "\n")
	for _, c := range cases {
		if !strings.Contains(all, c.want.Error()) {
			t.Errorf("%s: no logged refusal with %q in host a's log:\n%s", c.name, c.want, all)
		}
	}
	if len(reasons) != len(cases) {
		t.Errorf("host a logged %d refusals for %d bad orders", len(reasons), len(cases))
	}
}
