package hostnode

import (
	"context"
	"io"
	"net/http"
	"time"

	"github.com/zeebo/blake3"

	"github.com/embassy-project/embassy/internal/access"
	"github.com/embassy-project/embassy/internal/ledger"
	"github.com/embassy-project/embassy/internal/proof"
	"github.com/embassy-project/embassy/internal/shardstore"
	"github.com/embassy-project/embassy/internal/transport"
)

// maxChallengeBytes bounds a challenge body.
const maxChallengeBytes = 1 << 20

// challengeWindow is how far a challenge's time may be from the host's
// clock: a host does not answer a challenge dated long ago or in the future.
const challengeWindow = time.Hour

// handleProof answers a storage-proof challenge, logs the challenge and
// answer digests, waits for a checkpoint covering that entry, and returns a
// receipt: the answer with the signed evidence the host committed to it.
func (s *Server) handleProof(w http.ResponseWriter, r *http.Request, p *access.Peer, t *tenant) {
	body, err := io.ReadAll(maxBytes(w, r.Body, maxChallengeBytes))
	if err != nil {
		httpError(w, http.StatusRequestEntityTooLarge, "challenge too large or truncated")
		return
	}
	c, err := proof.ParseChallenge(body)
	if err != nil {
		httpError(w, http.StatusBadRequest, err.Error())
		return
	}
	if c.Guest != t.id {
		httpError(w, http.StatusForbidden, "the challenge is for another guest")
		return
	}
	if d := s.opt.Now().Sub(time.Unix(c.Time, 0)); d > challengeWindow || d < -challengeWindow {
		httpError(w, http.StatusBadRequest, "the challenge's time is more than an hour from the host's clock")
		return
	}
	ctx := r.Context()
	ans, err := proof.Respond(c, func(id shardstore.ID) (io.ReaderAt, []byte, error) {
		return t.openForProof(ctx, id)
	})
	if err != nil {
		s.log.Error("answer proof", "guest", t.id.String(), "err", err)
		httpError(w, http.StatusInternalServerError, "could not read the shards; retry later")
		return
	}
	ab, err := ans.Marshal()
	if err != nil {
		httpError(w, http.StatusInternalServerError, "answer: "+err.Error())
		return
	}
	rc, err := s.receipt(ctx, t, c.Digest(), ab, len(c.Items))
	if err != nil {
		s.log.Error("log proof", "err", err)
		httpError(w, http.StatusServiceUnavailable, "the log is unavailable; retry")
		return
	}
	s.metrics.proofs.Inc()
	s.log.Info("storage proof answered", "guest", t.id.String(), "items", len(c.Items), "missing", len(ans.Missing()), "by", p.Fingerprint)
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Write(rc.Marshal())
}

func (s *Server) receipt(ctx context.Context, t *tenant, challenge [32]byte, answer []byte, items int) (*transport.Receipt, error) {
	ev := ledger.ProofAnswered{Guest: t.id, Challenge: challenge, Answer: blake3.Sum256(answer), Items: uint64(items)}
	entry := ledger.Entry{Time: s.opt.Now().Unix(), Event: ev}
	eb, err := ledger.MarshalEntry(entry)
	if err != nil {
		return nil, err
	}
	idx, err := s.events.log.Append(ctx, entry)
	if err == nil {
		s.metrics.logSize.Set(float64(idx + 1))
	}
	if err != nil {
		return nil, err
	}
	actx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	cp, err := s.events.log.AwaitCheckpoint(actx, idx)
	if err != nil {
		return nil, err
	}
	parsed, err := s.events.log.Verifier().ParseCheckpoint(cp)
	if err != nil {
		return nil, err
	}
	incl, err := s.events.log.InclusionProof(ctx, idx, parsed.Size)
	if err != nil {
		return nil, err
	}
	return &transport.Receipt{Answer: answer, Entry: eb, Index: idx, Checkpoint: cp, Inclusion: incl}, nil
}
