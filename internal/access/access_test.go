package access

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/embassy-project/embassy/internal/custodian"
	"github.com/embassy-project/embassy/internal/guest"
	"github.com/embassy-project/embassy/internal/sig"
	"github.com/embassy-project/embassy/internal/wire"
)

// t0 is the host's clock in these tests; certificates are made relative to it.
var t0 = time.Date(2025, 3, 10, 12, 0, 0, 0, time.UTC)

// served is a guest list for a host.
func served(ids ...*guest.Identity) func(guest.ID) *guest.Identity {
	return func(g guest.ID) *guest.Identity {
		for _, id := range ids {
			if id.Guest == g {
				return id
			}
		}
		return nil
	}
}

// outcome is what both ends of one TLS connection saw.
type outcome struct {
	serverErr error // the server's handshake error
	clientErr error // the client's handshake or first-read error
	handled   bool  // the server's "handler" ran
	peer      *Peer
	hasPeer   bool
	resumed   bool
}

// connect runs one TLS 1.3 connection over loopback: the server handshakes
// and, only if that succeeds, runs a handler that derives the peer and writes
// "ok"; the client handshakes and reads it.
func connect(t *testing.T, srv, cli *tls.Config) outcome {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	done := make(chan outcome, 1)
	go func() {
		var o outcome
		defer func() { done <- o }()
		c, err := ln.Accept()
		if err != nil {
			o.serverErr = err
			return
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		s := tls.Server(c, srv)
		if o.serverErr = s.Handshake(); o.serverErr != nil {
			return
		}
		o.handled = true
		cs := s.ConnectionState()
		o.peer, o.hasPeer = PeerFrom(&cs)
		o.resumed = cs.DidResume
		_, _ = s.Write([]byte("ok"))
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	cl := tls.Client(c, cli)
	clientErr := cl.Handshake()
	if clientErr == nil {
		// In TLS 1.3 the client finishes its handshake before the server has
		// checked its certificate; a refusal arrives as an alert on the first
		// read.
		buf := make([]byte, 2)
		if _, err := io.ReadFull(cl, buf); err != nil {
			clientErr = err
		} else if string(buf) != "ok" {
			t.Fatalf("client read %q", buf)
		}
	}
	o := <-done
	o.clientErr = clientErr
	return o
}

func mustServerCert(t testing.TB) tls.Certificate {
	t.Helper()
	c, _, _, err := NewServerCertificate("host-a", t0)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func pinOf(c tls.Certificate) string { return SPKIFingerprint(c.Leaf) }

func mustGrant(t testing.TB, g guest.ID, dataset string, signers ...*custodian.Identity) (*Grant, ed25519.PrivateKey) {
	t.Helper()
	gr, rk, err := NewGrantRequest(g, dataset, "restore test", t0.Add(-time.Hour), t0.Add(24*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range signers {
		if err := gr.Sign(c); err != nil {
			t.Fatal(err)
		}
	}
	return gr, rk
}

func signedGrantCert(t testing.TB, g guest.ID, dataset string, signers ...*custodian.Identity) tls.Certificate {
	t.Helper()
	gr, rk := mustGrant(t, g, dataset, signers...)
	return mustGrantCert(t, gr, rk)
}

func mustGrantCert(t testing.TB, g *Grant, rk ed25519.PrivateKey) tls.Certificate {
	t.Helper()
	c, err := GrantCertificate(g, rk)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func mustAgentCert(t testing.TB, agent *sig.PrivateKey, g guest.ID, now time.Time, ttl time.Duration) tls.Certificate {
	t.Helper()
	c, err := NewAgentCertificate(agent, g, now, ttl)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func mustCustodian(t testing.TB, name string) *custodian.Identity {
	t.Helper()
	c, err := custodian.Generate(name)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// otherGuest returns a second guest whose dataset "records" has the same
// custodians as the golden one, under its own agent key.
func otherGuest(t testing.TB, f *fixture) (*guest.Identity, *sig.PrivateKey) {
	t.Helper()
	agent, err := sig.Generate()
	if err != nil {
		t.Fatal(err)
	}
	g, err := guest.NewID()
	if err != nil {
		t.Fatal(err)
	}
	var rs []*custodian.Recipient
	for _, n := range []string{"alice", "bob", "carol"} {
		rs = append(rs, f.custodians[n].Recipient())
	}
	d, _, err := guest.NewDataset(g, "otherland", "records", agent.Public(), 2, rs)
	if err != nil {
		t.Fatal(err)
	}
	id, err := guest.NewIdentity(g, "otherland", agent.Public(), d)
	if err != nil {
		t.Fatal(err)
	}
	return id, agent
}

// certWith makes a client certificate of the profile around any credential
// bytes and key, as an attacker could.
func certWith(t testing.TB, key ed25519.PrivateKey, credential []byte) tls.Certificate {
	t.Helper()
	c, err := newClientCertificate(key, "test", t0.Add(-time.Hour), t0.Add(time.Hour), credential)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func freshKey(t testing.TB) ed25519.PrivateKey {
	t.Helper()
	_, k, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// rawCert makes a self-signed certificate from an arbitrary template and key.
func rawCert(t testing.TB, key any, pub any, exts []pkix.Extension) tls.Certificate {
	t.Helper()
	tmpl := &x509.Certificate{
		SerialNumber:    randomSerialT(t),
		Subject:         pkix.Name{CommonName: "test"},
		NotBefore:       t0.Add(-time.Hour),
		NotAfter:        t0.Add(time.Hour),
		KeyUsage:        x509.KeyUsageDigitalSignature,
		ExtKeyUsage:     []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		ExtraExtensions: exts,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, pub, key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

func randomSerialT(t testing.TB) *big.Int {
	t.Helper()
	s, err := randomSerial()
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func credentialExt(t testing.TB, cred []byte) []pkix.Extension {
	t.Helper()
	v, err := asn1.Marshal(cred)
	if err != nil {
		t.Fatal(err)
	}
	return []pkix.Extension{{Id: CredentialOID, Value: v}}
}

// TestHandshake runs every admission case through a real TLS 1.3 handshake
// over loopback.
func TestHandshake(t *testing.T) {
	f := loadFixture(t)
	alice, bob, carol, dave := f.custodians["alice"], f.custodians["bob"], f.custodians["carol"], f.custodians["dave"]
	other, otherAgent := otherGuest(t, f)
	g := f.id.Guest
	srvCert := mustServerCert(t)

	type tc struct {
		name   string
		cert   func(t *testing.T) *tls.Certificate // nil: no certificate
		guests func(guest.ID) *guest.Identity      // default: the golden guest only
		skew   time.Duration
		want   error // nil: accepted
		role   Role
	}
	cert := func(c tls.Certificate) *tls.Certificate { return &c }
	cases := []tc{
		{name: "agent", role: Agent, cert: func(t *testing.T) *tls.Certificate {
			return cert(mustAgentCert(t, f.agent, g, t0, 24*time.Hour))
		}},
		{name: "agent of an unserved guest", want: ErrUnknownGuest, cert: func(t *testing.T) *tls.Certificate {
			return cert(mustAgentCert(t, otherAgent, other.Guest, t0, 24*time.Hour))
		}},
		{name: "agent of a second served guest", role: Agent, guests: served(f.id, other), cert: func(t *testing.T) *tls.Certificate {
			return cert(mustAgentCert(t, otherAgent, other.Guest, t0, 24*time.Hour))
		}},
		{name: "agent credential signed by a non-agent key", want: ErrBadSignature, cert: func(t *testing.T) *tls.Certificate {
			k, err := sig.Generate()
			if err != nil {
				t.Fatal(err)
			}
			return cert(mustAgentCert(t, k, g, t0, 24*time.Hour))
		}},
		{name: "agent credential signed by another guest's agent", want: ErrBadSignature, guests: served(f.id, other), cert: func(t *testing.T) *tls.Certificate {
			return cert(mustAgentCert(t, otherAgent, g, t0, 24*time.Hour))
		}},
		{name: "agent expired", want: ErrExpired, cert: func(t *testing.T) *tls.Certificate {
			return cert(mustAgentCert(t, f.agent, g, t0.Add(-25*time.Hour), 24*time.Hour))
		}},
		{name: "agent not yet valid", want: ErrNotYetValid, cert: func(t *testing.T) *tls.Certificate {
			return cert(mustAgentCert(t, f.agent, g, t0.Add(time.Hour), 24*time.Hour))
		}},
		{name: "agent expired within skew", role: Agent, skew: 5 * time.Minute, cert: func(t *testing.T) *tls.Certificate {
			return cert(mustAgentCert(t, f.agent, g, t0.Add(-time.Hour-2*time.Minute), time.Hour))
		}},
		{name: "agent expired beyond skew", want: ErrExpired, skew: 5 * time.Minute, cert: func(t *testing.T) *tls.Certificate {
			return cert(mustAgentCert(t, f.agent, g, t0.Add(-time.Hour-6*time.Minute), time.Hour))
		}},
		{name: "agent early within skew", role: Agent, skew: 5 * time.Minute, cert: func(t *testing.T) *tls.Certificate {
			return cert(mustAgentCert(t, f.agent, g, t0.Add(2*time.Minute), time.Hour))
		}},
		{name: "agent early beyond skew", want: ErrNotYetValid, skew: 5 * time.Minute, cert: func(t *testing.T) *tls.Certificate {
			return cert(mustAgentCert(t, f.agent, g, t0.Add(6*time.Minute), time.Hour))
		}},
		{name: "grant with threshold custodians", role: Reader, cert: func(t *testing.T) *tls.Certificate {
			return cert(signedGrantCert(t, g, "records", alice, carol))
		}},
		{name: "grant with every custodian", role: Reader, cert: func(t *testing.T) *tls.Certificate {
			return cert(signedGrantCert(t, g, "records", carol, bob, alice))
		}},
		{name: "grant one below threshold", want: ErrBelowThreshold, cert: func(t *testing.T) *tls.Certificate {
			return cert(signedGrantCert(t, g, "records", bob))
		}},
		{name: "grant unsigned", want: ErrBelowThreshold, cert: func(t *testing.T) *tls.Certificate {
			return cert(signedGrantCert(t, g, "records"))
		}},
		{name: "grant signed twice by one custodian", want: ErrBelowThreshold, cert: func(t *testing.T) *tls.Certificate {
			gr, rk := mustGrant(t, g, "records", alice)
			s, err := alice.Signer.Sign(GrantDomain, gr.Body()) // a second, different signature by alice
			if err != nil {
				t.Fatal(err)
			}
			gr.Signatures = append(gr.Signatures, GrantSignature{Custodian: alice.Recipient(), Signature: s})
			return cert(mustGrantCert(t, gr, rk))
		}},
		{name: "grant with a custodian of another dataset", want: ErrNotCustodian, cert: func(t *testing.T) *tls.Certificate {
			return cert(signedGrantCert(t, g, "records", alice, dave))
		}},
		{name: "grant with an outsider", want: ErrNotCustodian, cert: func(t *testing.T) *tls.Certificate {
			return cert(signedGrantCert(t, g, "records", alice, bob, mustCustodian(t, "mallory")))
		}},
		{name: "grant with an outsider using a custodian's name", want: ErrNotCustodian, cert: func(t *testing.T) *tls.Certificate {
			return cert(signedGrantCert(t, g, "records", alice, mustCustodian(t, "bob")))
		}},
		{name: "grant signer renamed", want: ErrNotCustodian, cert: func(t *testing.T) *tls.Certificate {
			gr, rk := mustGrant(t, g, "records", alice, bob)
			gr.Signatures[1].Custodian.Name = "carol"
			return cert(mustGrantCert(t, gr, rk))
		}},
		{name: "grant for an unknown dataset", want: ErrUnknownDataset, cert: func(t *testing.T) *tls.Certificate {
			return cert(signedGrantCert(t, g, "archive", alice, bob))
		}},
		{name: "grant for an unserved guest", want: ErrUnknownGuest, cert: func(t *testing.T) *tls.Certificate {
			return cert(signedGrantCert(t, other.Guest, "records", alice, bob))
		}},
		{name: "grant moved to another guest", want: ErrBadSignature, guests: served(f.id, other), cert: func(t *testing.T) *tls.Certificate {
			gr, rk := mustGrant(t, g, "records", alice, bob)
			gr.Guest = other.Guest
			return cert(mustGrantCert(t, gr, rk))
		}},
		{name: "grant reason tampered", want: ErrBadSignature, cert: func(t *testing.T) *tls.Certificate {
			gr, rk := mustGrant(t, g, "records", alice, bob)
			b := gr.Marshal()
			i := bytes.Index(b, []byte("restore test"))
			b[i] = 'R'
			gr2, err := ParseGrant(b)
			if err != nil {
				t.Fatal(err)
			}
			return cert(mustGrantCert(t, gr2, rk))
		}},
		{name: "grant not-after tampered", want: ErrBadSignature, cert: func(t *testing.T) *tls.Certificate {
			gr, rk := mustGrant(t, g, "records", alice, bob)
			b := gr.Marshal()
			i := bytes.Index(b, []byte("\x0crestore test")) - 5 // not-after: 5 varint bytes, low bits first
			b[i] ^= 0x01
			gr2, err := ParseGrant(b)
			if err != nil {
				t.Fatal(err)
			}
			if gr2.NotAfter.Equal(gr.NotAfter) {
				t.Fatal("flip missed not-after")
			}
			return cert(mustGrantCert(t, gr2, rk))
		}},
		{name: "grant signature flipped", want: ErrBadSignature, cert: func(t *testing.T) *tls.Certificate {
			gr, rk := mustGrant(t, g, "records", alice, bob)
			gr.Signatures[1].Signature[2000] ^= 0x80
			return cert(mustGrantCert(t, gr, rk))
		}},
		{name: "grant expired", want: ErrExpired, cert: func(t *testing.T) *tls.Certificate {
			gr, rk, err := NewGrantRequest(g, "records", "late", t0.Add(-48*time.Hour), t0.Add(-time.Hour))
			if err != nil {
				t.Fatal(err)
			}
			for _, c := range []*custodian.Identity{alice, bob} {
				if err := gr.Sign(c); err != nil {
					t.Fatal(err)
				}
			}
			return cert(mustGrantCert(t, gr, rk))
		}},
		{name: "agent credential lifted into another certificate", want: ErrKeyMismatch, cert: func(t *testing.T) *tls.Certificate {
			stolen := mustAgentCert(t, f.agent, g, t0, time.Hour)
			return cert(certWith(t, freshKey(t), credentialOf(t, stolen.Certificate[0])))
		}},
		{name: "grant lifted into another certificate", want: ErrKeyMismatch, cert: func(t *testing.T) *tls.Certificate {
			gr, _ := mustGrant(t, g, "records", alice, bob)
			return cert(certWith(t, freshKey(t), gr.Marshal()))
		}},
		{name: "no credential extension", want: ErrMalformed, cert: func(t *testing.T) *tls.Certificate {
			k := freshKey(t)
			return cert(rawCert(t, k, k.Public(), nil))
		}},
		{name: "garbage credential", want: ErrMalformed, cert: func(t *testing.T) *tls.Certificate {
			return cert(certWith(t, freshKey(t), []byte("EMBAGNT1 and then nonsense")))
		}},
		{name: "critical credential extension", want: ErrMalformed, cert: func(t *testing.T) *tls.Certificate {
			k := freshKey(t)
			e := credentialExt(t, credentialOf(t, mustAgentCert(t, f.agent, g, t0, time.Hour).Certificate[0]))
			e[0].Critical = true
			return cert(rawCert(t, k, k.Public(), e))
		}},
		{name: "ecdsa client key", want: ErrMalformed, cert: func(t *testing.T) *tls.Certificate {
			k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
			if err != nil {
				t.Fatal(err)
			}
			return cert(rawCert(t, k, k.Public(), credentialExt(t, []byte("x"))))
		}},
		{name: "certificate chain of two", want: ErrMalformed, cert: func(t *testing.T) *tls.Certificate {
			c := mustAgentCert(t, f.agent, g, t0, time.Hour)
			c.Certificate = append(c.Certificate, c.Certificate[0])
			c.Leaf = nil
			return &c
		}},
		{name: "no certificate", cert: func(t *testing.T) *tls.Certificate { return nil }},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			guests := c.guests
			if guests == nil {
				guests = f.guests
			}
			srv := ServerConfig(srvCert, guests, func() time.Time { return t0 }, c.skew)
			clientCert := c.cert(t)
			o := connect(t, srv, ClientConfig(clientCert, pinOf(srvCert)))
			if c.want != nil {
				if !errors.Is(o.serverErr, c.want) {
					t.Fatalf("server: %v, want %v", o.serverErr, c.want)
				}
				if o.handled {
					t.Fatal("handler ran for a refused client")
				}
				if o.clientErr == nil || !strings.Contains(o.clientErr.Error(), "bad certificate") {
					t.Fatalf("client: %v, want a bad certificate alert", o.clientErr)
				}
				return
			}
			if o.serverErr != nil || o.clientErr != nil || !o.handled {
				t.Fatalf("refused: server %v, client %v", o.serverErr, o.clientErr)
			}
			if clientCert == nil {
				if o.hasPeer {
					t.Fatalf("PeerFrom found %+v on a connection without a certificate", o.peer)
				}
				return
			}
			if !o.hasPeer {
				t.Fatal("PeerFrom found no peer")
			}
			p := o.peer
			leaf, err := x509.ParseCertificate(clientCert.Certificate[0])
			if err != nil {
				t.Fatal(err)
			}
			if p.Role != c.role || p.Fingerprint != SPKIFingerprint(leaf) || p.NotAfter.IsZero() {
				t.Fatalf("peer %+v", p)
			}
			// The handler's peer is the one Verify derives.
			vp, err := Verify(clientCert.Certificate, guests, t0, c.skew)
			if err != nil {
				t.Fatal(err)
			}
			a, b := *vp, *p
			a.agent, b.agent = nil, nil
			if a != b {
				t.Fatalf("PeerFrom %+v, Verify %+v", p, vp)
			}
			if c.name == "agent" && !p.SignedBy(f.agent.Public()) {
				t.Fatal("SignedBy does not recognise the agent key")
			}
			if p.Role == Reader && (p.Dataset != "records" || p.GrantID == [16]byte{} || p.Guest != g) {
				t.Fatalf("reader peer %+v", p)
			}
		})
	}
}

func TestPinnedServer(t *testing.T) {
	f := loadFixture(t)
	srvCert := mustServerCert(t)
	other := mustServerCert(t)
	srv := ServerConfig(srvCert, f.guests, func() time.Time { return t0 }, 0)
	agent := mustAgentCert(t, f.agent, f.id.Guest, t0, time.Hour)

	o := connect(t, srv, ClientConfig(&agent, pinOf(other)))
	if !errors.Is(o.clientErr, ErrPinMismatch) || o.handled || o.serverErr == nil {
		t.Fatalf("wrong pin: client %v, server %v, handled %v", o.clientErr, o.serverErr, o.handled)
	}
	o = connect(t, srv, ClientConfig(nil, "sha256:00"))
	if o.clientErr == nil || o.handled {
		t.Fatalf("malformed pin accepted: %v", o.clientErr)
	}
	o = connect(t, srv, ClientConfig(&agent, pinOf(srvCert)))
	if o.clientErr != nil || !o.hasPeer || o.peer.Role != Agent {
		t.Fatalf("right pin: client %v, server %v", o.clientErr, o.serverErr)
	}
	// A pin is the key: a certificate re-issued on the same key matches.
	if pinOf(srvCert) == pinOf(other) || !strings.HasPrefix(pinOf(srvCert), "sha256:") || len(pinOf(srvCert)) != 7+64 {
		t.Fatalf("pin %s", pinOf(srvCert))
	}
}

func TestServerCertificate(t *testing.T) {
	c, certPEM, keyPEM, err := NewServerCertificate("host-a.example.org", t0)
	if err != nil {
		t.Fatal(err)
	}
	loaded, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	if SPKIFingerprint(loaded.Leaf) != SPKIFingerprint(c.Leaf) {
		t.Fatal("PEM files hold another key")
	}
	for _, h := range []string{"localhost", "127.0.0.1", "::1", "host-a.example.org"} {
		if err := c.Leaf.VerifyHostname(h); err != nil {
			t.Errorf("%s: %v", h, err)
		}
	}
	if c.Leaf.NotAfter.Before(t0.Add(10 * 365 * 24 * time.Hour)) {
		t.Fatalf("server certificate valid only until %v", c.Leaf.NotAfter)
	}
	ip, _, _, err := NewServerCertificate("10.0.0.7", t0)
	if err != nil {
		t.Fatal(err)
	}
	if err := ip.Leaf.VerifyHostname("10.0.0.7"); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{"", "Host", "a b", strings.Repeat("a", 65)} {
		if _, _, _, err := NewServerCertificate(bad, t0); err == nil {
			t.Errorf("host name %q accepted", bad)
		}
	}
}

// TestResumption checks that a resumed session is checked again: it keeps
// its peer while the guest is served and the credential valid, and is refused
// once either is not.
func TestResumption(t *testing.T) {
	f := loadFixture(t)
	srvCert := mustServerCert(t)
	now, serving := t0, true
	guests := func(g guest.ID) *guest.Identity {
		if !serving {
			return nil
		}
		return f.guests(g)
	}
	srv := ServerConfig(srvCert, guests, func() time.Time { return now }, 0)
	check, checkedResumed := srv.VerifyConnection, false
	srv.VerifyConnection = func(cs tls.ConnectionState) error {
		checkedResumed = cs.DidResume
		return check(cs)
	}
	agent := mustAgentCert(t, f.agent, f.id.Guest, t0, time.Hour)
	cli := ClientConfig(&agent, pinOf(srvCert))
	cli.ClientSessionCache = tls.NewLRUClientSessionCache(4)
	cli.ServerName = "localhost" // the cache key; each connect listens on a new port

	if o := connect(t, srv, cli); o.clientErr != nil || o.resumed {
		t.Fatalf("first: %v, resumed %v", o.clientErr, o.resumed)
	}
	o := connect(t, srv, cli)
	if o.clientErr != nil || !o.resumed || !o.hasPeer || o.peer.Role != Agent || o.peer.Guest != f.id.Guest {
		t.Fatalf("resumed: client %v, resumed %v, peer %+v", o.clientErr, o.resumed, o.peer)
	}
	// The client offers its ticket again; the guest is no longer served.
	serving = false
	if o := connect(t, srv, cli); !errors.Is(o.serverErr, ErrUnknownGuest) || o.handled || !checkedResumed {
		t.Fatalf("guest dropped: server %v, handled %v, resumption checked %v", o.serverErr, o.handled, checkedResumed)
	}
	serving, now = true, t0.Add(2*time.Hour)
	if o := connect(t, srv, cli); !errors.Is(o.serverErr, ErrExpired) || o.handled {
		t.Fatalf("after expiry: server %v, handled %v", o.serverErr, o.handled)
	}
}

// TestMaxSignatures checks that a grant with MaxSignatures signatures fits in
// a TLS handshake, and that Sign stops there.
func TestMaxSignatures(t *testing.T) {
	agent, err := sig.Generate()
	if err != nil {
		t.Fatal(err)
	}
	g, err := guest.NewID()
	if err != nil {
		t.Fatal(err)
	}
	var cs []*custodian.Identity
	var rs []*custodian.Recipient
	for i := range MaxSignatures + 1 {
		c := mustCustodian(t, fmt.Sprintf("%s%02d", strings.Repeat("c", custodian.MaxNameLen-2), i)) // longest names: the largest grant
		cs = append(cs, c)
		rs = append(rs, c.Recipient())
	}
	d, _, err := guest.NewDataset(g, "big", "records", agent.Public(), MaxSignatures, rs[:MaxSignatures])
	if err != nil {
		t.Fatal(err)
	}
	id, err := guest.NewIdentity(g, "big", agent.Public(), d)
	if err != nil {
		t.Fatal(err)
	}
	gr, rk := mustGrant(t, g, "records", cs[:MaxSignatures]...)
	if err := gr.Sign(cs[MaxSignatures]); err == nil {
		t.Fatal("signature beyond MaxSignatures accepted")
	}
	if n := len(gr.Marshal()); n > MaxGrantSize {
		t.Fatalf("full grant is %d bytes, limit %d", n, MaxGrantSize)
	}
	if _, err := ParseGrant(gr.Marshal()); err != nil {
		t.Fatal(err)
	}
	srvCert := mustServerCert(t)
	c := mustGrantCert(t, gr, rk)
	o := connect(t, ServerConfig(srvCert, served(id), func() time.Time { return t0 }, 0), ClientConfig(&c, pinOf(srvCert)))
	if o.clientErr != nil || o.serverErr != nil || !o.hasPeer || o.peer.Role != Reader {
		t.Fatalf("client %v, server %v", o.clientErr, o.serverErr)
	}
}

func TestVerifyTimeBoundaries(t *testing.T) {
	f := loadFixture(t)
	c := mustAgentCert(t, f.agent, f.id.Guest, t0, time.Hour)
	na := t0.Add(time.Hour)
	for _, tc := range []struct {
		now  time.Time
		skew time.Duration
		want error
	}{
		{t0, 0, nil},
		{t0.Add(-time.Nanosecond), 0, ErrNotYetValid},
		{t0.Add(-time.Minute), time.Minute, nil},
		{t0.Add(-time.Minute - time.Nanosecond), time.Minute, ErrNotYetValid},
		{na.Add(-time.Nanosecond), 0, nil},
		{na, 0, ErrExpired},
		{na.Add(time.Minute - time.Nanosecond), time.Minute, nil},
		{na.Add(time.Minute), time.Minute, ErrExpired},
		{na.Add(MaxSkew - time.Second), MaxSkew, nil},
	} {
		_, err := Verify(c.Certificate, f.guests, tc.now, tc.skew)
		if !errors.Is(err, tc.want) || (tc.want == nil) != (err == nil) {
			t.Errorf("now %v skew %v: %v, want %v", tc.now.Sub(t0), tc.skew, err, tc.want)
		}
	}
	for _, skew := range []time.Duration{-time.Second, MaxSkew + time.Second} {
		if _, err := Verify(c.Certificate, f.guests, t0, skew); err == nil {
			t.Errorf("skew %v accepted", skew)
		}
	}
}

func TestVerifyMalformed(t *testing.T) {
	f := loadFixture(t)
	c := mustAgentCert(t, f.agent, f.id.Guest, t0, time.Hour)
	der := c.Certificate[0]
	k := freshKey(t)
	e := credentialExt(t, credentialOf(t, der))
	twoExt := rawCert(t, k, k.Public(), append(e, e[0])).Certificate
	sigFlip := bytes.Clone(der)
	sigFlip[len(sigFlip)-1] ^= 1 // the certificate's own signature
	for name, tc := range map[string]struct {
		raw  [][]byte
		want error
	}{
		"none":           {nil, ErrMalformed},
		"two":            {[][]byte{der, der}, ErrMalformed},
		"not der":        {[][]byte{[]byte("hello")}, ErrMalformed},
		"truncated":      {[][]byte{der[:len(der)-10]}, ErrMalformed},
		"self-signature": {[][]byte{sigFlip}, ErrBadSignature},
		"two extensions": {twoExt, ErrMalformed}, // Go's TLS stack refuses it before VerifyConnection
	} {
		_, err := Verify(tc.raw, f.guests, t0, 0)
		if !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", name, err, tc.want)
		}
		if errors.Is(tc.want, ErrMalformed) && !errors.Is(err, wire.ErrCorrupt) {
			t.Errorf("%s: %v does not wrap wire.ErrCorrupt", name, err)
		}
	}
	// An ECDSA-signed certificate carrying an Ed25519 key cannot be made
	// with crypto/x509, so the algorithm check is covered by the ECDSA key
	// case of TestHandshake.
}

// TestGrantByteFlips flips every byte of a grant's signed body: each flip
// either fails to parse (ErrCorrupt) or is refused by the host.
func TestGrantByteFlips(t *testing.T) {
	f := loadFixture(t)
	gr, rk := mustGrant(t, f.id.Guest, "records", f.custodians["alice"], f.custodians["bob"])
	b := gr.Marshal()
	body := len(gr.Body())
	offsets := make([]int, 0, body+64)
	for i := range body {
		offsets = append(offsets, i)
	}
	for i := body; i < len(b); i += len(b) / 64 { // a sample of the signatures
		offsets = append(offsets, i)
	}
	for _, i := range offsets {
		c := bytes.Clone(b)
		c[i] ^= 0x01
		g2, err := ParseGrant(c)
		if err != nil {
			if !errors.Is(err, wire.ErrCorrupt) {
				t.Fatalf("byte %d: %v does not wrap ErrCorrupt", i, err)
			}
			continue
		}
		cert := certWith(t, rk, g2.Marshal())
		if p, err := Verify(cert.Certificate, f.guests, t0, 0); err == nil {
			t.Fatalf("byte %d flipped: accepted as %+v", i, p)
		}
	}
}

func TestGrantRequest(t *testing.T) {
	f := loadFixture(t)
	g := f.id.Guest
	gr, rk := mustGrant(t, g, "records")
	if !rk.Public().(ed25519.PublicKey).Equal(gr.Reader) {
		t.Fatal("reader key does not match the grant")
	}
	if err := gr.Sign(f.custodians["alice"]); err != nil {
		t.Fatal(err)
	}
	if err := gr.Sign(f.custodians["alice"]); err == nil {
		t.Fatal("second signature by the same custodian accepted")
	}
	// The grant travels as a file between custodians.
	gr2, err := ParseGrant(gr.Marshal())
	if err != nil {
		t.Fatal(err)
	}
	if err := gr2.Sign(f.custodians["alice"]); err == nil {
		t.Fatal("second signature by the same custodian accepted after a round trip")
	}
	if err := gr2.Sign(f.custodians["bob"]); err != nil {
		t.Fatal(err)
	}
	if _, err := Verify(mustGrantCert(t, gr2, rk).Certificate, f.guests, t0, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := GrantCertificate(gr2, freshKey(t)); err == nil {
		t.Fatal("certificate with another reader key made")
	}

	from := t0
	for name, tc := range map[string]struct {
		dataset, reason string
		nb, na          time.Time
	}{
		"empty reason": {"records", "", from, from.Add(time.Hour)},
		"long reason":  {"records", strings.Repeat("x", MaxReasonLen+1), from, from.Add(time.Hour)},
		"control":      {"records", "line\nbreak", from, from.Add(time.Hour)},
		"escape":       {"records", "\x1b[31mred", from, from.Add(time.Hour)},
		"not utf-8":    {"records", "\xff", from, from.Add(time.Hour)},
		"bad dataset":  {"Records", "ok", from, from.Add(time.Hour)},
		"empty window": {"records", "ok", from, from},
		"reversed":     {"records", "ok", from, from.Add(-time.Hour)},
		"too long":     {"records", "ok", from, from.Add(MaxGrantLifetime + time.Second)},
		"before epoch": {"records", "ok", time.Unix(0, 0), from},
		"far future":   {"records", "ok", time.Unix(maxUnix-10, 0), time.Unix(maxUnix, 0)},
		"zero guest":   {"records", "ok", from, from.Add(time.Hour)},
	} {
		gid := g
		if name == "zero guest" {
			gid = guest.ID{}
		}
		if _, _, err := NewGrantRequest(gid, tc.dataset, tc.reason, tc.nb, tc.na); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if _, _, err := NewGrantRequest(g, "records", strings.Repeat("é", MaxReasonLen/2), from, from.Add(MaxGrantLifetime)); err != nil {
		t.Errorf("longest reason and window refused: %v", err)
	}
}

func TestAgentCertificateLimits(t *testing.T) {
	f := loadFixture(t)
	for _, ttl := range []time.Duration{0, time.Millisecond, -time.Hour, MaxAgentLifetime + time.Second} {
		if _, err := NewAgentCertificate(f.agent, f.id.Guest, t0, ttl); err == nil {
			t.Errorf("ttl %v accepted", ttl)
		}
	}
	if _, err := NewAgentCertificate(f.agent, guest.ID{}, t0, time.Hour); err == nil {
		t.Error("zero guest accepted")
	}
	c := mustAgentCert(t, f.agent, f.id.Guest, t0.Add(1500*time.Millisecond), MaxAgentLifetime)
	ac, err := ParseAgentCredential(credentialOf(t, c.Certificate[0]))
	if err != nil {
		t.Fatal(err)
	}
	if !ac.NotBefore.Equal(t0.Add(time.Second)) || ac.NotAfter.Sub(ac.NotBefore) != MaxAgentLifetime {
		t.Fatalf("window %v to %v", ac.NotBefore, ac.NotAfter)
	}
	if !c.Leaf.NotBefore.Equal(ac.NotBefore) || !c.Leaf.NotAfter.Equal(ac.NotAfter) {
		t.Fatal("certificate validity differs from the credential's")
	}
}

func TestReaderKey(t *testing.T) {
	k := freshKey(t)
	b := MarshalReaderKey(k)
	got, err := ParseReaderKey(b)
	if err != nil {
		t.Fatal(err)
	}
	if !got.Equal(k) {
		t.Fatal("reader key changed")
	}
	// Lenient layout: CRLF, extra comments and blank lines, no fingerprint.
	lines := strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
	lenient := "\r\n# mine\r\n" + lines[2] + " \r\n\r\n" + lines[3] + "\r\n"
	if got, err := ParseReaderKey([]byte(lenient)); err != nil || !got.Equal(k) {
		t.Fatalf("lenient layout: %v", err)
	}
	other := MarshalReaderKey(freshKey(t))
	otherLines := strings.Split(string(other), "\n")
	for name, bad := range map[string]string{
		"empty":           "",
		"no header":       lines[3] + "\n",
		"wrong header":    "embassy-custodian-identity-v1\n" + lines[3] + "\n",
		"no key":          lines[2] + "\n",
		"two keys":        lines[2] + "\n" + lines[3] + "\n" + lines[3] + "\n",
		"short key":       lines[2] + "\ned25519-seed: AAAA\n",
		"bad base64":      lines[2] + "\ned25519-seed: " + strings.Repeat("!", 44) + "\n",
		"non-canonical":   lines[2] + "\ned25519-seed: " + strings.Repeat("A", 42) + "B=\n",
		"wrong comment":   otherLines[1] + "\n" + lines[2] + "\n" + lines[3] + "\n",
		"two comments":    lines[1] + "\n" + lines[1] + "\n" + lines[2] + "\n" + lines[3] + "\n",
		"space after key": lines[2] + "\ned25519-seed:  " + strings.TrimPrefix(lines[3], "ed25519-seed: ") + "\n",
		"huge":            strings.Repeat("#", 5000),
	} {
		_, err := ParseReaderKey([]byte(bad))
		if !errors.Is(err, wire.ErrCorrupt) {
			t.Errorf("%s: %v, want ErrCorrupt", name, err)
		}
		if err != nil && strings.Contains(err.Error(), strings.TrimPrefix(lines[3], "ed25519-seed: ")[:8]) {
			t.Errorf("%s: error quotes the key", name)
		}
	}
}

// TestErrorsHoldNoKeys checks that refusals name keys only by fingerprint.
func TestErrorsHoldNoKeys(t *testing.T) {
	f := loadFixture(t)
	k := freshKey(t)
	gr, _ := mustGrant(t, f.id.Guest, "records", f.custodians["alice"])
	c := certWith(t, k, gr.Marshal())
	_, err := Verify(c.Certificate, f.guests, t0, 0)
	if !errors.Is(err, ErrKeyMismatch) {
		t.Fatal(err)
	}
	msg := err.Error()
	for _, secret := range [][]byte{k.Seed(), k.Public().(ed25519.PublicKey), gr.Reader} {
		for _, enc := range []string{string(secret), hex.EncodeToString(secret)} {
			if strings.Contains(msg, enc) {
				t.Fatalf("error quotes key bytes: %s", msg)
			}
		}
	}
}

func TestVerifyWriters(t *testing.T) {
	f := loadFixture(t)
	g := f.id.Guest
	t0 := time.Date(2025, 3, 10, 12, 0, 0, 0, time.UTC)
	writer, err := sig.Generate()
	if err != nil {
		t.Fatal(err)
	}
	c := mustAgentCert(t, writer, g, t0, time.Hour)
	guests := f.guests
	if _, err := Verify(c.Certificate, guests, t0, 0); !errors.Is(err, ErrBadSignature) {
		t.Fatalf("a writer the host does not know: %v", err)
	}
	writers := func(id guest.ID) []sig.PublicKey { return []sig.PublicKey{writer.Public()} }
	p, err := VerifyWriters(c.Certificate, guests, writers, t0, 0)
	if err != nil {
		t.Fatal(err)
	}
	if !p.SignedBy(writer.Public()) || p.SignedBy(f.agent.Public()) {
		t.Fatal("SignedBy does not tell which writer signed")
	}
}
