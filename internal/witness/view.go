package witness

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"

	"golang.org/x/mod/sumdb/note"

	"github.com/embassy-project/embassy/internal/wire"
)

// ErrNoView means the witness has never cosigned the log (or does not
// witness it).
var ErrNoView = errors.New("witness has no view of this log")

// View returns the witness's current view of a log as a note: the checkpoint
// text for the size and root it last cosigned, signed with the witness's two
// cosignature keys (freshly timestamped) and without the log's signatures.
// An auditor compares it with the checkpoint the log shows it: if the log's
// checkpoint does not extend (or is not extended by) the witness's view, the
// log shows different histories to different parties. This endpoint is an
// embassy extension; c2sp.org/tlog-witness defines only add-checkpoint.
func (w *Witness) View(origin string) ([]byte, error) {
	st, err := w.State(origin)
	if err != nil {
		return nil, err
	}
	if st.Size == 0 {
		return nil, ErrNoView
	}
	text := string(marshalCheckpointText(Checkpoint{Origin: origin, Size: st.Size, Root: st.Root}, nil))
	sigs, err := w.cosign(text)
	if err != nil {
		return nil, err
	}
	return append([]byte(text+"\n"), sigs...), nil
}

func (w *Witness) serveView(rw http.ResponseWriter, r *http.Request) {
	origin := r.URL.Query().Get("origin")
	v, err := w.View(origin)
	switch {
	case errors.Is(err, ErrUnknownLog), errors.Is(err, ErrNoView):
		http.Error(rw, err.Error(), http.StatusNotFound)
		return
	case err != nil:
		w.cfg.Logger.Error("witness view", "origin", origin, "err", err)
		http.Error(rw, "internal error", http.StatusInternalServerError)
		return
	}
	rw.Header().Set("Content-Type", "text/plain; charset=utf-8")
	rw.Write(v)
}

// FetchView asks the witness at witnessURL (the same base as Submit's) for
// its view of the log origin. A witness with no view gives ErrNoView.
func FetchView(ctx context.Context, hc *http.Client, witnessURL, origin string) ([]byte, error) {
	if hc == nil {
		hc = http.DefaultClient
	}
	u, err := url.Parse(witnessURL)
	if err != nil {
		return nil, fmt.Errorf("witness URL: %w", err)
	}
	q := url.Values{"origin": {origin}}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.JoinPath("view").String()+"?"+q.Encode(), nil)
	if err != nil {
		return nil, err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("witness %s: %w", u.Redacted(), err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, MaxRequestSize+1))
	if err != nil {
		return nil, fmt.Errorf("witness %s: %w", u.Redacted(), err)
	}
	switch {
	case resp.StatusCode == http.StatusNotFound:
		return nil, fmt.Errorf("witness %s: %w", u.Redacted(), ErrNoView)
	case resp.StatusCode != http.StatusOK:
		return nil, fmt.Errorf("witness %s: HTTP %d", u.Redacted(), resp.StatusCode)
	case len(b) > MaxRequestSize:
		return nil, fmt.Errorf("witness %s: view larger than %d bytes", u.Redacted(), MaxRequestSize)
	}
	return b, nil
}

// VerifyView checks a view note from witness wn for origin: both of the
// witness's cosignatures must verify. It returns the size and root the
// witness vouches for. Errors wrap wire.ErrCorrupt.
func VerifyView(view []byte, origin string, wn Named) (Checkpoint, error) {
	p := Policy{Threshold: 1, Witnesses: []Named{wn}}
	ws, err := p.load()
	if err != nil {
		return Checkpoint{}, err
	}
	n, err := note.Open(view, note.VerifierList(ws[0].signers...))
	if err != nil {
		return Checkpoint{}, wire.Corruptf("witness %s view: %v", wn.Name, err)
	}
	have := map[uint32]bool{}
	for _, s := range n.Sigs {
		have[s.Hash] = true
	}
	if !have[ws[0].ed.KeyHash()] || !have[ws[0].ml.KeyHash()] {
		return Checkpoint{}, wire.Corruptf("witness %s view: not signed with both keys", wn.Name)
	}
	cp, ext, err := parseCheckpointText([]byte(n.Text))
	if err != nil {
		return Checkpoint{}, err
	}
	if len(ext) != 0 || cp.Origin != origin {
		return Checkpoint{}, wire.Corruptf("witness %s view: for %q, want %q", wn.Name, cp.Origin, origin)
	}
	return cp, nil
}
