package hostnode

import (
	"errors"
	"testing"

	"github.com/embassy-project/embassy/internal/custodian"
	"github.com/embassy-project/embassy/internal/gov"
	"github.com/embassy-project/embassy/internal/guest"
	"github.com/embassy-project/embassy/internal/sig"
)

func TestCheckIdentityUpdate(t *testing.T) {
	g, _ := guest.NewID()
	agent, err := sig.Generate()
	if err != nil {
		t.Fatal(err)
	}
	c, err := custodian.Generate("alice")
	if err != nil {
		t.Fatal(err)
	}
	cs := []*custodian.Recipient{c.Recipient()}
	newDS := func(name string) *guest.Dataset {
		d, _, err := guest.NewDataset(g, "state", name, agent.Public(), 1, cs)
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	pop, land := newDS("population"), newDS("land")
	bound, err := guest.NewIdentity(g, "state", agent.Public(), pop, land)
	if err != nil {
		t.Fatal(err)
	}
	rotated := newDS("population")
	rotated.ID = pop.ID
	otherID := newDS("population")
	ident := func(ds ...*guest.Dataset) *guest.Identity {
		id, err := guest.NewIdentity(g, "state", agent.Public(), ds...)
		if err != nil {
			t.Fatal(err)
		}
		return id
	}
	other, _ := sig.Generate()
	op, _, err := guest.NewDataset(g, "state", "population", other.Public(), 1, cs)
	if err != nil {
		t.Fatal(err)
	}
	op.ID = pop.ID
	ol, _, _ := guest.NewDataset(g, "state", "land", other.Public(), 1, cs)
	ol.ID = land.ID
	otherAgent, err := guest.NewIdentity(g, "state", other.Public(), op, ol)
	if err != nil {
		t.Fatal(err)
	}
	st := func(keys string) gov.State {
		return gov.State{Agreement: 1, Datasets: map[string]gov.DatasetState{
			"population": {Phase: gov.Returned, Epoch: 3, Keys: keys}, "land": {Phase: gov.Normal, Epoch: 1}}}
	}
	for _, c := range []struct {
		name  string
		next  *guest.Identity
		state gov.State
		ok    bool
	}{
		{"unchanged", ident(pop, land), st(""), true},
		{"rotated as ordered", ident(rotated, land), st(rotated.Fingerprint()), true},
		{"rotated without an order", ident(rotated, land), st(""), false},
		{"rotated to other keys than ordered", ident(rotated, land), st(pop.Fingerprint()), false},
		{"dataset ID changed", ident(otherID, land), st(otherID.Fingerprint()), false},
		{"dataset added", ident(pop, land, newDS("business")), st(""), false},
		{"dataset removed", ident(pop), st(""), false},
		{"agent key changed", otherAgent, st(op.Fingerprint()), false},
	} {
		err := checkIdentityUpdate(bound, c.next, c.state)
		if c.ok && err != nil {
			t.Errorf("%s: %v", c.name, err)
		}
		if !c.ok && !errors.Is(err, gov.ErrNotAllowed) {
			t.Errorf("%s: %v, want ErrNotAllowed", c.name, err)
		}
	}
}
