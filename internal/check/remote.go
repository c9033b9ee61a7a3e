package check

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io/fs"
	"sort"
	"sync"
	"time"

	"github.com/embassy-project/embassy/internal/ledger"
	"github.com/embassy-project/embassy/internal/proof"
	"github.com/embassy-project/embassy/internal/shardstore"
	"github.com/embassy-project/embassy/internal/transport"
	"github.com/embassy-project/embassy/internal/wire"
	"github.com/embassy-project/embassy/internal/witness"
)

// Audit configures the audits of remote hosts (host nodes): their logs and
// storage proofs. Local-directory hosts have neither.
type Audit struct {
	// Loss and Confidence are the storage-proof detection target: a host
	// that lost a fraction Loss of a guest's shard bytes is caught with
	// probability Confidence (defaults 1% and 99.99%, which need 917 items).
	Loss, Confidence float64
	// Trust remembers the last log checkpoint accepted per host; nil
	// remembers nothing (each check then only compares the host's current
	// checkpoint with its cosigned one).
	Trust TrustStore
	// Evidence keeps each storage-proof challenge and the host's signed
	// receipt (with the answer's slices only when the proof failed); nil
	// keeps nothing.
	Evidence func(host string, challenge, receipt []byte) error
	// WitnessThreshold is how many witnesses (the other hosts and the
	// guest's own) must have cosigned a host's checkpoint; 0 means
	// min(2, witnesses).
	WitnessThreshold int
	// Witnesses are the guest's own witnesses.
	Witnesses []Witness
	// Retention, if positive, is the guest's retention: every shard a
	// snapshot taken at T references must be kept by a host node that
	// enforces retention until at least transport.RetainUntil(T, Retention).
	Retention time.Duration
	// Now is the challenge time (default time.Now()).
	Now time.Time
}

// TrustStore keeps what an auditor trusts about each host's log.
type TrustStore interface {
	Load(host string) (ledger.Trusted, error) // zero Trusted if none
	Save(host string, t ledger.Trusted) error
}

// LogReport is what the audit of a host's log found.
type LogReport struct {
	Origin        string   `json:"origin"`
	Size          uint64   `json:"size"`
	CosignedSize  uint64   `json:"cosigned_size"`
	Witnesses     []string `json:"witnesses"`
	Threshold     int      `json:"witness_threshold"`
	TrustedBefore uint64   `json:"trusted_size_before"`
}

// Unwitnessed is how many entries of the current checkpoint no witnessed
// checkpoint covers yet.
func (l *LogReport) Unwitnessed() uint64 {
	if l.CosignedSize >= l.Size {
		return 0
	}
	return l.Size - l.CosignedSize
}

// ProofReport is the outcome of a storage proof.
type ProofReport struct {
	Items      int     `json:"items"`
	OK         int     `json:"ok"`
	Missing    int     `json:"missing"`
	Bad        int     `json:"bad"`
	Shards     int     `json:"shards"`
	Loss       float64 `json:"target_loss"`
	Confidence float64 `json:"confidence"` // chance this many items catch Loss
	LogIndex   uint64  `json:"log_index"`  // where the host logged its answer
}

// remoteHost is what check needs of a host node's client.
type remoteHost interface {
	Prove(ctx context.Context, challenge []byte) ([]byte, error)
	Fetch(ctx context.Context, path string) ([]byte, error)
	WitnessView(ctx context.Context, origin string) ([]byte, error)
	Descriptor() *transport.Descriptor
}

// witnessRef is a witness of a host's log: another host, or one of the
// guest's own witnesses.
type witnessRef struct {
	named witness.Named
	host  string                                                   // label in problems
	view  func(ctx context.Context, origin string) ([]byte, error) // nil when unavailable
}

// Witness is one of the guest's own witnesses (embassy witness serve),
// counted in every host log's witness policy besides the other hosts.
type Witness struct {
	Name      string // label, e.g. "home"
	Verifiers []string
	// View fetches the witness's signed view of a log (nil: not consulted).
	View func(ctx context.Context, origin string) ([]byte, error)
}

func (a *Audit) defaults() {
	if a.Loss == 0 {
		a.Loss = 0.01
	}
	if a.Confidence == 0 {
		a.Confidence = 0.9999
	}
	if a.Now.IsZero() {
		a.Now = time.Now()
	}
}

// auditRemote audits every available remote host: its log, then a storage
// proof over the shards the verified envelopes place on it.
func auditRemote(ctx context.Context, o Options, rep *Report, shards map[string][]proof.Shard) {
	a := o.Audit
	a.defaults()
	results := make([]hostAudit, len(o.Hosts))
	var wg sync.WaitGroup
	for i, h := range o.Hosts {
		rh, ok := h.Store.(remoteHost)
		if !h.Available() || !ok {
			continue
		}
		var others []witnessRef
		for _, x := range o.Hosts {
			if x.Remote != nil && x.Name != h.Name {
				w := witnessRef{named: witness.Named{Name: x.Remote.Witness.Origin, Verifiers: x.Remote.Witness.Keys}, host: x.Name}
				if xr, ok := x.Store.(remoteHost); ok && x.Available() {
					w.view = xr.WitnessView
				}
				others = append(others, w)
			}
		}
		for _, gw := range a.Witnesses {
			others = append(others, witnessRef{named: witness.Named{Name: gw.Name, Verifiers: gw.Verifiers}, host: gw.Name, view: gw.View})
		}
		// Hosts are audited in parallel (a proof waits for the host's next
		// checkpoint); each writes its own slot and problems.
		wg.Add(1)
		go func() {
			defer wg.Done()
			sub := &Report{}
			lr := auditLog(ctx, a, sub, h.Name, rh, others)
			var pr *ProofReport
			if list := shards[h.Name]; len(list) > 0 {
				pr = auditProof(ctx, a, sub, h.Name, rh, o.Identity.Guest, list)
			}
			results[i] = hostAudit{lr, pr, sub.Problems}
		}()
	}
	wg.Wait()
	for i, r := range results {
		if r.log != nil || r.proof != nil || len(r.problems) > 0 {
			rep.Hosts[i].Log, rep.Hosts[i].Proof = r.log, r.proof
			rep.Problems = append(rep.Problems, r.problems...)
		}
	}
}

type hostAudit struct {
	log      *LogReport
	proof    *ProofReport
	problems []Problem
}

func auditLog(ctx context.Context, a Audit, rep *Report, name string, rh remoteHost, others []witnessRef) *LogReport {
	d := rh.Descriptor()
	problem := func(sev, kind, format string, args ...any) {
		rep.Problems = append(rep.Problems, Problem{Severity: sev, Kind: kind, Host: name,
			Message: fmt.Sprintf("host %s log: ", name) + fmt.Sprintf(format, args...)})
	}
	v, err := ledger.NewVerifier(d.Log.Origin, d.Log.Keys)
	if err != nil {
		problem(Damage, "log-invalid", "the descriptor's log keys: %v", err)
		return nil
	}
	c := &ledger.Client{Verifier: v, Fetch: func(ctx context.Context, path string) ([]byte, error) {
		b, err := rh.Fetch(ctx, path)
		if errors.Is(err, shardstore.ErrNotFound) {
			return nil, fmt.Errorf("%w: %v", fs.ErrNotExist, err)
		}
		return b, err
	}}
	lr := &LogReport{Origin: d.Log.Origin}
	latest, err := c.Latest(ctx)
	if err != nil {
		if errors.Is(err, wire.ErrCorrupt) {
			problem(Damage, "log-invalid", "the checkpoint does not verify under the host's log keys: %v", err)
		} else {
			problem(Warning, "log-unavailable", "%v", err)
		}
		return lr
	}
	lr.Size = latest.Size
	var trusted ledger.Trusted
	if a.Trust != nil {
		if trusted, err = a.Trust.Load(name); err != nil {
			problem(Warning, "log-trust-state", "%v", err)
			trusted = ledger.Trusted{}
		}
	}
	lr.TrustedBefore = trusted.Size
	next, err := c.Advance(ctx, trusted, latest)
	if !logVerdict(err, problem, "the checkpoint of size %d against the one accepted before (size %d)", latest.Size, trusted.Size) {
		return lr
	}
	// The cosigned checkpoint: witnesses vouch that they saw this history.
	// The current checkpoint must extend it (else the host shows this
	// client another history than the witnesses: a split view).
	th := a.WitnessThreshold
	if th == 0 {
		th = min(2, len(others))
	}
	lr.Threshold = th
	if len(others) == 0 || th == 0 {
		if a.Trust != nil {
			a.Trust.Save(name, next)
		}
		return lr
	}
	cosigned, err := c.Cosigned(ctx)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		problem(Warning, "log-unwitnessed", "no checkpoint of this log is cosigned by its witnesses yet")
	case err != nil:
		if errors.Is(err, wire.ErrCorrupt) {
			problem(Damage, "log-invalid", "the cosigned checkpoint does not verify: %v", err)
		} else {
			problem(Warning, "log-unavailable", "cosigned checkpoint: %v", err)
		}
	default:
		lr.CosignedSize = cosigned.Size
		var named []witness.Named
		for _, w := range others {
			named = append(named, w.named)
		}
		pol := witness.Policy{Threshold: th, Witnesses: named}
		names, cerr := pol.Count(cosigned.Raw, d.Log.Keys)
		lr.Witnesses = names
		switch {
		case errors.Is(cerr, witness.ErrUnwitnessed):
			problem(Warning, "log-unwitnessed", "its newest cosigned checkpoint (size %d) has %d of the %d witness cosignatures required (%v)", cosigned.Size, len(names), th, names)
		case cerr != nil:
			problem(Damage, "log-invalid", "cosignatures: %v", cerr)
		default:
			if _, err := c.Advance(ctx, cosigned.Trusted(), latest); !logVerdict(err, problem, "the checkpoint of size %d against the witnessed one (size %d)", latest.Size, cosigned.Size) {
				return lr
			}
			// Entries past the cosigned size are normal lag (cosigning runs
			// every few seconds); the report shows how many.
		}
	}
	// Ask each witness directly what it has seen of this log: a log that
	// shows this auditor a history the witnesses did not see (a split
	// view), or an older one than they cosigned, is caught even by an
	// auditor who has never seen the log before.
	for _, w := range others {
		if w.view == nil {
			continue
		}
		vb, err := w.view(ctx, d.Log.Origin)
		if err != nil {
			if !errors.Is(err, shardstore.ErrNotFound) {
				problem(Warning, "log-witness-unavailable", "witness %s: %v", w.host, err)
			}
			continue
		}
		view, err := witness.VerifyView(vb, d.Log.Origin, w.named)
		if err != nil {
			problem(Warning, "log-witness-invalid", "witness %s: %v", w.host, err)
			continue
		}
		seen := ledger.Trusted{Origin: view.Origin, Size: view.Size, Hash: view.Root}
		if view.Size > latest.Size {
			// The log may have moved on since it was read: read it again.
			if again, err := c.Latest(ctx); err == nil && again.Size >= view.Size {
				if _, err := c.Advance(ctx, latest.Trusted(), again); !logVerdict(err, problem, "the checkpoint of size %d against the one read just before (size %d)", again.Size, latest.Size) {
					return lr
				}
				latest = again
			}
		}
		if view.Size > latest.Size {
			problem(Damage, "log-rollback", "it shows a checkpoint of size %d but witness %s has cosigned size %d: the host is hiding newer entries", latest.Size, w.host, view.Size)
			return lr
		}
		if _, err := c.Advance(ctx, seen, latest); !logVerdict(err, problem, "split view: the checkpoint of size %d against what witness %s cosigned (size %d)", latest.Size, w.host, view.Size) {
			return lr
		}
	}
	if a.Trust != nil {
		if err := a.Trust.Save(name, next); err != nil {
			problem(Warning, "log-trust-state", "save: %v", err)
		}
	}
	return lr
}

// logVerdict reports a failed consistency check as a problem and says
// whether the audit may go on.
func logVerdict(err error, problem func(sev, kind, format string, args ...any), format string, args ...any) bool {
	switch {
	case err == nil:
		return true
	case errors.Is(err, ledger.ErrRollback):
		problem(Damage, "log-rollback", "rolled back: "+format+": %v", append(args, err)...)
	case errors.Is(err, ledger.ErrInconsistent):
		problem(Damage, "log-fork", "history rewritten or forked: "+format+": %v", append(args, err)...)
	case errors.Is(err, wire.ErrCorrupt):
		problem(Damage, "log-invalid", format+": %v", append(args, err)...)
	default:
		problem(Warning, "log-unavailable", format+": %v", append(args, err)...)
	}
	return false
}

func auditProof(ctx context.Context, a Audit, rep *Report, name string, rh remoteHost, g [16]byte, list []proof.Shard) *ProofReport {
	problem := func(sev, kind, format string, args ...any) {
		rep.Problems = append(rep.Problems, Problem{Severity: sev, Kind: kind, Host: name,
			Message: fmt.Sprintf("host %s storage proof: ", name) + fmt.Sprintf(format, args...)})
	}
	m, err := proof.Required(a.Loss, a.Confidence)
	if err != nil {
		problem(Warning, "proof-unavailable", "%v", err)
		return nil
	}
	m = min(m, proof.MaxItems)
	sizes := make(map[shardstore.ID]int64, len(list))
	for _, s := range list {
		sizes[s.ID] = s.Size
	}
	var nonce [32]byte
	rand.Read(nonce[:])
	items := proof.Sample(nonce, list, m)
	pr := &ProofReport{Items: len(items), Shards: len(sizes), Loss: a.Loss, Confidence: proof.Confidence(a.Loss, len(items))}
	if len(items) == 0 {
		return pr
	}
	ch := &proof.Challenge{Guest: g, Nonce: nonce, Time: a.Now.Unix(), Items: items}
	cb, err := ch.Marshal()
	if err != nil {
		problem(Warning, "proof-unavailable", "%v", err)
		return pr
	}
	rb, err := rh.Prove(ctx, cb)
	if err != nil {
		problem(Warning, "proof-unavailable", "%v", err)
		return pr
	}
	// Evidence is kept once the answer is judged: in full when the host
	// failed (the slices are the proof of what it sent), compact when it
	// passed (the signed entry still commits to the answer's digest; the
	// ~16 KiB per item of slices would grow HOME by megabytes per check).
	keep := func(full bool) {
		if a.Evidence == nil {
			return
		}
		b := rb
		if rc, err := transport.ParseReceipt(rb); err == nil && !full {
			rc.Answer = nil
			b = rc.Marshal()
		}
		if err := a.Evidence(name, cb, b); err != nil {
			problem(Warning, "proof-evidence", "keep evidence: %v", err)
		}
	}
	rc, err := transport.ParseReceipt(rb)
	if err == nil {
		err = transport.VerifyReceipt(rc, ch, rh.Descriptor())
	}
	if err != nil {
		keep(true)
		problem(Damage, "proof-invalid", "the receipt does not verify: %v", err)
		return pr
	}
	pr.LogIndex = rc.Index
	ans, err := proof.ParseAnswer(rc.Answer)
	var r proof.Report
	if err == nil {
		r, err = proof.Verify(ch, ans, sizes)
	}
	if err != nil {
		keep(true)
		problem(Damage, "proof-invalid", "the answer: %v", err)
		return pr
	}
	pr.OK, pr.Missing, pr.Bad = r.OK, r.Missing, r.Bad
	keep(!r.Passed())
	if r.Passed() {
		return pr
	}
	failed := map[shardstore.ID]string{}
	for _, res := range r.Results {
		if !res.OK {
			failed[res.Item.Shard] = res.Reason
		}
	}
	ids := make([]shardstore.ID, 0, len(failed))
	for id := range failed {
		ids = append(ids, id)
	}
	sort.Slice(ids, func(i, j int) bool { return string(ids[i][:]) < string(ids[j][:]) })
	for _, id := range ids {
		rep.Problems = append(rep.Problems, Problem{Severity: Damage, Kind: "proof-failed", Host: name, Shard: id.String(),
			Message: fmt.Sprintf("host %s could not prove it holds shard %s: %s", name, id, failed[id])})
	}
	problem(Damage, "proof-failed", "%d of %d sampled items failed (%d declared missing, %d wrong)", r.Missing+r.Bad, len(r.Results), r.Missing, r.Bad)
	return pr
}
