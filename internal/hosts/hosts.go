// Package hosts is the guest's ordered set of hosts: it parses host
// specifications, opens each host's shard store, and places and fetches the
// shards of one pack (shard i on host i), checking every shard against the
// address the agent signed.
//
// A host is either a local directory (package shardstore/fs) or a remote host
// node reached over mutual TLS (package transport); both are a
// shardstore.Store behind the same Host.
package hosts

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/embassy-project/embassy/internal/erasure"
	"github.com/embassy-project/embassy/internal/shardstore"
	"github.com/embassy-project/embassy/internal/shardstore/fs"
	"github.com/embassy-project/embassy/internal/transport"
	"github.com/embassy-project/embassy/internal/wire"
)

// Spec names one host and where it is: a local directory, or a remote host
// node described by its descriptor.
type Spec struct {
	Name     string                `json:"name"`
	Location string                `json:"location,omitempty"` // a local directory
	Remote   *transport.Descriptor `json:"remote,omitempty"`   // a host node
}

// ParseSpec parses "NAME=LOCATION", where LOCATION is a host descriptor file
// (a remote host node) or a directory (a local host).
func ParseSpec(s string) (Spec, error) {
	name, loc, ok := strings.Cut(s, "=")
	if !ok || loc == "" {
		return Spec{}, fmt.Errorf("host %q: want NAME=DIR or NAME=DESCRIPTOR_FILE", s)
	}
	if !wire.ValidName(name) {
		return Spec{}, fmt.Errorf("host %q: a name is 1 to %d characters of a-z, 0-9 and (not first) . _ -", s, wire.MaxNameLen)
	}
	if fi, err := os.Stat(loc); err == nil && fi.Mode().IsRegular() {
		b, err := os.ReadFile(loc)
		if err != nil {
			return Spec{}, fmt.Errorf("host %q: %w", s, err)
		}
		d, err := transport.ParseDescriptor(b)
		if err != nil {
			return Spec{}, fmt.Errorf("host %q: %s: %w", s, loc, err)
		}
		return Spec{Name: name, Remote: d}, nil
	}
	abs, err := filepath.Abs(loc)
	if err != nil {
		return Spec{}, fmt.Errorf("host %q: %w", s, err)
	}
	return Spec{Name: name, Location: abs}, nil
}

// String describes where the host is.
func (s Spec) String() string {
	if s.Remote != nil {
		return s.Remote.BaseURL()
	}
	return s.Location
}

// Connector opens the store of a remote host: it holds the credential (an
// agent or read-grant certificate) the caller acts with.
type Connector func(d *transport.Descriptor) (shardstore.Store, error)

// Options configure Open.
type Options struct {
	// Create initialises missing local directories (guest set-up); without
	// it, a local host whose store does not exist is reported unavailable
	// rather than silently created. Remote hosts are never contacted by Open.
	Create bool
	// Connect opens remote hosts; without it they are reported unavailable.
	Connect Connector
}

// ErrUnavailable marks a host that could not be opened or reached.
var ErrUnavailable = errors.New("host unavailable")

// Host is one opened (or failed) host.
type Host struct {
	Spec
	Store shardstore.Store // nil when Err is set
	Err   error            // why the host is unavailable
}

// Available reports whether the host could be opened.
func (h *Host) Available() bool { return h.Store != nil }

// Open opens each host. It fails only on duplicate names; unavailable hosts
// are returned with Err set.
func Open(specs []Spec, o Options) ([]*Host, error) {
	seen := map[string]bool{}
	var out []*Host
	for _, s := range specs {
		if seen[s.Name] {
			return nil, fmt.Errorf("host %q given twice", s.Name)
		}
		seen[s.Name] = true
		h := &Host{Spec: s}
		if s.Remote != nil {
			if o.Connect == nil {
				h.Err = fmt.Errorf("%w: %s: remote host %s needs a credential (HOME, or a read grant)", ErrUnavailable, s.Name, s.Remote.BaseURL())
			} else if st, err := o.Connect(s.Remote); err != nil {
				h.Err = fmt.Errorf("%w: %s: %v", ErrUnavailable, s.Name, err)
			} else {
				h.Store = st
			}
			out = append(out, h)
			continue
		}
		if !o.Create {
			if _, err := os.Stat(filepath.Join(s.Location, fs.MarkerName)); err != nil {
				h.Err = fmt.Errorf("%w: %s: no shard store at %s", ErrUnavailable, s.Name, s.Location)
				out = append(out, h)
				continue
			}
		}
		st, err := fs.Open(s.Location)
		if err != nil {
			h.Err = fmt.Errorf("%w: %s: %v", ErrUnavailable, s.Name, err)
		} else {
			h.Store = st
		}
		out = append(out, h)
	}
	return out, nil
}

// Placement maps shard indices to hosts for packs written across the named
// hosts (the order the agent signed in each envelope).
type Placement struct {
	Names []string // host name of shard i
	Hosts []*Host  // nil where the host was not given or is unavailable
}

// Place lines up the opened hosts with the host names an envelope lists.
// Hosts not in the list are an error: the caller named a host the guest never
// wrote to.
func Place(names []string, hs []*Host) (*Placement, error) {
	p := &Placement{Names: names, Hosts: make([]*Host, len(names))}
	for _, h := range hs {
		i := indexOf(names, h.Name)
		if i < 0 {
			return nil, fmt.Errorf("host %q is not one of the snapshot's hosts %v", h.Name, names)
		}
		if h.Available() {
			p.Hosts[i] = h
		}
	}
	return p, nil
}

func indexOf(names []string, n string) int {
	for i, x := range names {
		if x == n {
			return i
		}
	}
	return -1
}

// PutShards stores object i (of kind) on host i, all hosts in parallel. Every
// host must accept: a backup never reports success with a shard missing.
func PutShards(ctx context.Context, hs []*Host, addrs []shardstore.ID, shards [][]byte, kind shardstore.Kind) error {
	if len(hs) != len(shards) || len(addrs) != len(shards) {
		return fmt.Errorf("put shards: %d hosts for %d shards", len(hs), len(shards))
	}
	return onEach(hs, func(i int, h *Host) error {
		if err := h.Store.Put(ctx, kind, addrs[i], shards[i]); err != nil {
			return fmt.Errorf("host %s: put %s %s: %w", h.Name, kind, addrs[i], err)
		}
		return nil
	})
}

// PutSummed stores object i (of kind) on host i, all hosts in parallel,
// under its address, which it returns: each host's store hashes its object
// once (shardstore.PutSum). Every host must accept.
func PutSummed(ctx context.Context, hs []*Host, objs [][]byte, kind shardstore.Kind) ([]shardstore.ID, error) {
	if len(hs) != len(objs) {
		return nil, fmt.Errorf("put shards: %d hosts for %d shards", len(hs), len(objs))
	}
	addrs := make([]shardstore.ID, len(hs))
	err := onEach(hs, func(i int, h *Host) error {
		id, err := shardstore.PutSum(ctx, h.Store, kind, objs[i])
		if err != nil {
			return fmt.Errorf("host %s: put %s %s: %w", h.Name, kind, id, err)
		}
		addrs[i] = id
		return nil
	})
	if err != nil {
		return nil, err
	}
	return addrs, nil
}

// onEach calls fn for every host, in parallel, and joins their errors; an
// unavailable host is an error without a call.
func onEach(hs []*Host, fn func(i int, h *Host) error) error {
	errs := make([]error, len(hs))
	var wg sync.WaitGroup
	for i, h := range hs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if !h.Available() {
				errs[i] = fmt.Errorf("host %s: %w", h.Name, h.Err)
				return
			}
			errs[i] = fn(i, h)
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// ShardProblem records one shard that could not be used.
type ShardProblem struct {
	Host  string
	Index int
	Addr  shardstore.ID
	Err   error
}

// Kind classifies the problem: "missing", "corrupt" or "unavailable".
func (p ShardProblem) Kind() string {
	switch {
	case errors.Is(p.Err, shardstore.ErrNotFound):
		return "missing"
	case errors.Is(p.Err, wire.ErrCorrupt):
		return "corrupt"
	default:
		return "unavailable"
	}
}

func (p ShardProblem) String() string {
	return fmt.Sprintf("host %s shard %d (%s): %s: %v", p.Host, p.Index, p.Addr, p.Kind(), p.Err)
}

// GetPack fetches shards of one pack until k verified ones are in hand
// (data shards first, which makes decoding a copy), then rebuilds the sealed
// pack. Shards that are missing or fail their address are reported in
// problems and skipped. It returns an error wrapping erasure.ErrTooFewShards
// when fewer than k good shards exist among the available hosts.
func GetPack(ctx context.Context, pl *Placement, p erasure.Params, addrs []shardstore.ID) ([]byte, []ShardProblem, error) {
	if len(addrs) != p.N || len(pl.Hosts) != p.N {
		return nil, nil, fmt.Errorf("get pack: %d addresses, %d hosts, n=%d", len(addrs), len(pl.Hosts), p.N)
	}
	shards := make([][]byte, p.N)
	var problems []ShardProblem
	good := 0
	// Ask for k shards at once (data shards first, which makes decoding a
	// copy), and for replacements only when some fail: a host node's read
	// waits for a durable log append, so fetching one by one would add
	// those latencies up.
	next := 0
	for good < p.K && next < p.N {
		var batch []int
		for ; next < p.N && len(batch) < p.K-good; next++ {
			if pl.Hosts[next] != nil {
				batch = append(batch, next)
			}
		}
		if len(batch) == 0 {
			break
		}
		errs := make([]error, len(batch))
		var wg sync.WaitGroup
		for j, i := range batch {
			wg.Add(1)
			go func() {
				defer wg.Done()
				shards[i], errs[j] = pl.Hosts[i].Store.Get(ctx, shardstore.KindShard, addrs[i])
			}()
		}
		wg.Wait()
		if ctx.Err() != nil {
			return nil, problems, ctx.Err()
		}
		for j, i := range batch {
			if errs[j] != nil {
				shards[i] = nil
				problems = append(problems, ShardProblem{Host: pl.Names[i], Index: i, Addr: addrs[i], Err: errs[j]})
				continue
			}
			good++
		}
	}
	if good < p.K {
		var missing []string
		for i, h := range pl.Hosts {
			if h == nil {
				missing = append(missing, pl.Names[i]+" (not available)")
			}
		}
		for _, pr := range problems {
			missing = append(missing, fmt.Sprintf("%s (%s)", pr.Host, pr.Kind()))
		}
		return nil, problems, fmt.Errorf("%w: %d good shards of %d needed; unusable: %s",
			erasure.ErrTooFewShards, good, p.K, strings.Join(missing, ", "))
	}
	pack, err := erasure.Decode(p, shards)
	if err != nil {
		return nil, problems, fmt.Errorf("rebuild pack: %w", err)
	}
	return pack, problems, nil
}
