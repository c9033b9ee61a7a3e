package guest

import (
	"bytes"
	"encoding/hex"
	"errors"
	"flag"
	"github.com/embassy-project/embassy/internal/testenv"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/embassy-project/embassy/internal/custodian"
	"github.com/embassy-project/embassy/internal/sig"
	"github.com/embassy-project/embassy/internal/wire"
)

var update = flag.Bool("update", false, "regenerate the golden guest identity in testdata/guest from testdata/custodian (breaks testdata/share until it is regenerated too)")

const (
	goldenDir    = "../../testdata/guest"
	custodianDir = "../../testdata/custodian"
)

func recipients(t testing.TB, names ...string) []*custodian.Recipient {
	t.Helper()
	var rs []*custodian.Recipient
	for _, n := range names {
		id, err := custodian.Generate(n)
		if err != nil {
			t.Fatal(err)
		}
		rs = append(rs, id.Recipient())
	}
	return rs
}

func agentKey(t testing.TB) *sig.PrivateKey {
	t.Helper()
	k, err := sig.Generate()
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func newID(t testing.TB) ID {
	t.Helper()
	id, err := NewID()
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func newDataset(t testing.TB, g ID, agent sig.PublicKey, name string, threshold int, rs []*custodian.Recipient) (*Dataset, *Secret) {
	t.Helper()
	d, s, err := NewDataset(g, "testland", name, agent, threshold, rs)
	if err != nil {
		t.Fatal(err)
	}
	return d, s
}

func TestDatasetRoundTrip(t *testing.T) {
	rs := recipients(t, "alice", "bob", "carol")
	agent := agentKey(t).Public()
	d, s := newDataset(t, newID(t), agent, "population", 2, rs)
	if err := d.Check(s); err != nil {
		t.Fatal(err)
	}
	b := d.Marshal()
	got, err := ParseDataset(b)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got.Marshal(), b) || !got.Equal(d) || got.Fingerprint() != d.Fingerprint() {
		t.Fatal("dataset does not round trip")
	}
	if err := got.Check(s); err != nil {
		t.Fatal(err)
	}
	for i, r := range rs {
		if c := got.Custodian(r.Name); c == nil || *c != got.Custodians[i] || c.Fingerprint != r.Fingerprint() {
			t.Fatalf("custodian %s: %+v", r.Name, c)
		}
	}
	if got.Custodian("mallory") != nil {
		t.Fatal("unknown custodian found")
	}
	pk, err := got.PublicKey()
	if err != nil || !bytes.Equal(pk.Bytes(), s.KEM.PublicKey().Bytes()) {
		t.Fatalf("public key: %v", err)
	}
	if !bytes.Equal(s.Bytes(), s.Bytes()) {
		t.Fatal("Secret.Bytes changes the secret")
	}
	s2, err := ParseSecret(s.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(s2.Bytes(), s.Bytes()) || d.Check(s2) != nil {
		t.Fatal("secret does not round trip")
	}
}

func TestCheck(t *testing.T) {
	rs := recipients(t, "alice", "bob")
	g, agent := newID(t), agentKey(t).Public()
	d, s := newDataset(t, g, agent, "population", 2, rs)
	_, other := newDataset(t, g, agent, "land", 2, rs)
	for _, tc := range []struct {
		name string
		s    *Secret
	}{
		{"other dataset's secret", other},
		{"other kem key", &Secret{KEM: other.KEM, MACKey: s.MACKey}},
		{"other mac key", &Secret{KEM: s.KEM, MACKey: other.MACKey}},
		{"zero mac key", &Secret{KEM: s.KEM}},
		{"nil", nil},
		{"no kem key", &Secret{MACKey: s.MACKey}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := d.Check(tc.s); !errors.Is(err, ErrWrongSecret) {
				t.Fatalf("got %v, want ErrWrongSecret", err)
			}
		})
	}
}

func TestNewDatasetInvalid(t *testing.T) {
	rs := recipients(t, "alice", "bob", "carol")
	g, agent := newID(t), agentKey(t).Public()
	dup := recipients(t, "alice")
	for _, tc := range []struct {
		name      string
		g         ID
		guestName string
		dsName    string
		agent     sig.PublicKey
		threshold int
		rs        []*custodian.Recipient
	}{
		{"zero guest id", ID{}, "testland", "population", agent, 2, rs},
		{"bad guest name", g, "Testland", "population", agent, 2, rs},
		{"bad dataset name", g, "testland", "pop/ulation", agent, 2, rs},
		{"empty dataset name", g, "testland", "", agent, 2, rs},
		{"no agent key", g, "testland", "population", sig.PublicKey{}, 2, rs},
		{"threshold 0", g, "testland", "population", agent, 0, rs},
		{"threshold above n", g, "testland", "population", agent, 4, rs},
		{"no custodians", g, "testland", "population", agent, 1, nil},
		{"duplicate custodian name", g, "testland", "population", agent, 2, append(rs[:1:1], dup[0], rs[1])},
		{"duplicate custodian key", g, "testland", "population", agent, 2, []*custodian.Recipient{rs[0], {Name: "alias", KEM: rs[0].KEM, Verifier: rs[0].Verifier}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, _, err := NewDataset(tc.g, tc.guestName, tc.dsName, tc.agent, tc.threshold, tc.rs); err == nil {
				t.Fatal("accepted")
			}
		})
	}
}

func TestThresholds(t *testing.T) {
	rs := recipients(t, "alice", "bob", "carol")
	g, agent := newID(t), agentKey(t).Public()
	for th := 1; th <= 3; th++ {
		d, _ := newDataset(t, g, agent, "population", th, rs)
		got, err := ParseDataset(d.Marshal())
		if err != nil || got.Threshold != th || len(got.Custodians) != 3 {
			t.Fatalf("threshold %d: %v", th, err)
		}
	}
}

func TestParseDatasetCorrupt(t *testing.T) {
	rs := recipients(t, "alice", "bob", "carol")
	d, _ := newDataset(t, newID(t), agentKey(t).Public(), "population", 2, rs)
	b := d.Marshal()
	t.Run("truncated", func(t *testing.T) {
		for n := range len(b) {
			if _, err := ParseDataset(b[:n]); !errors.Is(err, wire.ErrCorrupt) {
				t.Fatalf("%d of %d bytes: got %v, want ErrCorrupt", n, len(b), err)
			}
		}
	})
	t.Run("trailing", func(t *testing.T) {
		if _, err := ParseDataset(append(bytes.Clone(b), 0)); !errors.Is(err, wire.ErrCorrupt) {
			t.Fatalf("got %v", err)
		}
	})
	// There is no checksum: a flipped byte either fails to parse or parses
	// faithfully to a different identity (which share files then reject).
	t.Run("byte flips", func(t *testing.T) {
		for i := range b {
			c := bytes.Clone(b)
			c[i] ^= 0x01
			got, err := ParseDataset(c)
			if err != nil {
				if !errors.Is(err, wire.ErrCorrupt) {
					t.Fatalf("byte %d: got %v, want ErrCorrupt", i, err)
				}
				continue
			}
			if !bytes.Equal(got.Marshal(), c) || got.Fingerprint() == d.Fingerprint() {
				t.Fatalf("byte %d: flipped encoding parsed to something else", i)
			}
		}
	})
	edits := []struct {
		name string
		f    func(d *Dataset)
	}{
		{"duplicate custodian", func(d *Dataset) { d.Custodians[1].Name = d.Custodians[0].Name }},
		{"duplicate fingerprint", func(d *Dataset) { d.Custodians[1].Fingerprint = d.Custodians[0].Fingerprint }},
		{"threshold 0", func(d *Dataset) { d.Threshold = 0 }},
		{"threshold above n", func(d *Dataset) { d.Threshold = 4 }},
		{"no custodians", func(d *Dataset) { d.Custodians = nil; d.Threshold = 0 }},
		{"short kem key", func(d *Dataset) { d.KEM = d.KEM[:100] }},
		{"zero guest", func(d *Dataset) { d.Guest = ID{} }},
		{"zero dataset id", func(d *Dataset) { d.ID = [16]byte{} }},
		{"bad name", func(d *Dataset) { d.Name = "-x" }},
		{"bad guest name", func(d *Dataset) { d.GuestName = "" }},
		{"bad custodian name", func(d *Dataset) { d.Custodians[0].Name = "A" }},
	}
	for _, e := range edits {
		t.Run(e.name, func(t *testing.T) {
			c, _ := ParseDataset(b)
			e.f(c)
			if c.Validate() == nil {
				t.Fatal("Validate accepted")
			}
			if _, err := ParseDataset(c.Marshal()); !errors.Is(err, wire.ErrCorrupt) {
				t.Fatalf("got %v, want ErrCorrupt", err)
			}
		})
	}
	t.Run("other kem", func(t *testing.T) {
		c := bytes.Clone(b)
		i := bytes.Index(c, d.KEM) - 5 // uvarint(0x647a) is 3 bytes, then uvarint(1216) is 2
		if c[i] != 0xfa || c[i+1] != 0xc8 || c[i+2] != 0x01 {
			t.Fatalf("kem id not where expected: % x", c[i:i+3])
		}
		c[i] = 0xfb
		if _, err := ParseDataset(c); !errors.Is(err, wire.ErrCorrupt) || !strings.Contains(err.Error(), "kem") {
			t.Fatalf("got %v, want ErrCorrupt about the kem", err)
		}
	})
	t.Run("secret", func(t *testing.T) {
		for _, n := range []int{0, 32, 63, 65} {
			if _, err := ParseSecret(make([]byte, n)); !errors.Is(err, wire.ErrCorrupt) {
				t.Fatalf("%d bytes: got %v", n, err)
			}
		}
	})
}

func TestIdentity(t *testing.T) {
	rs := recipients(t, "alice", "bob", "carol")
	g, agent := newID(t), agentKey(t).Public()
	pop, _ := newDataset(t, g, agent, "population", 2, rs)
	land, _ := newDataset(t, g, agent, "land", 3, rs)
	id, err := NewIdentity(g, "testland", agent, pop, land)
	if err != nil {
		t.Fatal(err)
	}
	b := id.Marshal()
	got, err := ParseIdentity(b)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got.Marshal(), b) || got.Fingerprint() != id.Fingerprint() {
		t.Fatal("identity does not round trip")
	}
	if d := got.Dataset("land"); d == nil || !d.Equal(land) {
		t.Fatal("dataset land lost")
	}
	if got.Dataset("tax") != nil {
		t.Fatal("unknown dataset found")
	}
	if _, err := NewIdentity(g, "testland", agent); err != nil {
		t.Fatalf("identity without datasets: %v", err)
	}

	otherGuest, _ := newDataset(t, newID(t), agent, "tax", 2, rs)
	otherAgent, _ := newDataset(t, g, agentKey(t).Public(), "tax", 2, rs)
	renamed, _ := ParseDataset(land.Marshal())
	renamed.GuestName = "otherland"
	sameID, _ := ParseDataset(land.Marshal())
	sameID.Name = "tax"
	for _, tc := range []struct {
		name string
		i    *Identity
	}{
		{"dataset of another guest", &Identity{Guest: g, Name: "testland", Agent: agent, Datasets: []*Dataset{pop, otherGuest}}},
		{"dataset of another agent", &Identity{Guest: g, Name: "testland", Agent: agent, Datasets: []*Dataset{pop, otherAgent}}},
		{"dataset with another guest name", &Identity{Guest: g, Name: "testland", Agent: agent, Datasets: []*Dataset{renamed}}},
		{"duplicate dataset name", &Identity{Guest: g, Name: "testland", Agent: agent, Datasets: []*Dataset{pop, land, pop}}},
		{"duplicate dataset id", &Identity{Guest: g, Name: "testland", Agent: agent, Datasets: []*Dataset{land, sameID}}},
		{"bad name", &Identity{Guest: g, Name: "", Agent: agent}},
		{"zero guest", &Identity{Name: "testland", Agent: agent}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.i.Validate() == nil {
				t.Fatal("Validate accepted")
			}
			if _, err := ParseIdentity(tc.i.Marshal()); !errors.Is(err, wire.ErrCorrupt) {
				t.Fatalf("got %v, want ErrCorrupt", err)
			}
		})
	}
	t.Run("truncated", func(t *testing.T) {
		for n := 0; n < len(b); n += 7 {
			if _, err := ParseIdentity(b[:n]); !errors.Is(err, wire.ErrCorrupt) {
				t.Fatalf("%d of %d bytes: got %v", n, len(b), err)
			}
		}
	})
}

func TestID(t *testing.T) {
	id := newID(t)
	got, err := ParseID(id.String())
	if err != nil || got != id {
		t.Fatalf("ParseID: %v", err)
	}
	for _, s := range []string{"", "00", strings.ToUpper(id.String()), id.String() + "00", strings.Repeat("g", 32)} {
		if _, err := ParseID(s); !errors.Is(err, wire.ErrCorrupt) {
			t.Errorf("ParseID(%q) = %v", s, err)
		}
	}
}

// Golden vectors: guest "testland", agent key agent.key, dataset "population"
// (alice..erin, threshold 3) and "land" (alice, bob, carol, threshold 2).
var goldenDatasets = []struct {
	name       string
	threshold  int
	custodians []string
}{
	{"population", 3, []string{"alice", "bob", "carol", "dave", "erin"}},
	{"land", 2, []string{"alice", "bob", "carol"}},
}

func TestGolden(t *testing.T) {
	if *update {
		writeGolden(t)
	}
	agentHex := testenv.ReadFile(t, filepath.Join(goldenDir, "agent.key"))
	agentSeed, err := hex.DecodeString(strings.TrimSpace(string(agentHex)))
	if err != nil {
		t.Fatal(err)
	}
	agent, err := sig.NewPrivateKey(agentSeed)
	if err != nil {
		t.Fatal(err)
	}
	b := testenv.ReadFile(t, filepath.Join(goldenDir, "identity.bin"))
	id, err := ParseIdentity(b)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(id.Marshal(), b) {
		t.Fatal("identity.bin is not canonical")
	}
	if id.Name != "testland" || !id.Agent.Equal(agent.Public()) || len(id.Datasets) != len(goldenDatasets) {
		t.Fatalf("identity: %s, %d datasets", id.Name, len(id.Datasets))
	}
	for _, g := range goldenDatasets {
		t.Run(g.name, func(t *testing.T) {
			db := testenv.ReadFile(t, filepath.Join(goldenDir, g.name+".dataset"))
			d, err := ParseDataset(db)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(d.Marshal(), db) || !d.Equal(id.Dataset(g.name)) {
				t.Fatal("dataset file differs from identity.bin's")
			}
			if d.Threshold != g.threshold || len(d.Custodians) != len(g.custodians) {
				t.Fatalf("threshold %d of %d", d.Threshold, len(d.Custodians))
			}
			for i, name := range g.custodians {
				r, err := custodian.ParseRecipient(testenv.ReadFile(t, filepath.Join(custodianDir, name+".pub")))
				if err != nil {
					t.Fatal(err)
				}
				if d.Custodians[i] != (CustodianRef{Name: name, Fingerprint: r.Fingerprint()}) {
					t.Fatalf("custodian %d: %+v, want %s %s", i, d.Custodians[i], name, r.Fingerprint())
				}
			}
			s, err := ParseSecret(testenv.ReadFile(t, filepath.Join(goldenDir, g.name+".secret")))
			if err != nil {
				t.Fatal(err)
			}
			if err := d.Check(s); err != nil {
				t.Fatal(err)
			}
			for _, o := range id.Datasets {
				if o.Name != g.name && o.Check(s) == nil {
					t.Fatalf("secret of %s opens %s", g.name, o.Name)
				}
			}
		})
	}
}

func writeGolden(t *testing.T) {
	agent := agentKey(t)
	g := newID(t)
	var ds []*Dataset
	for _, gd := range goldenDatasets {
		var rs []*custodian.Recipient
		for _, name := range gd.custodians {
			r, err := custodian.ParseRecipient(testenv.ReadFile(t, filepath.Join(custodianDir, name+".pub")))
			if err != nil {
				t.Fatal(err)
			}
			rs = append(rs, r)
		}
		d, s, err := NewDataset(g, "testland", gd.name, agent.Public(), gd.threshold, rs)
		if err != nil {
			t.Fatal(err)
		}
		testenv.WriteFile(t, filepath.Join(goldenDir, gd.name+".dataset"), d.Marshal())
		testenv.WriteFile(t, filepath.Join(goldenDir, gd.name+".secret"), s.Bytes())
		ds = append(ds, d)
	}
	id, err := NewIdentity(g, "testland", agent.Public(), ds...)
	if err != nil {
		t.Fatal(err)
	}
	testenv.WriteFile(t, filepath.Join(goldenDir, "identity.bin"), id.Marshal())
	testenv.WriteFile(t, filepath.Join(goldenDir, "agent.key"), []byte(hex.EncodeToString(agent.Bytes())+"\n"))
}

func FuzzParseDataset(f *testing.F) {
	for _, name := range []string{"population", "land"} {
		b, err := os.ReadFile(filepath.Join(goldenDir, name+".dataset"))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
		f.Add(b[:len(b)-10])
	}
	f.Add([]byte(DatasetMagic))
	f.Fuzz(func(t *testing.T, b []byte) {
		testenv.RoundTrip(t, b, ParseDataset, func(d *Dataset) ([]byte, error) { return d.Marshal(), nil })
	})
}

func FuzzParseIdentity(f *testing.F) {
	b, err := os.ReadFile(filepath.Join(goldenDir, "identity.bin"))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(b)
	f.Add(b[:len(b)-10])
	f.Add([]byte(IdentityMagic))
	f.Fuzz(func(t *testing.T, b []byte) {
		testenv.RoundTrip(t, b, ParseIdentity, func(i *Identity) ([]byte, error) { return i.Marshal(), nil })
	})
}
