package hostnode

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/embassy-project/embassy/internal/access"
	"github.com/embassy-project/embassy/internal/custodian"
	"github.com/embassy-project/embassy/internal/gov"
	"github.com/embassy-project/embassy/internal/guest"
	"github.com/embassy-project/embassy/internal/ledger"
	"github.com/embassy-project/embassy/internal/shardstore"
	"github.com/embassy-project/embassy/internal/share"
	"github.com/embassy-project/embassy/internal/sig"
	"github.com/embassy-project/embassy/internal/transport"
)

// govClock is the hosts' clock: real time plus an offset the test moves
// forward (so timers, TLS and cosigning keep working while home's silence
// can be made to last minutes).
type govClock struct{ off atomic.Int64 }

func (c *govClock) Now() time.Time          { return time.Now().Add(time.Duration(c.off.Load())) }
func (c *govClock) Advance(d time.Duration) { c.off.Add(int64(d)) }

// govLogBuf collects a host's log lines, printed if the test fails.
type govLogBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *govLogBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *govLogBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

const govDataset = "registry"

var govHostNames = []string{"a", "b", "c", "d"}

// govFixture is a guest with one dataset (its key split 2 of 3 among the
// custodians alice, bob and carol) and an agreement in force at four
// in-process hosts a, b, c and d. Four hosts, because with hosts only
// (no separate witness) W = hosts − 1, and w = 2, f = 0 needs W = 3 to
// pass validation (2w − W > f and, with home and one host down, W − 1 ≥ w).
type govFixture struct {
	g          *testGuest
	ds         *guest.Dataset
	secret     *guest.Secret
	shares     map[string][]byte // custodian name → share file
	custodians map[string]*custodian.Identity
	agreement  *gov.Agreement
	hosts      map[string]*testHost
	logs       map[string]*govLogBuf
	clock      *govClock
	opt        Options

	mu      sync.Mutex
	anons   map[string]*transport.Client
	logHTTP map[string]*http.Client
}

// newGovFixture builds the guest, the hosts and the agreement, installs the
// agreement at every host (with notifyURL as host.json notify_url, if
// set), starts the hosts and waits until each has synced.
func newGovFixture(t *testing.T, notifyURL string, orderTimeout time.Duration) *govFixture {
	t.Helper()
	f := &govFixture{shares: map[string][]byte{}, custodians: map[string]*custodian.Identity{},
		hosts: map[string]*testHost{}, logs: map[string]*govLogBuf{}, clock: &govClock{}, anons: map[string]*transport.Client{}, logHTTP: map[string]*http.Client{}}

	// Custodians and the guest identity with one dataset.
	var recipients []*custodian.Recipient
	for _, n := range []string{"alice", "bob", "carol"} {
		id, err := custodian.Generate(n)
		if err != nil {
			t.Fatal(err)
		}
		f.custodians[n] = id
		recipients = append(recipients, id.Recipient())
	}
	agent, err := sig.Generate()
	if err != nil {
		t.Fatal(err)
	}
	gid, err := guest.NewID()
	if err != nil {
		t.Fatal(err)
	}
	f.ds, f.secret, err = guest.NewDataset(gid, "testland", govDataset, agent.Public(), 2, recipients)
	if err != nil {
		t.Fatal(err)
	}
	files, err := share.Split(f.ds, f.secret, recipients)
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range recipients {
		f.shares[r.Name] = files[i]
	}
	id, err := guest.NewIdentity(gid, "testland", agent.Public(), f.ds)
	if err != nil {
		t.Fatal(err)
	}
	f.g = &testGuest{id: id, agent: agent}

	// The hosts.
	root := t.TempDir()
	for _, n := range govHostNames {
		f.hosts[n] = newHostDir(t, filepath.Join(root, n), n, f.g, 1<<30)
	}

	// The agreement: signed by alice and bob (amend quorum 2), acked by
	// every host.
	a := &gov.Agreement{
		Format:        gov.AgreementFormat,
		Guest:         gid.String(),
		GuestName:     "testland",
		GuestIdentity: id.Fingerprint(),
		Version:       1,
		Parties: []gov.Party{
			{Name: "testland", Role: "guest", Jurisdiction: "EE"},
			{Name: "luxembourg", Role: "host", Jurisdiction: "LU"},
		},
		GoverningLaw:             "Test agreement on the hosting of data",
		WitnessThreshold:         2,
		ToleratedFaultyWitnesses: 0,
		Custodians: []gov.Custodian{
			gov.NewCustodian(recipients[0], "minister"),
			gov.NewCustodian(recipients[1], "official"),
			gov.NewCustodian(recipients[2], "official"),
		},
		Datasets:         []gov.Dataset{{Name: govDataset, Class: gov.HighlyRestricted, DataShards: 2, RetentionDays: 30}},
		Quorums:          map[gov.Action]gov.Quorum{},
		Activation:       gov.Activation{HomeSilentSeconds: 60},
		ClockSkewSeconds: 60,
	}
	for _, n := range govHostNames {
		a.Hosts = append(a.Hosts, gov.Host{Name: n, Party: "luxembourg", Descriptor: *f.hosts[n].desc,
			Classes: []gov.Class{gov.HighlyRestricted}, QuotaBytes: 1 << 30})
	}
	for _, act := range gov.Actions {
		q := gov.Quorum{Threshold: 2}
		if act == gov.Activate {
			q.Roles = []gov.RoleRequirement{{Role: "minister", Count: 1}}
		}
		a.Quorums[act] = q
	}
	if err := a.Validate(); err != nil {
		t.Fatalf("test agreement: %v", err)
	}
	f.agreement = a
	file := a.Marshal()
	for _, c := range []string{"alice", "bob"} {
		if file, err = gov.SignAgreement(file, f.custodians[c]); err != nil {
			t.Fatal(err)
		}
	}
	for _, n := range govHostNames {
		k, err := LoadSigningKey(f.hosts[n].dir)
		if err != nil {
			t.Fatal(err)
		}
		if file, err = gov.AckAgreement(file, n, k); err != nil {
			t.Fatal(err)
		}
	}
	for _, n := range govHostNames {
		dir := f.hosts[n].dir
		if _, err := InstallAgreement(dir, file, f.clock.Now()); err != nil {
			t.Fatalf("install agreement at %s: %v", n, err)
		}
		if notifyURL != "" {
			cfg, err := LoadConfig(dir)
			if err != nil {
				t.Fatal(err)
			}
			cfg.NotifyURL = notifyURL
			if err := SaveConfig(dir, cfg); err != nil {
				t.Fatal(err)
			}
		}
	}

	f.opt = Options{Now: f.clock.Now, GovernanceInterval: 50 * time.Millisecond, SyncInterval: 200 * time.Millisecond,
		CosignInterval: 200 * time.Millisecond, OrderTimeout: orderTimeout}
	for _, n := range govHostNames {
		f.logs[n] = &govLogBuf{}
		f.start(t, n)
	}
	t.Cleanup(func() {
		// The hosts' own cleanups then have nothing left to do.
		f.stop(t, govHostNames...)
		if t.Failed() {
			for _, n := range govHostNames {
				t.Logf("host %s log:\n%s", n, f.logs[n])
			}
		}
	})
	for _, n := range govHostNames {
		f.waitStatus(t, n, "synced", func(s govStatus) bool { return s.Synced })
	}
	return f
}

// start (re)starts host n.
func (f *govFixture) start(t *testing.T, n string) {
	t.Helper()
	f.startWith(t, n, f.opt)
}

func (f *govFixture) startWith(t *testing.T, n string, opt Options) {
	t.Helper()
	opt.Logger = slog.New(slog.NewTextHandler(f.logs[n], &slog.HandlerOptions{Level: slog.LevelDebug}))
	f.hosts[n].startWith(t, opt)
}

// stop stops hosts, together (each takes up to a second).
func (f *govFixture) stop(t *testing.T, hosts ...string) {
	var wg sync.WaitGroup
	for _, n := range hosts {
		wg.Go(func() { f.hosts[n].stop(t) })
	}
	wg.Wait()
}

func (f *govFixture) desc(n string) *transport.Descriptor { return f.hosts[n].desc }

func (f *govFixture) gid() guest.ID { return f.g.id.Guest }

// anon is a client for host n with no certificate (orders, releases,
// governance status, the log), kept for the test.
func (f *govFixture) anon(t *testing.T, n string) *transport.Client {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	if c := f.anons[n]; c != nil {
		return c
	}
	c := transport.NewClient(f.desc(n), f.gid(), tls.Certificate{})
	c.Timeout, c.Retries = 30*time.Second, 0
	t.Cleanup(c.Close)
	f.anons[n] = c
	return c
}

// writer is a client for host n whose agent credential k signs, writing
// dataset at epoch.
func (f *govFixture) writer(t *testing.T, n string, k *sig.PrivateKey, dataset string, epoch uint64) *transport.Client {
	t.Helper()
	cert, err := access.NewAgentCertificate(k, f.gid(), f.clock.Now(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	c := transport.NewClient(f.desc(n), f.gid(), cert)
	c.Timeout, c.Retries, c.Backoff = 10*time.Second, 0, 10*time.Millisecond
	c.Dataset, c.Epoch = dataset, epoch
	t.Cleanup(c.Close)
	return c
}

func (f *govFixture) status(t *testing.T, n string) (govStatus, error) {
	t.Helper()
	b, err := f.anon(t, n).Governance(context.Background())
	if err != nil {
		return govStatus{}, err
	}
	var s govStatus
	if err := json.Unmarshal(b, &s); err != nil {
		t.Fatalf("governance of %s: %v\n%s", n, err, b)
	}
	return s, nil
}

// waitStatus polls host n's governance status until ok holds.
func (f *govFixture) waitStatus(t *testing.T, n, what string, ok func(govStatus) bool) govStatus {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		s, err := f.status(t, n)
		if err == nil && ok(s) {
			return s
		}
		if time.Now().After(deadline) {
			t.Fatalf("host %s: never %s: %+v %v", n, what, s, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// order signs o (Guest, Agreement, ID and times filled in) by signers.
func (f *govFixture) order(t *testing.T, o gov.Order, signers ...string) (*gov.Order, []byte) {
	t.Helper()
	id, err := gov.NewOrderID()
	if err != nil {
		t.Fatal(err)
	}
	now := f.clock.Now().UTC().Truncate(time.Second)
	o.ID, o.Guest, o.Agreement = id, f.gid().String(), f.agreement.Version
	o.Issued, o.NotBefore, o.NotAfter = now, now.Add(-time.Minute), now.Add(time.Hour)
	file := o.Marshal()
	for _, c := range signers {
		if file, err = gov.SignOrder(file, f.custodians[c]); err != nil {
			t.Fatal(err)
		}
	}
	return &o, file
}

// activation returns an activate order for host, epoch 2, written by a new
// key, signed by alice (the minister) and bob.
func (f *govFixture) activation(t *testing.T, host string) (*gov.Order, []byte, *sig.PrivateKey) {
	t.Helper()
	w, err := sig.Generate()
	if err != nil {
		t.Fatal(err)
	}
	snap := make([]byte, 32)
	rand.Read(snap)
	o, file := f.order(t, gov.Order{Kind: gov.Activate, Dataset: govDataset, Epoch: 2, Host: host,
		Writer: base64.StdEncoding.EncodeToString(w.Public().Bytes()), Snapshot: hex.EncodeToString(snap),
		Reason: "home data centre lost"}, "alice", "bob")
	return o, file, w
}

// submit submits an order to hosts (default: every host), all at once;
// each must carry it out, or have carried it out already from another
// host's log.
func (f *govFixture) submit(t *testing.T, file []byte, hosts ...string) {
	t.Helper()
	if len(hosts) == 0 {
		hosts = govHostNames
	}
	errs := make([]error, len(hosts))
	var wg sync.WaitGroup
	for i, n := range hosts {
		c := f.anon(t, n)
		wg.Go(func() {
			b, err := c.SubmitOrder(context.Background(), file)
			switch {
			case err == nil:
				var out orderOutcome
				if err := json.Unmarshal(b, &out); err != nil || out.Logged == 0 {
					errs[i] = fmt.Errorf("order outcome %s: %v", b, err)
				}
			case errors.Is(err, transport.ErrRefused) && strings.Contains(err.Error(), "already carried out"):
				// Read from another host's log first.
			default:
				errs[i] = err
			}
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("host %s did not carry out the order: %v", hosts[i], err)
		}
	}
}

// govLogEntries reads host n's whole public log over HTTP, as an auditor.
func (f *govFixture) logEntries(t *testing.T, n string) []ledger.Entry {
	t.Helper()
	d := f.desc(n)
	v, err := ledger.NewVerifier(d.Log.Origin, d.Log.Keys)
	if err != nil {
		t.Fatal(err)
	}
	f.mu.Lock()
	hc := f.logHTTP[n]
	if hc == nil {
		hc = &http.Client{Transport: &http.Transport{TLSClientConfig: access.ClientConfig(nil, d.TLS)}, Timeout: 10 * time.Second}
		t.Cleanup(hc.CloseIdleConnections)
		f.logHTTP[n] = hc
	}
	f.mu.Unlock()
	c := &ledger.Client{Verifier: v, Fetch: ledger.HTTPFetcher(d.BaseURL()+"/log", hc)}
	ctx := context.Background()
	cp, err := c.Latest(ctx)
	if err != nil {
		t.Fatalf("log of %s: %v", n, err)
	}
	es, err := c.Entries(ctx, cp, 0, cp.Size)
	if err != nil {
		t.Fatalf("log of %s: %v", n, err)
	}
	return es
}

// waitLog polls host n's log until some entry satisfies ok.
func (f *govFixture) waitLog(t *testing.T, n, what string, ok func(ledger.Event) bool) ledger.Event {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		for _, e := range f.logEntries(t, n) {
			if ok(e.Event) {
				return e.Event
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("host %s's log never had %s", n, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func govPut(c *transport.Client, data string) error {
	b := []byte(data)
	return c.Put(context.Background(), shardstore.KindShard, shardstore.Sum(b), b)
}

// govHook is a webhook receiver.
type govHook struct {
	srv    *httptest.Server
	events chan govHookEvent
}

type govHookEvent struct {
	Host  string `json:"host"`
	Guest string `json:"guest"`
	Time  string `json:"time"`
	Event struct {
		Kind    gov.EffectKind `json:"kind"`
		Dataset string         `json:"dataset"`
		Epoch   uint64         `json:"epoch"`
		Detail  string         `json:"detail"`
	} `json:"event"`
}

func newGovHook(t *testing.T) *govHook {
	h := &govHook{events: make(chan govHookEvent, 64)}
	h.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var e govHookEvent
		b, _ := io.ReadAll(r.Body)
		if r.Method != http.MethodPost || r.Header.Get("Content-Type") != "application/json" || json.Unmarshal(b, &e) != nil {
			t.Errorf("webhook: %s %s %q", r.Method, r.Header.Get("Content-Type"), b)
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		select {
		case h.events <- e:
		default:
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(h.srv.Close)
	return h
}

// wait returns the next event of kind from host.
func (h *govHook) wait(t *testing.T, host string, kind gov.EffectKind) govHookEvent {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case e := <-h.events:
			if e.Host == host && e.Event.Kind == kind {
				return e
			}
		case <-timeout:
			t.Fatalf("webhook: no %s event from host %s", kind, host)
		}
	}
}

// TestGovArmedAndNotify: when home has been silent longer than the
// agreement's threshold the hosts arm, log it and call the webhook; arming
// activates nothing; a heartbeat from home's agent key disarms (logged and
// notified); a credential signed by any other key is refused.
func TestGovArmedAndNotify(t *testing.T) {
	t.Parallel()
	hook := newGovHook(t)
	f := newGovFixture(t, hook.srv.URL, 20*time.Second)
	gid := [16]byte(f.gid())

	// Home is silent past home_silent_seconds (60 s).
	f.clock.Advance(2 * time.Minute)
	e := hook.wait(t, "a", gov.EffArmed)
	if e.Guest != f.gid().String() || e.Event.Dataset != govDataset || e.Event.Epoch != 1 || !strings.Contains(e.Event.Detail, "armed") {
		t.Fatalf("armed webhook: %+v", e)
	}
	ev := f.waitLog(t, "a", "an armed entry", func(ev ledger.Event) bool { _, ok := ev.(ledger.Armed); return ok })
	if a := ev.(ledger.Armed); a.Guest != gid || a.Dataset != govDataset || a.Silent < 60 {
		t.Fatalf("armed entry: %+v", a)
	}
	// Arming activated nothing, at any host: still epoch 1, home's key.
	home := base64.StdEncoding.EncodeToString(f.g.agent.Public().Bytes())
	for _, n := range govHostNames {
		s := f.waitStatus(t, n, "armed", func(s govStatus) bool { return s.State.Datasets[govDataset].Phase == gov.Armed })
		if ds := s.State.Datasets[govDataset]; ds.Epoch != 1 || ds.Writer != home || ds.Host != "" || len(s.State.Orders) != 0 {
			t.Fatalf("host %s: arming changed more than the phase: %+v", n, s.State)
		}
	}
	// Home still writes at epoch 1 while armed.
	if err := govPut(f.writer(t, "a", f.g.agent, govDataset, 1), "written while armed"); err != nil {
		t.Fatalf("home's write while armed: %v", err)
	}

	// A credential signed by a key that is neither home's nor a writer's is
	// refused in the TLS handshake.
	stranger, err := sig.Generate()
	if err != nil {
		t.Fatal(err)
	}
	if err := f.writer(t, "a", stranger, "", 0).Heartbeat(context.Background()); !errors.Is(err, transport.ErrRefused) {
		t.Fatalf("heartbeat from a stranger's key: %v, want ErrRefused", err)
	}
	if s, _ := f.status(t, "a"); s.State.Datasets[govDataset].Phase != gov.Armed {
		t.Fatalf("a stranger's heartbeat disarmed: %+v", s.State)
	}

	// Home's heartbeat disarms.
	if err := f.writer(t, "a", f.g.agent, "", 0).Heartbeat(context.Background()); err != nil {
		t.Fatalf("heartbeat from home: %v", err)
	}
	hook.wait(t, "a", gov.EffDisarmed)
	f.waitLog(t, "a", "a disarmed entry", func(ev ledger.Event) bool {
		d, ok := ev.(ledger.Disarmed)
		return ok && d.Guest == gid && d.Dataset == govDataset
	})
	s, err := f.status(t, "a")
	if err != nil {
		t.Fatal(err)
	}
	if ds := s.State.Datasets[govDataset]; ds.Phase != gov.Normal || ds.Epoch != 1 {
		t.Fatalf("after home's heartbeat: %+v", ds)
	}
}

// TestGovFenceHeaders: with an agreement in force, a write must name its
// dataset and epoch, and only the current epoch of a governed dataset is
// accepted.
func TestGovFenceHeaders(t *testing.T) {
	t.Parallel()
	f := newGovFixture(t, "", 20*time.Second)
	for _, tc := range []struct {
		name    string
		dataset string
		epoch   uint64
		want    error
		msg     string
	}{
		{"no headers", "", 0, transport.ErrFenced, "must carry Embassy-Dataset"},
		{"epoch 1", govDataset, 1, nil, ""},
		{"epoch gap", govDataset, 2, transport.ErrFenced, "ahead of dataset"},
		{"unknown dataset", "payroll", 1, transport.ErrFenced, "not governed here"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := govPut(f.writer(t, "a", f.g.agent, tc.dataset, tc.epoch), "shard "+tc.name)
			if !errors.Is(err, tc.want) || tc.want != nil && !strings.Contains(err.Error(), tc.msg) {
				t.Fatalf("put: %v, want %v (%q)", err, tc.want, tc.msg)
			}
		})
	}

	// The refused write at the governed dataset is logged once per writer
	// key, dataset and epoch: not again from a new certificate of the same
	// key, and not for epochs and datasets the writer makes up (which would
	// let it grow the log without bound).
	for _, tc := range []struct {
		dataset string
		epoch   uint64
	}{{govDataset, 2}, {govDataset, 9}, {"payroll", 1}, {"made-up", 1}} {
		if err := govPut(f.writer(t, "a", f.g.agent, tc.dataset, tc.epoch), "again"); !errors.Is(err, transport.ErrFenced) {
			t.Fatalf("put to %s at epoch %d: %v", tc.dataset, tc.epoch, err)
		}
	}
	last := []byte("after the refusals")
	if err := govPut(f.writer(t, "a", f.g.agent, govDataset, 1), string(last)); err != nil {
		t.Fatal(err)
	}
	f.waitLog(t, "a", "the last write", func(ev ledger.Event) bool {
		s, ok := ev.(ledger.ShardStored)
		return ok && s.Object == shardstore.Sum(last)
	})
	var fenced []ledger.WriteFenced
	for _, e := range f.logEntries(t, "a") {
		if w, ok := e.Event.(ledger.WriteFenced); ok {
			fenced = append(fenced, w)
		}
	}
	if len(fenced) != 1 || fenced[0].Dataset != govDataset || fenced[0].Epoch != 2 || fenced[0].Guest != [16]byte(f.gid()) {
		t.Fatalf("write-fenced entries: %+v, want one for %s at epoch 2", fenced, govDataset)
	}
}

// TestGovReleaseShare: after an activate order naming host b is carried
// out, the custodians' key shares released to b are accepted by b only
// (under that order), logged and stored encrypted, and b's KEM key opens
// enough of them to rebuild the dataset secret. The old home is fenced out
// everywhere and its heartbeats are refused; the new writer writes.
func TestGovReleaseShare(t *testing.T) {
	t.Parallel()
	f := newGovFixture(t, "", 20*time.Second)
	ctx := context.Background()
	o, file, newWriter := f.activation(t, "b")
	f.submit(t, file)
	for _, n := range govHostNames {
		f.waitStatus(t, n, "active on b", func(s govStatus) bool {
			ds := s.State.Datasets[govDataset]
			return ds.Phase == gov.Active && ds.Epoch == 2 && ds.Host == "b" && ds.Order == o.IDString()
		})
	}

	// Fencing after activation: the old home is refused at both epochs
	// (stale, then wrong writer), its heartbeat too; the new writer writes.
	for _, epoch := range []uint64{1, 2} {
		if err := govPut(f.writer(t, "c", f.g.agent, govDataset, epoch), "seized home"); !errors.Is(err, transport.ErrFenced) {
			t.Fatalf("old home's write at epoch %d: %v, want ErrFenced", epoch, err)
		}
	}
	if err := f.writer(t, "c", f.g.agent, "", 0).Heartbeat(ctx); !errors.Is(err, transport.ErrRefused) || !strings.Contains(err.Error(), "403") {
		t.Fatalf("fenced-out home's heartbeat: %v, want 403", err)
	}
	if err := govPut(f.writer(t, "c", newWriter, govDataset, 2), "continuity"); err != nil {
		t.Fatalf("the new writer's write: %v", err)
	}

	bKEM, err := f.desc("b").KEM()
	if err != nil {
		t.Fatal(err)
	}
	release := func(c string, order [16]byte) []byte {
		t.Helper()
		r, err := share.Release(f.shares[c], f.custodians[c], share.ReleaseTarget{Dataset: f.ds, Order: order, Host: "b", HostKEM: bKEM})
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	// Sent to the wrong host: refused.
	if _, err := f.anon(t, "a").SubmitRelease(ctx, release("alice", o.ID)); !errors.Is(err, transport.ErrRefused) || !strings.Contains(err.Error(), "for host b") {
		t.Fatalf("release for b sent to a: %v", err)
	}
	// Under another order: refused.
	other, err := gov.NewOrderID()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.anon(t, "b").SubmitRelease(ctx, release("alice", other)); !errors.Is(err, transport.ErrRefused) || !strings.Contains(err.Error(), "not active on this host under order") {
		t.Fatalf("release under another order: %v", err)
	}
	// Alice's and bob's releases: accepted, counted, logged, stored.
	for i, c := range []string{"alice", "bob"} {
		r := release(c, o.ID)
		b, err := f.anon(t, "b").SubmitRelease(ctx, r)
		if err != nil {
			t.Fatalf("release by %s: %v", c, err)
		}
		var out struct {
			Dataset, Order, Custodian string
			Released, Threshold       int
		}
		if err := json.Unmarshal(b, &out); err != nil || out.Released != i+1 || out.Threshold != 2 || out.Order != o.IDString() || out.Custodian != c {
			t.Fatalf("release by %s: %s %v", c, b, err)
		}
		// The same release again changes nothing.
		if _, err := f.anon(t, "b").SubmitRelease(ctx, r); err != nil {
			t.Fatalf("release by %s again: %v", c, err)
		}
	}
	var released []ledger.ShareReleased
	for deadline := time.Now().Add(10 * time.Second); len(released) < 2 && time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		released = nil
		for _, e := range f.logEntries(t, "b") {
			if r, ok := e.Event.(ledger.ShareReleased); ok {
				released = append(released, r)
			}
		}
	}
	if len(released) != 2 {
		t.Fatalf("host b logged %d share releases, want 2: %+v", len(released), released)
	}
	for i, c := range []string{"alice", "bob"} {
		r := released[i]
		if r.Dataset != govDataset || r.Order != o.ID || r.Guest != [16]byte(f.gid()) || r.Custodian != f.custodians[c].Fingerprint() {
			t.Fatalf("share-released entry %d: %+v", i, r)
		}
	}

	// b's KEM key opens the stored releases and they rebuild the secret.
	dir := filepath.Join(f.hosts["b"].dir, govDir, f.gid().String(), releasesDir, o.IDString())
	ents, err := os.ReadDir(dir)
	if err != nil || len(ents) != 2 {
		t.Fatalf("stored releases in %s: %v %v", dir, ents, err)
	}
	kem, err := LoadKEMKey(f.hosts["b"].dir)
	if err != nil {
		t.Fatal(err)
	}
	var shares []*share.Share
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		sh, err := share.OpenRelease(b, kem, share.ReleaseTarget{Dataset: f.ds, Order: o.ID, Host: "b"})
		if err != nil {
			t.Fatalf("open stored release %s: %v", e.Name(), err)
		}
		shares = append(shares, sh)
	}
	ds, secret, err := share.Combine(shares)
	if err != nil {
		t.Fatalf("combine released shares: %v", err)
	}
	if err := f.ds.Check(secret); err != nil || !ds.Equal(f.ds) || !bytes.Equal(secret.Bytes(), f.secret.Bytes()) {
		t.Fatalf("rebuilt secret: %v", err)
	}
}

// TestGovOrderNotCosigned: with the host's witnesses down, an order is
// logged but not carried out (503, state unchanged: log before act); once
// they are back a resubmission carries it out without logging it twice.
func TestGovOrderNotCosigned(t *testing.T) {
	t.Parallel()
	f := newGovFixture(t, "", 1500*time.Millisecond)
	f.stop(t, "b", "c", "d")
	o, file, _ := f.activation(t, "b")
	a := f.anon(t, "a")
	if _, err := a.SubmitOrder(context.Background(), file); !errors.Is(err, transport.ErrUnavailable) || !strings.Contains(err.Error(), "not carried out") {
		t.Fatalf("order with the witnesses down: %v, want 503 not carried out", err)
	}
	s, err := f.status(t, "a")
	if err != nil {
		t.Fatal(err)
	}
	if ds := s.State.Datasets[govDataset]; ds.Epoch != 1 || ds.Phase != gov.Normal || len(s.State.Orders) != 0 {
		t.Fatalf("an order that was not cosigned changed the state: %+v", s.State)
	}
	// Home still writes at epoch 1 at host a.
	if err := govPut(f.writer(t, "a", f.g.agent, govDataset, 1), "before the witnesses return"); err != nil {
		t.Fatalf("home's write: %v", err)
	}

	for _, n := range []string{"b", "c", "d"} {
		f.start(t, n)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		_, err := a.SubmitOrder(context.Background(), file)
		if err == nil || errors.Is(err, transport.ErrRefused) && strings.Contains(err.Error(), "already carried out") {
			break
		}
		if !errors.Is(err, transport.ErrUnavailable) || time.Now().After(deadline) {
			t.Fatalf("resubmission: %v", err)
		}
	}
	f.waitStatus(t, "a", "active on b", func(s govStatus) bool {
		ds := s.State.Datasets[govDataset]
		return ds.Phase == gov.Active && ds.Epoch == 2 && ds.Order == o.IDString()
	})
	f.waitLog(t, "a", "order-carried-out", func(ev ledger.Event) bool {
		c, ok := ev.(ledger.OrderCarriedOut)
		return ok && c.Order == o.ID
	})
	logged, carried := 0, 0
	for _, e := range f.logEntries(t, "a") {
		switch ev := e.Event.(type) {
		case ledger.OrderLogged:
			if bytes.Equal(ev.Order, file) {
				logged++
			}
		case ledger.OrderCarriedOut:
			if ev.Order == o.ID {
				carried++
				if ev.Epoch != 2 {
					t.Fatalf("order-carried-out: %+v", ev)
				}
			}
		}
	}
	if logged != 1 || carried != 1 {
		t.Fatalf("host a logged the order %d times and carried it out %d times, want 1 and 1", logged, carried)
	}
	// The agreement's adoption was logged once, not again on the restart.
	adopted := 0
	for _, e := range f.logEntries(t, "b") {
		if ev, ok := e.Event.(ledger.AgreementAdopted); ok {
			if ev.Guest != [16]byte(f.gid()) || ev.Version != 1 || gov.HashPrefix+hex.EncodeToString(ev.Hash[:]) != f.agreement.Hash() {
				t.Fatalf("agreement-adopted entry: %+v", ev)
			}
			adopted++
		}
	}
	if adopted != 1 {
		t.Fatalf("host b logged the agreement's adoption %d times, want once", adopted)
	}
}

// TestGovSyncCatchesUp: a host that was down when an activation was carried
// out reads it from the others' logs. While it cannot carry it out (here:
// no cosigned checkpoint in time) it must keep refusing writes, and it must
// try again on later passes rather than skip the entry: otherwise it would
// accept the fenced-out home's writes at the old epoch.
func TestGovSyncCatchesUp(t *testing.T) {
	t.Parallel()
	f := newGovFixture(t, "", 20*time.Second)
	f.stop(t, "c")
	o, file, newWriter := f.activation(t, "b")
	f.submit(t, file, "a", "b", "d")

	// c returns, but its attempts to carry the order out give up at once
	// unless a cosigned checkpoint already covers it (OrderTimeout 1 ns):
	// the first ones fail. Until one succeeds, c must refuse writes.
	opt := f.opt
	opt.OrderTimeout = time.Nanosecond
	f.startWith(t, "c", opt)
	for end := time.Now().Add(1500 * time.Millisecond); time.Now().Before(end); time.Sleep(100 * time.Millisecond) {
		if err := govPut(f.writer(t, "c", f.g.agent, govDataset, 1), "seized home"); err == nil {
			t.Fatal("host c accepted the fenced-out home's write before carrying out the activation")
		}
		if s, err := f.status(t, "c"); err == nil && s.Synced && s.State.Datasets[govDataset].Epoch == 1 {
			t.Fatalf("host c reports synced without the activation: %+v", s.State)
		}
	}
	// Later passes retry the entry and carry it out.
	f.waitStatus(t, "c", "synced at epoch 2", func(s govStatus) bool {
		ds := s.State.Datasets[govDataset]
		return s.Synced && ds.Epoch == 2 && ds.Order == o.IDString()
	})

	// After a restart it still fences (state and sync progress agree).
	f.stop(t, "c")
	f.start(t, "c")
	f.waitStatus(t, "c", "synced", func(s govStatus) bool { return s.Synced })
	if err := govPut(f.writer(t, "c", f.g.agent, govDataset, 1), "seized home"); !errors.Is(err, transport.ErrFenced) {
		t.Fatalf("host c on the old home's write: %v, want ErrFenced", err)
	}
	if err := govPut(f.writer(t, "c", newWriter, govDataset, 2), "continuity"); err != nil {
		t.Fatalf("host c on the new writer's write: %v", err)
	}
}

// TestGovLateOrder: a host that was down for longer than an order was valid
// carries it out from the other hosts' logs only if at least two of them
// logged it; one host's log alone could resurrect an order the custodians
// never used, backdated.
func TestGovLateOrder(t *testing.T) {
	t.Parallel()
	f := newGovFixture(t, "", 20*time.Second)

	// Three hosts carry out an activation while d is down; d returns after
	// the order expired and carries it out, judged at when it was logged.
	f.stop(t, "d")
	o, file, _ := f.activation(t, "b")
	f.submit(t, file, "a", "b", "c")
	f.clock.Advance(2 * time.Hour)
	f.start(t, "d")
	f.waitStatus(t, "d", "synced at epoch 2 from the expired order", func(s govStatus) bool {
		ds := s.State.Datasets[govDataset]
		return s.Synced && ds.Epoch == 2 && ds.Order == o.IDString()
	})
	if err := govPut(f.writer(t, "d", f.g.agent, govDataset, 1), "seized home"); !errors.Is(err, transport.ErrFenced) {
		t.Fatalf("host d on the old home's write: %v, want ErrFenced", err)
	}

	// A return order that only a logged (the others were down, so a could
	// not get it cosigned), read by the others after it expired: a carries
	// it out once they are back, but they do not, on a's word alone.
	f.stop(t, "b", "c", "d")
	ret, rfile := f.order(t, gov.Order{Kind: gov.Return, Dataset: govDataset, Epoch: 3,
		Writer: base64.StdEncoding.EncodeToString(f.g.agent.Public().Bytes()), Reason: "home is back"}, "alice", "bob")
	if _, err := f.anon(t, "a").SubmitOrder(context.Background(), rfile); err == nil {
		t.Fatal("host a carried out an order with no witness up")
	}
	f.clock.Advance(2 * time.Hour)
	for _, n := range []string{"b", "c", "d"} {
		f.start(t, n)
	}
	f.waitStatus(t, "a", "the return carried out at a", func(s govStatus) bool {
		return s.State.Datasets[govDataset].Epoch == 3
	})
	for _, n := range []string{"b", "c"} {
		f.waitStatus(t, n, "synced", func(s govStatus) bool { return s.Synced })
	}
	time.Sleep(2 * f.opt.SyncInterval)
	for _, n := range []string{"b", "c", "d"} {
		s, err := f.status(t, n)
		if err != nil {
			t.Fatal(err)
		}
		if ds := s.State.Datasets[govDataset]; ds.Epoch != 2 || slices.Contains(s.State.Orders, ret.IDString()) {
			t.Fatalf("host %s carried out an expired order only one host logged: %+v", n, ds)
		}
	}
}
