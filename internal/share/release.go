package share

// Key release on activation: a custodian re-wraps their plaintext share of a
// dataset secret to the KEM key of the host an activate order names, bound to
// that order, host and dataset, and signs the result. Format:
// docs/spec/share-release.md.
//
//	header (signed; the AEAD's additional data):
//	  magic        8      "EMBRELS1"
//	  custodian    uvarint len || name (at most 64 bytes)
//	  kem key      1216   custodian KEM public key
//	  verifier     1984   custodian signing public key
//	  dataset      uvarint len || guest.Dataset encoding (at most 64 KiB)
//	  order        16     order ID
//	  host         uvarint len || host name (at most 64 bytes)
//	body:
//	  enc          1120   HPKE encapsulated key (MLKEM768-X25519, to the host)
//	  sealed       uvarint len || AES-256-GCM ciphertext of the share (65 + 16 bytes)
//	  signature    3373   hybrid, domain "share-release", over every byte before it

import (
	"bytes"
	"crypto/hpke"
	"encoding/hex"
	"errors"
	"fmt"

	"github.com/embassy-project/embassy/internal/custodian"
	"github.com/embassy-project/embassy/internal/guest"
	"github.com/embassy-project/embassy/internal/sig"
	"github.com/embassy-project/embassy/internal/wire"
)

// Constants of a release file.
const (
	ReleaseMagic  = "EMBRELS1"
	ReleaseInfo   = "embassy v1 share release" // HPKE info string
	ReleaseDomain = "share-release"            // signature domain
	// MaxReleaseSize bounds a release file: the fixed fields, a maximal
	// dataset identity and two maximal names.
	MaxReleaseSize = len(ReleaseMagic) + 2*(1+wire.MaxNameLen) + custodian.KEMPublicKeySize + sig.PublicKeySize +
		3 + guest.MaxDatasetSize + 16 + EncSize + 1 + SealedSize + sig.SignatureSize
)

// Outcomes of releasing and opening a release that callers branch on.
var (
	// ErrNotCustodian: the release is signed by a key that the dataset
	// identity does not list under the release's custodian name.
	ErrNotCustodian = errors.New("release is not from a custodian of this dataset")
	// ErrWrongTarget: the release (or the share being released) is for
	// another dataset, order or host than the one expected; the error is a
	// *TargetError naming which.
	ErrWrongTarget = errors.New("release is for another target")
	// ErrHostKey: a correctly signed release that does not decrypt with the
	// host's KEM key: it was sealed to another key (an old descriptor, or
	// another host's).
	ErrHostKey = errors.New("release is not sealed to this host's key")
)

// TargetError reports which field of a release differs from the target.
// errors.Is(err, ErrWrongTarget) holds.
type TargetError struct {
	Field     string // "dataset", "order" or "host"
	Got, Want string // what the release (or share) says, what the target says
}

func (e *TargetError) Error() string {
	return fmt.Sprintf("%v: %s is %s, want %s", ErrWrongTarget, e.Field, e.Got, e.Want)
}

// Unwrap returns ErrWrongTarget.
func (e *TargetError) Unwrap() error { return ErrWrongTarget }

// ReleaseTarget is what a release is for: one dataset, under one activate
// order, to one host's KEM key. The guest is t.Dataset.Guest.
type ReleaseTarget struct {
	Dataset *guest.Dataset
	Order   [16]byte
	Host    string
	HostKEM hpke.PublicKey
}

func (t ReleaseTarget) validate() error {
	if t.Dataset == nil {
		return errors.New("release target: no dataset identity")
	}
	if t.Order == ([16]byte{}) {
		return errors.New("release target: zero order ID")
	}
	if !wire.ValidName(t.Host) {
		return errors.New("release target: host name must be 1 to 64 characters of a-z, 0-9 and (not first) . _ -")
	}
	return nil
}

// ReleaseHeader is the public, signed part of a release file. (It is not
// called Release because the function is.)
type ReleaseHeader struct {
	Custodian   string // the releasing custodian's name
	Fingerprint string // the fingerprint of the custodian keys embedded in the file
	Dataset     *guest.Dataset
	Order       [16]byte
	Host        string
}

// Release re-wraps the share in shareFile, opened in memory with id, to the
// KEM key of host t.Host for dataset t.Dataset under order t.Order, and signs
// the result with id. The share must be for t.Dataset (byte-identical
// identity) else the error wraps ErrWrongTarget. Release does no I/O; the
// plaintext share exists only in memory and is cleared before it returns.
func Release(shareFile []byte, id *custodian.Identity, t ReleaseTarget) ([]byte, error) {
	if err := t.validate(); err != nil {
		return nil, fmt.Errorf("release: %w", err)
	}
	if t.HostKEM == nil {
		return nil, errors.New("release: no host KEM key")
	}
	if got, want := t.HostKEM.KEM().ID(), custodian.KEM().ID(); got != want {
		return nil, fmt.Errorf("release: host key is for KEM 0x%04x, want MLKEM768-X25519 (0x%04x)", got, want)
	}
	if id == nil {
		return nil, errors.New("release: no custodian identity")
	}
	sh, err := Open(shareFile, []*custodian.Identity{id})
	if err != nil {
		return nil, fmt.Errorf("release: %w", err)
	}
	defer sh.Wipe()
	dsBytes := t.Dataset.Marshal()
	if !bytes.Equal(sh.Dataset.Marshal(), dsBytes) {
		return nil, fmt.Errorf("release: the share file is for another dataset than the order: %w",
			&TargetError{Field: "dataset", Got: describe(sh.Dataset), Want: describe(t.Dataset)})
	}
	out, err := sealRelease(id, dsBytes, t.Order, t.Host, sh.data, t.HostKEM)
	if err != nil {
		return nil, fmt.Errorf("release: %w", err)
	}
	return out, nil
}

// sealRelease builds a release file of part. It checks nothing: tests use it
// to make releases Release would refuse.
func sealRelease(id *custodian.Identity, dataset []byte, order [16]byte, host string, part []byte, pk hpke.PublicKey) ([]byte, error) {
	r := id.Recipient()
	w := wire.NewWriter(make([]byte, 0, len(ReleaseMagic)+1+len(r.Name)+custodian.KEMPublicKeySize+sig.PublicKeySize+
		3+len(dataset)+16+1+len(host)+EncSize+1+SealedSize+sig.SignatureSize))
	w.Fixed([]byte(ReleaseMagic))
	w.String(r.Name)
	w.Fixed(r.KEM.Bytes())
	w.Fixed(r.Verifier.Bytes())
	w.LenBytes(dataset)
	w.Fixed(order[:])
	w.String(host)
	enc, ct, err := sealPart(pk, ReleaseInfo, bytes.Clone(w.Bytes()), part)
	if err != nil {
		return nil, err
	}
	w.Fixed(enc)
	w.LenBytes(ct)
	s, err := id.Signer.Sign(ReleaseDomain, w.Bytes())
	if err != nil {
		return nil, fmt.Errorf("sign release: %w", err)
	}
	w.Fixed(s)
	return w.Bytes(), nil
}

// parsedRelease is a release file split into its parts, signature checked.
type parsedRelease struct {
	header    ReleaseHeader
	recipient *custodian.Recipient
	dsBytes   []byte
	aad       []byte
	enc       []byte
	sealed    []byte
}

// parseRelease parses file and verifies its signature against the key it
// embeds. Every failure wraps wire.ErrCorrupt (a bad signature also wraps
// sig.ErrBadSignature).
func parseRelease(file []byte) (*parsedRelease, error) {
	if len(file) > MaxReleaseSize {
		return nil, wire.Corruptf("release file: %d bytes, more than %d", len(file), MaxReleaseSize)
	}
	r := wire.NewReader(file, "release file")
	r.Magic(ReleaseMagic)
	name := r.String(custodian.MaxNameLen, "custodian name")
	kemKey := r.Fixed(custodian.KEMPublicKeySize)
	verifier := r.Fixed(sig.PublicKeySize)
	dsBytes := r.LenBytes(guest.MaxDatasetSize, "dataset identity")
	var order [16]byte
	r.FixedInto(order[:])
	host := r.String(wire.MaxNameLen, "host name")
	hdrLen := r.Offset()
	enc := r.Fixed(EncSize)
	sealed := r.LenBytes(SealedSize, "sealed share")
	signed := r.Offset()
	signature := r.Fixed(sig.SignatureSize)
	if err := r.Done(); err != nil {
		return nil, err
	}
	if len(sealed) != SealedSize {
		return nil, wire.Corruptf("release file: sealed share is %d bytes, want %d", len(sealed), SealedSize)
	}
	if err := custodian.ValidName(name); err != nil {
		return nil, fmt.Errorf("%w: release file: %w", wire.ErrCorrupt, err)
	}
	if !wire.ValidName(host) {
		return nil, wire.Corruptf("release file: host name is not a valid name")
	}
	if order == ([16]byte{}) {
		return nil, wire.Corruptf("release file: zero order ID")
	}
	k, err := custodian.KEM().NewPublicKey(kemKey)
	if err != nil || !bytes.Equal(k.Bytes(), kemKey) {
		return nil, wire.Corruptf("release file: invalid custodian KEM key")
	}
	v, err := sig.ParsePublicKey(verifier)
	if err != nil {
		return nil, wire.Corruptf("release file: invalid custodian signing key")
	}
	ds, err := guest.ParseDataset(dsBytes)
	if err != nil {
		return nil, fmt.Errorf("release file: %w", err)
	}
	if err := v.Verify(ReleaseDomain, file[:signed], signature); err != nil {
		return nil, fmt.Errorf("%w: release file from custodian %s: %w", wire.ErrCorrupt, name, err)
	}
	rcpt := &custodian.Recipient{Name: name, KEM: k, Verifier: v}
	return &parsedRelease{
		header: ReleaseHeader{
			Custodian:   name,
			Fingerprint: rcpt.Fingerprint(),
			Dataset:     ds,
			Order:       order,
			Host:        host,
		},
		recipient: rcpt,
		dsBytes:   dsBytes,
		aad:       file[:hdrLen],
		enc:       enc,
		sealed:    sealed,
	}, nil
}

// checkCustodian returns an error wrapping ErrNotCustodian unless ds lists
// h's custodian with h's key fingerprint.
func checkCustodian(h *ReleaseHeader, ds *guest.Dataset) error {
	ref := ds.Custodian(h.Custodian)
	if ref == nil {
		return fmt.Errorf("%w: %s (key %s) is not listed in %s", ErrNotCustodian, h.Custodian, h.Fingerprint, describe(ds))
	}
	if ref.Fingerprint != h.Fingerprint {
		return fmt.Errorf("%w: the release is signed by key %s, %s lists %s with key %s", ErrNotCustodian, h.Fingerprint, describe(ds), h.Custodian, ref.Fingerprint)
	}
	return nil
}

// InspectRelease parses a release file, verifies its signature against the
// custodian key it embeds and checks that the dataset identity it carries
// lists that custodian with that key. It does not decrypt. Parse and
// signature failures wrap wire.ErrCorrupt; an unlisted custodian or key
// wraps ErrNotCustodian.
func InspectRelease(file []byte) (*ReleaseHeader, error) {
	p, err := parseRelease(file)
	if err != nil {
		return nil, err
	}
	if err := checkCustodian(&p.header, p.header.Dataset); err != nil {
		return nil, err
	}
	return &p.header, nil
}

// OpenRelease decrypts a release file with the host's KEM private key and
// returns the share, usable by Combine, after checking in this order: the
// file parses (wire.ErrCorrupt); its signature verifies under the custodian
// key it embeds (wire.ErrCorrupt); t.Dataset lists that custodian with that
// key (ErrNotCustodian); the release's dataset identity, order and host equal
// t's (a *TargetError, ErrWrongTarget); it decrypts under hostKEM
// (ErrHostKey); the share has the size and x-coordinate the threshold
// requires (wire.ErrCorrupt). t.HostKEM, if set, must be hostKEM's public
// key.
func OpenRelease(file []byte, hostKEM hpke.PrivateKey, t ReleaseTarget) (*Share, error) {
	if err := t.validate(); err != nil {
		return nil, fmt.Errorf("open release: %w", err)
	}
	if hostKEM == nil {
		return nil, errors.New("open release: no host KEM key")
	}
	if t.HostKEM != nil && !bytes.Equal(t.HostKEM.Bytes(), hostKEM.PublicKey().Bytes()) {
		return nil, errors.New("open release: the target's host KEM key is not the public half of the key given")
	}
	p, err := parseRelease(file)
	if err != nil {
		return nil, err
	}
	h := p.header
	if err := checkCustodian(&h, t.Dataset); err != nil {
		return nil, err
	}
	if !bytes.Equal(p.dsBytes, t.Dataset.Marshal()) {
		return nil, fmt.Errorf("release from %s: %w", h.Custodian, &TargetError{Field: "dataset", Got: describe(h.Dataset), Want: describe(t.Dataset)})
	}
	if h.Order != t.Order {
		return nil, fmt.Errorf("release from %s: %w", h.Custodian, &TargetError{Field: "order", Got: hex.EncodeToString(h.Order[:]), Want: hex.EncodeToString(t.Order[:])})
	}
	if h.Host != t.Host {
		return nil, fmt.Errorf("release from %s: %w", h.Custodian, &TargetError{Field: "host", Got: h.Host, Want: t.Host})
	}
	kdf, aead := suite()
	rcpt, err := hpke.NewRecipient(p.enc, hostKEM, kdf, aead, []byte(ReleaseInfo))
	if err != nil {
		return nil, fmt.Errorf("%w: release from %s: bad encapsulated key", ErrHostKey, h.Custodian)
	}
	data, err := rcpt.Open(p.aad, p.sealed)
	if err != nil {
		return nil, fmt.Errorf("%w: release from %s for host %s does not decrypt: it was sealed to another key (check the host descriptor the custodian used)", ErrHostKey, h.Custodian, h.Host)
	}
	if len(data) != ShareSize {
		clear(data)
		return nil, wire.Corruptf("release from %s: %d plaintext bytes, want %d", h.Custodian, len(data), ShareSize)
	}
	x := data[ShareSize-1]
	if (h.Dataset.Threshold == 1) != (x == 0) {
		clear(data)
		return nil, wire.Corruptf("release from %s: x-coordinate %d does not fit threshold %d", h.Custodian, x, h.Dataset.Threshold)
	}
	return &Share{Header: Header{Custodian: h.Custodian, Fingerprint: h.Fingerprint, Dataset: h.Dataset}, data: data}, nil
}
