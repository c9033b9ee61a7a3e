package witness

import (
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"
)

// Cosign is one cosignature a witness produced, as Config.OnCosign reports it.
type Cosign struct {
	Origin string
	Size   uint64
	Root   [HashSize]byte
}

// Batcher collects a witness's cosignatures so that the host can record them
// in its own ledger in batches rather than one entry per cosignature. Add is
// Config.OnCosign; the host calls Flush from a ticker and appends what it
// returns as one ledger entry. A Batcher keeps only the largest size per
// origin, so a batch has at most one Cosign per log.
//
// Anti-ping-pong rule: hosts witness each other's ledgers, so recording a
// cosignature grows the recorder's ledger, which then asks its witnesses to
// cosign, which records that cosignature in theirs, and so on, one round per
// batch interval forever. A log therefore MUST NOT ask witnesses to cosign a
// checkpoint whose only new entries since its last cosigned checkpoint are
// cosign-batch entries (NeedsCosign); those entries are witnessed with the
// next checkpoint that carries any other entry.
type Batcher struct {
	interval time.Duration

	mu      sync.Mutex
	pending map[string]Cosign
	flushed map[string]Cosign // the last Cosign handed out per origin
	last    time.Time         // time of the last non-empty Flush
}

// NewBatcher returns a Batcher that flushes at most once per interval.
func NewBatcher(interval time.Duration) *Batcher {
	return &Batcher{
		interval: interval,
		pending:  make(map[string]Cosign),
		flushed:  make(map[string]Cosign),
	}
}

// Add records a cosignature. It is new only if its size is larger than both
// the pending and the last flushed one for its origin; a re-cosignature of
// the same checkpoint is not.
func (b *Batcher) Add(origin string, size uint64, root [HashSize]byte) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if f, ok := b.flushed[origin]; ok && size <= f.Size {
		return
	}
	if p, ok := b.pending[origin]; ok && size <= p.Size {
		return
	}
	b.pending[origin] = Cosign{Origin: origin, Size: size, Root: root}
}

// Flush returns the pending cosignatures sorted by origin and clears them, if
// something new arrived and at least interval has passed since the last
// non-empty Flush; otherwise it returns nil. now is the host's clock.
func (b *Batcher) Flush(now time.Time) []Cosign {
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.pending) == 0 || !b.last.IsZero() && now.Sub(b.last) < b.interval {
		return nil
	}
	batch := make([]Cosign, 0, len(b.pending))
	for origin, c := range b.pending {
		batch = append(batch, c)
		b.flushed[origin] = c
		delete(b.pending, origin)
	}
	slices.SortFunc(batch, func(x, y Cosign) int { return strings.Compare(x.Origin, y.Origin) })
	b.last = now
	return batch
}

// Retry returns a batch the host failed to record to the Batcher, so that the
// next Flush (after the interval) includes it again, merged with anything
// newer.
func (b *Batcher) Retry(batch []Cosign) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, c := range batch {
		if b.flushed[c.Origin] == c {
			delete(b.flushed, c.Origin)
		}
		if p, ok := b.pending[c.Origin]; !ok || p.Size < c.Size {
			b.pending[c.Origin] = c
		}
	}
}

// NeedsCosign applies the anti-ping-pong rule: it reports whether a log of
// size entries whose latest cosigned checkpoint has size witnessed should ask
// its witnesses to cosign, which it should only if some entry in [witnessed,
// size) is not a cosign-batch entry. isCosignBatch reports whether entry i is
// one; NeedsCosign asks newest first and stops at the first other entry.
func NeedsCosign(witnessed, size uint64, isCosignBatch func(index uint64) (bool, error)) (bool, error) {
	for i := size; i > witnessed; i-- {
		batch, err := isCosignBatch(i - 1)
		if err != nil {
			return false, fmt.Errorf("needs cosign: entry %d: %w", i-1, err)
		}
		if !batch {
			return true, nil
		}
	}
	return false, nil
}
