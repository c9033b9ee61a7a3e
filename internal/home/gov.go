package home

import (
	"context"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/embassy-project/embassy/internal/gov"
	"github.com/embassy-project/embassy/internal/guest"
	"github.com/embassy-project/embassy/internal/shardstore"
	"github.com/embassy-project/embassy/internal/share"
	"github.com/embassy-project/embassy/internal/transport"
)

// AgreementFile is the signed agreement HOME follows, if any
// (embassy agreement use).
const AgreementFile = "agreement.signed"

// ErrFenced means this home may not write a dataset: hosts report a newer
// epoch whose writer is another key (an activation order moved writing to a
// host).
var ErrFenced = errors.New("this home is fenced out of the dataset")

// fence is what Connect puts on every write: the dataset and its epoch.
type fence struct {
	mu      sync.Mutex
	dataset string
	epoch   uint64
}

// Agreement returns the agreement HOME follows, or nil if there is none.
func (h *Home) Agreement() (*gov.Agreement, error) {
	b, err := os.ReadFile(filepath.Join(h.Dir, AgreementFile))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	sa, err := gov.OpenAgreement(b, nil)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", AgreementFile, err)
	}
	return sa.Agreement, nil
}

// UseAgreement makes HOME follow a signed agreement (the newest version;
// versions after 1 are checked by the hosts against the chain). It must name
// this guest and identity.
func (h *Home) UseAgreement(file []byte) (*gov.Agreement, error) {
	a, _, err := gov.ParseAgreementFile(file)
	if err != nil {
		return nil, err
	}
	if a.Guest != h.Identity.Guest.String() || a.GuestIdentity != h.Identity.Fingerprint() {
		return nil, fmt.Errorf("the agreement is for guest %s identity %s; this HOME is guest %s identity %s", a.Guest, a.GuestIdentity, h.Identity.Guest, h.Identity.Fingerprint())
	}
	if a.Version == 1 {
		sa, err := gov.OpenAgreement(file, nil)
		if err != nil {
			return nil, err
		}
		if err := sa.InForce(sa.Agreement); err != nil {
			return nil, err
		}
	}
	return a, writeFileAtomic(filepath.Join(h.Dir, AgreementFile), file, 0o644)
}

// hostGov is the part of a host's governance status the agent reads.
type hostGov struct {
	Host      string    `json:"host"`
	Agreement uint64    `json:"agreement"`
	Synced    bool      `json:"synced"`
	State     gov.State `json:"state"`
}

// PrepareWrite is called before any byte of dataset leaves home. It checks
// the agreement HOME follows allows the dataset on every host of HOME's
// shard set, then learns the dataset's epoch from the host nodes: if their
// newest epoch's writer is not this home's agent key, HOME is fenced out
// (ErrFenced). Writes that follow carry the dataset and epoch.
func (h *Home) PrepareWrite(ctx context.Context, dataset string) error {
	a, err := h.Agreement()
	if err != nil {
		return err
	}
	if a != nil {
		names := make([]string, len(h.Config.Hosts))
		for i, s := range h.Config.Hosts {
			names[i] = s.Name
		}
		if err := a.CheckPlacement(dataset, names); err != nil {
			return fmt.Errorf("backup refused before any data left home: %w", err)
		}
	}
	me := base64.StdEncoding.EncodeToString(h.Agent.Public().Bytes())
	// A host that just started reads the orders it missed before it accepts
	// writes: wait a little for it rather than fail the backup.
	var best *gov.DatasetState
	var from string
	var errs []error
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(500 * time.Millisecond) {
		var syncing []string
		best, from, errs, syncing = nil, "", nil, nil
		if err := h.readGovernance(ctx, dataset, &best, &from, &errs, &syncing); err != nil {
			return err
		}
		if len(syncing) == 0 || time.Now().After(deadline) {
			break
		}
	}
	if best == nil {
		if a != nil && len(errs) > 0 {
			return fmt.Errorf("no host told this dataset's epoch: %w", errors.Join(errs...))
		}
		return nil // no host has an agreement: writes carry no epoch
	}
	if best.Writer == me && best.RotateDue {
		return fmt.Errorf("%w: dataset %s came back from a host that held its key (order %s): give it new keys before writing (embassy dataset rotate, a rotate order naming the new keys, embassy identity push)", ErrFenced, dataset, best.Order)
	}
	if ds, _ := h.Dataset(dataset); best.Keys != "" && ds != nil && best.Keys != ds.Fingerprint() {
		return fmt.Errorf("%w: the hosts expect dataset %s's keys %s; HOME has %s", ErrFenced, dataset, best.Keys, ds.Fingerprint())
	}
	if best.Writer != me {
		where := ""
		if best.Phase == gov.Active {
			where = fmt.Sprintf(", active on host %s from snapshot %s", best.Host, best.Snapshot)
		}
		return fmt.Errorf("%w: dataset %s is at epoch %d (host %s), set by order %s%s; its writer is not this home's agent key. Writing comes back to home only by a return order", ErrFenced, dataset, best.Epoch, from, best.Order, where)
	}
	h.fence.mu.Lock()
	h.fence.dataset, h.fence.epoch = dataset, best.Epoch
	h.fence.mu.Unlock()
	return nil
}

// readGovernance asks every host node for the dataset's governance state
// and keeps the newest epoch; syncing names hosts still reading missed
// orders.
func (h *Home) readGovernance(ctx context.Context, dataset string, best **gov.DatasetState, from *string, errs *[]error, syncing *[]string) error {
	for _, s := range h.Config.Hosts {
		if s.Remote == nil {
			continue
		}
		st, err := h.Connect(s.Remote)
		if err != nil {
			return err
		}
		c := st.(*transport.Client)
		b, err := c.Governance(ctx)
		if errors.Is(err, shardstore.ErrNotFound) {
			continue // no agreement at that host
		}
		if err != nil {
			*errs = append(*errs, err)
			continue
		}
		var hg hostGov
		if err := json.Unmarshal(b, &hg); err != nil {
			*errs = append(*errs, fmt.Errorf("governance of %s: %w", s.Name, err))
			continue
		}
		if !hg.Synced {
			*syncing = append(*syncing, s.Name)
		}
		ds, ok := hg.State.Datasets[dataset]
		if !ok {
			return fmt.Errorf("host %s: dataset %s is not in agreement v%d", s.Name, dataset, hg.Agreement)
		}
		if *best == nil || ds.Epoch > (*best).Epoch {
			*best, *from = &ds, s.Name
		}
	}
	return nil
}

// Heartbeat tells every host node that home is alive. Hosts without an
// agreement for the guest are skipped; the errors of the others are
// returned joined.
func (h *Home) Heartbeat(ctx context.Context) error {
	var errs []error
	for _, s := range h.Config.Hosts {
		if s.Remote == nil {
			continue
		}
		st, err := h.Connect(s.Remote)
		if err != nil {
			return err
		}
		if err := st.(*transport.Client).Heartbeat(ctx); err != nil && !errors.Is(err, shardstore.ErrNotFound) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// RotateDataset gives a dataset new keys: a new KEM key pair and dedup MAC
// key under the same dataset ID, split among HOME's custodians into
// sharesDir (a directory without share files of that dataset). The old
// keys' MAC key and cache are dropped, so nothing written afterwards reuses
// a pack sealed under the old keys; old snapshots stay restorable with the
// old shares. Hosts under an agreement accept the new identity (PushIdentity)
// only after a rotate order naming its fingerprint is carried out.
func (h *Home) RotateDataset(name, sharesDir string) (*guest.Dataset, []ShareFile, error) {
	old, err := h.Dataset(name)
	if err != nil {
		return nil, nil, err
	}
	cs, err := h.Custodians()
	if err != nil {
		return nil, nil, err
	}
	ds, secret, err := guest.NewDataset(h.Identity.Guest, h.Identity.Name, name, h.Agent.Public(), h.Config.Threshold, cs)
	if err != nil {
		return nil, nil, fmt.Errorf("rotate dataset %s: %w", name, err)
	}
	ds.ID = old.ID // the same dataset: its snapshot chain goes on
	files, err := share.Split(ds, secret, cs)
	if err != nil {
		return nil, nil, fmt.Errorf("split key of %s: %w", name, err)
	}
	if err := os.MkdirAll(sharesDir, 0o700); err != nil {
		return nil, nil, err
	}
	var out []ShareFile
	for i, c := range cs {
		p := filepath.Join(sharesDir, fmt.Sprintf("%s.%s.share", name, c.Name))
		if err := writeFileNew(p, files[i], 0o600); err != nil {
			return nil, nil, fmt.Errorf("write share file (use a directory without %s's old shares): %w", name, err)
		}
		out = append(out, ShareFile{Dataset: name, Custodian: c.Name, Path: p})
	}
	dsDir := filepath.Join(h.Dir, "datasets", name)
	// Keep the old public identity for reference; drop what the old keys
	// made at home.
	if err := writeFileAtomic(filepath.Join(dsDir, "retired-"+old.Fingerprint()+".pub"), old.Marshal(), 0o644); err != nil {
		return nil, nil, err
	}
	if err := os.Remove(h.CachePath(name)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, nil, err
	}
	// The cache's chunk index (internal/agent, docs/spec/chunk-index.md):
	// IDs under the old MAC key.
	if err := os.RemoveAll(filepath.Join(dsDir, "chunkindex")); err != nil {
		return nil, nil, err
	}
	if err := writeFileAtomic(filepath.Join(dsDir, "mac.key"), []byte(hex.EncodeToString(secret.MACKey[:])+"\n"), 0o600); err != nil {
		return nil, nil, err
	}
	for i, d := range h.Identity.Datasets {
		if d.Name == name {
			h.Identity.Datasets[i] = ds
		}
	}
	return ds, out, h.save()
}

// PushIdentity sends HOME's public identity to every host node under an
// agreement (after a rotate order, so that they know the dataset's new
// keys). Hosts without an agreement are skipped.
func (h *Home) PushIdentity(ctx context.Context) error {
	var errs []error
	b := h.Identity.Marshal()
	for _, s := range h.Config.Hosts {
		if s.Remote == nil {
			continue
		}
		st, err := h.Connect(s.Remote)
		if err != nil {
			return err
		}
		if err := st.(*transport.Client).PushIdentity(ctx, b); err != nil && !errors.Is(err, shardstore.ErrNotFound) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
