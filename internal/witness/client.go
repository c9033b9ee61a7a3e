package witness

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"

	"github.com/embassy-project/embassy/internal/wire"
)

// Submit asks the witness whose submission prefix is witnessURL to cosign
// checkpoint (a note signed by the log) and returns the witness's cosignature
// lines, for Merge. hint is the size the caller believes the witness last
// cosigned for this log (0 if unknown; it must not exceed the checkpoint's
// size). proofFor returns the consistency proof from oldSize to the
// checkpoint's size; it is not called when oldSize is 0 or that size.
//
// If the witness answers 409 with its size, Submit fetches the proof from
// that size and retries once; a *ConflictError then reports the witness's
// size, which the caller should keep as its next hint. Every request is bound
// by ctx, so a witness that hangs costs at most ctx's deadline. Errors name the
// witness (its URL without credentials) and wrap the sentinel for the
// witness's status (ErrConflict, ErrRootMismatch, ErrUnknownLog,
// ErrNotSigned, ErrBadProof, ErrBadRequest, ErrTooLarge). Submit checks the
// response's framing only; Policy.Count verifies the cosignatures. A nil hc
// is http.DefaultClient.
func Submit(ctx context.Context, hc *http.Client, witnessURL string, checkpoint []byte, hint uint64, proofFor func(ctx context.Context, oldSize uint64) ([][]byte, error)) ([]byte, error) {
	u, err := url.Parse(witnessURL)
	if err != nil {
		return nil, fmt.Errorf("witness URL: %w", err)
	}
	name := u.Redacted()
	sigs, err := submit(ctx, hc, u.JoinPath("add-checkpoint").String(), checkpoint, hint, proofFor)
	if err != nil {
		return nil, fmt.Errorf("witness %s: %w", name, err)
	}
	return sigs, nil
}

func submit(ctx context.Context, hc *http.Client, endpoint string, checkpoint []byte, hint uint64, proofFor func(context.Context, uint64) ([][]byte, error)) ([]byte, error) {
	if hc == nil {
		hc = http.DefaultClient
	}
	text, _, err := splitNote(checkpoint)
	if err != nil {
		return nil, err
	}
	cp, _, err := parseCheckpointText(text)
	if err != nil {
		return nil, err
	}
	if hint > cp.Size {
		return nil, fmt.Errorf("size hint %d larger than the checkpoint's size %d", hint, cp.Size)
	}
	old := hint
	for attempt := 0; ; attempt++ {
		sigs, err := post(ctx, hc, endpoint, checkpoint, cp.Size, old, proofFor)
		var ce *ConflictError
		if !errors.As(err, &ce) || attempt > 0 {
			return sigs, err
		}
		if ce.Size > cp.Size {
			return nil, fmt.Errorf("%w (larger than the checkpoint's size %d: the log was rolled back or forked)", err, cp.Size)
		}
		old = ce.Size
	}
}

// post sends one add-checkpoint request.
func post(ctx context.Context, hc *http.Client, endpoint string, checkpoint []byte, size, old uint64, proofFor func(context.Context, uint64) ([][]byte, error)) ([]byte, error) {
	var proof [][]byte
	if old != 0 && old != size {
		var err error
		if proof, err = proofFor(ctx, old); err != nil {
			return nil, fmt.Errorf("consistency proof from %d to %d: %w", old, size, err)
		}
	}
	body := Request{Old: old, Proof: proof, Checkpoint: checkpoint}.Marshal()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint, bytes.NewReader(body))
	if err != nil {
		return nil, fmt.Errorf("add-checkpoint: %w", err)
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("add-checkpoint: %w", err)
	}
	defer resp.Body.Close()
	rb, err := io.ReadAll(io.LimitReader(resp.Body, MaxRequestSize+1))
	if err != nil {
		return nil, fmt.Errorf("add-checkpoint: read response: %w", err)
	}
	if len(rb) > MaxRequestSize {
		return nil, fmt.Errorf("add-checkpoint: response over %d bytes", MaxRequestSize)
	}
	status := func(sentinel error) error {
		return fmt.Errorf("%w (%s: %q)", sentinel, resp.Status, snippet(rb))
	}
	switch resp.StatusCode {
	case http.StatusOK:
		lines, err := parseSigLines(rb)
		if err != nil {
			return nil, fmt.Errorf("add-checkpoint response: %w", err)
		}
		if len(lines) == 0 {
			return nil, fmt.Errorf("add-checkpoint response: no signature lines")
		}
		return rb, nil
	case http.StatusConflict:
		mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type"))
		if mt != "text/x.tlog.size" {
			return nil, status(ErrRootMismatch)
		}
		n, ok := bytes.CutSuffix(rb, []byte("\n"))
		s, err := parseDecimal(n)
		if !ok || err != nil {
			return nil, fmt.Errorf("add-checkpoint: 409 with malformed size %q", snippet(rb))
		}
		return nil, &ConflictError{Size: s}
	case http.StatusNotFound:
		return nil, status(ErrUnknownLog)
	case http.StatusForbidden:
		return nil, status(ErrNotSigned)
	case http.StatusUnprocessableEntity:
		return nil, status(ErrBadProof)
	case http.StatusBadRequest:
		return nil, status(ErrBadRequest)
	case http.StatusRequestEntityTooLarge:
		return nil, status(ErrTooLarge)
	default:
		return nil, fmt.Errorf("add-checkpoint: unexpected %s: %q", resp.Status, snippet(rb))
	}
}

// snippet returns the start of a response body for an error message.
func snippet(b []byte) []byte {
	const n = 200
	if len(b) > n {
		return b[:n]
	}
	return b
}

// Merge appends cosignature lines (witness responses) to a signed checkpoint,
// skipping any line whose key (name and key hash) already signed: the result
// has at most one signature per key. Existing signatures keep their order and
// come first. Merge checks framing only (errors wrap wire.ErrCorrupt); verify
// the result with Policy.Count.
func Merge(checkpoint []byte, cosigs ...[]byte) ([]byte, error) {
	text, block, err := splitNote(checkpoint)
	if err != nil {
		return nil, fmt.Errorf("merge cosignatures: %w", err)
	}
	existing, err := parseSigLines(block)
	if err != nil {
		return nil, fmt.Errorf("merge cosignatures: checkpoint: %w", err)
	}
	if len(existing) == 0 {
		return nil, fmt.Errorf("merge cosignatures: %w", wire.Corruptf("checkpoint has no signatures"))
	}
	type nameHash struct {
		name string
		hash uint32
	}
	seen := make(map[nameHash]bool)
	out := make([]byte, 0, len(checkpoint)+len(cosigs)*3400)
	out = append(append(out, text...), '\n')
	count := 0
	add := func(lines []sigLine) {
		for _, l := range lines {
			if k := (nameHash{l.name, l.hash}); !seen[k] {
				seen[k] = true
				out = append(out, l.line...)
				count++
			}
		}
	}
	add(existing)
	for i, c := range cosigs {
		lines, err := parseSigLines(c)
		if err != nil {
			return nil, fmt.Errorf("merge cosignatures: block %d: %w", i+1, err)
		}
		add(lines)
	}
	if count > maxSigLines {
		return nil, fmt.Errorf("merge cosignatures: %w", wire.Corruptf("more than %d signatures", maxSigLines))
	}
	return out, nil
}
