package access

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/embassy-project/embassy/internal/custodian"
	"github.com/embassy-project/embassy/internal/guest"
	"github.com/embassy-project/embassy/internal/sig"
	"github.com/embassy-project/embassy/internal/wire"
)

// Magic numbers, signature domains and limits of the credentials.
const (
	AgentMagic = "EMBAGNT1"
	GrantMagic = "EMBGRNT1"

	AgentDomain = "host-access-agent"
	GrantDomain = "host-access-read-grant"

	// MaxAgentLifetime bounds an agent credential's window: a stolen agent
	// TLS key is useless after it, and agents make a new one per process.
	MaxAgentLifetime = 7 * 24 * time.Hour
	// MaxGrantLifetime bounds a read grant's window.
	MaxGrantLifetime = 366 * 24 * time.Hour
	// MaxReasonLen is the longest grant reason, in bytes.
	MaxReasonLen = 256
	// MaxSignatures bounds a grant's signatures. Each takes about 6.6 KB, and
	// the grant travels in the TLS Certificate message, which Go's TLS stack
	// caps at 256 KiB; a dataset whose threshold exceeds this cannot issue
	// read grants in version 1.
	MaxSignatures = 32
	// MaxGrantSize bounds what ParseGrant accepts.
	MaxGrantSize = 256 << 10
	// maxUnix bounds encoded times (Unix seconds): far beyond any real
	// expiry, small enough that no time arithmetic overflows.
	maxUnix = 1 << 40

	maxAgentCredentialSize = len(AgentMagic) + 16 + 16 + ed25519.PublicKeySize + 2*maxTimeLen + sig.SignatureSize
	maxTimeLen             = 6 // bytes in the uvarint of a value < 2^40
	signatureEntryMin      = 1 + 1 + custodian.KEMPublicKeySize + sig.PublicKeySize + sig.SignatureSize
)

// AgentCredential binds a TLS key to the home agent of a guest for a window
// of time. It is signed by the guest's agent key.
type AgentCredential struct {
	Guest     guest.ID
	Serial    [16]byte          // random; names this credential in host logs
	Key       ed25519.PublicKey // the TLS key it vouches for
	NotBefore time.Time         // whole seconds
	NotAfter  time.Time         // whole seconds, after NotBefore
	Signature []byte            // hybrid signature over Body, domain AgentDomain
}

// Validate checks every rule ParseAgentCredential enforces except the
// signature's length.
func (c *AgentCredential) Validate() error {
	if c.Guest.IsZero() {
		return errors.New("guest id is zero")
	}
	if c.Serial == [16]byte{} {
		return errors.New("serial is zero")
	}
	if len(c.Key) != ed25519.PublicKeySize {
		return fmt.Errorf("tls key is %d bytes, want %d", len(c.Key), ed25519.PublicKeySize)
	}
	return checkWindow(c.NotBefore, c.NotAfter, MaxAgentLifetime)
}

// Body returns the signed part of the encoding: everything but the signature.
func (c *AgentCredential) Body() []byte {
	w := wire.NewWriter(make([]byte, 0, maxAgentCredentialSize))
	w.Fixed([]byte(AgentMagic))
	w.Fixed(c.Guest[:])
	w.Fixed(c.Serial[:])
	w.Fixed(c.Key)
	w.Uvarint(uint64(c.NotBefore.Unix()))
	w.Uvarint(uint64(c.NotAfter.Unix()))
	return w.Bytes()
}

// Marshal returns the encoding: Body followed by the signature. c must be
// valid and signed.
func (c *AgentCredential) Marshal() []byte {
	return append(c.Body(), c.Signature...)
}

// ParseAgentCredential decodes an agent credential. It does not verify the
// signature; Verify does, with the guest's agent key.
func ParseAgentCredential(b []byte) (*AgentCredential, error) {
	if len(b) > maxAgentCredentialSize {
		return nil, wire.Corruptf("agent credential: %d bytes, limit %d", len(b), maxAgentCredentialSize)
	}
	r := wire.NewReader(b, "agent credential")
	c := &AgentCredential{}
	r.Magic(AgentMagic)
	r.FixedInto(c.Guest[:])
	r.FixedInto(c.Serial[:])
	c.Key = bytes.Clone(r.Fixed(ed25519.PublicKeySize))
	c.NotBefore = readTime(r, "not-before")
	c.NotAfter = readTime(r, "not-after")
	c.Signature = bytes.Clone(r.Fixed(sig.SignatureSize))
	if err := r.Done(); err != nil {
		return nil, err
	}
	if err := c.Validate(); err != nil {
		return nil, fmt.Errorf("%w: agent credential: %w", wire.ErrCorrupt, err)
	}
	return c, nil
}

// Grant is a read grant: the custodians of one of a guest's datasets let the
// holder of the reader key read the guest's store for a window of time. A
// grant with fewer signatures than the dataset's threshold is a request still
// travelling between custodians.
type Grant struct {
	Guest     guest.ID
	Dataset   string            // the dataset whose custodians sign
	ID        [16]byte          // random; names the grant in host logs and revocation lists
	Reader    ed25519.PublicKey // the reader's TLS key
	NotBefore time.Time         // whole seconds
	NotAfter  time.Time         // whole seconds, after NotBefore
	Reason    string            // 1 to MaxReasonLen bytes of printable UTF-8, shown to custodians and logged by hosts

	Signatures []GrantSignature
}

// GrantSignature is one custodian's signature on a grant, with the
// custodian's public keys so that a host can check who signed.
type GrantSignature struct {
	Custodian *custodian.Recipient
	Signature []byte // hybrid signature over Grant.Body, domain GrantDomain
}

// NewGrantRequest returns an unsigned grant for reading guest g's store,
// justified to the custodians of dataset by reason, valid from notBefore to
// notAfter (truncated to whole seconds), with a fresh reader TLS key. Keep
// readerKey secret (MarshalReaderKey) and pass the grant to the custodians,
// each of whom adds a signature with Sign.
func NewGrantRequest(g guest.ID, dataset string, reason string, notBefore, notAfter time.Time) (*Grant, ed25519.PrivateKey, error) {
	pub, priv, err := ed25519.GenerateKey(nil)
	if err != nil {
		return nil, nil, fmt.Errorf("new grant request: generate reader key: %w", err)
	}
	gr := &Grant{
		Guest:     g,
		Dataset:   dataset,
		Reader:    pub,
		NotBefore: time.Unix(notBefore.Unix(), 0).UTC(),
		NotAfter:  time.Unix(notAfter.Unix(), 0).UTC(),
		Reason:    reason,
	}
	if _, err := rand.Read(gr.ID[:]); err != nil {
		return nil, nil, fmt.Errorf("new grant request: %w", err)
	}
	if err := gr.Validate(); err != nil {
		return nil, nil, fmt.Errorf("new grant request: %w", err)
	}
	return gr, priv, nil
}

// Validate checks every rule ParseGrant enforces.
func (g *Grant) Validate() error {
	if g.Guest.IsZero() {
		return errors.New("guest id is zero")
	}
	if err := guest.ValidName(g.Dataset); err != nil {
		return fmt.Errorf("dataset name: %w", err)
	}
	if g.ID == [16]byte{} {
		return errors.New("grant id is zero")
	}
	if len(g.Reader) != ed25519.PublicKeySize {
		return fmt.Errorf("reader key is %d bytes, want %d", len(g.Reader), ed25519.PublicKeySize)
	}
	if err := checkWindow(g.NotBefore, g.NotAfter, MaxGrantLifetime); err != nil {
		return err
	}
	if err := checkReason(g.Reason); err != nil {
		return err
	}
	if len(g.Signatures) > MaxSignatures {
		return fmt.Errorf("%d signatures, limit %d", len(g.Signatures), MaxSignatures)
	}
	for i, s := range g.Signatures {
		if s.Custodian == nil || s.Custodian.KEM == nil || s.Custodian.Verifier.IsZero() {
			return fmt.Errorf("signature %d: no custodian keys", i)
		}
		if err := custodian.ValidName(s.Custodian.Name); err != nil {
			return fmt.Errorf("signature %d: %w", i, err)
		}
		if len(s.Signature) != sig.SignatureSize {
			return fmt.Errorf("signature %d is %d bytes, want %d", i, len(s.Signature), sig.SignatureSize)
		}
	}
	return nil
}

func checkReason(s string) error {
	if len(s) == 0 || len(s) > MaxReasonLen {
		return fmt.Errorf("reason must be 1 to %d bytes", MaxReasonLen)
	}
	if !utf8.ValidString(s) {
		return errors.New("reason is not UTF-8")
	}
	for _, r := range s {
		if !unicode.IsPrint(r) {
			return errors.New("reason holds a control or non-printable character")
		}
	}
	return nil
}

func checkWindow(nb, na time.Time, max time.Duration) error {
	switch {
	case nb.Nanosecond() != 0 || na.Nanosecond() != 0:
		return errors.New("validity times must be whole seconds")
	case nb.Unix() < 1 || na.Unix() >= maxUnix:
		return errors.New("validity times out of range")
	case !na.After(nb):
		return errors.New("not-after must be after not-before")
	case na.Sub(nb) > max:
		return fmt.Errorf("validity window %v exceeds the limit %v", na.Sub(nb), max)
	}
	return nil
}

// Body returns the bytes every custodian signs: the encoding up to and
// including the reason.
func (g *Grant) Body() []byte {
	w := wire.NewWriter(make([]byte, 0, 128+len(g.Dataset)+len(g.Reason)))
	g.encodeBody(w)
	return w.Bytes()
}

func (g *Grant) encodeBody(w *wire.Writer) {
	w.Fixed([]byte(GrantMagic))
	w.Fixed(g.Guest[:])
	w.String(g.Dataset)
	w.Fixed(g.ID[:])
	w.Fixed(g.Reader)
	w.Uvarint(uint64(g.NotBefore.Unix()))
	w.Uvarint(uint64(g.NotAfter.Unix()))
	w.String(g.Reason)
}

// Marshal returns the grant file, signatures included. g must be valid.
func (g *Grant) Marshal() []byte {
	w := wire.NewWriter(make([]byte, 0, 128+len(g.Dataset)+len(g.Reason)+len(g.Signatures)*signatureEntryMin))
	g.encodeBody(w)
	w.Uvarint(uint64(len(g.Signatures)))
	for _, s := range g.Signatures {
		w.String(s.Custodian.Name)
		w.Fixed(s.Custodian.KEM.Bytes())
		w.Fixed(s.Custodian.Verifier.Bytes())
		w.Fixed(s.Signature)
	}
	return w.Bytes()
}

// Sign adds c's signature to g. It refuses a second signature by the same
// custodian key, and a grant already holding MaxSignatures signatures. It does
// not check that c is a custodian of the dataset: the host does.
func (g *Grant) Sign(c *custodian.Identity) error {
	if err := g.Validate(); err != nil {
		return fmt.Errorf("sign grant: %w", err)
	}
	r := c.Recipient()
	fp := r.Fingerprint()
	for _, s := range g.Signatures {
		if s.Custodian.Fingerprint() == fp {
			return fmt.Errorf("sign grant: custodian %s (%s) has already signed it", c.Name, fp)
		}
	}
	if len(g.Signatures) >= MaxSignatures {
		return fmt.Errorf("sign grant: it already holds %d signatures, the limit", MaxSignatures)
	}
	s, err := c.Signer.Sign(GrantDomain, g.Body())
	if err != nil {
		return fmt.Errorf("sign grant: %w", err)
	}
	g.Signatures = append(g.Signatures, GrantSignature{Custodian: r, Signature: s})
	return nil
}

// ParseGrant decodes a grant file. It checks the encoding only; Verify checks
// the signatures against a guest identity.
func ParseGrant(b []byte) (*Grant, error) {
	if len(b) > MaxGrantSize {
		return nil, wire.Corruptf("grant: %d bytes, limit %d", len(b), MaxGrantSize)
	}
	r := wire.NewReader(b, "grant")
	g := &Grant{}
	r.Magic(GrantMagic)
	r.FixedInto(g.Guest[:])
	g.Dataset = r.String(guest.MaxNameLen, "dataset name")
	r.FixedInto(g.ID[:])
	g.Reader = bytes.Clone(r.Fixed(ed25519.PublicKeySize))
	g.NotBefore = readTime(r, "not-before")
	g.NotAfter = readTime(r, "not-after")
	g.Reason = r.String(MaxReasonLen, "reason")
	n := int(r.UvarintMax(MaxSignatures, "signature count"))
	if r.Err() == nil && n*signatureEntryMin > r.Remaining() {
		r.Failf("%d signatures need at least %d bytes, %d remain", n, n*signatureEntryMin, r.Remaining())
	}
	type raw struct {
		name      string
		kem, vk   []byte
		signature []byte
	}
	raws := make([]raw, 0, n)
	for i := 0; i < n && r.Err() == nil; i++ {
		var e raw
		e.name = r.String(custodian.MaxNameLen, "custodian name")
		e.kem = r.Fixed(custodian.KEMPublicKeySize)
		e.vk = r.Fixed(sig.PublicKeySize)
		e.signature = bytes.Clone(r.Fixed(sig.SignatureSize))
		raws = append(raws, e)
	}
	if err := r.Done(); err != nil {
		return nil, err
	}
	for i, e := range raws {
		k, err := custodian.KEM().NewPublicKey(e.kem)
		if err != nil || !bytes.Equal(k.Bytes(), e.kem) {
			return nil, wire.Corruptf("grant: signature %d: invalid custodian kem key", i)
		}
		v, err := sig.ParsePublicKey(e.vk)
		if err != nil {
			return nil, wire.Corruptf("grant: signature %d: invalid custodian signing key", i)
		}
		g.Signatures = append(g.Signatures, GrantSignature{
			Custodian: &custodian.Recipient{Name: e.name, KEM: k, Verifier: v},
			Signature: e.signature,
		})
	}
	if err := g.Validate(); err != nil {
		return nil, fmt.Errorf("%w: grant: %w", wire.ErrCorrupt, err)
	}
	return g, nil
}

func readTime(r *wire.Reader, field string) time.Time {
	v := r.UvarintMax(maxUnix-1, field)
	return time.Unix(int64(v), 0).UTC()
}
