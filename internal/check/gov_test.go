package check

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/embassy-project/embassy/internal/gov"
	"github.com/embassy-project/embassy/internal/sig"
)

// govStatus builds a host's governance report: datasets as name=dataset.
func govStatus(version uint64, hash string, synced bool, ds map[string]GovDataset) *GovReport {
	return &GovReport{Agreement: version, Hash: hash, Synced: synced, LastHeartbeat: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), Datasets: ds}
}

var (
	normal1  = GovDataset{Phase: "normal", Epoch: 1, Writer: "home"}
	armed1   = GovDataset{Phase: "armed", Epoch: 1, Writer: "home"}
	activeB2 = GovDataset{Phase: "active", Epoch: 2, Writer: "wb", Host: "b", Snapshot: "blake3:55", Order: "o2"}
	activeC2 = GovDataset{Phase: "active", Epoch: 2, Writer: "wc", Host: "c", Snapshot: "blake3:55", Order: "o2x"}
	return3  = GovDataset{Phase: "returned", Epoch: 3, Writer: "newhome", Order: "o3"}
)

func reg(d GovDataset) map[string]GovDataset { return map[string]GovDataset{"registry": d} }

func TestGovCompare(t *testing.T) {
	v1 := "blake3:1111111111111111111111111111"
	v1x := "blake3:1111111111111111ffffffffffff"
	v2 := "blake3:2222222222222222222222222222"
	home1 := &HomeGov{Agreement: 1, Hash: v1, Writer: "home"}
	tests := []struct {
		name  string
		hosts []HostGov
		home  *HomeGov
		want  []string // kind/dataset/host of each problem, in order
		msgs  []string // substrings of the problems' messages, all joined
		notes []string // kind/dataset/host of each note
		noted []string // substrings of the notes
	}{
		{name: "nothing answered"},
		{name: "no agreement anywhere", hosts: []HostGov{{Host: "a"}, {Host: "b"}}, home: &HomeGov{Writer: "home"}},
		{name: "all agree", home: home1, hosts: []HostGov{
			{"a", govStatus(1, v1, true, reg(normal1))}, {"b", govStatus(1, v1, true, reg(normal1))}}},
		{name: "c behind after an activation", home: home1, hosts: []HostGov{
			{"a", govStatus(1, v1, true, reg(activeB2))}, {"b", govStatus(1, v1, true, reg(activeB2))}, {"c", govStatus(1, v1, true, reg(normal1))}},
			want:  []string{"governance-divergent/registry/c"},
			msgs:  []string{"host c is at epoch 1 (normal, writer home)", "hosts a, b are at epoch 2 (active on host b", "host c has not caught up yet"},
			notes: []string{"active/registry/b"}, noted: []string{"active on host b at epoch 2 (order o2, continuing from snapshot blake3:55", "HOME is fenced out"}},
		{name: "auditor sees an activation", hosts: []HostGov{
			{"a", govStatus(1, v1, true, reg(activeB2))}, {"b", govStatus(1, v1, true, reg(activeB2))}},
			notes: []string{"active/registry/b"}},
		{name: "two writers at one epoch", hosts: []HostGov{
			{"a", govStatus(1, v1, true, reg(activeB2))}, {"b", govStatus(1, v1, true, reg(activeC2))}, {"c", govStatus(1, v1, true, reg(activeB2))}},
			want: []string{"governance-divergent/registry/"},
			msgs: []string{"disagree at epoch 2", "hosts a, c: active on host b, writer wb", "host b: active on host c, writer wc"}},
		{name: "armed at one host only", home: home1, hosts: []HostGov{
			{"a", govStatus(1, v1, true, reg(armed1))}, {"b", govStatus(1, v1, true, reg(normal1))}},
			want: []string{"armed/registry/a"}, msgs: []string{"armed at host a", "since 2026-01-02T03:04:05Z", "arming activates nothing"}},
		{name: "unsynced", hosts: []HostGov{
			{"a", govStatus(1, v1, true, reg(normal1))}, {"c", govStatus(1, v1, false, reg(normal1))}},
			want: []string{"governance-unsynced//c"}, msgs: []string{"host c has not finished reading"}},
		{name: "older agreement at c", home: &HomeGov{Agreement: 2, Hash: v2, Writer: "home"}, hosts: []HostGov{
			{"a", govStatus(2, v2, true, reg(normal1))}, {"b", govStatus(2, v2, true, reg(normal1))}, {"c", govStatus(1, v1, true, reg(normal1))}},
			want: []string{"governance-divergent//c", "agreement-mismatch//c"},
			msgs: []string{"host c enforces agreement v1 (blake3:1111111111111111) but hosts a, b enforce v2", "not installed the newer version"}},
		{name: "one version, two texts", hosts: []HostGov{
			{"a", govStatus(1, v1, true, reg(normal1))}, {"b", govStatus(1, v1x, true, reg(normal1))}},
			want: []string{"governance-divergent//b"}, msgs: []string{"two different texts carry the same version"}},
		{name: "host without agreement", home: home1, hosts: []HostGov{
			{"a", govStatus(1, v1, true, reg(normal1))}, {Host: "b"}},
			want: []string{"governance-divergent//b"}, msgs: []string{"host b has no agreement in force", "host a enforces v1"}},
		{name: "HOME behind", home: home1, hosts: []HostGov{
			{"a", govStatus(2, v2, true, reg(normal1))}, {"b", govStatus(2, v2, true, reg(normal1))}},
			want: []string{"agreement-mismatch//"}, msgs: []string{"HOME follows agreement v1", "hosts a, b enforce v2", "HOME is behind"}},
		{name: "HOME follows none", home: &HomeGov{Writer: "home"}, hosts: []HostGov{
			{"a", govStatus(1, v1, true, reg(normal1))}},
			want: []string{"agreement-mismatch//a"}, msgs: []string{"HOME follows no agreement"}},
		{name: "HOME follows another text of the same version", home: &HomeGov{Agreement: 1, Hash: v1x, Writer: "home"}, hosts: []HostGov{
			{"a", govStatus(1, v1, true, reg(normal1))}},
			want: []string{"agreement-mismatch//a"}, msgs: []string{"HOME's is " + v1x}},
		{name: "HOME's file unreadable", home: &HomeGov{Writer: "home", Err: "agreement.signed: bad signature"}, hosts: []HostGov{
			{"a", govStatus(1, v1, true, reg(normal1))}},
			want: []string{"agreement-mismatch//"}, msgs: []string{"bad signature"}},
		{name: "HOME follows one no host enforces", home: home1, hosts: []HostGov{{Host: "a"}, {Host: "b"}},
			want: []string{"agreement-mismatch//"}, msgs: []string{"no host enforces an agreement", "hosts a, b answered none"}},
		{name: "returned to another key", home: home1, hosts: []HostGov{
			{"a", govStatus(1, v1, true, reg(return3))}, {"b", govStatus(1, v1, true, reg(return3))}},
			notes: []string{"fenced/registry/"}, noted: []string{"is key newhome, not HOME's agent key"}},
		{name: "dataset missing at a host", hosts: []HostGov{
			{"a", govStatus(1, v1, true, map[string]GovDataset{"registry": normal1, "ministry": normal1})}, {"b", govStatus(1, v1, true, reg(normal1))}},
			want: []string{"governance-divergent/ministry/b"}, msgs: []string{"host b has no state for it"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			probs, notes := CompareGovernance(tc.hosts, tc.home)
			var got, msgs, gotNotes, noteMsgs []string
			for _, p := range probs {
				if p.Severity != Warning || !GovernanceKind(p.Kind) {
					t.Errorf("problem %+v: want a governance warning", p)
				}
				got = append(got, p.Kind+"/"+p.Dataset+"/"+p.Host)
				msgs = append(msgs, p.Message)
			}
			for _, n := range notes {
				gotNotes = append(gotNotes, n.Kind+"/"+n.Dataset+"/"+n.Host)
				noteMsgs = append(noteMsgs, n.Message)
			}
			for _, m := range append(msgs, noteMsgs...) {
				t.Log(m)
			}
			if fmt.Sprint(got) != fmt.Sprint(tc.want) {
				t.Errorf("problems %v, want %v\n%s", got, tc.want, strings.Join(msgs, "\n"))
			}
			if fmt.Sprint(gotNotes) != fmt.Sprint(tc.notes) {
				t.Errorf("notes %v, want %v\n%s", gotNotes, tc.notes, strings.Join(noteMsgs, "\n"))
			}
			all := strings.Join(msgs, "\n")
			for _, m := range tc.msgs {
				if !strings.Contains(all, m) {
					t.Errorf("no message says %q:\n%s", m, all)
				}
			}
			all = strings.Join(noteMsgs, "\n")
			for _, m := range tc.noted {
				if !strings.Contains(all, m) {
					t.Errorf("no note says %q:\n%s", m, all)
				}
			}
			if tc.home == nil {
				for _, m := range noteMsgs {
					if strings.Contains(m, "HOME") {
						t.Errorf("an auditor's note speaks of HOME: %s", m)
					}
				}
			}
		})
	}
}

func TestGovParseStatus(t *testing.T) {
	k, err := sig.Generate()
	if err != nil {
		t.Fatal(err)
	}
	w := wireGov{Guest: "00112233445566778899aabbccddeeff", Host: "a", Agreement: 1, Hash: "blake3:aa", Synced: true,
		State: gov.State{Agreement: 1, Datasets: map[string]gov.DatasetState{
			"registry": {Phase: gov.Active, Epoch: 2, Writer: base64.StdEncoding.EncodeToString(k.Public().Bytes()), Host: "b", Snapshot: "blake3:55", Order: "o2"},
			"ministry": {Phase: gov.Normal, Epoch: 1, Writer: "not a key"},
		}}}
	b, err := json.Marshal(w)
	if err != nil {
		t.Fatal(err)
	}
	r, err := ParseGovStatus(b, w.Guest)
	if err != nil {
		t.Fatal(err)
	}
	if d := r.Datasets["registry"]; d.Writer != k.Public().Fingerprint() || d.Epoch != 2 || d.Host != "b" || d.Phase != "active" || d.Order != "o2" {
		t.Errorf("registry: %+v", d)
	}
	if d := r.Datasets["ministry"]; !strings.HasPrefix(d.Writer, "unparseable-") {
		t.Errorf("ministry's writer: %q", d.Writer)
	}
	if s := r.Summary(); !strings.Contains(s, "agreement v1") || !strings.Contains(s, "registry epoch 2 active on host b") {
		t.Errorf("summary: %s", s)
	}
	for _, tc := range []struct {
		name  string
		guest string
		b     []byte
	}{
		{"another guest", "ffffffffffffffffffffffffffffffff", b},
		{"not JSON", w.Guest, []byte("<html>")},
		{"no version", w.Guest, []byte(`{"guest":"` + w.Guest + `"}`)},
	} {
		if _, err := ParseGovStatus(tc.b, tc.guest); err == nil {
			t.Errorf("%s: accepted", tc.name)
		}
	}
}

// FuzzGovParseStatus: any answer parses cleanly or fails cleanly, and what
// parses compares without panicking.
func FuzzGovParseStatus(f *testing.F) {
	g := "00112233445566778899aabbccddeeff"
	f.Add([]byte(`{"guest":"` + g + `","agreement":1,"synced":true,"state":{"datasets":{"r":{"phase":"armed","epoch":1}}}}`))
	f.Add([]byte(`{"guest":"` + g + `","agreement":2,"state":{"datasets":{"r":{"phase":"active","epoch":0,"host":""}}}}`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := ParseGovStatus(b, g)
		if err != nil {
			return
		}
		other := govStatus(1, "blake3:00", true, reg(normal1))
		CompareGovernance([]HostGov{{"a", r}, {"b", other}, {"c", nil}}, &HomeGov{Agreement: 1, Hash: "x", Writer: "home"})
		r.Summary()
	})
}
