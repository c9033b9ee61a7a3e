package hostnode

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/zeebo/blake3"

	"github.com/embassy-project/embassy/internal/access"
	"github.com/embassy-project/embassy/internal/guest"
	"github.com/embassy-project/embassy/internal/ledger"
	"github.com/embassy-project/embassy/internal/shardstore"
)

// events records what happens on the host in its log.
type events struct {
	log  *ledger.Log
	keys *ledger.Keys
	now  func() time.Time
	slog *slog.Logger

	// grantsSeen remembers which grants were already logged as presented in
	// this process, so a reader's many reads log the grant once.
	mu         sync.Mutex
	grantsSeen map[[16]byte]bool

	onAppend func(index uint64) // metrics
}

func loadLogKeys(dir string) (*ledger.Keys, error) {
	return loadKey(dir, logKeyFile, ledger.ParseKeys)
}

// loadKey reads and parses a key file of the host directory, wiping the
// file's bytes after parsing.
func loadKey[T any](dir, name string, parse func([]byte) (T, error)) (T, error) {
	var zero T
	b, err := os.ReadFile(filepath.Join(dir, name))
	if err != nil {
		return zero, fmt.Errorf("read %s: %w", name, err)
	}
	k, err := parse(b)
	clear(b)
	if err != nil {
		return zero, fmt.Errorf("%s: %w", name, err)
	}
	return k, nil
}

func openEvents(ctx context.Context, dir string, cfg *Config, now func() time.Time, lg *slog.Logger) (*events, error) {
	keys, err := loadLogKeys(dir)
	if err != nil {
		return nil, err
	}
	l, err := ledger.Open(ctx, ledger.Config{Dir: filepath.Join(dir, logDir), Origin: LogOrigin(cfg.Name), Keys: keys})
	if err != nil {
		return nil, fmt.Errorf("open log: %w", err)
	}
	e := &events{log: l, keys: keys, now: now, slog: lg, grantsSeen: map[[16]byte]bool{}}
	cb, err := os.ReadFile(filepath.Join(dir, ConfigFile))
	if err != nil {
		l.Close(ctx)
		return nil, err
	}
	if _, err := e.append(ctx, ledger.HostStarted{Config: blake3.Sum256(cb)}); err != nil {
		l.Close(ctx)
		return nil, err
	}
	return e, nil
}

func (e *events) append(ctx context.Context, ev ledger.Event) (uint64, error) {
	idx, err := e.log.Append(ctx, ledger.Entry{Time: e.now().Unix(), Event: ev})
	if err == nil && e.onAppend != nil {
		e.onAppend(idx)
	}
	return idx, err
}

func ledgerKind(k shardstore.Kind) ledger.Kind {
	if k == shardstore.KindEnvelope {
		return ledger.KindEnvelopes
	}
	return ledger.KindShards
}

func (e *events) stored(ctx context.Context, g guest.ID, kind shardstore.Kind, id shardstore.ID, size int64, p *access.Peer) error {
	_, err := e.append(ctx, ledger.ShardStored{Guest: g, Kind: ledgerKind(kind), Object: id, Size: uint64(size), Writer: p.Fingerprint})
	return err
}

func (e *events) read(ctx context.Context, g guest.ID, kind shardstore.Kind, id shardstore.ID, p *access.Peer) error {
	if err := e.grantPresented(ctx, g, p); err != nil {
		return err
	}
	_, err := e.append(ctx, ledger.ObjectRead{Guest: g, Kind: ledgerKind(kind), Object: id, Reader: p.Fingerprint, Grant: p.GrantID})
	return err
}

// grantPresented logs a read grant the first time this process sees it.
func (e *events) grantPresented(ctx context.Context, g guest.ID, p *access.Peer) error {
	if p.Role != access.Reader {
		return nil
	}
	e.mu.Lock()
	seen := e.grantsSeen[p.GrantID]
	e.mu.Unlock()
	if seen {
		return nil
	}
	if _, err := e.append(ctx, ledger.GrantPresented{Guest: g, Grant: p.GrantID, Reader: p.Fingerprint}); err != nil {
		return err
	}
	e.slog.Info("read grant presented", "guest", g.String(), "grant", fmt.Sprintf("%x", p.GrantID), "dataset", p.Dataset, "reader", p.Fingerprint)
	e.mu.Lock()
	e.grantsSeen[p.GrantID] = true
	e.mu.Unlock()
	return nil
}

func (e *events) handler() http.Handler { return e.log.Handler() }

func (e *events) close(ctx context.Context) error { return e.log.Close(ctx) }
