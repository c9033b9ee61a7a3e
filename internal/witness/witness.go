package witness

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"time"

	fnote "github.com/transparency-dev/formats/note"
	"golang.org/x/mod/sumdb/note"

	"github.com/embassy-project/embassy/internal/atomicfile"
	"github.com/embassy-project/embassy/internal/wire"
)

// Log is a log the witness cosigns for.
type Log struct {
	// Origin is the checkpoint origin line that names the log.
	Origin string
	// Verifiers are the log's note verifier keys. A checkpoint is accepted
	// only if every one of them signed it (a log with an Ed25519 and a
	// post-quantum key lists both).
	Verifiers []string
}

// Config configures a Witness.
type Config struct {
	// Dir holds one state file per log; created (0700) if missing.
	Dir string
	// Keys are the witness's signing keys.
	Keys Keys
	// Logs are the logs the witness cosigns for (at least one).
	Logs []Log
	// Now stamps the state files (default time.Now). Cosignature timestamps
	// come from the signers in transparency-dev/formats, which read the
	// system clock.
	Now func() time.Time
	// OnCosign, if set, is called after each cosignature, once the new
	// state is durable, while the log's lock is held: calls for one origin
	// come in the order the states were stored. It must return quickly
	// (Batcher.Add does).
	OnCosign func(origin string, size uint64, root [HashSize]byte)
	// Logger receives rejected forks and bad proofs (evidence of log
	// misbehaviour) and internal errors (default slog.Default()).
	Logger *slog.Logger
}

// Witness cosigns checkpoints of its configured logs. Its only goroutines are
// the HTTP server's request goroutines; it needs no shutdown beyond stopping
// that server.
type Witness struct {
	cfg     Config
	signers []note.Signer // Ed25519, ML-DSA-44
	logs    map[string]*logEntry
	// write stores a state file durably; atomicfile.Write, replaced by
	// fault-injection tests.
	write func(path string, data []byte) error
}

type logEntry struct {
	origin    string
	verifiers note.Verifiers
	keys      []note.Verifier
	path      string
	// lock serialises requests for the log (a channel so that waiting
	// respects the request's context) and guards state.
	lock  chan struct{}
	state State
}

// New checks cfg, loads the state files and returns a Witness.
func New(cfg Config) (*Witness, error) {
	if cfg.Dir == "" {
		return nil, errors.New("witness: no state directory")
	}
	if len(cfg.Logs) == 0 {
		return nil, errors.New("witness: no logs configured")
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	ed, ml, _, err := cfg.Keys.load()
	if err != nil {
		return nil, fmt.Errorf("witness: %w", err)
	}
	if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("witness: %w", err)
	}
	w := &Witness{
		cfg:     cfg,
		signers: []note.Signer{ed, ml},
		logs:    make(map[string]*logEntry, len(cfg.Logs)),
		write: func(path string, data []byte) error {
			return atomicfile.Write(path, data, 0o600)
		},
	}
	for _, l := range cfg.Logs {
		if !validOrigin(l.Origin) {
			return nil, fmt.Errorf("witness: invalid log origin %q", l.Origin)
		}
		if _, dup := w.logs[l.Origin]; dup {
			return nil, fmt.Errorf("witness: log %q configured twice", l.Origin)
		}
		vs, err := parseVerifiers(l.Verifiers)
		if err != nil {
			return nil, fmt.Errorf("witness: log %q: %w", l.Origin, err)
		}
		e := &logEntry{
			origin:    l.Origin,
			verifiers: note.VerifierList(vs...),
			keys:      vs,
			path:      filepath.Join(cfg.Dir, stateFileName(l.Origin)),
			lock:      make(chan struct{}, 1),
		}
		if e.state, err = loadState(e.path, l.Origin); err != nil {
			return nil, fmt.Errorf("witness: log %q: %w", l.Origin, err)
		}
		w.logs[l.Origin] = e
	}
	return w, nil
}

// parseVerifiers parses note verifier keys of any algorithm formats knows,
// rejecting an empty list and duplicates.
func parseVerifiers(keys []string) ([]note.Verifier, error) {
	if len(keys) == 0 {
		return nil, errors.New("no verifier keys")
	}
	type nameHash struct {
		name string
		hash uint32
	}
	seen := make(map[nameHash]bool)
	vs := make([]note.Verifier, 0, len(keys))
	for _, k := range keys {
		v, err := fnote.NewVerifier(k)
		if err != nil {
			return nil, fmt.Errorf("verifier key %q: %w", k, err)
		}
		if seen[nameHash{v.Name(), v.KeyHash()}] {
			return nil, fmt.Errorf("verifier key %q listed twice", k)
		}
		seen[nameHash{v.Name(), v.KeyHash()}] = true
		vs = append(vs, v)
	}
	return vs, nil
}

// loadState reads a log's state file; a missing file is the zero State.
func loadState(path, origin string) (State, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return State{}, nil
	}
	if err != nil {
		return State{}, fmt.Errorf("read state: %w", err)
	}
	s, err := parseState(b)
	if err != nil {
		return State{}, fmt.Errorf("read state %s: %w", path, err)
	}
	if s.Origin != origin {
		return State{}, fmt.Errorf("read state %s: %w", path, wire.Corruptf("file is for origin %q", s.Origin))
	}
	return s.State, nil
}

// State returns the witness's state for origin, or ErrUnknownLog.
func (w *Witness) State(origin string) (State, error) {
	l, ok := w.logs[origin]
	if !ok {
		return State{}, ErrUnknownLog
	}
	l.lock <- struct{}{}
	defer func() { <-l.lock }()
	return l.state, nil
}

// Handler serves POST add-checkpoint and GET view?origin=ORIGIN (View);
// mount it under the witness's
// submission prefix (http.StripPrefix). Request timeouts and connection
// limits are the caller's http.Server's.
func (w *Witness) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /add-checkpoint", w.serveAddCheckpoint)
	mux.HandleFunc("GET /view", w.serveView)
	return mux
}

func (w *Witness) serveAddCheckpoint(rw http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(http.MaxBytesReader(rw, r.Body, MaxRequestSize))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			err = fmt.Errorf("%w: over %d bytes", ErrTooLarge, MaxRequestSize)
		} else {
			err = wire.Corruptf("read body: %v", err)
		}
		w.writeError(rw, err)
		return
	}
	sigs, err := w.AddCheckpoint(r.Context(), body)
	if err != nil {
		w.writeError(rw, err)
		return
	}
	rw.Header().Set("Content-Type", "text/x.tlog.signature")
	rw.WriteHeader(http.StatusOK)
	_, _ = rw.Write(sigs)
}

func (w *Witness) writeError(rw http.ResponseWriter, err error) {
	code := statusOf(err)
	var ce *ConflictError
	if errors.As(err, &ce) {
		rw.Header().Set("Content-Type", "text/x.tlog.size")
		rw.WriteHeader(code)
		_, _ = io.WriteString(rw, sizeLine(ce.Size))
		return
	}
	msg := err.Error()
	if code == http.StatusInternalServerError {
		w.cfg.Logger.Error("witness: add-checkpoint failed", "err", err)
		msg = "internal error"
	}
	http.Error(rw, msg, code)
}

// AddCheckpoint handles one add-checkpoint request body and returns the
// cosignature lines, or an error that statusOf maps to the HTTP status. It is
// the handler without HTTP, for a witness that runs in the same process as
// the log.
func (w *Witness) AddCheckpoint(ctx context.Context, body []byte) ([]byte, error) {
	req, err := ParseRequest(body)
	if err != nil {
		return nil, err
	}
	l, ok := w.logs[origin(req.Checkpoint)]
	if !ok {
		return nil, fmt.Errorf("%w: %q", ErrUnknownLog, origin(req.Checkpoint))
	}
	n, err := note.Open(req.Checkpoint, l.verifiers)
	if err != nil {
		var unverified *note.UnverifiedNoteError
		var invalid *note.InvalidSignatureError
		if errors.As(err, &unverified) || errors.As(err, &invalid) {
			return nil, fmt.Errorf("%w: %v", ErrNotSigned, err)
		}
		return nil, wire.Corruptf("checkpoint note: %v", err)
	}
	if missing := missingSigner(n, l.keys); missing != "" {
		return nil, fmt.Errorf("%w: no signature by %s", ErrNotSigned, missing)
	}
	cp, _, err := parseCheckpointText([]byte(n.Text))
	if err != nil {
		return nil, err
	}

	select {
	case l.lock <- struct{}{}:
	case <-ctx.Done():
		return nil, fmt.Errorf("wait for log %q: %w", l.origin, ctx.Err())
	}
	defer func() { <-l.lock }()

	if err := Check(l.state, req.Old, req.Proof, cp); err != nil {
		if errors.Is(err, ErrRootMismatch) || errors.Is(err, ErrBadProof) {
			w.cfg.Logger.Warn("witness: refused inconsistent checkpoint", "origin", cp.Origin,
				"size", cp.Size, "old", req.Old, "stored_size", l.state.Size, "err", err,
				"checkpoint", string(req.Checkpoint))
		}
		return nil, err
	}
	sigs, err := w.cosign(n.Text)
	if err != nil {
		return nil, err
	}
	next := State{Size: cp.Size, Root: cp.Root}
	if next.Size > l.state.Size {
		s := savedState{Origin: cp.Origin, State: next, Time: uint64(max(w.cfg.Now().Unix(), 0))}
		if err := w.write(l.path, s.marshal()); err != nil {
			return nil, fmt.Errorf("store state of %q: %w", cp.Origin, err)
		}
		l.state = next
	}
	if w.cfg.OnCosign != nil {
		w.cfg.OnCosign(cp.Origin, cp.Size, cp.Root)
	}
	return sigs, nil
}

// missingSigner returns the name of a log key that did not sign n, or "".
func missingSigner(n *note.Note, keys []note.Verifier) string {
	for _, k := range keys {
		found := false
		for _, s := range n.Sigs {
			if s.Name == k.Name() && s.Hash == k.KeyHash() {
				found = true
				break
			}
		}
		if !found {
			return k.Name() + "+" + fmt.Sprintf("%08x", k.KeyHash())
		}
	}
	return ""
}

// cosign returns the witness's two signature lines over a checkpoint text.
func (w *Witness) cosign(text string) ([]byte, error) {
	signed, err := note.Sign(&note.Note{Text: text}, w.signers...)
	if err != nil {
		return nil, fmt.Errorf("cosign: %w", err)
	}
	// note.Sign returns text, a blank line, then the signature lines.
	return signed[len(text)+1:], nil
}

func isCorrupt(err error) bool { return errors.Is(err, wire.ErrCorrupt) }

func isContext(err error) bool {
	return errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)
}

// sizeLine formats a size as text/x.tlog.size.
func sizeLine(n uint64) string { return strconv.FormatUint(n, 10) + "\n" }
