package access

import (
	"crypto/ed25519"
	"crypto/tls"
	"crypto/x509"
	"encoding/asn1"
	"errors"
	"fmt"
	"time"

	"github.com/embassy-project/embassy/internal/guest"
	"github.com/embassy-project/embassy/internal/sig"
	"github.com/embassy-project/embassy/internal/wire"
)

// MaxSkew is the largest clock skew allowance Verify accepts.
const MaxSkew = 10 * time.Minute

// Outcomes of Verify that callers branch on (or count). Every error Verify
// returns wraps exactly one of them.
var (
	// ErrMalformed: not a certificate of the profile, or its credential does
	// not parse. It wraps wire.ErrCorrupt.
	ErrMalformed = fmt.Errorf("malformed client certificate: %w", wire.ErrCorrupt)
	// ErrKeyMismatch: the credential vouches for another TLS key than the
	// certificate's (a credential lifted into another certificate).
	ErrKeyMismatch = errors.New("credential is for another TLS key")
	// ErrUnknownGuest: this host does not serve the credential's guest.
	ErrUnknownGuest = errors.New("guest not served by this host")
	// ErrUnknownDataset: the guest has no dataset of the grant's name.
	ErrUnknownDataset = errors.New("guest has no such dataset")
	// ErrNotYetValid: the credential's window has not begun.
	ErrNotYetValid = errors.New("credential not yet valid")
	// ErrExpired: the credential's window has ended.
	ErrExpired = errors.New("credential expired")
	// ErrBadSignature: a signature does not verify (a forgery, tampering, or
	// a key other than the one the guest identity names).
	ErrBadSignature = errors.New("credential signature does not verify")
	// ErrNotCustodian: a grant signer is not a custodian of the dataset.
	ErrNotCustodian = errors.New("grant signer is not a custodian of the dataset")
	// ErrBelowThreshold: fewer distinct custodians signed a grant than the
	// dataset's threshold.
	ErrBelowThreshold = errors.New("grant has fewer custodian signatures than the threshold")
)

// Role is what a credential lets its holder do.
type Role uint8

// Roles.
const (
	// Agent is the guest's home agent: it writes the guest's shards and
	// envelopes and reads them back.
	Agent Role = iota + 1
	// Reader holds a read grant: it reads the guest's shards and envelopes.
	Reader
)

// String returns "agent" or "reader".
func (r Role) String() string {
	switch r {
	case Agent:
		return "agent"
	case Reader:
		return "reader"
	}
	return fmt.Sprintf("role(%d)", uint8(r))
}

// Peer is a client a host has let in.
type Peer struct {
	Guest       guest.ID
	Role        Role
	Fingerprint string    // SPKIFingerprint of the client's TLS key
	Serial      [16]byte  // agent credential serial (Agent)
	GrantID     [16]byte  // grant ID (Reader)
	Dataset     string    // the dataset whose custodians signed the grant (Reader); the grant covers the guest's whole store
	NotAfter    time.Time // end of the credential's window; a host SHOULD close connections that outlive it

	agent *AgentCredential // the agent credential (Agent)
}

// SignedBy reports whether the peer's agent credential is signed by k. A
// host uses it to tell which writer key an agent holds (the guest's home
// agent key, or the writer an activation order named).
func (p *Peer) SignedBy(k sig.PublicKey) bool {
	if p.agent == nil || k.IsZero() {
		return false
	}
	return k.Verify(AgentDomain, p.agent.Body(), p.agent.Signature) == nil
}

// Writers returns, for a guest, the keys besides its identity's agent key
// that may sign agent credentials (the writers governance orders named).
type Writers func(guest.ID) []sig.PublicKey

// Verify decides whether the client that presented rawCerts (the DER
// certificates of a TLS handshake, leaf first) may talk to this host, which
// serves the guests for which guests returns a non-nil identity. now is the
// host's clock and skew (0 to MaxSkew) how far the client's clock may be off.
// It does no I/O. The rules are those of docs/spec/access.md; every error
// wraps one of the Err values above and never quotes key material.
func Verify(rawCerts [][]byte, guests func(guest.ID) *guest.Identity, now time.Time, skew time.Duration) (*Peer, error) {
	return VerifyWriters(rawCerts, guests, nil, now, skew)
}

// VerifyWriters is Verify that also accepts agent credentials signed by one
// of writers(guest) (nil: none).
func VerifyWriters(rawCerts [][]byte, guests func(guest.ID) *guest.Identity, writers Writers, now time.Time, skew time.Duration) (*Peer, error) {
	if skew < 0 || skew > MaxSkew {
		return nil, fmt.Errorf("verify client: clock skew allowance %v outside 0 to %v", skew, MaxSkew)
	}
	if len(rawCerts) != 1 {
		return nil, fmt.Errorf("%w: %d certificates, want exactly one", ErrMalformed, len(rawCerts))
	}
	cert, err := x509.ParseCertificate(rawCerts[0])
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	if err := checkSelfSigned(cert); err != nil {
		return nil, err
	}
	p, cred, err := decode(cert)
	if err != nil {
		return nil, err
	}
	id := guests(p.Guest)
	if id == nil {
		return nil, fmt.Errorf("%w: %s", ErrUnknownGuest, p.Guest)
	}
	if id.Guest != p.Guest {
		return nil, fmt.Errorf("%w: %s (the host's guest list returned guest %s)", ErrUnknownGuest, p.Guest, id.Guest)
	}
	switch c := cred.(type) {
	case *AgentCredential:
		if err := checkTime(c.NotBefore, c.NotAfter, now, skew); err != nil {
			return nil, err
		}
		err := id.Agent.Verify(AgentDomain, c.Body(), c.Signature)
		if err != nil && writers != nil {
			for _, k := range writers(p.Guest) {
				if k.Verify(AgentDomain, c.Body(), c.Signature) == nil {
					err = nil
					break
				}
			}
		}
		if err != nil {
			return nil, fmt.Errorf("%w: agent credential for guest %s is not signed by its agent key %s: %w", ErrBadSignature, p.Guest, id.Agent.Fingerprint(), err)
		}
	case *Grant:
		if err := checkTime(c.NotBefore, c.NotAfter, now, skew); err != nil {
			return nil, err
		}
		if err := checkGrant(c, id); err != nil {
			return nil, err
		}
	}
	return p, nil
}

// checkSelfSigned checks that cert follows the profile: an Ed25519 key that
// signed the certificate itself, and no critical extension this package does
// not know.
func checkSelfSigned(cert *x509.Certificate) error {
	if _, ok := cert.PublicKey.(ed25519.PublicKey); !ok || cert.SignatureAlgorithm != x509.PureEd25519 {
		return fmt.Errorf("%w: key must be Ed25519 and self-signed with it", ErrMalformed)
	}
	if len(cert.UnhandledCriticalExtensions) != 0 {
		return fmt.Errorf("%w: unknown critical extension %v", ErrMalformed, cert.UnhandledCriticalExtensions[0])
	}
	if err := cert.CheckSignature(cert.SignatureAlgorithm, cert.RawTBSCertificate, cert.Signature); err != nil {
		return fmt.Errorf("%w: certificate self-signature: %v", ErrBadSignature, err)
	}
	return nil
}

// decode extracts the credential of cert and the Peer it describes, and
// checks that the credential vouches for the certificate's own key. It checks
// no signature.
func decode(cert *x509.Certificate) (*Peer, any, error) {
	var value []byte
	found := 0
	for _, e := range cert.Extensions {
		if e.Id.Equal(CredentialOID) {
			found++
			if e.Critical {
				return nil, nil, fmt.Errorf("%w: credential extension marked critical", ErrMalformed)
			}
			value = e.Value
		}
	}
	if found != 1 {
		return nil, nil, fmt.Errorf("%w: %d credential extensions (OID %v), want one", ErrMalformed, found, CredentialOID)
	}
	cred, err := parseExtension(value)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	key, ok := cert.PublicKey.(ed25519.PublicKey)
	if !ok {
		return nil, nil, fmt.Errorf("%w: key must be Ed25519", ErrMalformed)
	}
	p := &Peer{Fingerprint: SPKIFingerprint(cert)}
	var credKey ed25519.PublicKey
	switch c := cred.(type) {
	case *AgentCredential:
		p.Guest, p.Role, p.Serial, p.NotAfter, p.agent = c.Guest, Agent, c.Serial, c.NotAfter, c
		credKey = c.Key
	case *Grant:
		p.Guest, p.Role, p.GrantID, p.Dataset, p.NotAfter = c.Guest, Reader, c.ID, c.Dataset, c.NotAfter
		credKey = c.Reader
	}
	if !credKey.Equal(key) {
		return nil, nil, fmt.Errorf("%w: the %s credential names TLS key %s, the certificate holds %s", ErrKeyMismatch, p.Role, keyFingerprint(credKey), p.Fingerprint)
	}
	return p, cred, nil
}

// parseExtension decodes the extension value: a DER OCTET STRING holding an
// agent credential or a grant, told apart by magic.
func parseExtension(value []byte) (any, error) {
	var b []byte
	rest, err := asn1.Unmarshal(value, &b)
	if err != nil || len(rest) != 0 {
		return nil, wire.Corruptf("credential extension is not one DER OCTET STRING")
	}
	if again, err := asn1.Marshal(b); err != nil || string(again) != string(value) {
		return nil, wire.Corruptf("credential extension is not in DER form")
	}
	switch {
	case len(b) >= len(AgentMagic) && string(b[:len(AgentMagic)]) == AgentMagic:
		return ParseAgentCredential(b)
	case len(b) >= len(GrantMagic) && string(b[:len(GrantMagic)]) == GrantMagic:
		return ParseGrant(b)
	}
	return nil, wire.Corruptf("credential has neither magic %q nor %q", AgentMagic, GrantMagic)
}

// checkTime accepts now in [notBefore - skew, notAfter + skew).
func checkTime(nb, na, now time.Time, skew time.Duration) error {
	if now.Before(nb.Add(-skew)) {
		return fmt.Errorf("%w: valid from %s, now %s (allowed skew %v)", ErrNotYetValid, nb.Format(time.RFC3339), now.UTC().Format(time.RFC3339), skew)
	}
	if !now.Before(na.Add(skew)) {
		return fmt.Errorf("%w: valid until %s, now %s (allowed skew %v)", ErrExpired, na.Format(time.RFC3339), now.UTC().Format(time.RFC3339), skew)
	}
	return nil
}

// checkGrant checks g's signatures against the custodians that id lists for
// g.Dataset. Cheap checks come first, so a grant with too few custodians
// costs no signature verification.
func checkGrant(g *Grant, id *guest.Identity) error {
	d := id.Dataset(g.Dataset)
	if d == nil {
		return fmt.Errorf("%w: guest %s has no dataset %q", ErrUnknownDataset, g.Guest, g.Dataset)
	}
	distinct := make(map[string]bool, len(g.Signatures))
	for i, s := range g.Signatures {
		fp := s.Custodian.Fingerprint()
		ref := refByFingerprint(d, fp)
		if ref == nil {
			return fmt.Errorf("%w: signature %d is by key %s, not one of the %d custodians of %s", ErrNotCustodian, i, fp, len(d.Custodians), d.Name)
		}
		if ref.Name != s.Custodian.Name {
			return fmt.Errorf("%w: signature %d names custodian %s, the dataset calls key %s %s", ErrNotCustodian, i, s.Custodian.Name, fp, ref.Name)
		}
		distinct[fp] = true
	}
	if len(distinct) < d.Threshold {
		return fmt.Errorf("%w: %d distinct custodians of %s signed, %d needed", ErrBelowThreshold, len(distinct), d.Name, d.Threshold)
	}
	body := g.Body()
	for i, s := range g.Signatures {
		if err := s.Custodian.Verifier.Verify(GrantDomain, body, s.Signature); err != nil {
			return fmt.Errorf("%w: grant signature %d (custodian %s): %w", ErrBadSignature, i, s.Custodian.Name, err)
		}
	}
	return nil
}

func refByFingerprint(d *guest.Dataset, fp string) *guest.CustodianRef {
	for i := range d.Custodians {
		if d.Custodians[i].Fingerprint == fp {
			return &d.Custodians[i]
		}
	}
	return nil
}

// VerifyConnection returns a tls.Config.VerifyConnection for a host (see
// ServerConfig, which sets it with ClientAuth tls.RequestClientCert). It
// refuses a handshake whose client certificate Verify rejects, so the client
// sees a bad_certificate alert and no handler runs. It lets a client that
// presents no certificate through: a host serves such clients only its public
// paths. Go calls it on resumed sessions too, so a resumption is checked
// against the current clock and guest list. A nil now means time.Now.
func VerifyConnection(guests func(guest.ID) *guest.Identity, now func() time.Time, skew time.Duration) func(tls.ConnectionState) error {
	return VerifyConnectionWriters(guests, nil, now, skew)
}

// VerifyConnectionWriters is VerifyConnection with VerifyWriters' extra
// writer keys.
func VerifyConnectionWriters(guests func(guest.ID) *guest.Identity, writers Writers, now func() time.Time, skew time.Duration) func(tls.ConnectionState) error {
	if now == nil {
		now = time.Now
	}
	return func(cs tls.ConnectionState) error {
		if len(cs.PeerCertificates) == 0 {
			return nil
		}
		raw := make([][]byte, len(cs.PeerCertificates))
		for i, c := range cs.PeerCertificates {
			raw[i] = c.Raw
		}
		if _, err := VerifyWriters(raw, guests, writers, now(), skew); err != nil {
			return fmt.Errorf("client certificate refused: %w", err)
		}
		return nil
	}
}

// PeerFrom returns the client of a connection whose handshake VerifyConnection
// accepted (r.TLS in an HTTP handler), or false if the client presented no
// certificate. It re-reads the credential from the certificate but checks no
// signature, guest or time: it is sound only on a connection from a
// tls.Config whose VerifyConnection is this package's (ServerConfig).
func PeerFrom(cs *tls.ConnectionState) (*Peer, bool) {
	if cs == nil || len(cs.PeerCertificates) != 1 {
		return nil, false
	}
	p, _, err := decode(cs.PeerCertificates[0])
	if err != nil {
		return nil, false
	}
	return p, true
}
