// Package catalog discovers a dataset's snapshots across hosts: it reads the
// signed envelopes each host serves, keeps only those the dataset's agent key
// signed, and notices what a dishonest or damaged host shows differently —
// a forged envelope, an older snapshot served as the latest, a missing one, a
// fork in the chain.
//
// Assess is the pure core; Read is the shell that reads the hosts.
package catalog

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/embassy-project/embassy/internal/guest"
	"github.com/embassy-project/embassy/internal/hosts"
	"github.com/embassy-project/embassy/internal/shardstore"
	"github.com/embassy-project/embassy/internal/snapshot"
	"github.com/embassy-project/embassy/internal/wire"
)

// Snapshot is one verified envelope and the hosts that serve it.
type Snapshot struct {
	Env    *snapshot.Envelope
	Hash   [32]byte
	Signed []byte
	Hosts  []string
}

// Problem is something a host shows that it should not.
type Problem struct {
	Host    string `json:"host,omitempty"`
	Kind    string `json:"kind"` // forged-envelope, stale-latest, missing-envelope, fork, broken-chain, corrupt-envelope, unavailable
	Seq     uint64 `json:"seq,omitempty"`
	Message string `json:"message"`
}

// View is what the hosts together say about one dataset.
type View struct {
	Dataset    *guest.Dataset
	Snapshots  []*Snapshot       // by Seq, one per Seq (a fork keeps the first and reports it)
	HostLatest map[string]uint64 // the highest verified Seq each answering host serves
	Problems   []Problem
}

// HostEnvelopes is what one host served: raw envelope bytes by address.
type HostEnvelopes struct {
	Host      string
	Err       error // the host could not be read
	Envelopes map[shardstore.ID][]byte
	Bad       map[shardstore.ID]error // envelopes whose bytes failed their address
}

// Assess verifies and cross-checks what each host served. It never trusts a
// key or field a host supplies: envelopes are kept only when ds.Agent signed
// them and they name ds's guest and dataset.
func Assess(ds *guest.Dataset, served []HostEnvelopes) *View {
	v := &View{Dataset: ds, HostLatest: map[string]uint64{}}
	bySeq := map[uint64][]*Snapshot{}
	hashes := map[[32]byte]*Snapshot{}
	hostHas := map[string]map[uint64]bool{}
	answered := []string{}
	for _, he := range served {
		if he.Err != nil {
			v.Problems = append(v.Problems, Problem{Host: he.Host, Kind: "unavailable", Message: he.Err.Error()})
			continue
		}
		answered = append(answered, he.Host)
		hostHas[he.Host] = map[uint64]bool{}
		for id, err := range he.Bad {
			v.Problems = append(v.Problems, Problem{Host: he.Host, Kind: "corrupt-envelope", Message: fmt.Sprintf("envelope %s: %v", id, err)})
		}
		ids := make([]shardstore.ID, 0, len(he.Envelopes))
		for id := range he.Envelopes {
			ids = append(ids, id)
		}
		slices.SortFunc(ids, func(a, b shardstore.ID) int { return bytes.Compare(a[:], b[:]) })
		for _, id := range ids {
			b := he.Envelopes[id]
			env, err := snapshot.Parse(b)
			if err != nil {
				v.Problems = append(v.Problems, Problem{Host: he.Host, Kind: "corrupt-envelope", Message: fmt.Sprintf("envelope %s: %v", id, err)})
				continue
			}
			if env.Guest != ds.Guest || env.Dataset != ds.ID {
				continue // another dataset's or guest's envelope
			}
			if _, err := snapshot.Verify(b, ds.Agent); err != nil {
				v.Problems = append(v.Problems, Problem{Host: he.Host, Kind: "forged-envelope", Seq: env.Seq,
					Message: fmt.Sprintf("envelope %s claims seq %d of %s but is not signed by the guest's agent key: %v", id, env.Seq, ds.Name, err)})
				continue
			}
			h := snapshot.Hash(b)
			hostHas[he.Host][env.Seq] = true
			if s, ok := hashes[h]; ok {
				if !slices.Contains(s.Hosts, he.Host) {
					s.Hosts = append(s.Hosts, he.Host)
				}
			} else {
				s := &Snapshot{Env: env, Hash: h, Signed: b, Hosts: []string{he.Host}}
				hashes[h] = s
				bySeq[env.Seq] = append(bySeq[env.Seq], s)
			}
			if env.Seq > v.HostLatest[he.Host] {
				v.HostLatest[he.Host] = env.Seq
			}
		}
	}
	seqs := make([]uint64, 0, len(bySeq))
	for s := range bySeq {
		seqs = append(seqs, s)
	}
	slices.Sort(seqs)
	for _, seq := range seqs {
		c := bySeq[seq]
		sort.Slice(c, func(i, j int) bool { return len(c[i].Hosts) > len(c[j].Hosts) })
		if len(c) > 1 {
			var desc []string
			for _, s := range c {
				desc = append(desc, fmt.Sprintf("%x… on %s", s.Hash[:6], strings.Join(s.Hosts, ",")))
			}
			v.Problems = append(v.Problems, Problem{Kind: "fork", Seq: seq,
				Message: fmt.Sprintf("%d different signed envelopes claim seq %d of %s (%s): the agent key signed two histories — treat it as compromised", len(c), seq, ds.Name, strings.Join(desc, "; "))})
		}
		v.Snapshots = append(v.Snapshots, c[0])
	}
	for i := 1; i < len(v.Snapshots); i++ {
		prev, cur := v.Snapshots[i-1], v.Snapshots[i]
		if cur.Env.Seq == prev.Env.Seq+1 && cur.Env.Prev != prev.Hash {
			v.Problems = append(v.Problems, Problem{Kind: "broken-chain", Seq: cur.Env.Seq,
				Message: fmt.Sprintf("snapshot %d of %s does not link to snapshot %d", cur.Env.Seq, ds.Name, prev.Env.Seq)})
		}
	}
	if len(v.Snapshots) > 0 {
		latest := v.Snapshots[len(v.Snapshots)-1].Env.Seq
		for _, h := range answered {
			if got := v.HostLatest[h]; got < latest {
				have := "none"
				if got > 0 {
					have = strconv.FormatUint(got, 10)
				}
				v.Problems = append(v.Problems, Problem{Host: h, Kind: "stale-latest", Seq: latest,
					Message: fmt.Sprintf("host %s serves %s as the latest snapshot of %s, but other hosts show %d: it is behind or withholding newer snapshots", h, have, ds.Name, latest)})
			}
			for _, s := range v.Snapshots {
				if s.Env.Seq < v.HostLatest[h] && !hostHas[h][s.Env.Seq] {
					v.Problems = append(v.Problems, Problem{Host: h, Kind: "missing-envelope", Seq: s.Env.Seq,
						Message: fmt.Sprintf("host %s lacks the envelope of snapshot %d of %s", h, s.Env.Seq, ds.Name)})
				}
			}
		}
	}
	return v
}

// Latest returns the newest snapshot, or nil.
func (v *View) Latest() *Snapshot {
	if len(v.Snapshots) == 0 {
		return nil
	}
	return v.Snapshots[len(v.Snapshots)-1]
}

// ErrNoSnapshot is returned when a selector matches nothing.
var ErrNoSnapshot = errors.New("no such snapshot")

// Find selects "latest", a sequence number, or a hex prefix of an envelope hash.
func (v *View) Find(sel string) (*Snapshot, error) {
	if sel == "" || sel == "latest" {
		if s := v.Latest(); s != nil {
			return s, nil
		}
		return nil, fmt.Errorf("%w: dataset %s has no verified snapshot on the hosts given", ErrNoSnapshot, v.Dataset.Name)
	}
	if n, err := strconv.ParseUint(sel, 10, 64); err == nil {
		for _, s := range v.Snapshots {
			if s.Env.Seq == n {
				return s, nil
			}
		}
		return nil, fmt.Errorf("%w: no snapshot %d of %s", ErrNoSnapshot, n, v.Dataset.Name)
	}
	var found *Snapshot
	for _, s := range v.Snapshots {
		if strings.HasPrefix(fmt.Sprintf("%x", s.Hash), strings.ToLower(sel)) {
			if found != nil {
				return nil, fmt.Errorf("snapshot prefix %q is ambiguous", sel)
			}
			found = s
		}
	}
	if found == nil {
		return nil, fmt.Errorf("%w: %q", ErrNoSnapshot, sel)
	}
	return found, nil
}

// Read lists and fetches every envelope on each available host.
func Read(ctx context.Context, hs []*hosts.Host) []HostEnvelopes {
	out := make([]HostEnvelopes, len(hs))
	for i, h := range hs {
		out[i] = HostEnvelopes{Host: h.Name}
		if !h.Available() {
			out[i].Err = h.Err
			continue
		}
		envs := map[shardstore.ID][]byte{}
		bad := map[shardstore.ID]error{}
		err := h.Store.List(ctx, shardstore.KindEnvelope, func(id shardstore.ID, _ int64) error {
			b, err := h.Store.Get(ctx, shardstore.KindEnvelope, id)
			if errors.Is(err, wire.ErrCorrupt) {
				bad[id] = err
				return nil
			}
			if err != nil {
				return fmt.Errorf("envelope %s: %w", id, err)
			}
			envs[id] = b
			return nil
		})
		if err != nil {
			out[i].Err = fmt.Errorf("read envelopes of host %s: %w", h.Name, err)
			continue
		}
		out[i].Envelopes = envs
		out[i].Bad = bad
	}
	return out
}
