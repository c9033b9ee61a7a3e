package share

import (
	"bytes"
	"crypto/hpke"
	"encoding/hex"
	"errors"
	"fmt"

	"github.com/embassy-project/embassy/internal/custodian"
	"github.com/embassy-project/embassy/internal/guest"
	"github.com/embassy-project/embassy/internal/wire"
	"github.com/openbao/openbao/sdk/v2/helper/shamir"
)

// Magic and sizes of a share file.
const (
	Magic      = "EMBSHAR1"
	Info       = "embassy v1 share" // HPKE info string
	ShareSize  = guest.SecretSize + shamir.ShareOverhead
	EncSize    = 1120 // MLKEM768-X25519 encapsulated key
	SealedSize = ShareSize + 16
)

// Outcomes callers branch on.
var (
	// ErrNoIdentity: none of the identities given is the custodian a share
	// file is for.
	ErrNoIdentity = errors.New("no identity for this share")
	// ErrMixed: the shares carry different dataset identities (another
	// dataset, another guest, or a forged identity).
	ErrMixed = errors.New("shares are for different dataset identities")
	// ErrDuplicate: two shares of the same custodian.
	ErrDuplicate = errors.New("two shares from the same custodian")
	// ErrBelowThreshold: fewer shares than the dataset's threshold; the
	// error is a *BelowThresholdError.
	ErrBelowThreshold = errors.New("not enough shares")
	// ErrWrongShares: the shares agree on a dataset identity but do not
	// rebuild its secret (a forged or damaged share).
	ErrWrongShares = errors.New("shares do not rebuild the dataset secret")
)

// BelowThresholdError reports how many shares were given and how many the
// dataset needs. errors.Is(err, ErrBelowThreshold) holds.
type BelowThresholdError struct {
	Have, Need int
}

func (e *BelowThresholdError) Error() string {
	if e.Need == 0 {
		return fmt.Sprintf("%v: no shares given", ErrBelowThreshold)
	}
	return fmt.Sprintf("%v: have %d, the dataset needs %d", ErrBelowThreshold, e.Have, e.Need)
}

// Unwrap returns ErrBelowThreshold.
func (e *BelowThresholdError) Unwrap() error { return ErrBelowThreshold }

func suite() (hpke.KDF, hpke.AEAD) { return hpke.HKDFSHA256(), hpke.AES256GCM() }

// Header is the public part of a share file.
type Header struct {
	Custodian   string         // name of the custodian the share is for
	Fingerprint string         // that custodian's key fingerprint
	Dataset     *guest.Dataset // the dataset identity the share belongs to
}

// Share is an opened share: its header and the plaintext Shamir share.
type Share struct {
	Header
	data []byte // ShareSize bytes: y-values || x
}

// Wipe clears the plaintext share. The Share is unusable afterwards.
func (s *Share) Wipe() {
	clear(s.data)
	s.data = nil
}

// Split splits s threshold-of-n as ds says and returns one encrypted share
// file per custodian, in the order of custodians, which must match
// ds.Custodians by name and fingerprint. s must be ds's secret.
func Split(ds *guest.Dataset, s *guest.Secret, custodians []*custodian.Recipient) ([][]byte, error) {
	if err := ds.Validate(); err != nil {
		return nil, fmt.Errorf("split: dataset identity: %w", err)
	}
	if err := ds.Check(s); err != nil {
		return nil, fmt.Errorf("split: %w", err)
	}
	if len(custodians) != len(ds.Custodians) {
		return nil, fmt.Errorf("split: %d custodian keys for %d custodians in the dataset identity", len(custodians), len(ds.Custodians))
	}
	for i, c := range custodians {
		ref := ds.Custodians[i]
		if c.Name != ref.Name || c.Fingerprint() != ref.Fingerprint {
			return nil, fmt.Errorf("split: custodian key %d is %s (%s), the dataset identity names %s (%s)", i, c.Name, c.Fingerprint(), ref.Name, ref.Fingerprint)
		}
	}
	secret := s.Bytes()
	defer clear(secret)
	parts, err := splitSecret(secret, len(custodians), ds.Threshold)
	if err != nil {
		return nil, fmt.Errorf("split: %w", err)
	}
	defer func() {
		for _, p := range parts {
			clear(p)
		}
	}()
	dsBytes := ds.Marshal()
	files := make([][]byte, len(custodians))
	for i, c := range custodians {
		files[i], err = seal(c.Name, c.Fingerprint(), dsBytes, parts[i], c.KEM)
		if err != nil {
			return nil, fmt.Errorf("split: share for %s: %w", c.Name, err)
		}
	}
	return files, nil
}

// splitSecret returns n shares of secret, threshold of which rebuild it.
func splitSecret(secret []byte, n, threshold int) ([][]byte, error) {
	if threshold == 1 {
		parts := make([][]byte, n)
		for i := range parts {
			parts[i] = append(bytes.Clone(secret), 0)
		}
		return parts, nil
	}
	return shamir.Split(secret, n, threshold)
}

// seal builds one share file.
func seal(name, fingerprint string, dataset, part []byte, pk hpke.PublicKey) ([]byte, error) {
	fp, err := hex.DecodeString(fingerprint)
	if err != nil || len(fp) != 16 {
		return nil, errors.New("bad custodian fingerprint")
	}
	w := wire.NewWriter(make([]byte, 0, len(Magic)+1+len(name)+16+3+len(dataset)+EncSize+1+SealedSize))
	w.Fixed([]byte(Magic))
	w.String(name)
	w.Fixed(fp)
	w.LenBytes(dataset)
	enc, ct, err := sealPart(pk, Info, w.Bytes(), part)
	if err != nil {
		return nil, err
	}
	w.Fixed(enc)
	w.LenBytes(ct)
	return w.Bytes(), nil
}

// sealPart HPKE-seals a plaintext share part to pk with the header as AAD
// and checks the sizes the formats fix.
func sealPart(pk hpke.PublicKey, info string, header, part []byte) (enc, ct []byte, err error) {
	kdf, aead := suite()
	enc, sender, err := hpke.NewSender(pk, kdf, aead, []byte(info))
	if err != nil {
		return nil, nil, fmt.Errorf("hpke sender: %w", err)
	}
	ct, err = sender.Seal(header, part)
	if err != nil {
		return nil, nil, fmt.Errorf("hpke seal: %w", err)
	}
	if len(enc) != EncSize || len(ct) != SealedSize {
		return nil, nil, fmt.Errorf("hpke produced %d+%d bytes, want %d+%d", len(enc), len(ct), EncSize, SealedSize)
	}
	return enc, ct, nil
}

// parsed is a share file split into its parts.
type parsed struct {
	header Header
	aad    []byte // the header bytes
	enc    []byte
	sealed []byte
}

func parse(file []byte) (*parsed, error) {
	r := wire.NewReader(file, "share file")
	r.Magic(Magic)
	name := r.String(custodian.MaxNameLen, "custodian name")
	fp := r.Fixed(16)
	dsBytes := r.LenBytes(guest.MaxDatasetSize, "dataset identity")
	hdrLen := r.Offset()
	enc := r.Fixed(EncSize)
	sealed := r.LenBytes(SealedSize, "sealed share")
	if err := r.Done(); err != nil {
		return nil, err
	}
	if len(sealed) != SealedSize {
		return nil, wire.Corruptf("share file: sealed share is %d bytes, want %d", len(sealed), SealedSize)
	}
	if err := custodian.ValidName(name); err != nil {
		return nil, fmt.Errorf("%w: share file: %w", wire.ErrCorrupt, err)
	}
	ds, err := guest.ParseDataset(dsBytes)
	if err != nil {
		return nil, fmt.Errorf("share file: %w", err)
	}
	p := &parsed{
		header: Header{Custodian: name, Fingerprint: hex.EncodeToString(fp), Dataset: ds},
		aad:    file[:hdrLen],
		enc:    enc,
		sealed: sealed,
	}
	ref := ds.Custodian(name)
	if ref == nil {
		return nil, wire.Corruptf("share file: custodian %s is not listed in dataset %s", name, ds.Name)
	}
	if ref.Fingerprint != p.header.Fingerprint {
		return nil, wire.Corruptf("share file: custodian %s has key %s here, the dataset identity says %s", name, p.header.Fingerprint, ref.Fingerprint)
	}
	return p, nil
}

// Inspect parses a share file's public header without decrypting it.
func Inspect(file []byte) (*Header, error) {
	p, err := parse(file)
	if err != nil {
		return nil, err
	}
	return &p.header, nil
}

// Open decrypts file with whichever of ids is its custodian (same name and
// key fingerprint). It returns an error wrapping ErrNoIdentity, naming the
// custodian the file is for, if there is none; parse and authentication
// failures wrap wire.ErrCorrupt.
func Open(file []byte, ids []*custodian.Identity) (*Share, error) {
	p, err := parse(file)
	if err != nil {
		return nil, err
	}
	h := p.header
	var id *custodian.Identity
	var other []string
	for _, c := range ids {
		if c.Name != h.Custodian {
			continue
		}
		if fp := c.Fingerprint(); fp != h.Fingerprint {
			other = append(other, fp)
			continue
		}
		id = c
		break
	}
	if id == nil {
		if len(other) > 0 {
			return nil, fmt.Errorf("%w: share is for custodian %s with key %s; the identity given for %s has key %v", ErrNoIdentity, h.Custodian, h.Fingerprint, h.Custodian, other)
		}
		return nil, fmt.Errorf("%w: share is for custodian %s (key %s) of dataset %s", ErrNoIdentity, h.Custodian, h.Fingerprint, h.Dataset.Name)
	}
	kdf, aead := suite()
	rcpt, err := hpke.NewRecipient(p.enc, id.KEM, kdf, aead, []byte(Info))
	if err != nil {
		return nil, wire.Corruptf("share for %s: bad encapsulated key", h.Custodian)
	}
	data, err := rcpt.Open(p.aad, p.sealed)
	if err != nil {
		return nil, wire.Corruptf("share for %s: decryption failed: the file was altered or not sealed to this key", h.Custodian)
	}
	if len(data) != ShareSize {
		clear(data)
		return nil, wire.Corruptf("share for %s: %d plaintext bytes, want %d", h.Custodian, len(data), ShareSize)
	}
	x := data[ShareSize-1]
	if (h.Dataset.Threshold == 1) != (x == 0) {
		clear(data)
		return nil, wire.Corruptf("share for %s: x-coordinate %d does not fit threshold %d", h.Custodian, x, h.Dataset.Threshold)
	}
	return &Share{Header: h, data: data}, nil
}

// Combine rebuilds the dataset secret from shares. All shares must carry
// byte-identical dataset identities (else ErrMixed), come from distinct
// custodians (else ErrDuplicate), number at least the dataset's threshold
// (else a *BelowThresholdError), and rebuild a secret that passes the
// identity's Check (else ErrWrongShares). All shares given are used, so one
// bad share fails the restore; leave it out and retry with others.
func Combine(shares []*Share) (*guest.Dataset, *guest.Secret, error) {
	if len(shares) == 0 {
		return nil, nil, &BelowThresholdError{}
	}
	first := shares[0]
	ds := first.Dataset
	dsBytes := ds.Marshal()
	seen := make(map[string]bool, len(shares))
	for _, s := range shares {
		if s.data == nil {
			return nil, nil, fmt.Errorf("combine: share for %s was wiped or not opened", s.Custodian)
		}
		if !bytes.Equal(s.Dataset.Marshal(), dsBytes) {
			return nil, nil, fmt.Errorf("%w: share for %s is for %s, share for %s is for %s",
				ErrMixed, first.Custodian, describe(ds), s.Custodian, describe(s.Dataset))
		}
		if seen[s.Custodian] {
			return nil, nil, fmt.Errorf("%w: %s", ErrDuplicate, s.Custodian)
		}
		seen[s.Custodian] = true
	}
	if len(shares) < ds.Threshold {
		return nil, nil, &BelowThresholdError{Have: len(shares), Need: ds.Threshold}
	}
	secret, err := combineParts(shares, ds.Threshold)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: dataset %s: %v", ErrWrongShares, ds.Name, err)
	}
	defer clear(secret)
	s, err := guest.ParseSecret(secret)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: dataset %s: %v", ErrWrongShares, ds.Name, err)
	}
	if err := ds.Check(s); err != nil {
		return nil, nil, fmt.Errorf("%w: dataset %s: %w; one of the shares is forged or damaged, retry with other custodians", ErrWrongShares, ds.Name, err)
	}
	return ds, s, nil
}

func combineParts(shares []*Share, threshold int) ([]byte, error) {
	if threshold == 1 {
		// Every share is the secret itself; they must all agree.
		for _, s := range shares[1:] {
			if !bytes.Equal(s.data, shares[0].data) {
				return nil, fmt.Errorf("shares of %s and %s differ", shares[0].Custodian, s.Custodian)
			}
		}
		return bytes.Clone(shares[0].data[:guest.SecretSize]), nil
	}
	parts := make([][]byte, len(shares))
	for i, s := range shares {
		parts[i] = s.data
	}
	return shamir.Combine(parts)
}

func describe(d *guest.Dataset) string {
	return fmt.Sprintf("dataset %s of guest %s (%s, identity %s)", d.Name, d.GuestName, d.Guest, d.Fingerprint())
}
