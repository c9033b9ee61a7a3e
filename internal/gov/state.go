package gov

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"slices"
	"time"

	"github.com/embassy-project/embassy/internal/wire"
)

// EffectKind names what a host must do after a transition.
type EffectKind string

// The effects (docs/spec/governance-state.md says which fields each sets).
const (
	// EffFence: Dataset has a new Epoch and Writer; hosts refuse writes
	// from older epochs and from any other writer (State.MayWrite).
	EffFence EffectKind = "fence"
	// EffActivated: Host takes over writing Dataset from Snapshot in Epoch
	// with Writer; custodians release the dataset key to Host.
	EffActivated EffectKind = "activated"
	// EffReturned: writing Dataset goes back to Writer in Epoch; the
	// dataset key is to be rotated.
	EffReturned EffectKind = "returned"
	// EffArmed: home has been silent too long; Dataset is armed. Log and
	// notify; arming never activates anything.
	EffArmed EffectKind = "armed"
	// EffDisarmed: home spoke again; Dataset is no longer armed.
	EffDisarmed EffectKind = "disarmed"
	// EffExpire: objects of Dataset written before Before may be deleted.
	EffExpire EffectKind = "expire"
	// EffRevoked: Custodian's signatures no longer count.
	EffRevoked EffectKind = "revoked"
	// EffRotate: Custodian's keys are replaced by NewKeys and/or Dataset's
	// key is re-shared.
	EffRotate EffectKind = "rotate"
	// EffGrant: the key with fingerprint Reader may read Dataset.
	EffGrant EffectKind = "grant"
	// EffAmend: the host must adopt the agreement whose text hash is Text
	// (State.Adopt) before it carries out further orders.
	EffAmend EffectKind = "amend"
)

// Effect is something a host must carry out (and log) after a transition.
// Fields a kind does not use are empty.
type Effect struct {
	Kind      EffectKind `json:"kind"`
	Dataset   string     `json:"dataset,omitempty"`
	Epoch     uint64     `json:"epoch,omitempty"`
	Writer    string     `json:"writer,omitempty"` // base64 sig.PublicKey
	Host      string     `json:"host,omitempty"`
	Snapshot  string     `json:"snapshot,omitempty"`
	Custodian string     `json:"custodian,omitempty"`
	Before    time.Time  `json:"before,omitzero"`
	Text      string     `json:"text,omitempty"`     // amend: "blake3:" + hex of the new agreement's text
	Detail    string     `json:"detail,omitempty"`   // a sentence for logs and notifications
	Order     string     `json:"order,omitempty"`    // hex ID of the order behind it; "" for heartbeats and ticks
	Reader    string     `json:"reader,omitempty"`   // grant: the reader key fingerprint
	NewKeys   string     `json:"new_keys,omitempty"` // rotate: the new keys' fingerprint (custodian or dataset)
}

// NewState returns the state of a guest's governance when agreement a first
// comes into force: every dataset Normal at epoch 1, written by homeWriter
// (base64 of the home agent's sig.PublicKey); home last heard from at now.
func NewState(a *Agreement, homeWriter string, now time.Time) State {
	s := State{
		Agreement:     a.Version,
		Datasets:      make(map[string]DatasetState, len(a.Datasets)),
		Orders:        []string{},
		LastHeartbeat: now,
	}
	for _, d := range a.Datasets {
		s.Datasets[d.Name] = DatasetState{Phase: Normal, Epoch: 1, Writer: homeWriter}
	}
	return s
}

// clone returns a deep copy of s.
func (s State) clone() State {
	c := s
	c.Datasets = make(map[string]DatasetState, len(s.Datasets))
	maps.Copy(c.Datasets, s.Datasets)
	c.Orders = slices.Clone(s.Orders)
	if c.Orders == nil {
		c.Orders = []string{}
	}
	c.Revoked = slices.Clone(s.Revoked)
	return c
}

// Dataset returns dataset name's state.
func (s State) Dataset(name string) (DatasetState, bool) {
	d, ok := s.Datasets[name]
	return d, ok
}

// Apply checks the opened order so (Check) and returns the state after
// carrying it out and the effects the host must carry out. It never
// changes s. The host calls it only after the order is in its log under a
// checkpoint cosigned by the witness threshold (log before act).
func (s State) Apply(so *SignedOrder, a *Agreement, now time.Time) (State, []Effect, error) {
	if err := Check(so, a, s, now); err != nil {
		return s, nil, err
	}
	o := so.Order
	id := o.IDString()
	n := s.clone()
	n.Orders = append(n.Orders, id)
	var eff []Effect
	switch o.Kind {
	case Activate:
		keys := s.Datasets[o.Dataset].Keys
		n.Datasets[o.Dataset] = DatasetState{Phase: Active, Epoch: o.Epoch, Writer: o.Writer, Host: o.Host, Snapshot: o.Snapshot, Order: id, Keys: keys}
		eff = append(eff,
			Effect{Kind: EffFence, Dataset: o.Dataset, Epoch: o.Epoch, Writer: o.Writer, Host: o.Host, Order: id,
				Detail: fmt.Sprintf("dataset %s: epoch %d, written by host %s (key %s); older epochs and other writers are refused", o.Dataset, o.Epoch, o.Host, writerFingerprint(o.Writer))},
			Effect{Kind: EffActivated, Dataset: o.Dataset, Epoch: o.Epoch, Writer: o.Writer, Host: o.Host, Snapshot: o.Snapshot, Order: id,
				Detail: fmt.Sprintf("dataset %s activated on host %s from snapshot %s at epoch %d: %s", o.Dataset, o.Host, o.Snapshot, o.Epoch, o.Reason)})
	case Return:
		n.Datasets[o.Dataset] = DatasetState{Phase: Returned, Epoch: o.Epoch, Writer: o.Writer, Order: id, Keys: s.Datasets[o.Dataset].Keys, RotateDue: true}
		eff = append(eff,
			Effect{Kind: EffFence, Dataset: o.Dataset, Epoch: o.Epoch, Writer: o.Writer, Order: id,
				Detail: fmt.Sprintf("dataset %s: epoch %d, written by key %s; older epochs and other writers are refused", o.Dataset, o.Epoch, writerFingerprint(o.Writer))},
			Effect{Kind: EffReturned, Dataset: o.Dataset, Epoch: o.Epoch, Writer: o.Writer, Order: id,
				Detail: fmt.Sprintf("dataset %s returned to key %s at epoch %d (rotate its key): %s", o.Dataset, writerFingerprint(o.Writer), o.Epoch, o.Reason)})
	case Expire:
		eff = append(eff, Effect{Kind: EffExpire, Dataset: o.Dataset, Before: o.Before, Order: id,
			Detail: fmt.Sprintf("objects of dataset %s written before %s may be deleted: %s", o.Dataset, formatOrderTime(o.Before), o.Reason)})
	case Grant:
		eff = append(eff, Effect{Kind: EffGrant, Dataset: o.Dataset, Reader: o.Reader, Order: id,
			Detail: fmt.Sprintf("reader %s may read dataset %s: %s", o.Reader, o.Dataset, o.Reason)})
	case Rotate:
		if o.Dataset != "" && o.NewKeys != "" {
			d := n.Datasets[o.Dataset]
			d.Keys, d.RotateDue = o.NewKeys, false
			n.Datasets[o.Dataset] = d
		}
		eff = append(eff, Effect{Kind: EffRotate, Dataset: o.Dataset, Custodian: o.Custodian, NewKeys: o.NewKeys, Order: id,
			Detail: rotateDetail(o)})
	case Amend:
		eff = append(eff, Effect{Kind: EffAmend, Text: o.Text, Order: id,
			Detail: fmt.Sprintf("agreement v%d is to be replaced by the agreement with text %s: %s", o.Agreement, o.Text, o.Reason)})
	case Revoke:
		c := a.Custodian(o.Custodian)
		n.Revoked = append(n.Revoked, c.Fingerprint)
		eff = append(eff, Effect{Kind: EffRevoked, Custodian: c.Name, Order: id,
			Detail: fmt.Sprintf("custodian %s (keys %s) revoked: %s", c.Name, c.Fingerprint, o.Reason)})
	}
	return n, eff, nil
}

func rotateDetail(o *Order) string {
	switch {
	case o.Custodian != "" && o.Dataset != "":
		return fmt.Sprintf("custodian %s's keys are replaced by %s and dataset %s's key is re-shared: %s", o.Custodian, o.NewKeys, o.Dataset, o.Reason)
	case o.Custodian != "":
		return fmt.Sprintf("custodian %s's keys are replaced by %s: %s", o.Custodian, o.NewKeys, o.Reason)
	}
	return fmt.Sprintf("dataset %s's key is re-shared: %s", o.Dataset, o.Reason)
}

// writerFingerprint names a writer key in messages without printing it.
func writerFingerprint(w string) string {
	if w == "" {
		return "(none)"
	}
	pk, err := parseWriter(w)
	if err != nil {
		return "(unparseable key)"
	}
	return pk.Fingerprint()
}

// Heartbeat records a heartbeat from home signed by writer (the shell
// checked the signature) at time at. It counts only if writer is the
// current writer of at least one dataset that is not Active; otherwise it
// is ErrTransition (a fenced-out home, or a stranger). A counted heartbeat
// moves LastHeartbeat forward (never back) and disarms every Armed dataset
// (to Returned if an order set its epoch, else Normal). A heartbeat not
// newer than LastHeartbeat changes nothing.
func (s State) Heartbeat(writer string, at time.Time) (State, []Effect, error) {
	counts := false
	for _, d := range s.Datasets {
		if d.Phase != Active && writer != "" && d.Writer == writer {
			counts = true
			break
		}
	}
	if !counts {
		return s, nil, fmt.Errorf("%w: heartbeat from a key that writes no dataset (key %s); a fenced-out home is refused", ErrTransition, writerFingerprint(writer))
	}
	if !at.After(s.LastHeartbeat) {
		return s, nil, nil
	}
	n := s.clone()
	n.LastHeartbeat = at
	var eff []Effect
	for _, name := range slices.Sorted(maps.Keys(n.Datasets)) {
		d := n.Datasets[name]
		if d.Phase != Armed {
			continue
		}
		d.Phase = Normal
		if d.Order != "" {
			d.Phase = Returned
		}
		n.Datasets[name] = d
		eff = append(eff, Effect{Kind: EffDisarmed, Dataset: name, Epoch: d.Epoch, Writer: d.Writer,
			Detail: fmt.Sprintf("dataset %s disarmed: home heartbeat at %s", name, at.UTC().Format(time.RFC3339))})
	}
	return n, eff, nil
}

// Tick arms the hosts when home has been silent for longer than the
// agreement's activation threshold: every Normal or Returned dataset
// becomes Armed (EffArmed). Active datasets are not armed, and arming
// never activates anything: only an activate order does.
func (s State) Tick(a *Agreement, now time.Time) (State, []Effect) {
	silent := now.Sub(s.LastHeartbeat)
	if silent <= a.Activation.HomeSilent() {
		return s, nil
	}
	n := s.clone()
	var eff []Effect
	for _, name := range slices.Sorted(maps.Keys(n.Datasets)) {
		d := n.Datasets[name]
		if d.Phase != Normal && d.Phase != Returned {
			continue
		}
		d.Phase = Armed
		n.Datasets[name] = d
		eff = append(eff, Effect{Kind: EffArmed, Dataset: name, Epoch: d.Epoch, Writer: d.Writer,
			Detail: fmt.Sprintf("dataset %s armed: home silent for %s (last heartbeat %s), more than the agreement's %s; custodians decide whether to activate",
				name, silent.Truncate(time.Second), s.LastHeartbeat.UTC().Format(time.RFC3339), a.Activation.HomeSilent())})
	}
	if len(eff) == 0 {
		return s, nil
	}
	return n, eff
}

// Adopt moves s to agreement next after an amend order: next.Version must be
// s.Agreement+1 (ErrWrongAgreement). Existing dataset states are kept, also
// of datasets next no longer lists, so that a dataset removed and added
// again never falls back to an older epoch. A dataset new in next starts
// Normal at epoch 1, written by the writer of the first (by name) existing
// dataset that is not Active (the home writer); if every dataset is Active
// its writer is "" and it accepts no write until an order names one.
func (s State) Adopt(next *Agreement) (State, error) {
	if next == nil {
		return s, fmt.Errorf("%w: no agreement to adopt", ErrWrongAgreement)
	}
	if next.Version != s.Agreement+1 {
		return s, fmt.Errorf("%w: agreement v%d cannot follow v%d; versions go up by one", ErrWrongAgreement, next.Version, s.Agreement)
	}
	home := ""
	for _, name := range slices.Sorted(maps.Keys(s.Datasets)) {
		if d := s.Datasets[name]; d.Phase != Active {
			home = d.Writer
			break
		}
	}
	n := s.clone()
	n.Agreement = next.Version
	for _, d := range next.Datasets {
		if _, ok := n.Datasets[d.Name]; !ok {
			n.Datasets[d.Name] = DatasetState{Phase: Normal, Epoch: 1, Writer: home}
		}
	}
	return n, nil
}

// MayWrite is the fencing rule a host applies to every write: it carries
// the dataset, the writer's epoch and the writer's key (base64 of its
// sig.PublicKey). Unknown dataset: ErrNotAllowed; an older epoch:
// ErrStaleEpoch; a newer one: ErrEpochGap; the right epoch from any key
// but the epoch's writer: ErrWrongWriter.
func (s State) MayWrite(dataset string, epoch uint64, writer string) error {
	d, ok := s.Datasets[dataset]
	if !ok {
		return fmt.Errorf("%w: dataset %q is not governed here", ErrNotAllowed, dataset)
	}
	switch {
	case epoch < d.Epoch:
		return fmt.Errorf("%w: epoch %d is stale: dataset %s is at epoch %d since order %s, written by %s",
			ErrStaleEpoch, epoch, dataset, d.Epoch, orderOrStart(d.Order), describeWriter(d))
	case epoch > d.Epoch:
		return fmt.Errorf("%w: epoch %d is ahead of dataset %s's epoch %d (has this host missed an order? fetch it from the other hosts' logs)",
			ErrEpochGap, epoch, dataset, d.Epoch)
	case d.Writer == "" || writer != d.Writer:
		return fmt.Errorf("%w: right epoch from the wrong writer: dataset %s at epoch %d is written by %s, not key %s",
			ErrWrongWriter, dataset, d.Epoch, describeWriter(d), writerFingerprint(writer))
	case d.RotateDue:
		return fmt.Errorf("%w: dataset %s was returned by order %s from a host that held its key: it is written again only under new keys (embassy dataset rotate, then a rotate order naming the new identity)",
			ErrRotateDue, dataset, d.Order)
	}
	return nil
}

func orderOrStart(id string) string {
	if id == "" {
		return "(none: the agreement's start)"
	}
	return id
}

func describeWriter(d DatasetState) string {
	if d.Phase == Active {
		return fmt.Sprintf("host %s (key %s)", d.Host, writerFingerprint(d.Writer))
	}
	return "key " + writerFingerprint(d.Writer)
}

// Marshal returns the state as indented JSON (the host persists it).
func (s State) Marshal() []byte {
	c := s.clone()
	b, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		panic(err) // strings, numbers and times only
	}
	return append(b, '\n')
}

// ParseState parses and validates a state written by Marshal. Failures wrap
// ErrMalformed.
func ParseState(b []byte) (State, error) {
	var s State
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&s); err != nil {
		return State{}, malformed("governance state: %v", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return State{}, malformed("governance state: data after the JSON object")
	}
	if err := s.validate(); err != nil {
		return State{}, err
	}
	if s.Orders == nil {
		s.Orders = []string{}
	}
	return s, nil
}

// validate checks a state's invariants.
func (s State) validate() error {
	bad := func(format string, args ...any) error { return malformed("governance state: "+format, args...) }
	if s.Agreement == 0 {
		return bad("agreement version is 0")
	}
	if s.Datasets == nil {
		return bad("no datasets")
	}
	for name, d := range s.Datasets {
		if !wire.ValidName(name) {
			return bad("dataset name %q is not valid", name)
		}
		switch d.Phase {
		case Normal, Armed, Active, Returned:
		default:
			return bad("dataset %s: unknown phase %q", name, d.Phase)
		}
		if d.Epoch == 0 {
			return bad("dataset %s: epoch 0", name)
		}
		if d.Writer != "" {
			if _, err := parseWriter(d.Writer); err != nil {
				return bad("dataset %s: writer: %v", name, err)
			}
		}
		if (d.Phase == Active) != (d.Host != "") || (d.Phase == Active) != (d.Snapshot != "") {
			return bad("dataset %s: host and snapshot are set exactly when active", name)
		}
		if d.Host != "" && !wire.ValidName(d.Host) {
			return bad("dataset %s: host name %q is not valid", name, d.Host)
		}
		if d.Snapshot != "" {
			if _, err := parseHex(d.Snapshot, 32); err != nil {
				return bad("dataset %s: snapshot: %v", name, err)
			}
		}
		if (d.Order == "") != (d.Epoch == 1) {
			return bad("dataset %s: an order sets every epoch after 1, and none sets epoch 1", name)
		}
		if d.Order != "" {
			if _, err := parseHex(d.Order, 16); err != nil {
				return bad("dataset %s: order: %v", name, err)
			}
		}
	}
	for _, list := range []struct {
		what string
		ids  []string
	}{{"orders", s.Orders}, {"revoked", s.Revoked}} {
		seen := make(map[string]bool, len(list.ids))
		for _, id := range list.ids {
			if _, err := parseHex(id, 16); err != nil {
				return bad("%s: %q: %v", list.what, id, err)
			}
			if seen[id] {
				return bad("%s: %s listed twice", list.what, id)
			}
			seen[id] = true
		}
	}
	return nil
}
