package gov

import (
	"bytes"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestNewState(t *testing.T) {
	f := testOrderAgreement(t)
	s := NewState(f.a, f.homeW, f.now)
	if s.Agreement != 1 || !s.LastHeartbeat.Equal(f.now) || s.Orders == nil || len(s.Orders) != 0 || len(s.Revoked) != 0 {
		t.Fatalf("NewState = %+v", s)
	}
	if len(s.Datasets) != len(f.a.Datasets) {
		t.Fatalf("%d datasets, want %d", len(s.Datasets), len(f.a.Datasets))
	}
	for _, d := range f.a.Datasets {
		ds, ok := s.Dataset(d.Name)
		if !ok || ds != (DatasetState{Phase: Normal, Epoch: 1, Writer: f.homeW}) {
			t.Errorf("dataset %s: %+v", d.Name, ds)
		}
	}
	if _, ok := s.Dataset("payroll"); ok {
		t.Error("unknown dataset found")
	}
}

// showDataset prints a dataset state with the writer as a fingerprint.
func showDataset(d DatasetState) string {
	return fmt.Sprintf("{%s epoch %d writer %s host %q snapshot %q order %q}", d.Phase, d.Epoch, writerFingerprint(d.Writer), d.Host, d.Snapshot, d.Order)
}

func phases(s State) map[string]Phase {
	m := map[string]Phase{}
	for n, d := range s.Datasets {
		m[n] = d.Phase
	}
	return m
}

func effectKinds(eff []Effect) []EffectKind {
	var k []EffectKind
	for _, e := range eff {
		k = append(k, e.Kind)
	}
	return k
}

// TestApplyTransitions walks each phase × order kind that is allowed and
// checks the resulting dataset state and effects.
func TestApplyTransitions(t *testing.T) {
	f := testOrderAgreement(t)
	armed := func(t testing.TB) State {
		s, _ := f.state().Tick(f.a, f.now.Add(2*time.Hour))
		return s
	}
	returned := func(t testing.TB) State {
		so := f.open(t, f.sign(t, f.order(t, Return), "alice", "bob"))
		s, _, err := f.activeState(t).Apply(so, f.a, f.now)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	cases := []struct {
		name    string
		from    func(t testing.TB) State
		kind    Action
		edit    func(o *Order)
		want    DatasetState // population after the order
		effects []EffectKind
	}{
		{"normal activate", func(testing.TB) State { return f.state() }, Activate, nil,
			DatasetState{Phase: Active, Epoch: 2, Writer: f.bW, Host: "b", Snapshot: strings.Repeat("0f", 32)}, []EffectKind{EffFence, EffActivated}},
		{"armed activate", armed, Activate, nil,
			DatasetState{Phase: Active, Epoch: 2, Writer: f.bW, Host: "b", Snapshot: strings.Repeat("0f", 32)}, []EffectKind{EffFence, EffActivated}},
		{"active activate another host", f.activeState, Activate, func(o *Order) { o.Host, o.Epoch, o.Writer = "a", 3, f.homeW },
			DatasetState{Phase: Active, Epoch: 3, Writer: f.homeW, Host: "a", Snapshot: strings.Repeat("0f", 32)}, []EffectKind{EffFence, EffActivated}},
		{"active return", f.activeState, Return, nil,
			DatasetState{Phase: Returned, Epoch: 3, Writer: f.homeW, RotateDue: true}, []EffectKind{EffFence, EffReturned}},
		{"returned activate", returned, Activate, func(o *Order) { o.Epoch = 4 },
			DatasetState{Phase: Active, Epoch: 4, Writer: f.bW, Host: "b", Snapshot: strings.Repeat("0f", 32)}, []EffectKind{EffFence, EffActivated}},
		{"normal expire", func(testing.TB) State { return f.state() }, Expire, nil,
			DatasetState{Phase: Normal, Epoch: 1, Writer: f.homeW}, []EffectKind{EffExpire}},
		{"active grant", f.activeState, Grant, nil,
			DatasetState{Phase: Active, Epoch: 2, Writer: f.bW, Host: "b", Snapshot: strings.Repeat("0f", 32)}, []EffectKind{EffGrant}},
		{"armed rotate", armed, Rotate, nil,
			DatasetState{Phase: Armed, Epoch: 1, Writer: f.homeW}, []EffectKind{EffRotate}},
		{"normal amend", func(testing.TB) State { return f.state() }, Amend, nil,
			DatasetState{Phase: Normal, Epoch: 1, Writer: f.homeW}, []EffectKind{EffAmend}},
		{"normal revoke", func(testing.TB) State { return f.state() }, Revoke, nil,
			DatasetState{Phase: Normal, Epoch: 1, Writer: f.homeW}, []EffectKind{EffRevoked}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := c.from(t)
			o := f.order(t, c.kind)
			if c.edit != nil {
				c.edit(o)
			}
			so := f.open(t, f.sign(t, o, "alice", "bob"))
			before := s.Marshal()
			n, eff, err := s.Apply(so, f.a, f.now)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(s.Marshal(), before) {
				t.Fatal("Apply changed its input state")
			}
			got := n.Datasets["population"]
			if c.kind == Activate || c.kind == Return {
				c.want.Order = o.IDString()
			} else {
				c.want.Order = s.Datasets["population"].Order
			}
			if got != c.want {
				t.Errorf("population = %s, want %s", showDataset(got), showDataset(c.want))
			}
			if !reflect.DeepEqual(effectKinds(eff), c.effects) {
				t.Errorf("effects %v, want %v", effectKinds(eff), c.effects)
			}
			for _, e := range eff {
				if e.Order != o.IDString() || e.Detail == "" {
					t.Errorf("effect %+v: order or detail missing", e)
				}
			}
			if last := n.Orders[len(n.Orders)-1]; last != o.IDString() || len(n.Orders) != len(s.Orders)+1 {
				t.Errorf("orders %v: the order is not appended", n.Orders)
			}
			for name, d := range s.Datasets { // other datasets untouched
				if name != "population" && n.Datasets[name] != d {
					t.Errorf("dataset %s changed: %+v -> %+v", name, d, n.Datasets[name])
				}
			}
			if _, err := ParseState(n.Marshal()); err != nil {
				t.Errorf("state after %s does not round-trip: %v", c.name, err)
			}
			// The same order again is a replay.
			if _, _, err := n.Apply(so, f.a, f.now); !errors.Is(err, ErrReplay) {
				t.Errorf("applying twice: %v", err)
			}
		})
	}
}

func TestApplyEffects(t *testing.T) {
	f := testOrderAgreement(t)
	o := f.order(t, Activate)
	so := f.open(t, f.sign(t, o, "alice", "bob"))
	_, eff, err := f.state().Apply(so, f.a, f.now)
	if err != nil {
		t.Fatal(err)
	}
	fence, act := eff[0], eff[1]
	if fence.Dataset != "population" || fence.Epoch != 2 || fence.Writer != f.bW || fence.Host != "b" {
		t.Errorf("fence %+v", fence)
	}
	if act.Snapshot != o.Snapshot || act.Host != "b" || act.Epoch != 2 || act.Writer != f.bW || !strings.Contains(act.Detail, o.Reason) {
		t.Errorf("activated %+v", act)
	}
	if strings.Contains(fence.Detail, f.bW[:40]) {
		t.Error("effect detail prints the writer key")
	}

	kinds := map[Action]func(e Effect) bool{
		Expire: func(e Effect) bool {
			return e.Kind == EffExpire && e.Dataset == "population" && e.Before.Equal(f.now.Add(-31*24*time.Hour))
		},
		Grant: func(e Effect) bool {
			return e.Kind == EffGrant && e.Dataset == "population" && e.Reader == "sha256:"+strings.Repeat("3c", 32)
		},
		Rotate: func(e Effect) bool {
			return e.Kind == EffRotate && e.Custodian == "carol" && e.NewKeys == strings.Repeat("7e", 16)
		},
		Amend:  func(e Effect) bool { return e.Kind == EffAmend && e.Text == "blake3:"+strings.Repeat("9d", 32) },
		Revoke: func(e Effect) bool { return e.Kind == EffRevoked && e.Custodian == "carol" },
	}
	for kind, ok := range kinds {
		so := f.open(t, f.sign(t, f.order(t, kind), "alice", "bob"))
		n, eff, err := f.state().Apply(so, f.a, f.now)
		if err != nil {
			t.Fatalf("%s: %v", kind, err)
		}
		if len(eff) != 1 || !ok(eff[0]) {
			t.Errorf("%s: effects %+v", kind, eff)
		}
		if kind == Revoke && !reflect.DeepEqual(n.Revoked, []string{f.a.Custodian("carol").Fingerprint}) {
			t.Errorf("revoked %v", n.Revoked)
		}
	}
}

// TestApplyRefusals: invalid orders leave the state as it was.
func TestApplyRefusals(t *testing.T) {
	f := testOrderAgreement(t)
	cases := []struct {
		name  string
		from  func(t testing.TB) State
		kind  Action
		edit  func(o *Order)
		want  error
		signs []string
	}{
		{"return while normal", func(testing.TB) State { return f.state() }, Return, func(o *Order) { o.Epoch = 2 }, ErrTransition, nil},
		{"activate unknown dataset", func(testing.TB) State { return f.state() }, Activate, func(o *Order) { o.Dataset = "payroll" }, ErrNotAllowed, nil},
		{"activate stale epoch while active", f.activeState, Activate, nil, ErrStaleEpoch, nil},
		{"below quorum", func(testing.TB) State { return f.state() }, Activate, nil, ErrQuorum, []string{"alice"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := c.from(t)
			o := f.order(t, c.kind)
			if c.edit != nil {
				c.edit(o)
			}
			signs := c.signs
			if signs == nil {
				signs = []string{"alice", "bob"}
			}
			so := f.open(t, f.sign(t, o, signs...))
			before := s.Marshal()
			n, eff, err := s.Apply(so, f.a, f.now)
			if !errors.Is(err, c.want) {
				t.Fatalf("err = %v, want %v", err, c.want)
			}
			if eff != nil || !bytes.Equal(n.Marshal(), before) || !bytes.Equal(s.Marshal(), before) {
				t.Error("a refused order changed the state or produced effects")
			}
		})
	}
}

// TestApplyDoesNotMutate checks the maps and slices of the input state
// are not shared with the output.
func TestApplyDoesNotMutate(t *testing.T) {
	f := testOrderAgreement(t)
	s := f.state()
	s.Orders = make([]string, 0, 10) // spare capacity: an append would write into it
	s.Revoked = make([]string, 0, 10)
	so := f.open(t, f.sign(t, f.order(t, Revoke), "alice", "bob"))
	n, _, err := s.Apply(so, f.a, f.now)
	if err != nil {
		t.Fatal(err)
	}
	n.Datasets["population"] = DatasetState{Phase: Active}
	n.Orders[0] = "changed"
	n.Revoked[0] = "changed"
	if s.Datasets["population"].Phase != Normal || len(s.Orders) != 0 || len(s.Revoked) != 0 || s.Orders[:1][0] == "changed" || s.Revoked[:1][0] == "changed" {
		t.Fatal("the new state shares memory with the old one")
	}
}

func TestHeartbeat(t *testing.T) {
	f := testOrderAgreement(t)
	armedAt := f.now.Add(2 * time.Hour)
	armed, _ := f.state().Tick(f.a, armedAt)

	// A heartbeat while normal moves LastHeartbeat only.
	n, eff, err := f.state().Heartbeat(f.homeW, f.now)
	if err != nil || len(eff) != 0 || !n.LastHeartbeat.Equal(f.now) || !reflect.DeepEqual(phases(n), phases(f.state())) {
		t.Fatalf("normal heartbeat: %v %v %+v", err, eff, n)
	}
	// Never backwards; an old heartbeat changes nothing.
	old, eff, err := armed.Heartbeat(f.homeW, f.now.Add(-time.Hour))
	if err != nil || eff != nil || !old.LastHeartbeat.Equal(armed.LastHeartbeat) || old.Datasets["web"].Phase != Armed {
		t.Fatalf("old heartbeat: %v %v %+v", err, eff, old)
	}
	// Armed datasets are disarmed.
	n, eff, err = armed.Heartbeat(f.homeW, armedAt)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(effectKinds(eff), []EffectKind{EffDisarmed, EffDisarmed, EffDisarmed}) || eff[0].Dataset != "population" {
		t.Fatalf("effects %+v", eff)
	}
	for name, p := range phases(n) {
		if p != Normal {
			t.Errorf("%s is %s after the heartbeat", name, p)
		}
	}
	if armed.Datasets["population"].Phase != Armed {
		t.Fatal("Heartbeat changed its input")
	}

	// After activate and return, an armed returned dataset goes back to
	// returned.
	ret := f.open(t, f.sign(t, f.order(t, Return), "alice", "bob"))
	s, _, err := f.activeState(t).Apply(ret, f.a, f.now)
	if err != nil {
		t.Fatal(err)
	}
	s, _ = s.Tick(f.a, armedAt)
	if s.Datasets["population"].Phase != Armed {
		t.Fatalf("returned dataset not armed: %+v", s.Datasets["population"])
	}
	s, _, err = s.Heartbeat(f.homeW, armedAt)
	if err != nil || s.Datasets["population"].Phase != Returned || s.Datasets["web"].Phase != Normal {
		t.Fatalf("disarm: %v %v", err, phases(s))
	}

	// Refused heartbeats.
	allActive := f.activeState(t)
	for _, ds := range []string{"secrets", "web"} {
		o := f.order(t, Activate)
		o.Dataset, o.Host = ds, "a"
		so := f.open(t, f.sign(t, o, "alice", "bob"))
		if allActive, _, err = allActive.Apply(so, f.a, f.now); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range []struct {
		name   string
		s      State
		writer string
	}{
		{"old writer after activation", allActive, f.homeW},
		{"the activated host's key", allActive, f.bW},
		{"a stranger", f.state(), f.bW},
		{"no key", f.state(), ""},
	} {
		n, eff, err := c.s.Heartbeat(c.writer, armedAt)
		if !errors.Is(err, ErrTransition) || !strings.Contains(err.Error(), "heartbeat from a key that writes no dataset") {
			t.Errorf("%s: %v", c.name, err)
		}
		if eff != nil || !n.LastHeartbeat.Equal(c.s.LastHeartbeat) {
			t.Errorf("%s: refused heartbeat changed the state", c.name)
		}
	}
	// Home still writes web: its heartbeat counts although population is active.
	if _, _, err := f.activeState(t).Heartbeat(f.homeW, armedAt); err != nil {
		t.Errorf("home heartbeat with one dataset active: %v", err)
	}
}

func TestTick(t *testing.T) {
	f := testOrderAgreement(t)
	s := f.state() // last heartbeat f.now-10m, threshold 1h
	if n, eff := s.Tick(f.a, f.now); eff != nil || !reflect.DeepEqual(n, s) {
		t.Fatalf("tick before the threshold: %v", eff)
	}
	edge := s.LastHeartbeat.Add(time.Hour)
	if _, eff := s.Tick(f.a, edge); eff != nil {
		t.Fatalf("tick exactly at the threshold armed: %v", eff)
	}
	// Only normal and returned datasets are armed; active ones are not.
	a := f.activeState(t)
	o := f.order(t, Activate)
	o.Dataset, o.Host = "web", "a"
	a, _, err := a.Apply(f.open(t, f.sign(t, o, "alice", "bob")), f.a, f.now)
	if err != nil {
		t.Fatal(err)
	}
	o = f.order(t, Return)
	o.Dataset = "web"
	a, _, err = a.Apply(f.open(t, f.sign(t, o, "alice", "bob")), f.a, f.now)
	if err != nil {
		t.Fatal(err)
	}
	// population active, secrets normal, web returned.
	n, eff := a.Tick(f.a, edge.Add(time.Second))
	want := map[string]Phase{"population": Active, "secrets": Armed, "web": Armed}
	if !reflect.DeepEqual(phases(n), want) {
		t.Fatalf("after tick: %v, want %v", phases(n), want)
	}
	if len(eff) != 2 || eff[0].Kind != EffArmed || eff[0].Dataset != "secrets" || eff[1].Dataset != "web" {
		t.Fatalf("effects %+v", eff)
	}
	if !strings.Contains(eff[0].Detail, "home silent for 1h0m1s") {
		t.Errorf("detail %q", eff[0].Detail)
	}
	if a.Datasets["secrets"].Phase != Normal {
		t.Fatal("Tick changed its input")
	}
	// Armed never activates: ticking on changes nothing.
	for _, later := range []time.Duration{time.Hour, 24 * time.Hour, 365 * 24 * time.Hour} {
		m, eff := n.Tick(f.a, edge.Add(later))
		if eff != nil || !reflect.DeepEqual(phases(m), want) || !reflect.DeepEqual(m.Datasets, n.Datasets) {
			t.Fatalf("tick %s later: %v %v", later, eff, phases(m))
		}
	}
}

func TestAdopt(t *testing.T) {
	f := testOrderAgreement(t)
	next := *f.a
	next.Version = 2
	next.Datasets = append(append([]Dataset(nil), f.a.Datasets...), Dataset{Name: "tax", Class: Sensitive, DataShards: 1, RetentionDays: 10})
	s := f.activeState(t)
	n, err := s.Adopt(&next)
	if err != nil {
		t.Fatal(err)
	}
	if n.Agreement != 2 || n.Datasets["tax"] != (DatasetState{Phase: Normal, Epoch: 1, Writer: f.homeW}) {
		t.Fatalf("adopted: %+v", n)
	}
	for name, d := range s.Datasets {
		if n.Datasets[name] != d {
			t.Errorf("dataset %s changed", name)
		}
	}
	if s.Agreement != 1 || len(s.Datasets) != 3 {
		t.Fatal("Adopt changed its input")
	}
	// Orders under v1 are now refused.
	so := f.open(t, f.sign(t, f.order(t, Grant), "alice", "bob"))
	if _, _, err := n.Apply(so, f.a, f.now); !errors.Is(err, ErrWrongAgreement) {
		t.Errorf("v1 order after adopting v2: %v", err)
	}
	// A dataset removed from the agreement keeps its state.
	fewer := next
	fewer.Version = 3
	fewer.Datasets = fewer.Datasets[:1]
	m, err := n.Adopt(&fewer)
	if err != nil || m.Datasets["web"] != n.Datasets["web"] {
		t.Fatalf("adopt v3: %v", err)
	}
	// Refusals.
	for _, v := range []uint64{1, 3} {
		bad := next
		bad.Version = v
		if _, err := s.Adopt(&bad); !errors.Is(err, ErrWrongAgreement) {
			t.Errorf("adopt v%d over v1: %v", v, err)
		}
	}
	if _, err := s.Adopt(nil); !errors.Is(err, ErrWrongAgreement) {
		t.Errorf("adopt nil: %v", err)
	}
	// Every dataset active: a new dataset has no writer yet.
	all := NewState(f.a, f.homeW, f.now)
	for name, d := range all.Datasets {
		d.Phase, d.Host, d.Snapshot, d.Epoch, d.Order = Active, "b", strings.Repeat("0f", 32), 2, strings.Repeat("11", 16)
		all.Datasets[name] = d
	}
	n, err = all.Adopt(&next)
	if err != nil || n.Datasets["tax"].Writer != "" {
		t.Fatalf("adopt with every dataset active: %v %+v", err, n.Datasets["tax"])
	}
	if err := n.MayWrite("tax", 1, f.homeW); !errors.Is(err, ErrWrongWriter) {
		t.Errorf("write to a dataset without writer: %v", err)
	}
}

func TestMayWrite(t *testing.T) {
	f := testOrderAgreement(t)
	s := f.activeState(t)
	order := s.Datasets["population"].Order
	cases := []struct {
		name    string
		dataset string
		epoch   uint64
		writer  string
		want    error
		msg     string
	}{
		{"the new writer", "population", 2, f.bW, nil, ""},
		{"home, still writing web", "web", 1, f.homeW, nil, ""},
		{"unknown dataset", "payroll", 1, f.homeW, ErrNotAllowed, "payroll"},
		{"seized home, old epoch", "population", 1, f.homeW, ErrStaleEpoch,
			"epoch 1 is stale: dataset population is at epoch 2 since order " + order + ", written by host b"},
		{"seized home claims the new epoch", "population", 2, f.homeW, ErrWrongWriter, "right epoch from the wrong writer"},
		{"seized home claims epoch+2", "population", 3, f.homeW, ErrEpochGap, "epoch 3 is ahead"},
		{"new writer on an old dataset epoch", "web", 2, f.bW, ErrEpochGap, ""},
		{"new writer on home's dataset", "web", 1, f.bW, ErrWrongWriter, ""},
		{"no writer", "population", 2, "", ErrWrongWriter, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := s.MayWrite(c.dataset, c.epoch, c.writer)
			if c.want == nil {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if !errors.Is(err, c.want) || !strings.Contains(err.Error(), c.msg) {
				t.Fatalf("err = %v, want %v mentioning %q", err, c.want, c.msg)
			}
			if strings.Contains(err.Error(), f.homeW[:40]) || strings.Contains(err.Error(), f.bW[:40]) {
				t.Error("error prints a key")
			}
		})
	}
}

func TestStateMarshal(t *testing.T) {
	f := testOrderAgreement(t)
	s := f.activeState(t)
	s.Revoked = []string{f.a.Custodian("carol").Fingerprint}
	b := s.Marshal()
	p, err := ParseState(b)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(p.Marshal(), b) || !reflect.DeepEqual(p.Datasets, s.Datasets) || !p.LastHeartbeat.Equal(s.LastHeartbeat) {
		t.Fatalf("round trip:\n%s\n%s", b, p.Marshal())
	}
	// A fresh state round-trips with an empty order list.
	if p, err := ParseState(f.state().Marshal()); err != nil || p.Orders == nil {
		t.Fatalf("fresh state: %v %+v", err, p)
	}

	good := string(b)
	order := s.Datasets["population"].Order
	cases := []struct{ name, text string }{
		{"empty", ""},
		{"not JSON", "{"},
		{"trailing data", good + "{}"},
		{"unknown field", strings.Replace(good, `"agreement"`, `"colour": 1, "agreement"`, 1)},
		{"agreement 0", strings.Replace(good, `"agreement": 1`, `"agreement": 0`, 1)},
		{"no datasets", `{"agreement": 1, "orders": [], "last_heartbeat": "2030-01-01T00:00:00Z"}`},
		{"bad phase", strings.Replace(good, `"phase": "active"`, `"phase": "asleep"`, 1)},
		{"epoch 0", strings.Replace(good, `"epoch": 2`, `"epoch": 0`, 1)},
		{"epoch 2 without order", strings.Replace(good, `"order": "`+order+`"`, `"order": ""`, 1)},
		{"bad writer", strings.Replace(good, f.homeW, "AAAA", 1)},
		{"active without host", strings.Replace(good, `"host": "b",`, "", 1)},
		{"duplicate order", strings.Replace(good, `"orders": [`, `"orders": ["`+order+`", `, 1)},
		{"bad revoked", strings.Replace(good, s.Revoked[0], "xyz", 1)},
		{"bad dataset name", strings.Replace(good, `"web"`, `"Web"`, 1)},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if c.text == good {
				t.Fatal("the edit changed nothing")
			}
			if _, err := ParseState([]byte(c.text)); !errors.Is(err, ErrMalformed) {
				t.Fatalf("ParseState = %v, want ErrMalformed", err)
			}
		})
	}
}

// TestRotateAfterReturn: a return leaves the dataset unwritable until a
// rotate order names its new keys; then home writes again.
func TestRotateAfterReturn(t *testing.T) {
	f := testOrderAgreement(t)
	ret := f.open(t, f.sign(t, f.order(t, Return), "alice", "bob"))
	s, _, err := f.activeState(t).Apply(ret, f.a, f.now)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.MayWrite("population", 3, f.homeW); !errors.Is(err, ErrRotateDue) {
		t.Fatalf("home writes a returned dataset before its keys are rotated: %v", err)
	}
	// A re-share alone (no new keys) does not end it.
	reshare := f.order(t, Rotate)
	reshare.Custodian, reshare.NewKeys, reshare.Dataset = "", "", "population"
	s2, _, err := s.Apply(f.open(t, f.sign(t, reshare, "alice", "bob")), f.a, f.now)
	if err != nil {
		t.Fatal(err)
	}
	if err := s2.MayWrite("population", 3, f.homeW); !errors.Is(err, ErrRotateDue) {
		t.Fatalf("after a re-share: %v", err)
	}
	rot := f.order(t, Rotate)
	rot.Custodian, rot.Dataset, rot.NewKeys = "", "population", strings.Repeat("5a", 16)
	s3, eff, err := s2.Apply(f.open(t, f.sign(t, rot, "alice", "bob")), f.a, f.now)
	if err != nil {
		t.Fatal(err)
	}
	d := s3.Datasets["population"]
	if d.Keys != rot.NewKeys || d.RotateDue || d.Phase != Returned || d.Epoch != 3 {
		t.Fatalf("after rotation: %+v", d)
	}
	if len(eff) != 1 || eff[0].Kind != EffRotate || eff[0].NewKeys != rot.NewKeys {
		t.Fatalf("effects %+v", eff)
	}
	if err := s3.MayWrite("population", 3, f.homeW); err != nil {
		t.Fatalf("home after rotation: %v", err)
	}
	// A later activation keeps the keys in force.
	act := f.order(t, Activate)
	act.Epoch = 4
	s4, _, err := s3.Apply(f.open(t, f.sign(t, act, "alice", "bob")), f.a, f.now)
	if err != nil {
		t.Fatal(err)
	}
	if s4.Datasets["population"].Keys != rot.NewKeys {
		t.Fatalf("activation dropped the keys: %+v", s4.Datasets["population"])
	}
}
