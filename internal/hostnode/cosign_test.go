package hostnode

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/embassy-project/embassy/internal/ledger"
	"github.com/embassy-project/embassy/internal/witness"
)

// TestCosigningQuiesces: three hosts witness each other. Once their logs
// are cosigned, recording cosignatures must not keep growing the logs
// (each round's batch entry would otherwise ask for another round, forever).
func TestCosigningQuiesces(t *testing.T) {
	names := []string{"a", "b", "c"}
	hs := map[string]*testHost{}
	for _, n := range names {
		hs[n] = newHostDir(t, filepath.Join(t.TempDir(), n), n, nil, 0)
	}
	for _, n := range names {
		for _, m := range names {
			if m != n {
				if _, err := AddPeer(hs[n].dir, hs[m].desc.Marshal(), 0); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	for _, n := range names {
		hs[n].start(t)
	}
	size := func(n string) (uint64, uint64) {
		v, _ := ledger.NewVerifier(hs[n].desc.Log.Origin, hs[n].desc.Log.Keys)
		b, _ := os.ReadFile(filepath.Join(hs[n].dir, logDir, "checkpoint"))
		cp, err := v.ParseCheckpoint(b)
		if err != nil {
			return 0, 0
		}
		var cs uint64
		if b, err := os.ReadFile(filepath.Join(hs[n].dir, logDir, ledger.CosignedPath)); err == nil {
			if c, err := v.ParseCheckpoint(b); err == nil {
				var pol witness.Policy
				for _, m := range names {
					if m != n {
						pol.Witnesses = append(pol.Witnesses, witness.Named{Name: m, Verifiers: hs[m].desc.Witness.Keys})
					}
				}
				pol.Threshold = 2
				if _, err := pol.Count(b, hs[n].desc.Log.Keys); err == nil {
					cs = c.Size
				}
			}
		}
		return cp.Size, cs
	}
	// Wait until every log is cosigned at its current size and stays so.
	stable := func() map[string]uint64 {
		out := map[string]uint64{}
		for _, n := range names {
			s, c := size(n)
			if s == 0 || c == 0 {
				return nil
			}
			out[n] = s
		}
		return out
	}
	deadline := time.Now().Add(20 * time.Second)
	var first map[string]uint64
	for {
		time.Sleep(time.Second)
		first = stable()
		if first != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the logs were never cosigned")
		}
	}
	// Many cosign rounds (200 ms each) later, the logs have grown by at
	// most the batches already in flight, and then not at all.
	time.Sleep(3 * time.Second)
	mid := stable()
	time.Sleep(3 * time.Second)
	last := stable()
	for _, n := range names {
		if last[n] != mid[n] {
			t.Errorf("log %s keeps growing while idle: %d → %d → %d entries", n, first[n], mid[n], last[n])
		}
	}
	t.Logf("idle log sizes: first %v, after 3 s %v, after 6 s %v", first, mid, last)
}
