package access

import (
	"bytes"
	"crypto/ed25519"
	"crypto/tls"
	"crypto/x509"
	"encoding/asn1"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/embassy-project/embassy/internal/custodian"
	"github.com/embassy-project/embassy/internal/guest"
	"github.com/embassy-project/embassy/internal/sig"
	"github.com/embassy-project/embassy/internal/testenv"
)

var update = flag.Bool("update", false, "regenerate the golden grant, agent credential, reader key and certificates in testdata/access (custodian keys, agent key and guest identity are made only if missing)")

const goldenDir = "../../testdata/access"

// The golden guest "accessland" has dataset "records" (alice, bob, carol;
// threshold 2) and "photos" (dave; threshold 1).
var goldenDatasets = []struct {
	name       string
	threshold  int
	custodians []string
}{
	{"records", 2, []string{"alice", "bob", "carol"}},
	{"photos", 1, []string{"dave"}},
}

// Fixed contents of the golden credentials.
var (
	goldenGrantFrom  = time.Date(2025, 3, 1, 0, 0, 0, 0, time.UTC)
	goldenGrantUntil = time.Date(2025, 4, 1, 0, 0, 0, 0, time.UTC)
	goldenReason     = "quarterly restore drill, ticket 42"
	goldenAgentFrom  = time.Date(2025, 3, 10, 12, 0, 0, 0, time.UTC)
	goldenAgentTTL   = 24 * time.Hour
	goldenSigners    = []string{"alice", "bob"}
)

// fixture is the committed key material every test reuses.
type fixture struct {
	agent      *sig.PrivateKey
	id         *guest.Identity
	custodians map[string]*custodian.Identity
}

func (f *fixture) guests(g guest.ID) *guest.Identity {
	if g == f.id.Guest {
		return f.id
	}
	return nil
}

func loadFixture(t testing.TB) *fixture {
	t.Helper()
	f := &fixture{custodians: map[string]*custodian.Identity{}}
	for _, d := range goldenDatasets {
		for _, name := range d.custodians {
			c, err := custodian.ParseIdentity(testenv.ReadFile(t, filepath.Join(goldenDir, name+".key")))
			if err != nil {
				t.Fatal(err)
			}
			f.custodians[name] = c
		}
	}
	seed, err := hex.DecodeString(strings.TrimSpace(string(testenv.ReadFile(t, filepath.Join(goldenDir, "agent.key")))))
	if err != nil {
		t.Fatal(err)
	}
	if f.agent, err = sig.NewPrivateKey(seed); err != nil {
		t.Fatal(err)
	}
	if f.id, err = guest.ParseIdentity(testenv.ReadFile(t, filepath.Join(goldenDir, "identity.bin"))); err != nil {
		t.Fatal(err)
	}
	if !f.id.Agent.Equal(f.agent.Public()) {
		t.Fatal("identity.bin does not name agent.key")
	}
	return f
}

func readPEMCert(t testing.TB, name string) []byte {
	t.Helper()
	b, rest := pem.Decode(testenv.ReadFile(t, filepath.Join(goldenDir, name)))
	if b == nil || b.Type != "CERTIFICATE" || len(bytes.TrimSpace(rest)) != 0 {
		t.Fatalf("%s: not one PEM certificate", name)
	}
	return b.Bytes
}

// credentialOf returns the credential bytes in a certificate's extension.
func credentialOf(t testing.TB, der []byte) []byte {
	t.Helper()
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range c.Extensions {
		if e.Id.Equal(CredentialOID) {
			var b []byte
			if rest, err := asn1.Unmarshal(e.Value, &b); err != nil || len(rest) != 0 {
				t.Fatalf("extension is not an OCTET STRING: %v", err)
			}
			return b
		}
	}
	t.Fatal("no credential extension")
	return nil
}

func TestGolden(t *testing.T) {
	if *update {
		writeGolden(t)
	}
	f := loadFixture(t)

	gb := testenv.ReadFile(t, filepath.Join(goldenDir, "grant.bin"))
	g, err := ParseGrant(gb)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(g.Marshal(), gb) {
		t.Fatal("grant.bin is not canonical")
	}
	if g.Guest != f.id.Guest || g.Dataset != "records" || g.Reason != goldenReason ||
		!g.NotBefore.Equal(goldenGrantFrom) || !g.NotAfter.Equal(goldenGrantUntil) || len(g.Signatures) != len(goldenSigners) {
		t.Fatalf("grant.bin fields: %+v", g)
	}
	for i, name := range goldenSigners {
		if g.Signatures[i].Custodian.Fingerprint() != f.custodians[name].Fingerprint() || g.Signatures[i].Custodian.Name != name {
			t.Fatalf("signature %d is not %s's", i, name)
		}
	}
	kb := testenv.ReadFile(t, filepath.Join(goldenDir, "reader.key"))
	rk, err := ParseReaderKey(kb)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(MarshalReaderKey(rk), kb) {
		t.Fatal("reader.key is not canonical")
	}

	ab := testenv.ReadFile(t, filepath.Join(goldenDir, "agent.cred"))
	ac, err := ParseAgentCredential(ab)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(ac.Marshal(), ab) {
		t.Fatal("agent.cred is not canonical")
	}
	if ac.Guest != f.id.Guest || !ac.NotBefore.Equal(goldenAgentFrom) || ac.NotAfter.Sub(ac.NotBefore) != goldenAgentTTL {
		t.Fatalf("agent.cred fields: %+v", ac)
	}
	if err := f.id.Agent.Verify(AgentDomain, ac.Body(), ac.Signature); err != nil {
		t.Fatal(err)
	}

	inWindow := goldenAgentFrom.Add(time.Hour) // inside both windows
	for _, c := range []struct {
		file string
		cred []byte
		role Role
	}{
		{"agent.crt", ab, Agent},
		{"reader.crt", gb, Reader},
	} {
		t.Run(c.file, func(t *testing.T) {
			der := readPEMCert(t, c.file)
			if !bytes.Equal(credentialOf(t, der), c.cred) {
				t.Fatalf("%s does not carry the golden credential", c.file)
			}
			p, err := Verify([][]byte{der}, f.guests, inWindow, 0)
			if err != nil {
				t.Fatal(err)
			}
			if p.Role != c.role || p.Guest != f.id.Guest {
				t.Fatalf("peer %+v", p)
			}
			if p.Role == Reader && (p.GrantID != g.ID || p.Dataset != "records" || p.Fingerprint != keyFingerprint(rk.Public().(ed25519.PublicKey))) {
				t.Fatalf("reader peer %+v", p)
			}
			if _, err := Verify([][]byte{der}, f.guests, goldenGrantUntil.Add(time.Hour), 0); !errors.Is(err, ErrExpired) {
				t.Fatalf("after the window: %v, want ErrExpired", err)
			}
		})
	}
	// The golden grant and reader key still make a certificate hosts accept.
	cert, err := GrantCertificate(g, rk)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Verify(cert.Certificate, f.guests, inWindow, 0); err != nil {
		t.Fatal(err)
	}
}

func writeGolden(t *testing.T) {
	if err := os.MkdirAll(goldenDir, 0o755); err != nil {
		t.Fatal(err)
	}
	exists := func(name string) bool {
		_, err := os.Stat(filepath.Join(goldenDir, name))
		return err == nil
	}
	recipients := map[string]*custodian.Recipient{}
	for _, d := range goldenDatasets {
		for _, name := range d.custodians {
			if !exists(name + ".key") {
				c, err := custodian.Generate(name)
				if err != nil {
					t.Fatal(err)
				}
				testenv.WriteFile(t, filepath.Join(goldenDir, name+".key"), c.Marshal())
			}
			c, err := custodian.ParseIdentity(testenv.ReadFile(t, filepath.Join(goldenDir, name+".key")))
			if err != nil {
				t.Fatal(err)
			}
			recipients[name] = c.Recipient()
		}
	}
	if !exists("agent.key") {
		k, err := sig.Generate()
		if err != nil {
			t.Fatal(err)
		}
		testenv.WriteFile(t, filepath.Join(goldenDir, "agent.key"), []byte(hex.EncodeToString(k.Bytes())+"\n"))
	}
	if !exists("identity.bin") {
		seed, err := hex.DecodeString(strings.TrimSpace(string(testenv.ReadFile(t, filepath.Join(goldenDir, "agent.key")))))
		if err != nil {
			t.Fatal(err)
		}
		agent, err := sig.NewPrivateKey(seed)
		if err != nil {
			t.Fatal(err)
		}
		g, err := guest.NewID()
		if err != nil {
			t.Fatal(err)
		}
		var ds []*guest.Dataset
		for _, gd := range goldenDatasets {
			var rs []*custodian.Recipient
			for _, name := range gd.custodians {
				rs = append(rs, recipients[name])
			}
			d, _, err := guest.NewDataset(g, "accessland", gd.name, agent.Public(), gd.threshold, rs)
			if err != nil {
				t.Fatal(err)
			}
			ds = append(ds, d)
		}
		id, err := guest.NewIdentity(g, "accessland", agent.Public(), ds...)
		if err != nil {
			t.Fatal(err)
		}
		testenv.WriteFile(t, filepath.Join(goldenDir, "identity.bin"), id.Marshal())
	}
	f := loadFixture(t)

	g, rk, err := NewGrantRequest(f.id.Guest, "records", goldenReason, goldenGrantFrom, goldenGrantUntil)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range goldenSigners {
		if err := g.Sign(f.custodians[name]); err != nil {
			t.Fatal(err)
		}
	}
	testenv.WriteFile(t, filepath.Join(goldenDir, "grant.bin"), g.Marshal())
	testenv.WriteFile(t, filepath.Join(goldenDir, "reader.key"), MarshalReaderKey(rk))
	rc, err := GrantCertificate(g, rk)
	if err != nil {
		t.Fatal(err)
	}
	writePEMCert(t, "reader.crt", rc)

	ac, err := NewAgentCertificate(f.agent, f.id.Guest, goldenAgentFrom, goldenAgentTTL)
	if err != nil {
		t.Fatal(err)
	}
	writePEMCert(t, "agent.crt", ac)
	testenv.WriteFile(t, filepath.Join(goldenDir, "agent.cred"), credentialOf(t, ac.Certificate[0]))
}

func writePEMCert(t *testing.T, name string, c tls.Certificate) {
	t.Helper()
	testenv.WriteFile(t, filepath.Join(goldenDir, name), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Certificate[0]}))
}
