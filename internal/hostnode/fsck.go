package hostnode

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/embassy-project/embassy/internal/ledger"
	"github.com/embassy-project/embassy/internal/shardstore/fs"
	"github.com/embassy-project/embassy/internal/wire"
)

// FsckReport is what Fsck found in a host directory.
type FsckReport struct {
	Stores map[string]fs.Report // per guest ID
	// Log is nil when the log checked clean.
	Log error
}

// Clean reports whether every store and the log checked clean.
func (r *FsckReport) Clean() bool {
	if r.Log != nil {
		return false
	}
	for _, s := range r.Stores {
		if !s.Clean() {
			return false
		}
	}
	return true
}

// Lines describes the report for people.
func (r *FsckReport) Lines() []string {
	var out []string
	for g, s := range r.Stores {
		state := "clean"
		if !s.Clean() {
			state = fmt.Sprintf("%d damaged, %d stray", len(s.Damaged), len(s.Stray))
		}
		out = append(out, fmt.Sprintf("guest %s: %d objects, %d bytes, %d temp files: %s", g, s.Objects, s.Bytes, s.TempFiles, state))
		for _, d := range s.Damaged {
			out = append(out, fmt.Sprintf("  damaged %s %s", d.Kind, d.ID))
		}
		for _, p := range s.Stray {
			out = append(out, fmt.Sprintf("  stray %s", p))
		}
	}
	if r.Log != nil {
		out = append(out, "log: "+r.Log.Error())
	} else {
		out = append(out, "log: clean")
	}
	return out
}

// Fsck checks a host directory that is not being served: every guest's
// store (re-hashing every object) and the log (every entry against its
// checkpoint, both signatures). It changes nothing. I/O errors are returned;
// damage is in the report.
func Fsck(ctx context.Context, dir string) (*FsckReport, error) {
	cfg, err := LoadConfig(dir)
	if err != nil {
		return nil, err
	}
	rep := &FsckReport{Stores: map[string]fs.Report{}}
	for _, g := range cfg.Guests {
		if cfg.Store != "" {
			break // an object store: its objects are checked by storage proofs and check --read-data
		}
		p := filepath.Join(dir, storeDir, g.ID)
		if _, err := os.Stat(p); errors.Is(err, os.ErrNotExist) {
			continue // never written to
		}
		st, err := fs.Open(p)
		if err != nil {
			return nil, err
		}
		r, err := st.Fsck(ctx)
		if err != nil {
			return nil, err
		}
		rep.Stores[g.ID] = r
	}
	keys, err := loadLogKeys(dir)
	if err != nil {
		return nil, err
	}
	ld := filepath.Join(dir, logDir)
	if ents, err := os.ReadDir(ld); err == nil && len(ents) == 0 {
		return rep, nil // never served: no log yet
	}
	if err := ledger.Fsck(ctx, ld, keys.Verifier()); err != nil {
		if !errors.Is(err, wire.ErrCorrupt) && !errors.Is(err, os.ErrNotExist) {
			return nil, err
		}
		rep.Log = err
	}
	return rep, nil
}
