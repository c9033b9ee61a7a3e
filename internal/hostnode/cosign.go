package hostnode

import (
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"net/http"
	"path/filepath"
	"sync"
	"time"

	"github.com/embassy-project/embassy/internal/access"
	"github.com/embassy-project/embassy/internal/ledger"
	"github.com/embassy-project/embassy/internal/transport"
	"github.com/embassy-project/embassy/internal/witness"
)

// cosigner is the host's part in witnessing: it runs a witness for its
// peers' logs, records what it cosigned in its own log in batches, and asks
// its peers' witnesses to cosign its own checkpoints.
type cosigner struct {
	events   *events
	wit      *witness.Witness // nil when no peer has a log
	batcher  *witness.Batcher
	peers    []*peerWitness
	interval time.Duration
	// threshold is how many peer cosignatures a stored cosigned checkpoint
	// must carry.
	threshold int
	now       func() time.Time
	log       *slog.Logger
	metrics   *metrics

	mu sync.Mutex
	// batchIdx are the indices of this log's own cosign-batch entries (this
	// process's); the anti-ping-pong rule skips checkpoints that add only
	// those.
	batchIdx map[uint64]bool
	// witnessed is the largest own size any peer cosigned.
	witnessed uint64
	warned    uint64 // the checkpoint size last warned about
	// kick asks run for a round now (an order waits for cosigning).
	kick chan struct{}
}

// peerWitness is a peer's witness this host submits its checkpoints to.
type peerWitness struct {
	d      *transport.Descriptor
	hc     *http.Client
	hint   uint64 // the size the witness last cosigned (or told us)
	warned uint64 // the checkpoint size last warned about
}

func newCosigner(dir string, cfg *Config, ev *events, lg *slog.Logger, opt Options, m *metrics) (*cosigner, error) {
	peers, err := loadPeers(dir, cfg)
	if err != nil {
		return nil, err
	}
	th := cfg.WitnessThreshold
	if th == 0 {
		th = min(2, len(peers))
	}
	c := &cosigner{events: ev, batcher: witness.NewBatcher(opt.CosignInterval), interval: opt.CosignInterval, threshold: th,
		now: opt.Now, log: lg, metrics: m, batchIdx: map[uint64]bool{}, kick: make(chan struct{}, 1)}
	var logs []witness.Log
	for _, d := range peers {
		if d.HasLog() {
			logs = append(logs, witness.Log{Origin: d.Log.Origin, Verifiers: d.Log.Keys})
		}
		c.peers = append(c.peers, &peerWitness{d: d, hc: pinnedClient(d)})
	}
	if len(logs) > 0 {
		keys, err := loadKey(dir, witnessKeyFile, witness.ParseKeys)
		if err != nil {
			return nil, err
		}
		c.wit, err = witness.New(witness.Config{Dir: filepath.Join(dir, witnessDir), Keys: keys, Logs: logs,
			Now: opt.Now, OnCosign: c.batcher.Add, Logger: lg})
		if err != nil {
			return nil, err
		}
	}
	return c, nil
}

func (c *cosigner) witnessHandler() http.Handler {
	if c.wit == nil {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			httpError(w, http.StatusNotFound, "this host witnesses no logs")
		})
	}
	return http.StripPrefix("/witness", c.wit.Handler())
}

// run cosigns until ctx ends: every interval it records a batch of its own
// cosignatures, then asks the peers to cosign its newest checkpoint.
func (c *cosigner) run(ctx context.Context) {
	for {
		wait := c.interval
		if !c.round(ctx) {
			// Peers that are still starting, or down: try again sooner
			// (bounded by the interval).
			wait = min(c.interval, time.Second)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		case <-c.kick:
		}
	}
}

// awaitCosigned waits until a checkpoint of at least size entries is
// cosigned by the threshold, asking for rounds meanwhile.
func (c *cosigner) awaitCosigned(ctx context.Context, size uint64) error {
	if len(c.peers) == 0 || c.threshold == 0 {
		return errors.New("this host has no witnesses configured")
	}
	for {
		c.mu.Lock()
		done := c.witnessed >= size
		c.mu.Unlock()
		if done {
			return nil
		}
		select {
		case c.kick <- struct{}{}:
		default:
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// clientFor returns the pinned HTTP client for a peer (or a new one for a
// descriptor that is not a peer).
func (c *cosigner) clientFor(d *transport.Descriptor) *http.Client {
	for _, p := range c.peers {
		if p.d.Name == d.Name && p.d.TLS == d.TLS {
			return p.hc
		}
	}
	return pinnedClient(d)
}

// round reports whether the newest checkpoint is cosigned by the threshold
// (or needs no cosigning).
func (c *cosigner) round(ctx context.Context) bool {
	if batch := c.batcher.Flush(c.now()); len(batch) > 0 {
		ev := ledger.Cosigned{}
		for _, b := range batch {
			ev.Checkpoints = append(ev.Checkpoints, ledger.Witnessed{Origin: b.Origin, Size: b.Size, Hash: b.Root})
		}
		idx, err := c.events.append(ctx, ev)
		if err != nil {
			c.batcher.Retry(batch)
			c.log.Warn("record cosignatures", "err", err)
		} else {
			c.mu.Lock()
			c.batchIdx[idx] = true
			c.mu.Unlock()
		}
	}
	if len(c.peers) > 0 {
		return c.submit(ctx)
	}
	return true
}

// submit asks every peer witness, in parallel and each bounded in time, to
// cosign the newest checkpoint, and stores what they return. It reports
// whether the threshold was met (or nothing needed cosigning).
func (c *cosigner) submit(ctx context.Context) bool {
	cp, err := c.events.log.Checkpoint(ctx)
	if err != nil {
		c.log.Warn("read own checkpoint", "err", err)
		return false
	}
	parsed, err := c.events.log.Verifier().ParseCheckpoint(cp)
	if err != nil {
		c.log.Error("own checkpoint does not verify", "err", err)
		return false
	}
	c.mu.Lock()
	witnessed := c.witnessed
	c.mu.Unlock()
	need, _ := witness.NeedsCosign(witnessed, parsed.Size, func(i uint64) (bool, error) {
		c.mu.Lock()
		defer c.mu.Unlock()
		return c.batchIdx[i], nil
	})
	if !need {
		return true
	}
	var wg sync.WaitGroup
	sigs := make([][]byte, len(c.peers))
	for i, p := range c.peers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sctx, cancel := context.WithTimeout(ctx, c.interval+5*time.Second)
			defer cancel()
			s, err := witness.Submit(sctx, p.hc, p.d.BaseURL()+"/witness", cp, min(p.hint, parsed.Size),
				func(ctx context.Context, old uint64) ([][]byte, error) {
					return c.events.log.ConsistencyProof(ctx, old, parsed.Size)
				})
			if err != nil {
				if p.warned != parsed.Size {
					p.warned = parsed.Size
					c.log.Warn("cosignature not obtained", "witness", p.d.Name, "size", parsed.Size, "err", err)
				}
				var ce *witness.ConflictError
				if asConflict(err, &ce) && ce.Size <= parsed.Size {
					p.hint = ce.Size
				}
				return
			}
			p.hint = parsed.Size
			sigs[i] = s
			c.metrics.cosigned.WithLabelValues(p.d.Name).Set(float64(parsed.Size))
		}()
	}
	wg.Wait()
	var got [][]byte
	for _, s := range sigs {
		if s != nil {
			got = append(got, s)
		}
	}
	// Keep a better cosigned checkpoint rather than replace it with one
	// fewer witnesses vouch for (a peer that is down or slow this round).
	if len(got) == 0 || len(got) < c.threshold {
		if c.warned != parsed.Size {
			c.warned = parsed.Size // once per checkpoint, not every retry
			c.log.Warn("checkpoint not cosigned by the witness threshold", "size", parsed.Size, "cosignatures", len(got), "threshold", c.threshold)
		}
		return false
	}
	merged, err := witness.Merge(cp, got...)
	if err != nil {
		c.log.Warn("merge cosignatures", "err", err)
		return false
	}
	if err := c.events.log.AddCosignatures(merged); err != nil {
		c.log.Warn("store cosigned checkpoint", "err", err)
		return false
	}
	c.mu.Lock()
	if parsed.Size > c.witnessed {
		c.witnessed = parsed.Size
	}
	c.mu.Unlock()
	return true
}

func asConflict(err error, target **witness.ConflictError) bool {
	return errors.As(err, target)
}

// pinnedClient is an HTTP client that talks only to the host whose TLS key
// d pins, with no client certificate.
func pinnedClient(d *transport.Descriptor) *http.Client {
	return &http.Client{
		Timeout: 60 * time.Second,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{
			MinVersion:         tls.VersionTLS13,
			InsecureSkipVerify: true, // replaced by the pin check
			VerifyConnection:   access.PinnedServer(d.TLS),
		}},
	}
}
