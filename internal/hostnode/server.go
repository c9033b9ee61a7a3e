package hostnode

import (
	"context"
	"crypto/hpke"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/embassy-project/embassy/internal/access"
	"github.com/embassy-project/embassy/internal/guest"
	"github.com/embassy-project/embassy/internal/proof"
	"github.com/embassy-project/embassy/internal/shardstore"
	"github.com/embassy-project/embassy/internal/transport"
	"github.com/embassy-project/embassy/internal/wire"
)

// Options tune a server; zero values take the defaults.
type Options struct {
	Logger *slog.Logger
	// Now is the clock (tests may move it).
	Now func() time.Time
	// ReadHeaderTimeout and IdleTimeout bound slow clients (and BodyRate
	// slow uploads).
	ReadHeaderTimeout time.Duration
	IdleTimeout       time.Duration
	// BodyRate is the slowest accepted upload, in bytes per second: a request
	// body of n bytes must arrive within ReadHeaderTimeout + n/BodyRate.
	BodyRate int64
	// ShutdownTimeout bounds draining requests on shutdown.
	ShutdownTimeout time.Duration
	// CosignInterval is how often the host asks its peers to cosign its
	// newest checkpoint.
	CosignInterval time.Duration
	// MetricsListen overrides the configuration's metrics address.
	MetricsListen string
	// OpenStore opens a guest's store when the configuration names a URL.
	OpenStore StoreOpener
	// OrderTimeout bounds how long an order waits for a cosigned checkpoint
	// covering it before the submission is answered "not carried out yet".
	OrderTimeout time.Duration
	// GovernanceInterval is how often activation thresholds are checked;
	// SyncInterval how often the other hosts' logs are read for missed
	// orders.
	GovernanceInterval time.Duration
	SyncInterval       time.Duration
}

func (o *Options) defaults() {
	if o.Logger == nil {
		o.Logger = slog.New(slog.NewJSONHandler(os.Stderr, nil))
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.ReadHeaderTimeout == 0 {
		o.ReadHeaderTimeout = 10 * time.Second
	}
	if o.IdleTimeout == 0 {
		o.IdleTimeout = 120 * time.Second
	}
	if o.BodyRate == 0 {
		o.BodyRate = 256 << 10
	}
	if o.ShutdownTimeout == 0 {
		o.ShutdownTimeout = 20 * time.Second
	}
	if o.CosignInterval == 0 {
		o.CosignInterval = 5 * time.Second
	}
	if o.OrderTimeout == 0 {
		o.OrderTimeout = 60 * time.Second
	}
	if o.GovernanceInterval == 0 {
		o.GovernanceInterval = 5 * time.Second
	}
	if o.SyncInterval == 0 {
		o.SyncInterval = 10 * time.Second
	}
}

// Server is a running host node.
type Server struct {
	dir     string
	cfg     *Config
	opt     Options
	log     *slog.Logger
	tenants map[guest.ID]*tenant
	cert    tls.Certificate
	events  *events
	metrics *metrics
	cosign  *cosigner
	kem     hpke.PrivateKey // nil if the host has no kem.key
	// putSlots and getSlots bound concurrent buffered uploads and reads.
	putSlots, getSlots chan struct{}

	ln   net.Listener
	srv  *http.Server
	msrv *http.Server
	wg   sync.WaitGroup
}

// Open loads the host directory and prepares the server without listening.
func Open(ctx context.Context, dir string, opt Options) (*Server, error) {
	opt.defaults()
	cfg, err := LoadConfig(dir)
	if err != nil {
		return nil, err
	}
	cert, err := tls.LoadX509KeyPair(filepath.Join(dir, tlsCertFile), filepath.Join(dir, tlsKeyFile))
	if err != nil {
		return nil, fmt.Errorf("load TLS key pair: %w", err)
	}
	if opt.MetricsListen != "" {
		cfg.MetricsListen = opt.MetricsListen
	}
	s := &Server{dir: dir, cfg: cfg, opt: opt, log: opt.Logger.With("host", cfg.Name), cert: cert,
		tenants: map[guest.ID]*tenant{}, putSlots: make(chan struct{}, 8), getSlots: make(chan struct{}, 16)}
	s.metrics = newMetrics()
	if s.kem, err = loadKEM(dir); err != nil {
		return nil, err
	}
	for _, g := range cfg.Guests {
		b, err := os.ReadFile(filepath.Join(dir, guestsDir, g.ID+".pub"))
		if err != nil {
			return nil, fmt.Errorf("guest %s: %w", g.ID, err)
		}
		id, err := guest.ParseIdentity(b)
		if err != nil {
			return nil, fmt.Errorf("guest %s: %w", g.ID, err)
		}
		if id.Guest.String() != g.ID {
			return nil, fmt.Errorf("guest %s: identity file is for guest %s", g.ID, id.Guest)
		}
		t, err := openTenant(ctx, dir, cfg, g, id, opt.OpenStore)
		if err != nil {
			return nil, fmt.Errorf("guest %s: %w", g.ID, err)
		}
		if t.gov, err = loadGov(dir, cfg, id, opt.Now()); err != nil {
			return nil, fmt.Errorf("guest %s: governance: %w", g.ID, err)
		}
		s.tenants[id.Guest] = t
		s.metrics.used.WithLabelValues(g.ID).Set(float64(t.used.Load()))
	}
	// The log outlives ctx (which only bounds opening): it is closed in
	// order by Serve or Close.
	s.events, err = openEvents(context.WithoutCancel(ctx), dir, cfg, opt.Now, s.log)
	if err != nil {
		return nil, err
	}
	s.events.onAppend = func(idx uint64) { s.metrics.logSize.Set(float64(idx + 1)) }
	s.cosign, err = newCosigner(dir, cfg, s.events, s.log, opt, s.metrics)
	if err != nil {
		s.events.close(context.Background())
		return nil, err
	}
	if err := s.logAdoptions(ctx); err != nil {
		s.events.close(context.Background())
		return nil, fmt.Errorf("log agreement adoption: %w", err)
	}
	return s, nil
}

func (s *Server) lookupGuest(g guest.ID) *guest.Identity {
	if t := s.tenants[g]; t != nil {
		return t.identity()
	}
	return nil
}

// Handler returns the host's HTTP handler (routes only; TLS client checks
// happen in the handshake, see TLSConfig).
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("PUT /v1/guests/{guest}/{kind}/{id}", s.authed(true, s.handlePut))
	mux.HandleFunc("GET /v1/guests/{guest}/{kind}/{id}", s.authed(false, s.handleGet))
	mux.HandleFunc("HEAD /v1/guests/{guest}/{kind}/{id}", s.authed(false, s.handleHead))
	mux.HandleFunc("GET /v1/guests/{guest}/{kind}/{$}", s.authed(false, s.handleList))
	mux.HandleFunc("POST /v1/guests/{guest}/proof", s.authed(false, s.handleProof))
	mux.HandleFunc("POST /v1/guests/{guest}/retain", s.authed(true, s.handleRetain))
	mux.HandleFunc("POST /v1/guests/{guest}/heartbeat", s.authed(true, s.handleHeartbeat))
	mux.HandleFunc("POST /v1/guests/{guest}/identity", s.authed(true, s.handleIdentity))
	mux.HandleFunc("POST /v1/guests/{guest}/orders", s.handleOrder)
	mux.HandleFunc("GET /v1/guests/{guest}/governance", s.handleGovernance)
	mux.HandleFunc("POST /v1/guests/{guest}/releases", s.handleRelease)
	mux.Handle("GET /log/", http.StripPrefix("/log/", s.events.handler()))
	mux.Handle("POST /witness/add-checkpoint", s.cosign.witnessHandler())
	mux.Handle("GET /witness/view", s.cosign.witnessHandler())
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok\n") })
	return s.metrics.instrument(mux)
}

// TLSConfig is the server's TLS configuration: TLS 1.3 only; a client
// certificate is optional (certless clients reach only the public log and
// witness paths), but one that is presented must carry a valid credential
// for a guest this host serves, or the handshake fails.
func (s *Server) TLSConfig() *tls.Config {
	skew := time.Duration(s.cfg.ClockSkewSeconds) * time.Second
	return &tls.Config{
		MinVersion:       tls.VersionTLS13,
		Certificates:     []tls.Certificate{s.cert},
		ClientAuth:       tls.RequestClientCert,
		VerifyConnection: access.VerifyConnectionWriters(s.lookupGuest, s.writersFor, s.opt.Now, skew),
		// HTTP/1.1: one object per request and connection at a time, and a
		// refused credential surfaces to the client as a TLS alert.
		NextProtos: []string{"http/1.1"},
	}
}

// Listen binds the configured address (or addr, if not empty).
func (s *Server) Listen(addr string) error {
	if addr == "" {
		addr = s.cfg.Listen
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listen %s: %w", addr, err)
	}
	s.ln = ln
	return nil
}

// Close releases a server that was opened but never served.
func (s *Server) Close(ctx context.Context) error {
	if s.ln != nil {
		s.ln.Close()
	}
	return s.events.close(ctx)
}

// Addr returns the bound address.
func (s *Server) Addr() net.Addr { return s.ln.Addr() }

// Serve runs until ctx is cancelled, then shuts down in order.
func (s *Server) Serve(ctx context.Context) error {
	if s.ln == nil {
		if err := s.Listen(""); err != nil {
			return err
		}
	}
	s.srv = &http.Server{
		Handler:           s.Handler(),
		TLSConfig:         s.TLSConfig(),
		ReadHeaderTimeout: s.opt.ReadHeaderTimeout,
		IdleTimeout:       s.opt.IdleTimeout,
		MaxHeaderBytes:    16 << 10,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
		TLSNextProto:      map[string]func(*http.Server, *tls.Conn, http.Handler){},
	}
	errc := make(chan error, 2)
	go func() { errc <- s.srv.ServeTLS(s.ln, "", "") }()
	if s.cfg.MetricsListen != "" {
		mln, err := net.Listen("tcp", s.cfg.MetricsListen)
		if err != nil {
			s.srv.Close()
			s.events.close(context.Background())
			return fmt.Errorf("metrics listen %s: %w", s.cfg.MetricsListen, err)
		}
		s.msrv = &http.Server{Handler: s.metrics.handler(), ReadHeaderTimeout: 5 * time.Second}
		go func() { errc <- s.msrv.Serve(mln) }()
	}
	cctx, stopCosign := context.WithCancel(ctx)
	s.wg.Add(1)
	go func() { defer s.wg.Done(); s.cosign.run(cctx) }()
	s.wg.Add(1)
	go func() { defer s.wg.Done(); s.govLoop(cctx) }()
	s.log.Info("serving", "addr", s.ln.Addr().String(), "guests", len(s.tenants), "peers", len(s.cfg.Peers))

	var serveErr error
	select {
	case <-ctx.Done():
	case serveErr = <-errc:
	}
	s.log.Info("shutting down")
	sctx, cancel := context.WithTimeout(context.Background(), s.opt.ShutdownTimeout)
	defer cancel()
	if err := s.srv.Shutdown(sctx); err != nil {
		s.srv.Close()
	}
	if s.msrv != nil {
		s.msrv.Shutdown(sctx)
	}
	stopCosign()
	s.wg.Wait()
	if err := s.events.close(sctx); err != nil {
		serveErr = errors.Join(serveErr, err)
	}
	if errors.Is(serveErr, http.ErrServerClosed) {
		serveErr = nil
	}
	s.log.Info("stopped")
	return serveErr
}

type handler func(w http.ResponseWriter, r *http.Request, p *access.Peer, t *tenant)

// authed resolves the peer from the TLS connection and the tenant from the
// path, and refuses anything the peer's credential does not allow.
func (s *Server) authed(write bool, h handler) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		p, ok := access.PeerFrom(r.TLS)
		if !ok {
			httpError(w, http.StatusUnauthorized, "a client certificate with an embassy credential is required")
			return
		}
		g, err := guest.ParseID(r.PathValue("guest"))
		if err != nil || g != p.Guest {
			httpError(w, http.StatusForbidden, "the credential is not for this guest")
			return
		}
		t := s.tenants[g]
		if t == nil {
			httpError(w, http.StatusForbidden, "guest not served here")
			return
		}
		if write && p.Role != access.Agent {
			httpError(w, http.StatusForbidden, "only the guest's agent may write")
			return
		}
		s.mustAnswer(w, r, func(w http.ResponseWriter) { h(w, r, p, t) })
	}
}

// mustAnswer runs h and answers 500 if h returned without answering.
func (s *Server) mustAnswer(w http.ResponseWriter, r *http.Request, h func(http.ResponseWriter)) {
	g := &answerGuard{ResponseWriter: w}
	h(g)
	if !g.wrote {
		s.log.Error("handler returned without an answer", "method", r.Method, "path", r.URL.Path)
		httpError(w, http.StatusInternalServerError, "no answer; retry")
	}
}

// answerGuard records whether a handler answered. A handler that returns
// without writing would otherwise answer an implicit 200 with no body,
// which a client reads as success: "stored" for an upload. Unwrap keeps
// http.ResponseController working through it.
type answerGuard struct {
	http.ResponseWriter
	wrote bool
}

func (g *answerGuard) WriteHeader(code int) {
	if code >= 200 {
		g.wrote = true
	}
	g.ResponseWriter.WriteHeader(code)
}

func (g *answerGuard) Write(b []byte) (int, error) {
	g.wrote = true
	return g.ResponseWriter.Write(b)
}

func (g *answerGuard) Unwrap() http.ResponseWriter { return g.ResponseWriter }

// maxBytes is http.MaxBytesReader on the connection's own writer, under the
// wrappers (answerGuard, the metrics' statusWriter): only through it does a
// body over the limit make the server close the connection after its
// answer, instead of reading on to reuse it.
func maxBytes(w http.ResponseWriter, body io.ReadCloser, n int64) io.ReadCloser {
	for {
		u, ok := w.(interface{ Unwrap() http.ResponseWriter })
		if !ok {
			break
		}
		w = u.Unwrap()
	}
	return http.MaxBytesReader(w, body, n)
}

func objectParams(r *http.Request) (shardstore.Kind, shardstore.ID, error) {
	kind := shardstore.Kind(r.PathValue("kind"))
	if err := shardstore.CheckKind(kind); err != nil {
		return "", shardstore.ID{}, err
	}
	id, err := shardstore.ParseID(r.PathValue("id"))
	if err != nil {
		return "", shardstore.ID{}, err
	}
	return kind, id, nil
}

func (s *Server) handlePut(w http.ResponseWriter, r *http.Request, p *access.Peer, t *tenant) {
	kind, id, err := objectParams(r)
	if err != nil {
		httpError(w, http.StatusBadRequest, err.Error())
		return
	}
	until, err := s.retainUntil(r)
	if err != nil {
		httpError(w, http.StatusBadRequest, err.Error())
		return
	}
	setRetentionHeader(w, t)
	if !s.fence(w, r, p, t) {
		return
	}
	rt, _ := t.store.(retainer)
	n := r.ContentLength
	switch {
	case n < 0:
		httpError(w, http.StatusLengthRequired, "Content-Length is required")
		return
	case n > s.cfg.MaxObjectBytes:
		s.metrics.refused.WithLabelValues("too-large").Inc()
		httpError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("%d bytes; this host accepts at most %d", n, s.cfg.MaxObjectBytes))
		return
	}
	// Bound the memory bodies take: at most putSlots uploads are buffered.
	select {
	case s.putSlots <- struct{}{}:
		defer func() { <-s.putSlots }()
	case <-r.Context().Done():
		httpError(w, http.StatusServiceUnavailable, "busy; retry") // not mustAnswer's 500: the host was busy
		return
	}
	// A body must arrive at BodyRate or faster.
	rc := http.NewResponseController(w)
	rc.SetReadDeadline(time.Now().Add(s.opt.ReadHeaderTimeout + time.Duration(n/s.opt.BodyRate)*time.Second))
	data := make([]byte, n)
	if _, err := io.ReadFull(maxBytes(w, r.Body, n), data); err != nil {
		s.metrics.refused.WithLabelValues("truncated").Inc()
		httpError(w, http.StatusBadRequest, "truncated upload: "+err.Error())
		return
	}
	// A shard's outboard (for storage proofs) is computed in the same pass
	// as the check of its address.
	var ob []byte
	var sum shardstore.ID
	if kind == shardstore.KindShard {
		ob, sum = proof.OutboardSum(data)
	} else {
		sum = shardstore.Sum(data)
	}
	if sum != id {
		s.metrics.refused.WithLabelValues("mismatch").Inc()
		httpError(w, http.StatusUnprocessableEntity, "content does not match its address")
		return
	}
	if _, err := t.store.Stat(r.Context(), kind, id); err == nil {
		if rt != nil && !until.IsZero() {
			// PutRetained on a stored object extends its retention (and
			// stores our bytes beside anything planted under its key).
			if err := rt.PutRetained(r.Context(), kind, id, data, until); err != nil {
				s.log.Error("extend retention", "guest", t.id.String(), "id", id.String(), "err", err)
				httpError(w, http.StatusInternalServerError, "extend retention failed; retry")
				return
			}
		}
		// Write-once: the same bytes are already stored. Log it again: the
		// first attempt may have stored the object and then failed to log
		// it (or crashed in between), and every stored object must be in
		// the log.
		if err := s.events.stored(r.Context(), t.id, kind, id, n, p); err != nil {
			s.log.Error("log stored object", "err", err)
			httpError(w, http.StatusServiceUnavailable, "the log is unavailable; retry")
			return
		}
		w.WriteHeader(http.StatusOK)
		return
	}
	if err := t.reserve(n); err != nil {
		s.metrics.refused.WithLabelValues("quota").Inc()
		httpError(w, http.StatusInsufficientStorage, err.Error())
		return
	}
	stored := false
	defer func() {
		t.settle(n, stored)
		s.metrics.used.WithLabelValues(t.id.String()).Set(float64(t.used.Load()))
	}()
	switch cp, checked := t.store.(checkedPutter); {
	case rt != nil && !until.IsZero():
		err = rt.PutRetained(r.Context(), kind, id, data, until)
	case checked:
		err = cp.PutChecked(r.Context(), kind, id, data) // sum == id, checked above
	default:
		err = t.store.Put(r.Context(), kind, id, data)
	}
	if err != nil {
		s.log.Error("store object", "guest", t.id.String(), "kind", string(kind), "id", id.String(), "err", err)
		if errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) {
			s.metrics.refused.WithLabelValues("disk-full").Inc()
			httpError(w, http.StatusInsufficientStorage, "host disk full")
			return
		}
		httpError(w, http.StatusInternalServerError, "store failed")
		return
	}
	stored = true
	if kind == shardstore.KindShard {
		if err := t.writeOutboard(id, ob); err != nil {
			// The shard is durable; the outboard is rebuilt on demand.
			s.log.Warn("write outboard", "id", id.String(), "err", err)
		}
	}
	if err := s.events.stored(r.Context(), t.id, kind, id, n, p); err != nil {
		s.log.Error("log stored object", "err", err)
		httpError(w, http.StatusServiceUnavailable, "the log is unavailable; retry")
		return
	}
	s.metrics.storedBytes.WithLabelValues(t.id.String()).Add(float64(n))
	w.WriteHeader(http.StatusCreated)
}

func (s *Server) handleGet(w http.ResponseWriter, r *http.Request, p *access.Peer, t *tenant) {
	kind, id, err := objectParams(r)
	if err != nil {
		httpError(w, http.StatusBadRequest, err.Error())
		return
	}
	// Bound the memory reads take, like uploads.
	select {
	case s.getSlots <- struct{}{}:
		defer func() { <-s.getSlots }()
	case <-r.Context().Done():
		httpError(w, http.StatusServiceUnavailable, "busy; retry") // not mustAnswer's 500: the host was busy
		return
	}
	data, err := t.store.Get(r.Context(), kind, id)
	if err != nil {
		s.objectError(w, t, kind, id, err)
		return
	}
	if err := s.events.read(r.Context(), t.id, kind, id, p); err != nil {
		// Every read is logged; no log, no read.
		s.log.Error("log read", "err", err)
		httpError(w, http.StatusServiceUnavailable, "the log is unavailable; retry")
		return
	}
	s.metrics.readBytes.WithLabelValues(t.id.String()).Add(float64(len(data)))
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Length", strconv.Itoa(len(data)))
	w.Write(data)
}

func (s *Server) handleHead(w http.ResponseWriter, r *http.Request, p *access.Peer, t *tenant) {
	kind, id, err := objectParams(r)
	if err != nil {
		httpError(w, http.StatusBadRequest, err.Error())
		return
	}
	size, err := t.store.Stat(r.Context(), kind, id)
	if err != nil {
		s.objectError(w, t, kind, id, err)
		return
	}
	setRetentionHeader(w, t)
	if rt, ok := t.store.(retainer); ok {
		until, err := rt.RetainUntil(r.Context(), kind, id)
		if err != nil {
			s.objectError(w, t, kind, id, err)
			return
		}
		w.Header().Set(transport.RetainUntilHeader, until.UTC().Format(time.RFC3339))
	}
	w.Header().Set("Content-Length", strconv.FormatInt(size, 10))
	w.WriteHeader(http.StatusOK)
}

func (s *Server) handleList(w http.ResponseWriter, r *http.Request, p *access.Peer, t *tenant) {
	kind := shardstore.Kind(r.PathValue("kind"))
	if err := shardstore.CheckKind(kind); err != nil {
		httpError(w, http.StatusBadRequest, err.Error())
		return
	}
	var b strings.Builder
	err := t.store.List(r.Context(), kind, func(id shardstore.ID, size int64) error {
		fmt.Fprintf(&b, "%s %d\n", id, size)
		return nil
	})
	if err != nil {
		s.log.Error("list", "err", err)
		httpError(w, http.StatusInternalServerError, "list failed")
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	io.WriteString(w, b.String())
}

func (s *Server) objectError(w http.ResponseWriter, t *tenant, kind shardstore.Kind, id shardstore.ID, err error) {
	switch {
	case errors.Is(err, shardstore.ErrNotFound):
		httpError(w, http.StatusNotFound, "not found")
	case errors.Is(err, wire.ErrCorrupt):
		s.log.Error("stored object is damaged", "guest", t.id.String(), "kind", string(kind), "id", id.String())
		s.metrics.damaged.Inc()
		httpError(w, http.StatusUnprocessableEntity, "the stored copy is damaged")
	default:
		s.log.Error("read object", "err", err)
		httpError(w, http.StatusInternalServerError, "read failed")
	}
}

func httpError(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	io.WriteString(w, msg+"\n")
}
