package check

import (
	"cmp"
	"context"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/zeebo/blake3"

	"github.com/embassy-project/embassy/internal/gov"
	"github.com/embassy-project/embassy/internal/shardstore"
	"github.com/embassy-project/embassy/internal/sig"
)

// The governance problem kinds. All are warnings, and none of them changes
// Report.Healthy (nor check's exit code): the exit code says whether the
// stored data is damaged or lost, and governance findings say who may
// write it; they are transient (a host catching up) or intended (armed,
// active). See docs/operator-guide.md, "What check says about governance".
const (
	KindGovDivergent   = "governance-divergent"   // hosts enforce different agreements or dataset states
	KindGovUnsynced    = "governance-unsynced"    // a host is still reading the orders it missed
	KindGovUnavailable = "governance-unavailable" // a host did not answer for its governance, or answered nonsense
	KindArmed          = "armed"                  // a dataset is armed at a host: home silent past the threshold
	KindAgreement      = "agreement-mismatch"     // HOME follows another agreement than the hosts enforce
)

// GovernanceKind reports whether a problem kind is a governance finding
// (one that does not count against Report.Healthy).
func GovernanceKind(kind string) bool {
	switch kind {
	case KindGovDivergent, KindGovUnsynced, KindGovUnavailable, KindArmed, KindAgreement:
		return true
	}
	return false
}

// GovReport is what a host node says of the guest's governance (GET
// /v1/guests/{g}/governance): unsigned, the host's own account; the orders
// behind it are in its log.
type GovReport struct {
	Agreement     uint64                `json:"agreement"`
	Hash          string                `json:"agreement_hash"`
	Synced        bool                  `json:"synced"`
	LastHeartbeat time.Time             `json:"last_heartbeat,omitzero"`
	Datasets      map[string]GovDataset `json:"datasets"`
}

// GovDataset is one dataset's governance state at a host.
type GovDataset struct {
	Phase  string `json:"phase"`
	Epoch  uint64 `json:"epoch"`
	Writer string `json:"writer"` // fingerprint of the epoch's writer key
	// Host and Snapshot are set while the dataset is active.
	Host     string `json:"host,omitempty"`
	Snapshot string `json:"snapshot,omitempty"`
	Order    string `json:"order,omitempty"` // the order that set the epoch
}

// Summary is a one-line account of the report, for the text output.
func (g *GovReport) Summary() string {
	synced := "synced"
	if !g.Synced {
		synced = "NOT synced (reading missed orders)"
	}
	var ds []string
	for _, name := range slices.Sorted(maps.Keys(g.Datasets)) {
		ds = append(ds, name+" "+describeDataset(g.Datasets[name], false))
	}
	return fmt.Sprintf("agreement v%d %s, %s; %s", g.Agreement, shortHash(g.Hash), synced, strings.Join(ds, "; "))
}

// HostGov is one host's answer, input to CompareGovernance. A nil Status
// means the host answered that no agreement is in force for the guest.
type HostGov struct {
	Host   string
	Status *GovReport
}

// HomeGov is what HOME follows, in the guest's own check.
type HomeGov struct {
	Agreement uint64 // 0: HOME follows no agreement
	Hash      string
	Writer    string // fingerprint of HOME's agent key
	Err       string // HOME's agreement file could not be read
}

// Note is an informational finding: not a problem, but worth saying.
type Note struct {
	Kind    string `json:"kind"` // "active" or "fenced"
	Dataset string `json:"dataset,omitempty"`
	Host    string `json:"host,omitempty"`
	Message string `json:"message"`
}

// wireGov is the JSON a host node serves for a guest's governance.
type wireGov struct {
	Guest     string    `json:"guest"`
	Host      string    `json:"host"`
	Agreement uint64    `json:"agreement"`
	Hash      string    `json:"agreement_hash"`
	Synced    bool      `json:"synced"`
	State     gov.State `json:"state"`
}

// ParseGovStatus reads a host's governance answer for guest (hex ID).
// Writer keys are reduced to their fingerprints.
func ParseGovStatus(b []byte, guestID string) (*GovReport, error) {
	var w wireGov
	if err := json.Unmarshal(b, &w); err != nil {
		return nil, fmt.Errorf("governance answer: %w", err)
	}
	if w.Guest != guestID {
		return nil, fmt.Errorf("governance answer is for guest %q, not %s", w.Guest, guestID)
	}
	if w.Agreement == 0 {
		return nil, errors.New("governance answer names no agreement version")
	}
	r := &GovReport{Agreement: w.Agreement, Hash: w.Hash, Synced: w.Synced, LastHeartbeat: w.State.LastHeartbeat.UTC(),
		Datasets: map[string]GovDataset{}}
	for name, d := range w.State.Datasets {
		r.Datasets[name] = GovDataset{Phase: string(d.Phase), Epoch: d.Epoch, Writer: writerID(d.Writer),
			Host: d.Host, Snapshot: d.Snapshot, Order: d.Order}
	}
	return r, nil
}

// writerID names a writer key (base64 sig.PublicKey) by its fingerprint;
// a key that does not parse by a hash of its text, so that two different
// ones still compare different.
func writerID(w string) string {
	if w == "" {
		return ""
	}
	if b, err := base64.StdEncoding.DecodeString(w); err == nil {
		if pk, err := sig.ParsePublicKey(b); err == nil {
			return pk.Fingerprint()
		}
	}
	h := blake3.Sum256([]byte(w))
	return "unparseable-" + hex.EncodeToString(h[:8])
}

// WriterID is the fingerprint CompareGovernance compares writers by, for
// HomeGov.Writer.
func WriterID(pk sig.PublicKey) string { return pk.Fingerprint() }

// governanceOf is a host node's client that reports the guest's governance.
type governanceOf interface {
	Governance(ctx context.Context) ([]byte, error)
}

// auditGovernance asks every available host node for the guest's
// governance, records it in the host's report and compares the answers.
func auditGovernance(ctx context.Context, o Options, rep *Report) {
	type answer struct {
		asked  bool
		status *GovReport
		err    error
	}
	answers := make([]answer, len(o.Hosts))
	var wg sync.WaitGroup
	for i, h := range o.Hosts {
		g, ok := h.Store.(governanceOf)
		if !ok || !rep.Hosts[i].Available {
			continue
		}
		answers[i].asked = true
		wg.Add(1)
		go func() {
			defer wg.Done()
			b, err := g.Governance(ctx)
			switch {
			case errors.Is(err, shardstore.ErrNotFound):
			case err != nil:
				answers[i].err = err
			default:
				answers[i].status, answers[i].err = ParseGovStatus(b, o.Identity.Guest.String())
			}
		}()
	}
	wg.Wait()
	var hs []HostGov
	for i, a := range answers {
		if !a.asked {
			continue
		}
		name := o.Hosts[i].Name
		if a.err != nil {
			rep.Problems = append(rep.Problems, Problem{Severity: Warning, Kind: KindGovUnavailable, Host: name,
				Message: fmt.Sprintf("host %s governance: %v", name, a.err)})
			continue
		}
		if a.status != nil && len(o.Datasets) > 0 {
			for n := range a.status.Datasets {
				if !slices.Contains(o.Datasets, n) {
					delete(a.status.Datasets, n)
				}
			}
		}
		rep.Hosts[i].Governance = a.status
		hs = append(hs, HostGov{Host: name, Status: a.status})
	}
	probs, notes := CompareGovernance(hs, o.Home)
	rep.Problems = append(rep.Problems, probs...)
	rep.Notes = append(rep.Notes, notes...)
}

// CompareGovernance compares what the hosts (in the order given) say of the
// guest's governance with each other and, in the guest's own check (home
// not nil), with what HOME follows. It does no I/O.
func CompareGovernance(hs []HostGov, home *HomeGov) ([]Problem, []Note) {
	var probs []Problem
	var notes []Note
	warn := func(kind, dataset, host, format string, args ...any) {
		probs = append(probs, Problem{Severity: Warning, Kind: kind, Dataset: dataset, Host: host, Message: fmt.Sprintf(format, args...)})
	}
	var with []HostGov
	var without []string
	for _, h := range hs {
		if h.Status == nil {
			without = append(without, h.Host)
		} else {
			with = append(with, h)
		}
	}
	if home != nil && home.Err != "" {
		warn(KindAgreement, "", "", "HOME's agreement: %s", home.Err)
	}
	if len(with) == 0 {
		if home != nil && home.Err == "" && home.Agreement != 0 && len(without) > 0 {
			warn(KindAgreement, "", "", "HOME follows agreement v%d (%s) but no host enforces an agreement for this guest (%s answered none): install it at each host (embassy host agreement install)",
				home.Agreement, shortHash(home.Hash), hostList(without))
		}
		return probs, notes
	}

	// The agreements the hosts enforce: grouped by version and hash.
	type agreement struct {
		version uint64
		hash    string
		hosts   []string
	}
	var groups []*agreement
	for _, h := range with {
		i := slices.IndexFunc(groups, func(g *agreement) bool { return g.version == h.Status.Agreement && g.hash == h.Status.Hash })
		if i < 0 {
			groups = append(groups, &agreement{version: h.Status.Agreement, hash: h.Status.Hash})
			i = len(groups) - 1
		}
		groups[i].hosts = append(groups[i].hosts, h.Host)
	}
	slices.SortStableFunc(groups, func(a, b *agreement) int {
		if a.version != b.version {
			return -cmp.Compare(a.version, b.version) // newest first
		}
		return strings.Compare(a.hash, b.hash)
	})
	newest := groups[0]
	for _, g := range groups[1:] {
		for _, h := range g.hosts {
			if g.version < newest.version {
				warn(KindGovDivergent, "", h, "host %s enforces agreement v%d (%s) but %s v%d (%s): host %s has not caught up yet with the newer version",
					h, g.version, shortHash(g.hash), enforce(newest.hosts), newest.version, shortHash(newest.hash), h)
			}
		}
		if g.version == newest.version {
			warn(KindGovDivergent, "", single(g.hosts), "%s agreement v%d as %s but %s v%d as %s: two different texts carry the same version; find out which one the custodians signed",
				enforce(g.hosts), g.version, orNone(g.hash), enforce(newest.hosts), newest.version, orNone(newest.hash))
		}
	}
	for _, h := range without {
		warn(KindGovDivergent, "", h, "host %s has no agreement in force for this guest but %s v%d (%s): it fences no write; install the agreement there (embassy host agreement install)",
			h, enforce(newest.hosts), newest.version, shortHash(newest.hash))
	}

	// HOME against the hosts.
	if home != nil && home.Err == "" {
		for _, g := range groups {
			if g.version == home.Agreement && g.hash == home.Hash {
				continue
			}
			var what string
			switch {
			case home.Agreement == 0:
				what = "HOME's agent checks no placement before writing; run embassy agreement use --home HOME with the signed file"
			case home.Agreement < g.version:
				what = "HOME is behind: run embassy agreement use --home HOME with the version in force"
			case home.Agreement > g.version:
				what = fmt.Sprintf("%s not installed the newer version yet (embassy host agreement install)", hasHave(g.hosts))
			default:
				what = fmt.Sprintf("two different texts carry the same version (HOME's is %s, the hosts' %s); find out which one the custodians signed", home.Hash, orNone(g.hash))
			}
			homeIs := "no agreement"
			if home.Agreement != 0 {
				homeIs = fmt.Sprintf("agreement v%d (%s)", home.Agreement, shortHash(home.Hash))
			}
			warn(KindAgreement, "", single(g.hosts), "HOME follows %s but %s v%d (%s): %s", homeIs, enforce(g.hosts), g.version, shortHash(g.hash), what)
		}
	}

	// Hosts still reading the orders they missed.
	for _, h := range with {
		if !h.Status.Synced {
			warn(KindGovUnsynced, "", h.Host, "host %s has not finished reading the orders it missed from the other hosts' logs: it refuses writes until it has, and its state may be behind", h.Host)
		}
	}

	// Each dataset across the hosts.
	names := map[string]bool{}
	for _, h := range with {
		for n := range h.Status.Datasets {
			names[n] = true
		}
	}
	for _, name := range slices.Sorted(maps.Keys(names)) {
		type view struct {
			host string
			d    GovDataset
		}
		var views []view
		var missing []string
		var top uint64
		for _, h := range with {
			d, ok := h.Status.Datasets[name]
			if !ok {
				missing = append(missing, h.Host)
				continue
			}
			views = append(views, view{h.Host, d})
			top = max(top, d.Epoch)
		}
		// The hosts at the newest epoch, grouped by what they say of it.
		type stance struct {
			d     GovDataset
			hosts []string
		}
		var stances []*stance
		for _, v := range views {
			if v.d.Epoch != top {
				continue
			}
			i := slices.IndexFunc(stances, func(s *stance) bool { return sameStance(s.d, v.d) })
			if i < 0 {
				stances = append(stances, &stance{d: v.d})
				i = len(stances) - 1
			}
			stances[i].hosts = append(stances[i].hosts, v.host)
		}
		lead := stances[0]
		for _, v := range views {
			if v.d.Epoch < top {
				warn(KindGovDivergent, name, v.host, "dataset %s: host %s is at epoch %d (%s) but %s %s at epoch %d (%s): host %s has not caught up yet with the orders the others carried out",
					name, v.host, v.d.Epoch, describeDataset(v.d, true), hostList(lead.hosts), isAre(lead.hosts), top, describeDataset(lead.d, true), v.host)
			}
		}
		if len(stances) > 1 {
			var parts []string
			for _, s := range stances {
				parts = append(parts, fmt.Sprintf("%s: %s", hostList(s.hosts), describeDataset(s.d, true)))
			}
			warn(KindGovDivergent, name, "", "dataset %s: the hosts disagree at epoch %d (%s): they carried out different orders for the same epoch; compare the orders in their logs",
				name, top, strings.Join(parts, "; "))
		}
		for _, h := range missing {
			warn(KindGovDivergent, name, h, "dataset %s: host %s has no state for it but %s %s at epoch %d", name, h, hostList(lead.hosts), isAre(lead.hosts), top)
		}
		for _, v := range views {
			if v.d.Phase != string(gov.Armed) {
				continue
			}
			var since string
			for _, h := range with {
				if h.Host == v.host {
					since = "since " + h.Status.LastHeartbeat.Format(time.RFC3339)
					if h.Status.LastHeartbeat.IsZero() {
						since = "ever"
					}
				}
			}
			warn(KindArmed, name, v.host, "dataset %s is armed at host %s: it has heard no heartbeat from home %s, longer than the agreement allows; the custodians may now sign an activation order (arming activates nothing). If home is alive, make sure embassy heartbeat runs",
				name, v.host, since)
		}
		if len(stances) > 1 {
			continue
		}
		d := lead.d
		fenced := home != nil && home.Writer != "" && d.Writer != home.Writer
		switch {
		case d.Phase == string(gov.Active):
			msg := fmt.Sprintf("dataset %s is active on host %s at epoch %d (order %s, continuing from snapshot %s; writer key %s)", name, d.Host, d.Epoch, orNone(d.Order), orNone(d.Snapshot), orNone(d.Writer))
			if fenced {
				msg += ": HOME is fenced out of it; only a return order hands writing back"
			}
			notes = append(notes, Note{Kind: "active", Dataset: name, Host: d.Host, Message: msg})
		case fenced:
			notes = append(notes, Note{Kind: "fenced", Dataset: name, Message: fmt.Sprintf("dataset %s: its writer at epoch %d (order %s) is key %s, not HOME's agent key: HOME is fenced out of it",
				name, d.Epoch, orNone(d.Order), orNone(d.Writer))})
		}
	}
	return probs, notes
}

// sameStance reports whether two hosts say the same of a dataset at one
// epoch. Armed is each host's own view of home's heartbeats (and is
// reported by itself), so it equals the phase it was entered from.
func sameStance(a, b GovDataset) bool {
	pa, pb := a.Phase, b.Phase
	if pa == string(gov.Armed) || pb == string(gov.Armed) {
		pa, pb = "", ""
	}
	return pa == pb && a.Epoch == b.Epoch && a.Writer == b.Writer && a.Host == b.Host && a.Snapshot == b.Snapshot && a.Order == b.Order
}

func describeDataset(d GovDataset, long bool) string {
	s := fmt.Sprintf("epoch %d %s", d.Epoch, d.Phase)
	if long {
		s = d.Phase
	}
	if d.Phase == string(gov.Active) {
		s += " on host " + d.Host
	}
	if long {
		s += ", writer " + orNone(d.Writer)
		if d.Order != "" {
			s += ", order " + d.Order
		}
	}
	return s
}

func shortHash(h string) string {
	if h == "" {
		return "no hash"
	}
	if p, rest, ok := strings.Cut(h, ":"); ok && len(rest) > 16 {
		return p + ":" + rest[:16]
	}
	return h
}

func orNone(s string) string {
	if s == "" {
		return "(none)"
	}
	return s
}

func hostList(hs []string) string {
	if len(hs) == 1 {
		return "host " + hs[0]
	}
	return "hosts " + strings.Join(hs, ", ")
}

func isAre(hs []string) string {
	if len(hs) == 1 {
		return "is"
	}
	return "are"
}

func hasHave(hs []string) string {
	if len(hs) == 1 {
		return "host " + hs[0] + " has"
	}
	return "hosts " + strings.Join(hs, ", ") + " have"
}

// single is the host a problem is about when there is exactly one.
func single(hs []string) string {
	if len(hs) == 1 {
		return hs[0]
	}
	return ""
}

// enforce is "host a enforces" or "hosts a, b enforce".
func enforce(hs []string) string {
	if len(hs) == 1 {
		return "host " + hs[0] + " enforces"
	}
	return "hosts " + strings.Join(hs, ", ") + " enforce"
}
