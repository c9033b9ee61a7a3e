package hostnode

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"

	"github.com/embassy-project/embassy/internal/access"
	"github.com/embassy-project/embassy/internal/atomicfile"
	"github.com/embassy-project/embassy/internal/gov"
	"github.com/embassy-project/embassy/internal/guest"
)

// boundIdentityFile is the guest identity an agreement version was
// installed with (its guest_identity fingerprint), kept to judge later
// updates.
func boundIdentityFile(version uint64) string { return fmt.Sprintf("identity-v%d.pub", version) }

// checkIdentityUpdate decides whether next may replace the identity bound
// to the agreement: same guest, name and agent key, the same datasets, and
// every dataset that differs keeps its ID and has the identity a carried-out
// rotate order named (DatasetState.Keys). It is pure.
func checkIdentityUpdate(bound, next *guest.Identity, st gov.State) error {
	if next.Guest != bound.Guest || next.Name != bound.Name || !next.Agent.Equal(bound.Agent) {
		return fmt.Errorf("%w: the identity changes the guest, its name or its agent key; that needs an amended agreement", gov.ErrNotAllowed)
	}
	if len(next.Datasets) != len(bound.Datasets) {
		return fmt.Errorf("%w: the identity adds or removes datasets; that needs an amended agreement", gov.ErrNotAllowed)
	}
	for _, d := range next.Datasets {
		b := bound.Dataset(d.Name)
		if b == nil {
			return fmt.Errorf("%w: dataset %s is not in the identity the agreement was adopted with", gov.ErrNotAllowed, d.Name)
		}
		if d.Equal(b) {
			continue
		}
		if d.ID != b.ID {
			return fmt.Errorf("%w: dataset %s changes its ID", gov.ErrNotAllowed, d.Name)
		}
		want := st.Datasets[d.Name].Keys
		if want == "" || d.Fingerprint() != want {
			return fmt.Errorf("%w: dataset %s has keys %s, but no rotate order carried out here named them (in force: %s)", gov.ErrNotAllowed, d.Name, d.Fingerprint(), orNone(want))
		}
	}
	return nil
}

func orNone(s string) string {
	if s == "" {
		return "the keys the agreement was adopted with"
	}
	return s
}

// boundIdentity reads the identity the latest agreement version was
// installed with; nil if the host has none recorded (installed before this
// was kept).
func (gt *govTenant) boundIdentity() (*guest.Identity, error) {
	b, err := os.ReadFile(filepath.Join(gt.dir, boundIdentityFile(gt.agreement().Version)))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return guest.ParseIdentity(b)
}

// handleIdentity is POST /v1/guests/{g}/identity from the guest's agent: a
// guest identity whose changed datasets carry the keys rotate orders named.
func (s *Server) handleIdentity(w http.ResponseWriter, r *http.Request, p *access.Peer, t *tenant) {
	gt := t.gov
	if gt == nil {
		httpError(w, http.StatusNotFound, "no agreement is in force for this guest at this host (the host operator updates the identity with embassy host guest add)")
		return
	}
	b, err := io.ReadAll(maxBytes(w, r.Body, 1<<20))
	if err != nil {
		httpError(w, http.StatusRequestEntityTooLarge, "identity too large")
		return
	}
	next, err := guest.ParseIdentity(b)
	if err != nil {
		httpError(w, http.StatusBadRequest, err.Error())
		return
	}
	bound, err := gt.boundIdentity()
	if err != nil || bound == nil {
		httpError(w, http.StatusConflict, "this host has no record of the identity its agreement was installed with; re-install the agreement")
		return
	}
	gt.mu.Lock()
	defer gt.mu.Unlock()
	if err := checkIdentityUpdate(bound, next, gt.state()); err != nil {
		httpError(w, http.StatusForbidden, err.Error())
		return
	}
	if next.Fingerprint() == t.identity().Fingerprint() {
		w.WriteHeader(http.StatusOK)
		return
	}
	if err := atomicfile.Write(filepath.Join(s.dir, guestsDir, t.id.String()+".pub"), b, 0o644); err != nil {
		httpError(w, http.StatusInternalServerError, "store identity")
		return
	}
	t.ident.Store(next)
	s.log.Info("guest identity updated under rotate orders", "guest", t.id.String(), "identity", next.Fingerprint())
	w.WriteHeader(http.StatusCreated)
}
