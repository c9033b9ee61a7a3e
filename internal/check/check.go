// Package check audits what the hosts hold for a guest, without any secret.
// For remote hosts (host nodes) it also audits the host's log (signed,
// consistent with what was accepted before and with what its witnesses
// cosigned) and asks for a storage proof over random slices of its shards.
// Locally:
// the signed envelopes (complete, consistent, not forged, not rolled back),
// and every shard of every pack they list (present with the signed size, or
// with ReadData, read in full and matching its address; and the pack's
// shards forming one consistent Reed–Solomon codeword). It names each
// damaged host and shard and says whether every snapshot is still restorable.
package check

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/embassy-project/embassy/internal/catalog"
	"github.com/embassy-project/embassy/internal/erasure"
	"github.com/embassy-project/embassy/internal/guest"
	"github.com/embassy-project/embassy/internal/hosts"
	"github.com/embassy-project/embassy/internal/proof"
	"github.com/embassy-project/embassy/internal/shardstore"
	"github.com/embassy-project/embassy/internal/snapshot"
	"github.com/embassy-project/embassy/internal/transport"
)

// Severity of a problem.
const (
	Warning = "warning" // something is off but nothing is damaged (e.g. a host is unreachable)
	Damage  = "damage"  // a shard or envelope is missing or corrupt; every snapshot is still restorable
	Loss    = "loss"    // a pack has fewer than k good shards: a snapshot cannot be restored
)

// Problem is one finding.
type Problem struct {
	Severity string `json:"severity"`
	Kind     string `json:"kind"`
	Dataset  string `json:"dataset,omitempty"`
	Host     string `json:"host,omitempty"`
	Seq      uint64 `json:"seq,omitempty"`
	Pack     string `json:"pack,omitempty"`
	Shard    string `json:"shard,omitempty"`
	Index    *int   `json:"index,omitempty"`
	Message  string `json:"message"`
}

// HostReport summarises one host.
type HostReport struct {
	Name      string `json:"name"`
	Available bool   `json:"available"`
	Error     string `json:"error,omitempty"`
	Shards    int    `json:"shards_checked"`
	Bad       int    `json:"shards_bad"`
	// Retention is "enforced" when the host's store keeps objects immutable
	// until their retain-until (audited against the guest's retention), and
	// "none" when it does not; empty when not audited.
	Retention string `json:"retention,omitempty"`
	// Log and Proof are set for remote hosts (host nodes).
	Log   *LogReport   `json:"log,omitempty"`
	Proof *ProofReport `json:"proof,omitempty"`
	// Governance is what a host node says of the guest's agreement and
	// datasets (absent when it has no agreement for the guest).
	Governance *GovReport `json:"governance,omitempty"`
}

// DatasetReport summarises one dataset.
type DatasetReport struct {
	Name          string `json:"name"`
	Snapshots     int    `json:"snapshots"`
	Latest        uint64 `json:"latest_seq"`
	Packs         int    `json:"packs"`
	Unrecoverable int    `json:"unrecoverable_packs"`
}

// Report is the outcome of a check.
type Report struct {
	Healthy    bool            `json:"healthy"`
	Restorable bool            `json:"restorable"`
	ReadData   bool            `json:"read_data"`
	Hosts      []HostReport    `json:"hosts"`
	Datasets   []DatasetReport `json:"datasets"`
	Problems   []Problem       `json:"problems"`
	// Notes are informational findings (a dataset active on a host).
	Notes []Note `json:"notes,omitempty"`
}

// Options configures a check.
type Options struct {
	Hosts    []*hosts.Host
	Identity *guest.Identity
	Datasets []string // all datasets of the identity when empty
	ReadData bool
	// Heads, when known (the guest's own check, from HOME), is the newest
	// sequence number the agent wrote per dataset name.
	Heads map[string]uint64
	// Audit configures the log and storage-proof audits of remote hosts.
	Audit Audit
	// Home, in the guest's own check, is the agreement HOME follows and its
	// agent key, compared with what the hosts enforce.
	Home *HomeGov
}

// Run checks every selected dataset on every host.
func Run(ctx context.Context, o Options) (*Report, error) {
	rep := &Report{ReadData: o.ReadData, Restorable: true, Problems: []Problem{}}
	hostIdx := map[string]int{}
	for i, h := range o.Hosts {
		hr := HostReport{Name: h.Name, Available: h.Available()}
		if !h.Available() {
			hr.Error = h.Err.Error()
			rep.Problems = append(rep.Problems, Problem{Severity: Warning, Kind: "host-unavailable", Host: h.Name, Message: h.Err.Error()})
		}
		rep.Hosts = append(rep.Hosts, hr)
		hostIdx[h.Name] = i
	}
	datasets := o.Identity.Datasets
	if len(o.Datasets) > 0 {
		datasets = nil
		for _, n := range o.Datasets {
			d := o.Identity.Dataset(n)
			if d == nil {
				return nil, fmt.Errorf("the guest identity has no dataset %q", n)
			}
			datasets = append(datasets, d)
		}
	}
	served := catalog.Read(ctx, o.Hosts)
	shards := map[string][]proof.Shard{} // per host, for storage proofs
	for _, ds := range datasets {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		dr, err := checkDataset(ctx, o, ds, served, rep, hostIdx, shards)
		if err != nil {
			return nil, err
		}
		rep.Datasets = append(rep.Datasets, *dr)
	}
	auditRemote(ctx, o, rep, shards)
	rep.Healthy = len(rep.Problems) == 0
	for _, p := range rep.Problems {
		if p.Severity == Loss {
			rep.Restorable = false
		}
	}
	// Governance warnings come after Healthy is decided: they do not count
	// against it (see GovernanceKind).
	auditGovernance(ctx, o, rep)
	return rep, nil
}

// packsAhead is how many packs' shards are fetched ahead of the checks.
const packsAhead = 4

// fetched is one shard as a host answered for it.
type fetched struct {
	data    []byte
	err     error
	skip    bool      // not given to the auditor, or unavailable
	until   time.Time // retain-until the host reports
	audited bool      // the host enforces retention and reported until
	noRet   bool      // the host does not enforce retention
}

// fetchPack reads (or stats) every shard of a pack from its host, all hosts
// at once, and asks host nodes for the shards' retention when it is audited.
func fetchPack(ctx context.Context, o Options, pp *packPlace, hostIdx map[string]int, down *sync.Map) []fetched {
	got := make([]fetched, pp.params.N)
	var wg sync.WaitGroup
	for i := 0; i < pp.params.N; i++ {
		hi, ok := hostIdx[pp.hosts[i]]
		if _, isDown := down.Load(pp.hosts[i]); !ok || !o.Hosts[hi].Available() || isDown {
			got[i].skip = true
			continue
		}
		h := o.Hosts[hi]
		addr := shardstore.ID(pp.ref.Shards[i])
		wg.Add(1)
		go func() {
			defer wg.Done()
			if o.ReadData {
				b, err := h.Store.Get(ctx, shardstore.KindShard, addr)
				if err == nil && uint64(len(b)) != pp.ref.ShardSize {
					err = fmt.Errorf("size %d, the envelope says %d", len(b), pp.ref.ShardSize)
				}
				got[i] = fetched{data: b, err: err}
			} else {
				size, err := h.Store.Stat(ctx, shardstore.KindShard, addr)
				if err == nil && uint64(size) != pp.ref.ShardSize {
					err = fmt.Errorf("size %d, the envelope says %d", size, pp.ref.ShardSize)
				}
				got[i] = fetched{err: err}
			}
			if r, ok := h.Store.(retentionOf); ok && got[i].err == nil && o.Audit.Retention > 0 {
				until, rerr := r.RetainUntilOf(ctx, shardstore.KindShard, addr)
				switch {
				case errors.Is(rerr, transport.ErrNoRetention):
					got[i].noRet = true
				case rerr == nil:
					got[i].until, got[i].audited = until, true
				}
			}
		}()
	}
	wg.Wait()
	return got
}

type packPlace struct {
	ref    snapshot.PackRef
	params erasure.Params
	hosts  []string
	seq    uint64
	newest int64 // time of the newest snapshot that references the pack (unix ns)
}

// retentionOf is a host node that reports how long its store keeps an
// object.
type retentionOf interface {
	RetainUntilOf(ctx context.Context, kind shardstore.Kind, id shardstore.ID) (time.Time, error)
}

func checkDataset(ctx context.Context, o Options, ds *guest.Dataset, served []catalog.HostEnvelopes, rep *Report, hostIdx map[string]int, proofShards map[string][]proof.Shard) (*DatasetReport, error) {
	view := catalog.Assess(ds, served)
	dr := &DatasetReport{Name: ds.Name, Snapshots: len(view.Snapshots)}
	for _, p := range view.Problems {
		if p.Kind == "unavailable" {
			continue // reported once per host
		}
		rep.Problems = append(rep.Problems, Problem{Severity: Damage, Kind: p.Kind, Dataset: ds.Name, Host: p.Host, Seq: p.Seq, Message: p.Message})
	}
	if l := view.Latest(); l != nil {
		dr.Latest = l.Env.Seq
	}
	if head := o.Heads[ds.Name]; head > dr.Latest {
		rep.Problems = append(rep.Problems, Problem{Severity: Loss, Kind: "rolled-back", Dataset: ds.Name, Seq: head,
			Message: fmt.Sprintf("HOME wrote snapshot %d of %s but the newest any host serves is %d: the hosts lost or are withholding the newest snapshots", head, ds.Name, dr.Latest)})
	}
	if dr.Latest == 0 {
		answered := 0
		for _, s := range served {
			if s.Err == nil {
				answered++
			}
		}
		if answered > 0 {
			rep.Problems = append(rep.Problems, Problem{Severity: Loss, Kind: "no-snapshot", Dataset: ds.Name,
				Message: fmt.Sprintf("no host serves a verified snapshot of %s", ds.Name)})
		}
		return dr, nil
	}
	var latestTime int64 // the newest snapshot's time
	if l := view.Latest(); l != nil {
		latestTime = l.Env.Time
	}
	packs := map[[16]byte]*packPlace{}
	for _, s := range view.Snapshots {
		for _, p := range s.Env.Packs {
			if _, ok := packs[p.ID]; !ok {
				packs[p.ID] = &packPlace{ref: p, params: erasure.Params{K: int(s.Env.K), N: int(s.Env.N)}, hosts: s.Env.Hosts, seq: s.Env.Seq}
			}
			if pp := packs[p.ID]; s.Env.Time > pp.newest {
				pp.newest = s.Env.Time
			}
		}
	}
	dr.Packs = len(packs)
	ids := make([][16]byte, 0, len(packs))
	for id := range packs {
		ids = append(ids, id)
	}
	sort.Slice(ids, func(i, j int) bool { return string(ids[i][:]) < string(ids[j][:]) })
	// Shards are fetched (or statted) a few packs ahead of the checks, each
	// pack from all its hosts at once: remote hosts log every read, which
	// costs a durable log append each, so latency, not bandwidth, bounds a
	// sequential check.
	var down sync.Map // host names found unavailable during the check
	fetches := make([]chan []fetched, len(ids))
	for j := range fetches {
		fetches[j] = make(chan []fetched, 1)
	}
	ahead := make(chan struct{}, packsAhead)
	fctx, stopFetch := context.WithCancel(ctx)
	defer stopFetch()
	go func() {
		for j, id := range ids {
			select {
			case ahead <- struct{}{}:
			case <-fctx.Done():
				return
			}
			go func() { fetches[j] <- fetchPack(fctx, o, packs[id], hostIdx, &down) }()
		}
	}()
	for j, id := range ids {
		pp := packs[id]
		good := 0
		var shards [][]byte
		if o.ReadData {
			shards = make([][]byte, pp.params.N)
		}
		var got []fetched
		select {
		case got = <-fetches[j]:
			<-ahead
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		for i := 0; i < pp.params.N; i++ {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
			if got[i].skip {
				continue
			}
			name := pp.hosts[i]
			hi := hostIdx[name]
			addr := shardstore.ID(pp.ref.Shards[i])
			proofShards[name] = append(proofShards[name], proof.Shard{ID: addr, Size: int64(pp.ref.ShardSize)})
			rep.Hosts[hi].Shards++
			err := got[i].err
			if err == nil && o.ReadData {
				shards[i] = got[i].data
			}
			if errors.Is(err, transport.ErrUnavailable) {
				// The host stopped answering during the check: one warning
				// for the host, not damage per shard.
				down.Store(name, true)
				rep.Hosts[hi].Shards--
				if rep.Hosts[hi].Available {
					rep.Hosts[hi].Available = false
					rep.Hosts[hi].Error = err.Error()
					rep.Problems = append(rep.Problems, Problem{Severity: Warning, Kind: "host-unavailable", Host: name, Message: err.Error()})
				}
				continue
			}
			if err != nil {
				sp := hosts.ShardProblem{Host: name, Index: i, Addr: addr, Err: err}
				kind := sp.Kind()
				if kind == "unavailable" {
					kind = "unreadable"
				}
				idx := i
				rep.Hosts[hi].Bad++
				rep.Problems = append(rep.Problems, Problem{Severity: Damage, Kind: kind + "-shard", Dataset: ds.Name, Host: name,
					Seq: pp.seq, Pack: fmt.Sprintf("%x", id), Shard: addr.String(), Index: &idx,
					Message: fmt.Sprintf("host %s: shard %d of pack %x (%s): %s: %v", name, i, id, addr, kind, err)})
				continue
			}
			good++
			// Whether the host's store enforces retention is reported per
			// host, not as a problem: a directory store cannot, and storage
			// proofs are what catch its deletions.
			switch {
			case got[i].noRet:
				rep.Hosts[hi].Retention = "none"
			case got[i].audited:
				rep.Hosts[hi].Retention = "enforced"
			}
			// Only the latest snapshot's packs are held to the current
			// retention: the agent extends exactly those at each backup,
			// and older snapshots were written under whatever retention
			// was in force then.
			if want := transport.RetainUntil(time.Unix(0, latestTime), o.Audit.Retention); got[i].audited && pp.newest == latestTime && got[i].until.Before(want) {
				idx := i
				rep.Problems = append(rep.Problems, Problem{Severity: Damage, Kind: "retention-short", Dataset: ds.Name, Host: name,
					Seq: pp.seq, Pack: fmt.Sprintf("%x", id), Shard: addr.String(), Index: &idx,
					Message: fmt.Sprintf("host %s keeps shard %d of pack %x only until %s; the latest snapshot needs %s", name, i, id,
						got[i].until.Format(time.RFC3339), want.Format(time.RFC3339))})
			}
		}
		if good < pp.params.K {
			dr.Unrecoverable++
			rep.Problems = append(rep.Problems, Problem{Severity: Loss, Kind: "unrecoverable-pack", Dataset: ds.Name, Seq: pp.seq,
				Pack:    fmt.Sprintf("%x", id),
				Message: fmt.Sprintf("pack %x of %s has %d good shards on the hosts checked, %d are needed", id, ds.Name, good, pp.params.K)})
			continue
		}
		if o.ReadData && good == pp.params.N {
			if err := erasure.Verify(pp.params, shards); err != nil {
				rep.Problems = append(rep.Problems, Problem{Severity: Damage, Kind: "inconsistent-pack", Dataset: ds.Name,
					Pack: fmt.Sprintf("%x", id), Message: fmt.Sprintf("the shards of pack %x do not form one codeword: %v", id, err)})
			}
		}
	}
	return dr, nil
}
