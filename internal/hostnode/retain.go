package hostnode

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/embassy-project/embassy/internal/access"
	"github.com/embassy-project/embassy/internal/shardstore"
	"github.com/embassy-project/embassy/internal/transport"
	"github.com/embassy-project/embassy/internal/wire"
)

// maxRetention bounds a retain-until a guest may ask for.
const maxRetention = 100 * 365 * 24 * time.Hour

// retainUntil parses the guest's retain-until header; the zero time when
// absent.
func (s *Server) retainUntil(r *http.Request) (time.Time, error) {
	v := r.Header.Get(transport.RetainUntilHeader)
	if v == "" {
		return time.Time{}, nil
	}
	t, err := time.Parse(time.RFC3339, v)
	if err != nil {
		return time.Time{}, fmt.Errorf("%s %q: want an RFC 3339 time", transport.RetainUntilHeader, v)
	}
	now := s.opt.Now()
	if !t.After(now) || t.Sub(now) > maxRetention {
		return time.Time{}, fmt.Errorf("%s %s: want a time after now and within 100 years", transport.RetainUntilHeader, v)
	}
	return t.UTC(), nil
}

// setRetentionHeader tells the client whether this host enforces retention.
func setRetentionHeader(w http.ResponseWriter, t *tenant) {
	if _, ok := t.store.(retainer); ok {
		w.Header().Set(transport.RetentionHeader, "enforced")
	} else {
		w.Header().Set(transport.RetentionHeader, "none")
	}
}

// handleRetain extends the retention of stored objects (the guest reuses
// them in a new snapshot, so they must outlive it). Body: one "KIND ID" line
// per object; header Embassy-Retain-Until. A store without retention
// answers 200 and Embassy-Retention: none. Objects that are not stored are
// listed in a 404 answer, one "KIND ID" line each, after the others are
// extended.
func (s *Server) handleRetain(w http.ResponseWriter, r *http.Request, p *access.Peer, t *tenant) {
	until, err := s.retainUntil(r)
	if err == nil && until.IsZero() {
		err = errors.New(transport.RetainUntilHeader + " is required")
	}
	if err != nil {
		httpError(w, http.StatusBadRequest, err.Error())
		return
	}
	body, err := io.ReadAll(maxBytes(w, r.Body, 16<<20))
	if err != nil {
		httpError(w, http.StatusRequestEntityTooLarge, "retain list too large or truncated")
		return
	}
	type obj struct {
		kind shardstore.Kind
		id   shardstore.ID
	}
	var objs []obj
	sc := bufio.NewScanner(bytes.NewReader(body))
	for sc.Scan() {
		k, ids, ok := strings.Cut(sc.Text(), " ")
		id, err := shardstore.ParseID(ids)
		if !ok || err != nil || shardstore.CheckKind(shardstore.Kind(k)) != nil {
			httpError(w, http.StatusBadRequest, "malformed line in the retain list")
			return
		}
		objs = append(objs, obj{shardstore.Kind(k), id})
	}
	if err := sc.Err(); err != nil {
		httpError(w, http.StatusBadRequest, "malformed retain list: "+err.Error())
		return
	}
	setRetentionHeader(w, t)
	rt, ok := t.store.(retainer)
	var missing strings.Builder
	for _, o := range objs {
		if !ok {
			if _, err := t.store.Stat(r.Context(), o.kind, o.id); err != nil {
				fmt.Fprintf(&missing, "%s %s\n", o.kind, o.id)
			}
			continue
		}
		if err := rt.Retain(r.Context(), o.kind, o.id, until); err != nil {
			if errors.Is(err, shardstore.ErrNotFound) || errors.Is(err, wire.ErrCorrupt) {
				// Missing or damaged here: name it and go on with the rest,
				// so one lost shard does not block every later backup (the
				// guest's check reports it; k other shards still hold).
				fmt.Fprintf(&missing, "%s %s\n", o.kind, o.id)
				continue
			}
			s.log.Error("extend retention", "guest", t.id.String(), "id", o.id.String(), "err", err)
			httpError(w, http.StatusInternalServerError, "extend retention failed; retry")
			return
		}
	}
	if missing.Len() > 0 {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.WriteHeader(http.StatusNotFound)
		io.WriteString(w, missing.String())
		return
	}
	w.WriteHeader(http.StatusOK)
}
