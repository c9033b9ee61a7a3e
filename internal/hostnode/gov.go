package hostnode

import (
	"context"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/zeebo/blake3"

	"github.com/embassy-project/embassy/internal/access"
	"github.com/embassy-project/embassy/internal/atomicfile"
	"github.com/embassy-project/embassy/internal/gov"
	"github.com/embassy-project/embassy/internal/guest"
	"github.com/embassy-project/embassy/internal/ledger"
	"github.com/embassy-project/embassy/internal/sig"
	"github.com/embassy-project/embassy/internal/transport"
)

// Governance files, under DIR/gov/GUEST-ID/.
const (
	govDir        = "gov"
	stateFile     = "state.json"
	syncFile      = "sync.json"
	adoptedFile   = "adopted"
	releasesDir   = "releases"
	agreementGlob = "agreement-v*.signed"
)

// Headers a write carries when the guest has an agreement in force.
const (
	HeaderDataset = "Embassy-Dataset"
	HeaderEpoch   = "Embassy-Epoch"
)

// MaxOrderBytes bounds a submitted order file.
const MaxOrderBytes = ledger.MaxOrderSize

// govTenant is a guest's governance at this host: the agreement chain in
// force and the state the orders carried out so far made.
type govTenant struct {
	dir    string
	g      guest.ID
	home   string // base64 of the guest identity's agent key
	chain  []*gov.Agreement
	cur    atomic.Pointer[gov.State]
	synced atomic.Bool
	// writers are the keys besides the identity's agent key that may sign
	// agent credentials: every dataset's current writer.
	writers atomic.Pointer[[]sig.PublicKey]

	mu        sync.Mutex // serialises state changes (orders, heartbeats, ticks)
	pending   map[string]uint64
	savedBeat time.Time

	fenced   sync.Map // "fingerprint/dataset/epoch" → true once logged
	refusals struct {
		sync.Mutex
		window time.Time
		n      int
	}
}

func (gt *govTenant) agreement() *gov.Agreement { return gt.chain[len(gt.chain)-1] }

func (gt *govTenant) state() gov.State { return *gt.cur.Load() }

// setState publishes st to readers and refreshes the writer keys.
func (gt *govTenant) setState(st gov.State) {
	gt.cur.Store(&st)
	var ks []sig.PublicKey
	for _, ds := range st.Datasets {
		if ds.Writer == "" || ds.Writer == gt.home {
			continue
		}
		if k, err := parseWriter(ds.Writer); err == nil && !slices.ContainsFunc(ks, k.Equal) {
			ks = append(ks, k)
		}
	}
	gt.writers.Store(&ks)
}

func parseWriter(b64 string) (sig.PublicKey, error) {
	b, err := base64.StdEncoding.DecodeString(b64)
	if err != nil {
		return sig.PublicKey{}, errors.New("writer key is not base64")
	}
	return sig.ParsePublicKey(b)
}

func (gt *govTenant) saveState(st gov.State) error {
	return atomicfile.Write(filepath.Join(gt.dir, stateFile), st.Marshal(), 0o600)
}

// loadGov loads a guest's governance, or returns nil if no agreement is
// installed for it.
func loadGov(dir string, cfg *Config, id *guest.Identity, now time.Time) (*govTenant, error) {
	gdir := filepath.Join(dir, govDir, id.Guest.String())
	chain, err := loadAgreementChain(gdir, cfg.Name)
	if err != nil || chain == nil {
		return nil, err
	}
	gt := &govTenant{dir: gdir, g: id.Guest, home: base64.StdEncoding.EncodeToString(id.Agent.Bytes()), chain: chain, pending: map[string]uint64{}}
	a := gt.agreement()
	if a.Guest != id.Guest.String() {
		return nil, fmt.Errorf("the agreement is for guest %s; this host serves guest %s", a.Guest, id.Guest)
	}
	var st gov.State
	b, err := os.ReadFile(filepath.Join(gdir, stateFile))
	switch {
	case errors.Is(err, fs.ErrNotExist):
		st = gov.NewState(chain[0], gt.home, now)
	case err != nil:
		return nil, err
	default:
		if st, err = gov.ParseState(b); err != nil {
			return nil, fmt.Errorf("%s: %w", stateFile, err)
		}
	}
	for _, next := range chain {
		if next.Version > st.Agreement {
			if st, err = st.Adopt(next); err != nil {
				return nil, fmt.Errorf("adopt agreement v%d: %w", next.Version, err)
			}
		}
	}
	// The identity served must be the one the agreement names, or one that
	// rotate orders carried out here allow.
	if a.GuestIdentity != id.Fingerprint() {
		bound, err := gt.boundIdentity()
		if err != nil {
			return nil, err
		}
		if bound == nil || bound.Fingerprint() != a.GuestIdentity {
			return nil, fmt.Errorf("the agreement names guest identity %s; this host serves identity %s", a.GuestIdentity, id.Fingerprint())
		}
		if err := checkIdentityUpdate(bound, id, st); err != nil {
			return nil, fmt.Errorf("the guest identity served is not the agreement's: %w", err)
		}
	}
	// Home's silence is counted from now, not from before the host was down.
	if st.LastHeartbeat.Before(now) {
		st.LastHeartbeat = now
	}
	if err := gt.saveState(st); err != nil {
		return nil, err
	}
	gt.setState(st)
	return gt, nil
}

// loadAgreementChain opens agreement-v1.signed, agreement-v2.signed, … each
// checked against the one before, and requires each in force and
// acknowledged by this host. It returns nil if there is none.
func loadAgreementChain(gdir, self string) ([]*gov.Agreement, error) {
	var chain []*gov.Agreement
	var prev *gov.Agreement
	for v := 1; ; v++ {
		b, err := os.ReadFile(filepath.Join(gdir, fmt.Sprintf("agreement-v%d.signed", v)))
		if errors.Is(err, fs.ErrNotExist) {
			break
		}
		if err != nil {
			return nil, err
		}
		a, err := checkAgreement(b, prev, self)
		if err != nil {
			return nil, fmt.Errorf("agreement v%d: %w", v, err)
		}
		chain = append(chain, a)
		prev = a
	}
	return chain, nil
}

// checkAgreement verifies a signed agreement file: in force under prev (or
// itself for version 1) and acknowledged by this host.
func checkAgreement(file []byte, prev *gov.Agreement, self string) (*gov.Agreement, error) {
	sa, err := gov.OpenAgreement(file, prev)
	if err != nil {
		return nil, err
	}
	rules := prev
	if rules == nil {
		rules = sa.Agreement
	}
	if err := sa.InForce(rules); err != nil {
		return nil, err
	}
	if sa.Agreement.Host(self) == nil {
		return nil, fmt.Errorf("%w: this host (%s) is not a party to agreement v%d", gov.ErrNotAllowed, self, sa.Agreement.Version)
	}
	if !sa.Acked(self) {
		return nil, fmt.Errorf("%w: this host (%s) has not acknowledged agreement v%d", gov.ErrNotAcknowledged, self, sa.Agreement.Version)
	}
	return sa.Agreement, nil
}

// InstallAgreement puts a signed agreement in force for one of the host's
// guests (run it with the host stopped; the next start logs the adoption).
// The file must be in force (signed by the guest's quorum under the previous
// version's rules, acknowledged by every host, this one included). It also
// makes the agreement's other hosts and witnesses this host's peers, with
// the agreement's witness threshold, and sets the guest's quota.
func InstallAgreement(dir string, file []byte, now time.Time) (*gov.Agreement, error) {
	cfg, err := LoadConfig(dir)
	if err != nil {
		return nil, err
	}
	own, err := LoadDescriptor(dir)
	if err != nil {
		return nil, err
	}
	probe, _, err := gov.ParseAgreementFile(file)
	if err != nil {
		return nil, err
	}
	var g *Guest
	for i := range cfg.Guests {
		if cfg.Guests[i].ID == probe.Guest {
			g = &cfg.Guests[i]
		}
	}
	if g == nil {
		return nil, fmt.Errorf("guest %s is not served here: run embassy host guest add first", probe.Guest)
	}
	gdir := filepath.Join(dir, govDir, probe.Guest)
	chain, err := loadAgreementChain(gdir, cfg.Name)
	if err != nil {
		return nil, err
	}
	var prev *gov.Agreement
	if len(chain) > 0 {
		prev = chain[len(chain)-1]
	}
	a, err := checkAgreement(file, prev, cfg.Name)
	if err != nil {
		return nil, err
	}
	me := a.Host(cfg.Name)
	if me.Descriptor.SigningKey != own.SigningKey || me.Descriptor.TLS != own.TLS {
		return nil, fmt.Errorf("the agreement's descriptor for host %s does not match this host's keys", cfg.Name)
	}
	idb, err := os.ReadFile(filepath.Join(dir, guestsDir, probe.Guest+".pub"))
	if err != nil {
		return nil, err
	}
	id, err := guest.ParseIdentity(idb)
	if err != nil {
		return nil, err
	}
	if id.Fingerprint() != a.GuestIdentity {
		return nil, fmt.Errorf("the agreement names guest identity %s; this host serves %s (re-run embassy host guest add with the guest's current identity)", a.GuestIdentity, id.Fingerprint())
	}
	if err := os.MkdirAll(filepath.Join(gdir, releasesDir), 0o700); err != nil {
		return nil, err
	}
	// Peers: every other host and every witness of the agreement.
	var descs []transport.Descriptor
	for _, h := range a.Hosts {
		if h.Name != cfg.Name {
			descs = append(descs, h.Descriptor)
		}
	}
	for _, w := range a.Witnesses {
		descs = append(descs, w.Descriptor)
	}
	for _, d := range descs {
		if err := atomicfile.Write(filepath.Join(dir, peersDir, d.Name+".json"), d.Marshal(), 0o644); err != nil {
			return nil, err
		}
		if !slices.Contains(cfg.Peers, d.Name) {
			cfg.Peers = append(cfg.Peers, d.Name)
		}
	}
	cfg.WitnessThreshold = a.WitnessThreshold
	if me.QuotaBytes > 0 {
		g.QuotaBytes = me.QuotaBytes
	}
	cfg.ClockSkewSeconds = a.ClockSkewSeconds
	if err := atomicfile.Write(filepath.Join(gdir, boundIdentityFile(a.Version)), idb, 0o644); err != nil {
		return nil, err
	}
	if err := atomicfile.Write(filepath.Join(gdir, fmt.Sprintf("agreement-v%d.signed", a.Version)), file, 0o644); err != nil {
		return nil, err
	}
	return a, SaveConfig(dir, cfg)
}

// logAdoptions appends AgreementAdopted for every version not logged yet.
func (s *Server) logAdoptions(ctx context.Context) error {
	for _, t := range s.tenants {
		gt := t.gov
		if gt == nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join(gt.dir, adoptedFile))
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		done := strings.Fields(string(b))
		for _, a := range gt.chain {
			h := a.Hash()
			if slices.Contains(done, h) {
				continue
			}
			var sum [32]byte
			hex.Decode(sum[:], []byte(strings.TrimPrefix(h, "blake3:")))
			if _, err := s.events.append(ctx, ledger.AgreementAdopted{Guest: gt.g, Version: a.Version, Hash: sum}); err != nil {
				return err
			}
			done = append(done, h)
			if err := atomicfile.Write(filepath.Join(gt.dir, adoptedFile), []byte(strings.Join(done, "\n")+"\n"), 0o600); err != nil {
				return err
			}
			s.log.Info("agreement in force", "guest", gt.g.String(), "version", a.Version, "hash", h)
		}
	}
	return nil
}

// writersFor is access.Writers over the tenants' governance.
func (s *Server) writersFor(g guest.ID) []sig.PublicKey {
	t := s.tenants[g]
	if t == nil || t.gov == nil {
		return nil
	}
	return *t.gov.writers.Load()
}

// presentedWriter returns the writer key (base64) that signed p's agent
// credential: the home agent key or a writer governance named; "" if none.
func (gt *govTenant) presentedWriter(p *access.Peer, homeKey sig.PublicKey) string {
	if p.SignedBy(homeKey) {
		return gt.home
	}
	for _, k := range *gt.writers.Load() {
		if p.SignedBy(k) {
			return base64.StdEncoding.EncodeToString(k.Bytes())
		}
	}
	return ""
}

// fence applies the fencing rule to a write: the dataset's current epoch,
// written by the epoch's writer. It writes the refusal and reports false
// when the write may not go ahead.
func (s *Server) fence(w http.ResponseWriter, r *http.Request, p *access.Peer, t *tenant) bool {
	gt := t.gov
	if gt == nil {
		return true // no agreement: the identity's agent key writes (docs/spec/host-api.md)
	}
	if !gt.synced.Load() {
		httpError(w, http.StatusServiceUnavailable, "this host is reading the orders it missed from the other hosts' logs; writes resume when it has; retry")
		return false
	}
	dataset := r.Header.Get(HeaderDataset)
	epoch, err := strconv.ParseUint(r.Header.Get(HeaderEpoch), 10, 64)
	if dataset == "" || err != nil {
		httpError(w, http.StatusPreconditionRequired, "guest "+t.id.String()+" has an agreement in force: writes must carry "+HeaderDataset+" and "+HeaderEpoch+" (upgrade the agent)")
		return false
	}
	// The agreement decides which classes this host may hold.
	if a := gt.agreement(); a.Dataset(dataset) != nil {
		if err := a.CheckPlacement(dataset, []string{s.cfg.Name}); err != nil {
			s.metrics.refused.WithLabelValues("placement").Inc()
			httpError(w, http.StatusForbidden, err.Error())
			return false
		}
	}
	st := gt.state()
	writer := gt.presentedWriter(p, t.identity().Agent)
	if err := st.MayWrite(dataset, epoch, writer); err != nil {
		// Logged once per writer key (not per TLS key: every agent
		// certificate has a fresh one), governed dataset and epoch up to
		// the next: the writer picks the certificate, dataset and epoch, and
		// must not be able to grow the log or this map without bound.
		key := writer + "/" + dataset + "/" + strconv.FormatUint(epoch, 10)
		ds, governed := st.Dataset(dataset)
		if !governed || epoch > ds.Epoch+1 || len(dataset) > ledger.MaxDatasetLen {
			key = "" // not logged
		}
		if _, seen := gt.fenced.LoadOrStore(key, true); key != "" && !seen {
			if _, lerr := s.events.append(r.Context(), ledger.WriteFenced{Guest: t.id, Dataset: dataset, Epoch: epoch, Writer: p.Fingerprint}); lerr != nil {
				s.log.Warn("log fenced write", "err", lerr)
			}
			s.log.Warn("write fenced", "guest", t.id.String(), "dataset", dataset, "epoch", epoch, "writer", p.Fingerprint, "reason", err.Error())
		}
		s.metrics.refused.WithLabelValues("fenced").Inc()
		httpError(w, http.StatusConflict, "fenced: "+err.Error())
		return false
	}
	return true
}

// orderOutcome is the result of carrying out an order.
type orderOutcome struct {
	Order   string       `json:"order"`
	Kind    gov.Action   `json:"kind"`
	Logged  uint64       `json:"logged"`
	Already bool         `json:"already_carried_out,omitempty"`
	Effects []gov.Effect `json:"effects,omitempty"`
	State   *gov.State   `json:"state,omitempty"`
	code    int          // HTTP status when refused
	err     error        // the refusal
}

func refusal(code int, err error) *orderOutcome { return &orderOutcome{code: code, err: err} }

// refusalCode maps a governance error to an HTTP status.
func refusalCode(err error) int {
	switch {
	case errors.Is(err, gov.ErrMalformed):
		return http.StatusBadRequest
	case errors.Is(err, gov.ErrReplay), errors.Is(err, gov.ErrStaleEpoch), errors.Is(err, gov.ErrEpochGap),
		errors.Is(err, gov.ErrTransition), errors.Is(err, gov.ErrWrongAgreement):
		return http.StatusConflict
	}
	return http.StatusForbidden
}

// carryOut checks an order, logs it, waits until a checkpoint covering it is
// cosigned by the witness threshold, and only then applies it (log before
// act). at is the time the order is judged at: now for a submission, the
// time another host logged it for one read from that host's log.
func (s *Server) carryOut(ctx context.Context, t *tenant, file []byte, at time.Time, fromLog bool) *orderOutcome {
	gt := t.gov
	a := gt.agreement()
	so, err := gov.OpenOrder(file, a)
	if err != nil {
		return refusal(refusalCode(err), err)
	}
	o := so.Order
	idHex := o.IDString()
	// Check and log under the lock; wait for the cosignature without it
	// (heartbeats, ticks and other orders go on meanwhile); apply under it
	// again, against the state as it is then.
	gt.mu.Lock()
	st := gt.state()
	if slices.Contains(st.Orders, idHex) && fromLog {
		gt.mu.Unlock()
		return &orderOutcome{Order: idHex, Kind: o.Kind, Already: true}
	}
	if err := gov.Check(so, a, st, at); err != nil {
		gt.mu.Unlock()
		return refusal(refusalCode(err), err)
	}
	idx, ok := gt.pending[idHex]
	if !ok {
		idx, err = s.events.append(ctx, ledger.OrderLogged{Guest: t.id, Order: file})
		if err != nil {
			gt.mu.Unlock()
			return refusal(http.StatusServiceUnavailable, fmt.Errorf("log the order: %w; nothing was carried out, retry", err))
		}
		gt.pending[idHex] = idx
		s.log.Info("order logged", "guest", t.id.String(), "order", idHex, "kind", string(o.Kind), "index", idx)
	}
	gt.mu.Unlock()
	wctx, cancel := context.WithTimeout(ctx, s.opt.OrderTimeout)
	err = s.cosign.awaitCosigned(wctx, idx+1)
	cancel()
	if err != nil {
		return refusal(http.StatusServiceUnavailable, fmt.Errorf("order %s is logged at index %d but no checkpoint covering it is cosigned by %d witnesses yet, so it was not carried out; submit it again later (it will not be logged twice): %w", idHex, idx, s.cosign.threshold, err))
	}
	gt.mu.Lock()
	defer gt.mu.Unlock()
	st = gt.state()
	if slices.Contains(st.Orders, idHex) {
		// Carried out meanwhile (a submission and a log read at once).
		return &orderOutcome{Order: idHex, Kind: o.Kind, Logged: idx, Already: true, State: &st}
	}
	next, effects, err := st.Apply(so, a, at)
	if err != nil {
		return refusal(refusalCode(err), err)
	}
	if err := gt.saveState(next); err != nil {
		return refusal(http.StatusInternalServerError, fmt.Errorf("save governance state: %w", err))
	}
	gt.setState(next)
	delete(gt.pending, idHex)
	var epoch uint64
	if ds, ok := next.Dataset(o.Dataset); ok && (o.Kind == gov.Activate || o.Kind == gov.Return) {
		epoch = ds.Epoch
	}
	if _, err := s.events.append(ctx, ledger.OrderCarriedOut{Guest: t.id, Order: o.ID, Logged: idx, Epoch: epoch}); err != nil {
		s.log.Warn("log carried-out order", "err", err)
	}
	s.log.Info("order carried out", "guest", t.id.String(), "order", idHex, "kind", string(o.Kind), "dataset", o.Dataset, "epoch", epoch)
	s.effects(ctx, t, effects)
	return &orderOutcome{Order: idHex, Kind: o.Kind, Logged: idx, Effects: effects, State: &next}
}

// logRefusal records a refused order in the log, at most 100 an hour per
// guest (anyone can submit; the log must not be flooded).
func (s *Server) logRefusal(ctx context.Context, t *tenant, file []byte, err error) {
	gt := t.gov
	gt.refusals.Lock()
	now := s.opt.Now()
	if now.Sub(gt.refusals.window) > time.Hour {
		gt.refusals.window, gt.refusals.n = now, 0
	}
	gt.refusals.n++
	over := gt.refusals.n > 100
	gt.refusals.Unlock()
	s.log.Warn("order refused", "guest", t.id.String(), "reason", err.Error())
	if over {
		return
	}
	reason := sanitizeReason(err.Error())
	if _, lerr := s.events.append(ctx, ledger.OrderRefused{Guest: t.id, Digest: blake3.Sum256(file), Reason: reason}); lerr != nil {
		s.log.Warn("log refused order", "err", lerr)
	}
}

func sanitizeReason(s string) string {
	var b strings.Builder
	for _, r := range s {
		if r < 0x20 || r == 0x7f || r == 0xfffd {
			r = ' '
		}
		if b.Len()+len(string(r)) > ledger.MaxReasonLen {
			break
		}
		b.WriteRune(r)
	}
	if b.Len() == 0 {
		return "refused"
	}
	return b.String()
}

// govTenantFrom resolves the path's guest for the public governance routes.
func (s *Server) govTenantFrom(w http.ResponseWriter, r *http.Request) *tenant {
	g, err := guest.ParseID(r.PathValue("guest"))
	if err != nil {
		httpError(w, http.StatusBadRequest, "bad guest id")
		return nil
	}
	t := s.tenants[g]
	if t == nil {
		httpError(w, http.StatusNotFound, "guest not served here")
		return nil
	}
	if t.gov == nil {
		httpError(w, http.StatusNotFound, "no agreement is in force for this guest at this host")
		return nil
	}
	return t
}

// handleOrder is POST /v1/guests/{g}/orders: anyone may submit; the
// custodians' signatures are the authority.
func (s *Server) handleOrder(w http.ResponseWriter, r *http.Request) {
	t := s.govTenantFrom(w, r)
	if t == nil {
		return
	}
	file, err := io.ReadAll(maxBytes(w, r.Body, MaxOrderBytes))
	if err != nil {
		httpError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("an order file is at most %d bytes", MaxOrderBytes))
		return
	}
	out := s.carryOut(r.Context(), t, file, s.opt.Now(), false)
	if out.err != nil {
		if out.code != http.StatusServiceUnavailable {
			s.logRefusal(r.Context(), t, file, out.err)
		}
		httpError(w, out.code, out.err.Error())
		return
	}
	writeJSON(w, http.StatusOK, out)
}

// govStatus is what GET /v1/guests/{g}/governance returns.
type govStatus struct {
	Guest     string    `json:"guest"`
	Host      string    `json:"host"`
	Agreement uint64    `json:"agreement"`
	Hash      string    `json:"agreement_hash"`
	Synced    bool      `json:"synced"`
	State     gov.State `json:"state"`
}

func (s *Server) handleGovernance(w http.ResponseWriter, r *http.Request) {
	t := s.govTenantFrom(w, r)
	if t == nil {
		return
	}
	a := t.gov.agreement()
	writeJSON(w, http.StatusOK, govStatus{Guest: t.id.String(), Host: s.cfg.Name, Agreement: a.Version, Hash: a.Hash(), Synced: t.gov.synced.Load(), State: t.gov.state()})
}

// handleHeartbeat is POST /v1/guests/{g}/heartbeat from the guest's agent.
func (s *Server) handleHeartbeat(w http.ResponseWriter, r *http.Request, p *access.Peer, t *tenant) {
	gt := t.gov
	if gt == nil {
		httpError(w, http.StatusNotFound, "no agreement is in force for this guest at this host")
		return
	}
	writer := gt.presentedWriter(p, t.identity().Agent)
	gt.mu.Lock()
	now := s.opt.Now()
	st := gt.state()
	next, effects, err := st.Heartbeat(writer, now)
	if err != nil {
		gt.mu.Unlock()
		httpError(w, http.StatusForbidden, err.Error())
		return
	}
	var serr error
	if len(effects) > 0 || now.Sub(gt.savedBeat) > time.Minute {
		serr = gt.saveState(next)
		gt.savedBeat = now
	}
	gt.setState(next)
	gt.mu.Unlock()
	if serr != nil {
		s.log.Warn("save governance state", "err", serr)
	}
	s.effects(r.Context(), t, effects)
	w.WriteHeader(http.StatusNoContent)
}

// effects carries out what the state machine asks for besides the state
// change itself: log entries and notifications.
func (s *Server) effects(ctx context.Context, t *tenant, effects []gov.Effect) {
	for _, e := range effects {
		switch e.Kind {
		case gov.EffArmed:
			silent := uint64(s.opt.Now().Sub(t.gov.state().LastHeartbeat) / time.Second)
			if _, err := s.events.append(ctx, ledger.Armed{Guest: t.id, Dataset: e.Dataset, Silent: silent}); err != nil {
				s.log.Warn("log armed", "err", err)
			}
			s.log.Warn("armed: activation threshold crossed; custodians may now sign an activation order (arming activates nothing)", "guest", t.id.String(), "dataset", e.Dataset, "detail", e.Detail)
		case gov.EffDisarmed:
			if _, err := s.events.append(ctx, ledger.Disarmed{Guest: t.id, Dataset: e.Dataset}); err != nil {
				s.log.Warn("log disarmed", "err", err)
			}
			s.log.Info("disarmed: home is back", "guest", t.id.String(), "dataset", e.Dataset)
		}
		s.notify(ctx, t, e)
	}
}

// notify posts an effect to the configured webhook, best effort.
func (s *Server) notify(ctx context.Context, t *tenant, e gov.Effect) {
	if s.cfg.NotifyURL == "" {
		return
	}
	body, _ := json.Marshal(map[string]any{"host": s.cfg.Name, "guest": t.id.String(), "time": s.opt.Now().UTC().Format(time.RFC3339), "event": e})
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		nctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		req, err := http.NewRequestWithContext(nctx, http.MethodPost, s.cfg.NotifyURL, strings.NewReader(string(body)))
		if err != nil {
			return
		}
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			s.log.Warn("notify", "err", err)
			return
		}
		resp.Body.Close()
		if resp.StatusCode/100 != 2 {
			s.log.Warn("notify", "status", resp.Status)
		}
	}()
}

// govLoop arms datasets whose home fell silent and reads missed orders from
// the other hosts' logs, until ctx ends.
func (s *Server) govLoop(ctx context.Context) {
	nextSync := time.Time{}
	for {
		now := s.opt.Now()
		for _, t := range s.tenants {
			if t.gov == nil {
				continue
			}
			s.tick(ctx, t, now)
		}
		synced := true
		if !time.Now().Before(nextSync) {
			for _, t := range s.tenants {
				if t.gov != nil {
					s.syncOrders(ctx, t)
					synced = synced && t.gov.synced.Load()
				}
			}
			nextSync = time.Now().Add(s.opt.SyncInterval)
			if !synced {
				// Writes wait for this: try again soon.
				nextSync = time.Now().Add(min(s.opt.SyncInterval, 500*time.Millisecond))
			}
		}
		wait := s.opt.GovernanceInterval
		if !synced {
			wait = min(wait, 500*time.Millisecond)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
	}
}

func (s *Server) tick(ctx context.Context, t *tenant, now time.Time) {
	gt := t.gov
	gt.mu.Lock()
	next, effects := gt.state().Tick(gt.agreement(), now)
	if len(effects) > 0 {
		if err := gt.saveState(next); err != nil {
			s.log.Warn("save governance state", "err", err)
		}
		gt.setState(next)
	}
	gt.mu.Unlock()
	s.effects(ctx, t, effects)
}

// syncProgress is sync.json: how far each log was read, and the orders
// read from other hosts' logs that had expired by the time this host read
// them.
type syncProgress struct {
	Logs map[string]string `json:"logs"` // log origin → ledger.Trusted text
	// Late are orders another host logged that were no longer valid when
	// this host read them (it was down): carried out only once at least
	// two other hosts' logs hold them (lateSightings), judged at the
	// earliest time one logged them. A single host could otherwise
	// resurrect an order the custodians signed but never used, by
	// logging it with an old time.
	Late map[string]*lateOrder `json:"late,omitempty"`
}

type lateOrder struct {
	Order []byte   `json:"order"`
	Hosts []string `json:"hosts"`
	At    int64    `json:"at"` // earliest logged time, Unix seconds
}

// maxLate bounds the late orders remembered.
const maxLate = 100

// syncOrders reads the OrderLogged entries for this guest that appeared in
// the other hosts' logs (and in this host's own, for orders logged but not
// carried out before a crash) since the last pass, and carries out those not
// carried out here yet: judged at this host's clock, or — for one that has
// expired meanwhile — at the time it was logged, once two other hosts' logs
// hold it. The guest is synced, and writes are accepted, once a pass read
// every other host's log but at most one (and at least one).
func (s *Server) syncOrders(ctx context.Context, t *tenant) {
	gt := t.gov
	a := gt.agreement()
	prog := syncProgress{}
	if b, err := os.ReadFile(filepath.Join(gt.dir, syncFile)); err == nil {
		if err := json.Unmarshal(b, &prog); err != nil {
			s.log.Warn("sync progress unreadable; reading the logs from the start", "err", err)
			prog = syncProgress{}
		}
	}
	if prog.Logs == nil {
		prog.Logs = map[string]string{}
	}
	if prog.Late == nil {
		prog.Late = map[string]*lateOrder{}
	}
	others, reached := 0, 0
	for _, h := range a.Hosts {
		if h.Name == s.cfg.Name {
			continue
		}
		others++
		d := h.Descriptor
		if err := s.syncFrom(ctx, t, &d, &prog, s.peerFetcher(&d)); err != nil {
			s.log.Warn("read orders from peer log", "guest", t.id.String(), "peer", d.Name, "err", err)
			continue
		}
		reached++
	}
	own, err := LoadDescriptor(s.dir)
	if err == nil {
		err = s.syncFrom(ctx, t, own, &prog, s.ownFetcher())
	}
	if err != nil {
		s.log.Warn("read orders from own log", "err", err)
	}
	lateDone := s.carryOutLate(ctx, t, &prog, min(2, others))
	if b, err := json.Marshal(prog); err == nil {
		if err := atomicfile.Write(filepath.Join(gt.dir, syncFile), b, 0o600); err != nil {
			s.log.Warn("save sync progress", "err", err)
		}
	}
	if need := max(others-1, min(others, 1)); reached >= need && lateDone && !gt.synced.Load() {
		gt.synced.Store(true)
		s.log.Info("governance synced from the other hosts' logs; accepting writes", "guest", t.id.String(), "logs_read", reached, "hosts", others)
	}
}

// carryOutLate carries out the late orders enough other hosts logged. It
// reports false if one of them could not be carried out for now (it stays
// for the next pass).
func (s *Server) carryOutLate(ctx context.Context, t *tenant, prog *syncProgress, need int) bool {
	ok := true
	for id, lo := range prog.Late {
		if len(lo.Hosts) < need {
			continue
		}
		out := s.carryOut(ctx, t, lo.Order, time.Unix(lo.At, 0), true)
		switch {
		case out.err != nil && out.code >= http.StatusInternalServerError:
			s.log.Warn("late order not carried out yet", "guest", t.id.String(), "order", id, "err", out.err)
			ok = false
			continue
		case out.err != nil:
			s.log.Warn("late order refused", "guest", t.id.String(), "order", id, "logged_by", lo.Hosts, "err", out.err)
		case !out.Already:
			s.log.Info("carried out an order that expired before this host read it", "guest", t.id.String(), "order", id, "logged_by", lo.Hosts, "judged_at", time.Unix(lo.At, 0).UTC())
		}
		delete(prog.Late, id)
	}
	return ok
}

func (s *Server) syncFrom(ctx context.Context, t *tenant, d *transport.Descriptor, prog *syncProgress, fetch func(context.Context, string) ([]byte, error)) error {
	v, err := ledger.NewVerifier(d.Log.Origin, d.Log.Keys)
	if err != nil {
		return err
	}
	c := &ledger.Client{Verifier: v, Fetch: fetch}
	fctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	cp, err := c.Latest(fctx)
	if err != nil {
		return err
	}
	var trusted ledger.Trusted
	if txt, ok := prog.Logs[d.Log.Origin]; ok {
		if err := trusted.UnmarshalText([]byte(txt)); err != nil {
			trusted = ledger.Trusted{}
		}
	}
	next, err := c.Advance(fctx, trusted, cp)
	if err != nil {
		return fmt.Errorf("log of %s does not extend what this host read before: %w", d.Name, err)
	}
	own := d.Name == s.cfg.Name
	from := trusted.Size
	for from < cp.Size {
		to := min(cp.Size, from+4096)
		entries, err := c.Entries(fctx, cp, from, to)
		if err != nil {
			return err
		}
		for i, e := range entries {
			ev, ok := e.Event.(ledger.OrderLogged)
			if !ok || ev.Guest != t.id {
				continue
			}
			// This host's own entries are judged at its own logged time
			// (it checked them then); another host's at this host's clock.
			at := s.opt.Now()
			if own {
				at = time.Unix(e.Time, 0)
				// Our own entry: never log it a second time.
				if so, err := gov.OpenOrder(ev.Order, t.gov.agreement()); err == nil {
					t.gov.mu.Lock()
					if _, ok := t.gov.pending[so.Order.IDString()]; !ok {
						t.gov.pending[so.Order.IDString()] = from + uint64(i)
					}
					t.gov.mu.Unlock()
				}
			}
			out := s.carryOut(ctx, t, ev.Order, at, true)
			switch {
			case out.err != nil && out.code >= http.StatusInternalServerError:
				// Not carried out for now (no cosigned checkpoint in time, the
				// log or disk failed): keep the progress before this entry so
				// the next pass tries it again, and do not count this log as
				// read (writes stay refused until the order is carried out).
				return fmt.Errorf("order at index %d of %s's log not carried out yet: %w", from+uint64(i), d.Name, out.err)
			case out.err != nil && !own && errors.Is(out.err, gov.ErrExpired):
				s.noteLate(t, prog, d.Name, ev.Order, e.Time)
			case out.err != nil:
				s.log.Warn("order from log not carried out", "guest", t.id.String(), "log", d.Name, "index", from+uint64(i), "err", out.err)
			case !out.Already:
				s.log.Info("carried out an order read from a log", "guest", t.id.String(), "log", d.Name, "order", out.Order)
			}
		}
		from = to
	}
	txt, err := next.MarshalText()
	if err != nil {
		return err
	}
	prog.Logs[d.Log.Origin] = string(txt)
	return nil
}

// noteLate records that host logged an order that had expired by the time
// this host read it.
func (s *Server) noteLate(t *tenant, prog *syncProgress, host string, order []byte, at int64) {
	so, err := gov.OpenOrder(order, t.gov.agreement())
	if err != nil {
		return
	}
	id := so.Order.IDString()
	lo := prog.Late[id]
	if lo == nil {
		if len(prog.Late) >= maxLate {
			s.log.Warn("too many late orders remembered; dropping one", "guest", t.id.String(), "order", id)
			return
		}
		lo = &lateOrder{Order: order, At: at}
		prog.Late[id] = lo
	}
	if !slices.Contains(lo.Hosts, host) {
		lo.Hosts = append(lo.Hosts, host)
	}
	lo.At = min(lo.At, at)
	s.log.Warn("an order expired before this host read it; it is carried out once two other hosts' logs hold it", "guest", t.id.String(), "order", id, "logged_by", lo.Hosts)
}

func (s *Server) peerFetcher(d *transport.Descriptor) func(context.Context, string) ([]byte, error) {
	return ledger.HTTPFetcher(d.BaseURL()+"/log", s.cosign.clientFor(d))
}

// ownFetcher reads this host's own log through its handler, in process.
func (s *Server) ownFetcher() func(context.Context, string) ([]byte, error) {
	h := s.events.handler()
	return func(ctx context.Context, path string) ([]byte, error) {
		req := httptest.NewRequestWithContext(ctx, http.MethodGet, "/"+path, nil)
		req.URL.Path = path
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		switch rec.Code {
		case http.StatusOK:
			return rec.Body.Bytes(), nil
		case http.StatusNotFound:
			return nil, fmt.Errorf("get %s: %w", path, fs.ErrNotExist)
		}
		return nil, fmt.Errorf("get %s: status %d", path, rec.Code)
	}
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		httpError(w, http.StatusInternalServerError, "encode response")
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	w.Write(append(b, '\n'))
}
