package main

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
)

// govCheckHostJSON is one host's governance status in check's JSON report.
type govCheckHostJSON struct {
	Agreement uint64 `json:"agreement"`
	Hash      string `json:"agreement_hash"`
	Synced    bool   `json:"synced"`
	Datasets  map[string]struct {
		Phase string `json:"phase"`
		Epoch uint64 `json:"epoch"`
		Host  string `json:"host"`
	} `json:"datasets"`
}

// govCheckJSON is the governance part of check's JSON report.
type govCheckJSON struct {
	Healthy bool `json:"healthy"`
	Hosts   []struct {
		Name       string            `json:"name"`
		Available  bool              `json:"available"`
		Governance *govCheckHostJSON `json:"governance"`
	} `json:"hosts"`
	Problems []struct {
		Severity, Kind, Dataset, Host, Message string
	} `json:"problems"`
	Notes []struct {
		Kind, Dataset, Host, Message string
	} `json:"notes"`
}

func (r govCheckJSON) has(kind string) bool {
	for _, p := range r.Problems {
		if p.Kind == kind {
			return true
		}
	}
	return false
}

// TestGovCheck: check reports what the hosts enforce. With host c stopped,
// a quorum activates host b: the guest's check names c unavailable, a and
// b at epoch 2 with registry active on b and HOME fenced out of it. Once c
// is back and has read the order from the others' logs, the hosts agree
// again, and the governance findings do not make the check unhealthy.
func TestGovCheck(t *testing.T) {
	g := newGovGuest(t)
	g.backupSample(t, 71)
	var snaps struct {
		Snapshots []struct {
			Envelope string `json:"envelope"`
		} `json:"snapshots"`
	}
	if err := json.Unmarshal([]byte(mustRun(t, "snapshots", "--home", g.home, "--dataset", "registry", "--json")), &snaps); err != nil || len(snaps.Snapshots) == 0 {
		t.Fatalf("snapshots: %v %v", snaps, err)
	}
	snapshot := snaps.Snapshots[len(snaps.Snapshots)-1].Envelope

	g.hosts["c"].stop(t)
	mustRun(t, "writer", "keygen", "--out", g.p("writer-b.key"))
	act := g.order(t, "activate", []string{"alice", "bob", "carol"}, "--kind", "activate", "--dataset", "registry", "--host", "b", "--epoch", "2",
		"--writer-key", g.p("writer-b.key.pub"), "--snapshot", snapshot, "--reason", "home data centre lost")
	if out := mustRun(t, "order", "submit", "--agreement", g.agreement, act); !strings.Contains(out, "a: carried out") || !strings.Contains(out, "b: carried out") {
		t.Fatalf("activation:\n%s", out)
	}

	// Only the registry dataset has snapshots: ministry would be "no-snapshot".
	checkArgs := []string{"check", "--home", g.home, "--dataset", "registry"}
	r := embassy(t, append(checkArgs, "--json")...)
	rep := parseJSON[govCheckJSON](t, r.stdout)
	for _, h := range rep.Hosts {
		switch {
		case h.Name == "c":
			if h.Available || h.Governance != nil {
				t.Errorf("stopped host c: available %v, governance %+v", h.Available, h.Governance)
			}
		case h.Governance == nil:
			t.Errorf("host %s reports no governance:\n%s", h.Name, r.stdout)
		default:
			ds := h.Governance.Datasets["registry"]
			if h.Governance.Agreement != 1 || !h.Governance.Synced || ds.Epoch != 2 || ds.Phase != "active" || ds.Host != "b" {
				t.Errorf("host %s governance: %+v", h.Name, h.Governance)
			}
			if _, ok := h.Governance.Datasets["ministry"]; ok {
				t.Errorf("host %s: --dataset registry, but ministry is reported", h.Name)
			}
		}
	}
	if !rep.has("host-unavailable") || rep.has("governance-divergent") || rep.has("agreement-mismatch") {
		t.Errorf("problems with c stopped: %+v", rep.Problems)
	}
	if len(rep.Notes) != 1 || rep.Notes[0].Kind != "active" || rep.Notes[0].Host != "b" || !strings.Contains(rep.Notes[0].Message, "HOME is fenced out") {
		t.Errorf("notes: %+v", rep.Notes)
	}

	// Host c returns and reads the order it missed; then the hosts agree,
	// and the check is healthy (exit 0) despite the activation.
	g.hosts["c"].start(t)
	deadline := time.Now().Add(30 * time.Second)
	for {
		r = embassy(t, append(checkArgs, "--json")...)
		rep = parseJSON[govCheckJSON](t, r.stdout)
		var c *govCheckHostJSON
		for _, h := range rep.Hosts {
			if h.Name == "c" {
				c = h.Governance
			}
		}
		if r.code == 0 && c != nil && c.Synced && c.Datasets["registry"].Epoch == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("check after c returned: exit %d\n%s%s", r.code, r.stdout, r.stderr)
		}
		time.Sleep(500 * time.Millisecond)
	}
	if !rep.Healthy || rep.has("governance-divergent") || rep.has("governance-unsynced") {
		t.Fatalf("check once c caught up: %+v", rep.Problems)
	}
	out := mustRun(t, checkArgs...)
	for _, want := range []string{"governance: agreement v1", "registry epoch 2 active on host b", "NOTE", "HOME is fenced out", "result: healthy"} {
		if !strings.Contains(out, want) {
			t.Errorf("check's text output does not say %q:\n%s", want, out)
		}
	}
}
