package ledger

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"strings"

	"github.com/transparency-dev/merkle/compact"
	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"
	"github.com/transparency-dev/tessera/api"
	"github.com/transparency-dev/tessera/api/layout"
	"github.com/transparency-dev/tessera/client"

	"github.com/embassy-project/embassy/internal/wire"
)

var (
	// ErrInconsistent means a log cannot show that a checkpoint extends one
	// accepted earlier: the log was rewritten or forked (two checkpoints of
	// the same size with different roots, or a consistency proof built from
	// the log's tiles that does not verify).
	ErrInconsistent = errors.New("log is inconsistent with an earlier checkpoint")
	// ErrRollback means a checkpoint is smaller than one already accepted:
	// the log was truncated or is replaying an old state.
	ErrRollback = errors.New("checkpoint is older than one already accepted")
)

// Limits on fetched resources.
const (
	maxTileSize   = layout.TileWidth * 32
	maxBundleSize = layout.EntryBundleWidth * (2 + MaxEntrySize)
	// MaxResourceSize bounds any resource the log serves.
	MaxResourceSize = maxBundleSize
)

var hasher = rfc6962.DefaultHasher

// Client reads and audits a log over its tlog-tiles paths.
type Client struct {
	Verifier
	// Fetch returns the resource at path, relative to the log's root
	// ("checkpoint", "tile/0/x001/234", "tile/entries/000.p/7",
	// "cosigned-checkpoint"). A missing resource MUST be reported as an
	// error wrapping fs.ErrNotExist (HTTPFetcher does).
	Fetch func(ctx context.Context, path string) ([]byte, error)
}

// HTTPFetcher returns a Client.Fetch that GETs baseURL + "/" + path with hc
// (http.DefaultClient if nil). A 404 wraps fs.ErrNotExist.
func HTTPFetcher(baseURL string, hc *http.Client) func(ctx context.Context, path string) ([]byte, error) {
	if hc == nil {
		hc = http.DefaultClient
	}
	base := strings.TrimSuffix(baseURL, "/")
	return func(ctx context.Context, path string) ([]byte, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/"+path, nil)
		if err != nil {
			return nil, fmt.Errorf("get %s: %w", path, err)
		}
		resp, err := hc.Do(req)
		if err != nil {
			return nil, fmt.Errorf("get %s: %w", path, err)
		}
		defer resp.Body.Close()
		switch {
		case resp.StatusCode == http.StatusNotFound:
			return nil, fmt.Errorf("get %s: %w", path, fs.ErrNotExist)
		case resp.StatusCode != http.StatusOK:
			return nil, fmt.Errorf("get %s: %s", path, resp.Status)
		}
		b, err := io.ReadAll(io.LimitReader(resp.Body, MaxResourceSize+1))
		if err != nil {
			return nil, fmt.Errorf("get %s: %w", path, err)
		}
		if len(b) > MaxResourceSize {
			return nil, fmt.Errorf("get %s: more than %d bytes", path, MaxResourceSize)
		}
		return b, nil
	}
}

// Latest fetches and verifies the log's current checkpoint.
func (c *Client) Latest(ctx context.Context) (*Checkpoint, error) {
	return c.fetchCheckpoint(ctx, layout.CheckpointPath)
}

// Cosigned fetches and verifies the latest checkpoint the log stored with
// witness cosignatures (those are in Cosignatures, unverified). A log with
// none yet gives an error wrapping fs.ErrNotExist.
func (c *Client) Cosigned(ctx context.Context) (*Checkpoint, error) {
	return c.fetchCheckpoint(ctx, CosignedPath)
}

func (c *Client) fetchCheckpoint(ctx context.Context, path string) (*Checkpoint, error) {
	b, err := c.Fetch(ctx, path)
	if err != nil {
		return nil, fmt.Errorf("fetch %s of %s: %w", path, c.Origin(), err)
	}
	return c.ParseCheckpoint(b)
}

// CheckConsistency checks that new extends old (both verified checkpoints of
// this log) using a consistency proof built from the log's tiles. A log that
// cannot show it gives an error wrapping ErrInconsistent; new smaller than
// old gives ErrRollback. Other errors are fetch failures or malformed tiles.
func (c *Client) CheckConsistency(ctx context.Context, old, new *Checkpoint) error {
	if old.Origin != c.Origin() {
		return fmt.Errorf("check consistency: checkpoint of %s, client for %s", old.Origin, c.Origin())
	}
	_, err := c.Advance(ctx, old.Trusted(), new)
	return err
}

// Advance checks that cp extends the trusted state t and returns the new
// state to store. The zero Trusted accepts any checkpoint of this log. A
// smaller checkpoint gives ErrRollback; one that does not extend t gives
// ErrInconsistent.
func (c *Client) Advance(ctx context.Context, t Trusted, cp *Checkpoint) (Trusted, error) {
	if cp.Origin != c.Origin() {
		return t, fmt.Errorf("advance: checkpoint of %s, client for %s", cp.Origin, c.Origin())
	}
	if t.IsZero() {
		return cp.Trusted(), nil
	}
	if t.Origin != cp.Origin {
		return t, fmt.Errorf("advance: trusted state is for %s, checkpoint of %s", t.Origin, cp.Origin)
	}
	switch {
	case cp.Size < t.Size:
		return t, fmt.Errorf("%s: size %d, trusted %d: %w", cp.Origin, cp.Size, t.Size, ErrRollback)
	case cp.Size == t.Size:
		if cp.Hash != t.Hash {
			return t, fmt.Errorf("%s: two roots for size %d (%x, trusted %x): %w", cp.Origin, cp.Size, cp.Hash, t.Hash, ErrInconsistent)
		}
		return t, nil
	case t.Size == 0:
		return cp.Trusted(), nil // the empty tree is a prefix of every tree
	}
	s := c.session()
	pb, err := client.NewProofBuilder(ctx, cp.Size, s.tile)
	if err != nil {
		return t, s.fail("consistency proof", err)
	}
	p, err := pb.ConsistencyProof(ctx, t.Size, cp.Size)
	if err != nil {
		return t, s.fail("consistency proof", err)
	}
	if err := proof.VerifyConsistency(hasher, t.Size, cp.Size, p, t.Hash[:], cp.Hash[:]); err != nil {
		return t, fmt.Errorf("%s: size %d does not extend trusted size %d: %v: %w", cp.Origin, cp.Size, t.Size, err, ErrInconsistent)
	}
	return cp.Trusted(), nil
}

// Entries fetches entries [from, to) and verifies them against cp: the
// entries' leaf hashes, with the tiles left of from, must give a tree whose
// root is cp's (to = cp.Size) or is consistent with it. Entries that do not
// match, or do not parse, give an error wrapping wire.ErrCorrupt.
func (c *Client) Entries(ctx context.Context, cp *Checkpoint, from, to uint64) ([]Entry, error) {
	if cp.Origin != c.Origin() {
		return nil, fmt.Errorf("entries: checkpoint of %s, client for %s", cp.Origin, c.Origin())
	}
	if from > to || to > cp.Size {
		return nil, fmt.Errorf("entries [%d, %d) of a log of size %d", from, to, cp.Size)
	}
	if from == to {
		return nil, nil
	}
	s := c.session()
	left, err := client.FetchRangeNodes(ctx, from, tilesAt(cp.Size, s.tile))
	if err != nil {
		return nil, s.fail("entries", err)
	}
	rf := &compact.RangeFactory{Hash: hasher.HashChildren}
	r, err := rf.NewRange(0, from, left)
	if err != nil {
		return nil, wire.Corruptf("entries of %s: tiles left of %d: %v", cp.Origin, from, err)
	}
	entries := make([]Entry, 0, min(to-from, 1<<16))
	for ri := range layout.Range(from, to-from, cp.Size) {
		raw, err := s.bundle(ctx, ri.Index, ri.Partial)
		if err != nil {
			return nil, s.fail("entries", err)
		}
		var b api.EntryBundle
		if err := b.UnmarshalText(raw); err != nil {
			return nil, wire.Corruptf("entries of %s: bundle %d: %v", cp.Origin, ri.Index, err)
		}
		if uint(len(b.Entries)) < ri.First+ri.N {
			return nil, wire.Corruptf("entries of %s: bundle %d has %d entries, want %d", cp.Origin, ri.Index, len(b.Entries), ri.First+ri.N)
		}
		for i, raw := range b.Entries[ri.First : ri.First+ri.N] {
			idx := ri.Index*layout.EntryBundleWidth + uint64(ri.First) + uint64(i)
			e, err := ParseEntry(raw)
			if err != nil {
				return nil, fmt.Errorf("entries of %s: entry %d: %w", cp.Origin, idx, err)
			}
			entries = append(entries, e)
			if err := r.Append(hasher.HashLeaf(raw), nil); err != nil {
				return nil, fmt.Errorf("entries of %s: %w", cp.Origin, err)
			}
		}
	}
	if r.End() != to {
		return nil, wire.Corruptf("entries of %s: got entries up to %d, want %d", cp.Origin, r.End(), to)
	}
	root, err := r.GetRootHash(nil)
	if err != nil {
		return nil, fmt.Errorf("entries of %s: %w", cp.Origin, err)
	}
	if to == cp.Size {
		if !bytes.Equal(root, cp.Hash[:]) {
			return nil, wire.Corruptf("entries of %s: entries [%d, %d) do not match the checkpoint's root", cp.Origin, from, to)
		}
		return entries, nil
	}
	pb, err := client.NewProofBuilder(ctx, cp.Size, s.tile)
	if err != nil {
		return nil, s.fail("entries", err)
	}
	p, err := pb.ConsistencyProof(ctx, to, cp.Size)
	if err != nil {
		return nil, s.fail("entries", err)
	}
	if err := proof.VerifyConsistency(hasher, to, cp.Size, p, root, cp.Hash[:]); err != nil {
		return nil, wire.Corruptf("entries of %s: entries [%d, %d) are not in the checkpoint's tree: %v", cp.Origin, from, to, err)
	}
	return entries, nil
}

// tilesAt returns a tile fetcher that asks f for tiles as they are in a
// tree of the given size. Tessera's helpers ask for a tile as it is in the
// tree they work on; a smaller tree's partial tile may never have existed
// (the log grew past it in one batch), but the same tile in a larger tree
// starts with the same nodes.
func tilesAt(size uint64, f client.TileFetcherFunc) client.TileFetcherFunc {
	return func(ctx context.Context, level, index uint64, _ uint8) ([]byte, error) {
		return f(ctx, level, index, layout.PartialTileSize(level, index, size))
	}
}

// session remembers the first fetch error during one operation, because
// tessera's client helpers flatten the errors they pass on: a helper that
// fails after a fetch failed reports the fetch error, otherwise the served
// bytes were wrong.
type session struct {
	c        *Client
	fetchErr error
}

func (c *Client) session() *session { return &session{c: c} }

func (s *session) get(ctx context.Context, path string) ([]byte, error) {
	b, err := s.c.Fetch(ctx, path)
	if err != nil {
		return nil, fmt.Errorf("fetch %s of %s: %w", path, s.c.Origin(), err)
	}
	return b, nil
}

func (s *session) fetchFailed(err error) error {
	if s.fetchErr == nil {
		s.fetchErr = err
	}
	return err
}

// tile fetches a hash tile, falling back from a partial tile to the full one
// (tlog-tiles allows logs to delete partial tiles once the full one exists).
func (s *session) tile(ctx context.Context, level, index uint64, p uint8) ([]byte, error) {
	b, err := s.get(ctx, layout.TilePath(level, index, p))
	if p > 0 && errors.Is(err, fs.ErrNotExist) {
		b, err = s.get(ctx, layout.TilePath(level, index, 0))
	}
	if err != nil {
		return nil, s.fetchFailed(err)
	}
	if len(b) > maxTileSize || len(b)%32 != 0 || len(b) < int(p)*32 {
		return nil, wire.Corruptf("tile %s: %d bytes", layout.TilePath(level, index, p), len(b))
	}
	return b, nil
}

func (s *session) bundle(ctx context.Context, index uint64, p uint8) ([]byte, error) {
	b, err := s.get(ctx, layout.EntriesPath(index, p))
	if p > 0 && errors.Is(err, fs.ErrNotExist) {
		b, err = s.get(ctx, layout.EntriesPath(index, 0))
	}
	if err != nil {
		return nil, s.fetchFailed(err)
	}
	if len(b) > maxBundleSize {
		return nil, wire.Corruptf("entry bundle %d: %d bytes", index, len(b))
	}
	return b, nil
}

// fail classifies an error from a tessera client helper: a fetch error if
// one happened, else corrupt served data.
func (s *session) fail(op string, err error) error {
	if s.fetchErr != nil {
		return fmt.Errorf("%s: %w", op, s.fetchErr)
	}
	if errors.Is(err, wire.ErrCorrupt) {
		return fmt.Errorf("%s: %w", op, err)
	}
	return wire.Corruptf("%s of %s: %v", op, s.c.Origin(), err)
}
