package access

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"strings"
	"time"

	"github.com/embassy-project/embassy/internal/guest"
	"github.com/embassy-project/embassy/internal/sig"
	"github.com/embassy-project/embassy/internal/wire"
)

// CredentialOID identifies the certificate extension that carries a client's
// credential: 1.3.6.1.4.1.59999.1.1. The arc is provisional (not a registered
// private enterprise number) and will move before a stable release; hosts and
// clients of one release agree on it.
var CredentialOID = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 59999, 1, 1}

// ServerCertLifetime is the validity of a host's self-signed server
// certificate. Clients pin its key, not a CA, so expiry protects nothing and
// would only break every client at once.
const ServerCertLifetime = 20 * 365 * 24 * time.Hour

// NewAgentCertificate returns a client certificate for the home agent of
// guest g: a fresh Ed25519 TLS key and an agent credential for it, signed by
// the agent key, valid from now (truncated to a whole second) for ttl
// (rounded down to whole seconds, at most MaxAgentLifetime). Agents make one
// per process and never store it.
func NewAgentCertificate(agent *sig.PrivateKey, g guest.ID, now time.Time, ttl time.Duration) (tls.Certificate, error) {
	pub, priv, err := ed25519.GenerateKey(nil)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("agent certificate: generate tls key: %w", err)
	}
	nb := time.Unix(now.Unix(), 0).UTC()
	c := &AgentCredential{
		Guest:     g,
		Key:       pub,
		NotBefore: nb,
		NotAfter:  nb.Add(ttl.Truncate(time.Second)),
	}
	if _, err := rand.Read(c.Serial[:]); err != nil {
		return tls.Certificate{}, fmt.Errorf("agent certificate: %w", err)
	}
	if err := c.Validate(); err != nil {
		return tls.Certificate{}, fmt.Errorf("agent certificate: %w", err)
	}
	if c.Signature, err = agent.Sign(AgentDomain, c.Body()); err != nil {
		return tls.Certificate{}, fmt.Errorf("agent certificate: %w", err)
	}
	return newClientCertificate(priv, "embassy agent "+g.String(), c.NotBefore, c.NotAfter, c.Marshal())
}

// GrantCertificate returns the client certificate of a reader: the grant's
// reader key and the grant. The grant should carry its signatures already;
// only the host checks them.
func GrantCertificate(g *Grant, readerKey ed25519.PrivateKey) (tls.Certificate, error) {
	if err := g.Validate(); err != nil {
		return tls.Certificate{}, fmt.Errorf("grant certificate: %w", err)
	}
	if len(readerKey) != ed25519.PrivateKeySize || !readerKey.Public().(ed25519.PublicKey).Equal(g.Reader) {
		return tls.Certificate{}, errors.New("grant certificate: the reader key is not the one the grant names")
	}
	return newClientCertificate(readerKey, "embassy reader "+hex.EncodeToString(g.ID[:]), g.NotBefore, g.NotAfter, g.Marshal())
}

// newClientCertificate makes the self-signed certificate of the profile in
// docs/spec/access.md around credential.
func newClientCertificate(key ed25519.PrivateKey, cn string, nb, na time.Time, credential []byte) (tls.Certificate, error) {
	value, err := asn1.Marshal(credential) // an OCTET STRING
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("client certificate: %w", err)
	}
	serial, err := randomSerial()
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("client certificate: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:    serial,
		Subject:         pkix.Name{CommonName: cn},
		NotBefore:       nb,
		NotAfter:        na,
		KeyUsage:        x509.KeyUsageDigitalSignature,
		ExtKeyUsage:     []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		ExtraExtensions: []pkix.Extension{{Id: CredentialOID, Critical: false, Value: value}},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("client certificate: %w", err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("client certificate: %w", err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, nil
}

func randomSerial() (*big.Int, error) {
	return rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
}

// NewServerCertificate returns a host's self-signed server certificate: a
// fresh ECDSA P-256 key (the most widely supported, for tools other than
// embassy that read a host's public paths), valid from an hour before now for
// ServerCertLifetime, for localhost, 127.0.0.1, ::1 and name (a DNS name or
// an IP address). certPEM and keyPEM (PKCS #8, a secret) are what a host
// stores; tls.X509KeyPair loads them. Clients pin SPKIFingerprint of it.
func NewServerCertificate(name string, now time.Time) (cert tls.Certificate, certPEM, keyPEM []byte, err error) {
	if !wire.ValidName(name) {
		return tls.Certificate{}, nil, nil, errors.New("server certificate: host name must be 1 to 64 characters of a-z, 0-9 and (not first) . _ -")
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, nil, nil, fmt.Errorf("server certificate: %w", err)
	}
	serial, err := randomSerial()
	if err != nil {
		return tls.Certificate{}, nil, nil, fmt.Errorf("server certificate: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: name},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(ServerCertLifetime),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:     []string{"localhost"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
	}
	if ip := net.ParseIP(name); ip != nil {
		if !ip.IsLoopback() {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		}
	} else if name != "localhost" {
		tmpl.DNSNames = append(tmpl.DNSNames, name)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return tls.Certificate{}, nil, nil, fmt.Errorf("server certificate: %w", err)
	}
	pkcs8, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return tls.Certificate{}, nil, nil, fmt.Errorf("server certificate: %w", err)
	}
	certPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	keyPEM = pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pkcs8})
	clear(pkcs8)
	cert, err = tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return tls.Certificate{}, nil, nil, fmt.Errorf("server certificate: %w", err)
	}
	return cert, certPEM, keyPEM, nil
}

// SPKIFingerprint names a certificate's public key: "sha256:" and the
// lowercase hex SHA-256 of its DER SubjectPublicKeyInfo. It survives
// re-issuing the certificate with the same key.
func SPKIFingerprint(cert *x509.Certificate) string {
	return spkiFingerprint(cert.RawSubjectPublicKeyInfo)
}

func spkiFingerprint(spki []byte) string {
	h := sha256.Sum256(spki)
	return "sha256:" + hex.EncodeToString(h[:])
}

// keyFingerprint is SPKIFingerprint of a bare Ed25519 public key.
func keyFingerprint(pub ed25519.PublicKey) string {
	spki, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		// A 32-byte Ed25519 key always marshals.
		panic("access: ed25519 key does not marshal: " + err.Error())
	}
	return spkiFingerprint(spki)
}

// ErrPinMismatch is returned when a server's key is not the pinned one.
var ErrPinMismatch = errors.New("server key does not match the pinned fingerprint")

// PinnedServer returns a tls.Config.VerifyConnection for a client that
// trusts exactly one server key, named by its SPKIFingerprint. Use it with
// InsecureSkipVerify (ClientConfig does): that switches off only the CA chain
// and host name checks, which a self-signed host certificate cannot pass. The
// handshake still makes the server prove it holds the private key of the
// certificate it presents (TLS 1.3 CertificateVerify signs the transcript),
// and Go calls VerifyConnection on every handshake, resumptions included, so
// a party without that key cannot complete a handshake whose certificate
// matches the pin. The certificate's dates are not checked: the pin is the
// trust anchor.
func PinnedServer(fingerprint string) func(tls.ConnectionState) error {
	return func(cs tls.ConnectionState) error {
		if !validFingerprint(fingerprint) {
			return errors.New("server pin is not \"sha256:\" followed by 64 lowercase hex characters")
		}
		if len(cs.PeerCertificates) == 0 {
			return fmt.Errorf("%w: the server sent no certificate", ErrPinMismatch)
		}
		if got := SPKIFingerprint(cs.PeerCertificates[0]); got != fingerprint {
			return fmt.Errorf("%w: server key is %s, pinned %s (a different host, a re-keyed host, or an interception)", ErrPinMismatch, got, fingerprint)
		}
		return nil
	}
}

func validFingerprint(s string) bool {
	h, ok := strings.CutPrefix(s, "sha256:")
	if !ok || len(h) != 2*sha256.Size {
		return false
	}
	b, err := hex.DecodeString(h)
	return err == nil && hex.EncodeToString(b) == h
}

// ClientConfig returns the TLS configuration of a client of a host: TLS 1.3
// only, the server pinned by fingerprint (see PinnedServer), and cert
// presented if it is not nil (a client without one reaches only a host's
// public paths).
func ClientConfig(cert *tls.Certificate, pin string) *tls.Config {
	c := &tls.Config{
		MinVersion:         tls.VersionTLS13,
		InsecureSkipVerify: true, // the pin replaces CA verification; see PinnedServer
		VerifyConnection:   PinnedServer(pin),
	}
	if cert != nil {
		c.Certificates = []tls.Certificate{*cert}
	}
	return c
}

// ServerConfig returns the TLS configuration of a host: TLS 1.3 only, cert
// as its server certificate, client certificates requested but not required,
// and every presented one checked by VerifyConnection. Handlers learn the
// client with PeerFrom. now is also the TLS stack's clock (session tickets;
// Go refuses to resume a session whose client certificate has expired); a
// nil now means time.Now.
func ServerConfig(cert tls.Certificate, guests func(guest.ID) *guest.Identity, now func() time.Time, skew time.Duration) *tls.Config {
	if now == nil {
		now = time.Now
	}
	return &tls.Config{
		MinVersion:       tls.VersionTLS13,
		Time:             now,
		Certificates:     []tls.Certificate{cert},
		ClientAuth:       tls.RequestClientCert,
		VerifyConnection: VerifyConnection(guests, now, skew),
	}
}
