package hostnode

import (
	"crypto/hpke"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"

	"github.com/embassy-project/embassy/internal/atomicfile"
	"github.com/embassy-project/embassy/internal/gov"
	"github.com/embassy-project/embassy/internal/ledger"
	"github.com/embassy-project/embassy/internal/share"
)

// handleRelease is POST /v1/guests/{g}/releases: a custodian's key share
// re-wrapped to this host under an activation order that named it
// (docs/spec/share-release.md). The file is self-authenticating (signed by
// the custodian); it is accepted only for a dataset this host runs under
// that order, checked by opening it, stored as received (encrypted to this
// host's key) and logged.
func (s *Server) handleRelease(w http.ResponseWriter, r *http.Request) {
	t := s.govTenantFrom(w, r)
	if t == nil {
		return
	}
	if s.kem == nil {
		httpError(w, http.StatusNotFound, "this host has no KEM key (kem.key); it cannot receive key shares")
		return
	}
	file, err := io.ReadAll(maxBytes(w, r.Body, int64(share.MaxReleaseSize)))
	if err != nil {
		httpError(w, http.StatusRequestEntityTooLarge, "release file too large")
		return
	}
	h, err := share.InspectRelease(file)
	if err != nil {
		httpError(w, http.StatusBadRequest, err.Error())
		return
	}
	orderHex := hex.EncodeToString(h.Order[:])
	ds, ok := t.gov.state().Dataset(h.Dataset.Name)
	switch {
	case h.Host != s.cfg.Name:
		httpError(w, http.StatusForbidden, fmt.Sprintf("the release is for host %s; this is %s", h.Host, s.cfg.Name))
		return
	case !ok || ds.Phase != gov.Active || ds.Host != s.cfg.Name || ds.Order != orderHex:
		httpError(w, http.StatusConflict, fmt.Sprintf("dataset %s is not active on this host under order %s (carry out the activation order here first)", h.Dataset.Name, orderHex))
		return
	}
	idDS := t.identity().Dataset(h.Dataset.Name)
	if idDS == nil || !idDS.Equal(h.Dataset) {
		httpError(w, http.StatusForbidden, "the release's dataset identity is not the one this host serves")
		return
	}
	sh, err := share.OpenRelease(file, s.kem, share.ReleaseTarget{Dataset: idDS, Order: h.Order, Host: s.cfg.Name})
	if err != nil {
		httpError(w, http.StatusForbidden, err.Error())
		return
	}
	sh.Wipe() // only proves it opens; the key is rebuilt when a restore needs it
	dir := filepath.Join(t.gov.dir, releasesDir, orderHex)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		httpError(w, http.StatusInternalServerError, "store release")
		return
	}
	name := filepath.Join(dir, h.Fingerprint+".rel")
	// One release per custodian and order: a second one (each release seals
	// afresh, so its bytes differ) is answered as already done.
	if _, err := os.Stat(name); err == nil {
		w.WriteHeader(http.StatusOK)
		return
	} else if !errors.Is(err, fs.ErrNotExist) {
		httpError(w, http.StatusInternalServerError, "store release")
		return
	}
	// Log before storing: a release stored but not logged would be
	// answered 200 on retry, and never logged.
	if _, err := s.events.append(r.Context(), ledger.ShareReleased{Guest: t.id, Dataset: h.Dataset.Name, Order: h.Order, Custodian: h.Fingerprint}); err != nil {
		httpError(w, http.StatusServiceUnavailable, "the log is unavailable; retry")
		return
	}
	if err := atomicfile.Write(name, file, 0o600); err != nil {
		httpError(w, http.StatusInternalServerError, "store release")
		return
	}
	n, _ := os.ReadDir(dir)
	s.log.Info("key share released to this host", "guest", t.id.String(), "dataset", h.Dataset.Name, "order", orderHex, "custodian", h.Custodian, "shares", len(n), "threshold", idDS.Threshold)
	writeJSON(w, http.StatusCreated, map[string]any{"dataset": h.Dataset.Name, "order": orderHex, "custodian": h.Custodian, "released": len(n), "threshold": idDS.Threshold})
}

// loadKEM loads the host's KEM key if the directory has one (hosts made
// before key release have none).
func loadKEM(dir string) (hpke.PrivateKey, error) {
	if _, err := os.Stat(filepath.Join(dir, kemKeyFile)); errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	return LoadKEMKey(dir)
}
