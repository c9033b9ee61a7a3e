package hostnode

import (
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/embassy-project/embassy/internal/gov"
	"github.com/embassy-project/embassy/internal/guest"
	"github.com/embassy-project/embassy/internal/share"
	"github.com/embassy-project/embassy/internal/transport"
)

// Activation is what an activated host needs to take a dataset over: the
// shares custodians released to it (opened with its KEM key, in memory),
// the snapshot the order named, and the hosts of the agreement.
type Activation struct {
	Guest    *guest.Identity
	Dataset  string
	Order    string // hex ID of the activation order
	Epoch    uint64
	Snapshot string // the envelope hash to continue from
	Shares   []*share.Share
	Hosts    []transport.Descriptor // every host of the agreement, in order
}

// Wipe clears the opened shares.
func (a *Activation) Wipe() {
	for _, s := range a.Shares {
		s.Wipe()
	}
}

// LoadActivation reads, from a host directory, the activation of a guest's
// dataset on this host and opens the key shares released to it. The dataset
// must be active on this host (the order carried out here) and at least the
// dataset's threshold of custodians must have released their shares.
func LoadActivation(dir string, g guest.ID, dataset string) (*Activation, error) {
	cfg, err := LoadConfig(dir)
	if err != nil {
		return nil, err
	}
	gdir := filepath.Join(dir, govDir, g.String())
	chain, err := loadAgreementChain(gdir, cfg.Name)
	if err != nil {
		return nil, err
	}
	if chain == nil {
		return nil, fmt.Errorf("no agreement is in force for guest %s at this host", g)
	}
	b, err := os.ReadFile(filepath.Join(gdir, stateFile))
	if err != nil {
		return nil, fmt.Errorf("governance state: %w", err)
	}
	st, err := gov.ParseState(b)
	if err != nil {
		return nil, err
	}
	ds, ok := st.Dataset(dataset)
	if !ok || ds.Phase != gov.Active || ds.Host != cfg.Name {
		return nil, fmt.Errorf("dataset %s is not active on this host (%s); its phase here is %q", dataset, cfg.Name, ds.Phase)
	}
	idb, err := os.ReadFile(filepath.Join(dir, guestsDir, g.String()+".pub"))
	if err != nil {
		return nil, err
	}
	id, err := guest.ParseIdentity(idb)
	if err != nil {
		return nil, err
	}
	idDS := id.Dataset(dataset)
	if idDS == nil {
		return nil, fmt.Errorf("dataset %s is not in the guest identity this host serves", dataset)
	}
	kem, err := LoadKEMKey(dir)
	if err != nil {
		return nil, err
	}
	order, err := hex.DecodeString(ds.Order)
	if err != nil || len(order) != 16 {
		return nil, fmt.Errorf("governance state: bad order id %q", ds.Order)
	}
	act := &Activation{Guest: id, Dataset: dataset, Order: ds.Order, Epoch: ds.Epoch, Snapshot: ds.Snapshot}
	for _, h := range chain[len(chain)-1].Hosts {
		act.Hosts = append(act.Hosts, h.Descriptor)
	}
	rdir := filepath.Join(gdir, releasesDir, ds.Order)
	ents, err := os.ReadDir(rdir)
	if err != nil && !os.IsNotExist(err) {
		return nil, err
	}
	t := share.ReleaseTarget{Dataset: idDS, Host: cfg.Name}
	copy(t.Order[:], order)
	var seen []string
	for _, e := range ents {
		if !strings.HasSuffix(e.Name(), ".rel") {
			continue
		}
		rb, err := os.ReadFile(filepath.Join(rdir, e.Name()))
		if err != nil {
			act.Wipe()
			return nil, err
		}
		sh, err := share.OpenRelease(rb, kem, t)
		if err != nil {
			act.Wipe()
			return nil, fmt.Errorf("release %s: %w", e.Name(), err)
		}
		if slices.Contains(seen, sh.Custodian) {
			sh.Wipe()
			continue
		}
		seen = append(seen, sh.Custodian)
		act.Shares = append(act.Shares, sh)
	}
	if len(act.Shares) < idDS.Threshold {
		act.Wipe()
		return nil, fmt.Errorf("%d of the %d key shares needed for dataset %s were released to this host under order %s (custodians release with embassy share release / share submit)", len(act.Shares), idDS.Threshold, dataset, ds.Order)
	}
	return act, nil
}
