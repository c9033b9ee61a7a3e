package guest

import (
	"bytes"
	"crypto/hpke"
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"

	"github.com/embassy-project/embassy/internal/custodian"
	"github.com/embassy-project/embassy/internal/sig"
	"github.com/embassy-project/embassy/internal/wire"
	"github.com/zeebo/blake3"
)

// Magic numbers and limits of the encodings.
const (
	DatasetMagic  = "EMBDSID1"
	IdentityMagic = "EMBGSID1"

	MaxNameLen       = 64
	MaxCustodians    = 255 // the Shamir scheme's limit
	MaxDatasets      = 1024
	MaxDatasetSize   = 64 << 10
	KEMPublicKeySize = 1216
	SecretSize       = 64
)

// Key-derivation contexts (BLAKE3 DeriveKey).
const (
	macCommitContext   = "embassy v1 dataset dedup MAC key commitment"
	datasetFPContext   = "embassy v1 dataset identity fingerprint"
	identityFPContext  = "embassy v1 guest identity fingerprint"
	fingerprintSize    = 16
	fingerprintHexSize = 2 * fingerprintSize
)

// ErrWrongSecret is returned by Dataset.Check when a secret does not belong
// to the dataset.
var ErrWrongSecret = errors.New("secret does not match the dataset identity")

// KEM is the key encapsulation mechanism of dataset keys.
func KEM() hpke.KEM { return hpke.MLKEM768X25519() }

// ID identifies a guest.
type ID [16]byte

// NewID returns a random ID.
func NewID() (ID, error) {
	var id ID
	if _, err := rand.Read(id[:]); err != nil {
		return ID{}, fmt.Errorf("generate guest id: %w", err)
	}
	return id, nil
}

// String returns id in lowercase hex.
func (id ID) String() string { return hex.EncodeToString(id[:]) }

// IsZero reports whether id is all zeros.
func (id ID) IsZero() bool { return id == ID{} }

// ParseID decodes the String form of an ID.
func ParseID(s string) (ID, error) {
	var id ID
	if len(s) != 2*len(id) {
		return ID{}, wire.Corruptf("guest id: want %d hex characters", 2*len(id))
	}
	if _, err := hex.Decode(id[:], []byte(s)); err != nil || id.String() != s {
		return ID{}, wire.Corruptf("guest id: not lowercase hex")
	}
	return id, nil
}

// ValidName reports whether name is a valid guest or dataset name:
// [a-z0-9][a-z0-9._-]{0,63}.
func ValidName(name string) error {
	if !wire.ValidName(name) {
		return errBadName
	}
	return nil
}

var errBadName = fmt.Errorf("name must be 1 to %d characters of a-z, 0-9 and (not first) . _ -", MaxNameLen)

// CustodianRef names a custodian who holds a share of a dataset secret.
type CustodianRef struct {
	Name        string
	Fingerprint string // custodian.Recipient.Fingerprint: 32 lowercase hex characters
}

// Dataset is one dataset's public identity: what share files carry and what
// restore trusts.
type Dataset struct {
	Guest     ID
	GuestName string

	Name string   // dataset name, [a-z0-9][a-z0-9._-]{0,63}
	ID   [16]byte // random

	KEM       []byte        // MLKEM768-X25519 public key, 1216 bytes
	Agent     sig.PublicKey // the home agent's snapshot-signing key
	MACCommit [32]byte      // MACCommit(dedup MAC key)

	Threshold  int
	Custodians []CustodianRef // n = len(Custodians)
}

// Secret is a dataset's secret: the private key that unwraps pack keys and the
// dedup MAC key. It is split among the custodians and exists whole only at
// init and restore.
type Secret struct {
	KEM    hpke.PrivateKey
	MACKey [32]byte
}

// Bytes returns the 64-byte encoding: the KEM private key seed (32) followed
// by the MAC key (32). Handle as a secret; clear it after use.
func (s *Secret) Bytes() []byte {
	k, err := s.KEM.Bytes()
	if err != nil || len(k) != 32 {
		// An X-Wing key always serializes to its 32-byte seed.
		panic("guest: secret kem key does not serialize to 32 bytes")
	}
	// k aliases the key's own seed (crypto/hpke returns it, not a copy):
	// never clear it.
	out := make([]byte, 0, SecretSize)
	out = append(out, k...)
	return append(out, s.MACKey[:]...)
}

// ParseSecret decodes the 64-byte encoding of a Secret.
func ParseSecret(b []byte) (*Secret, error) {
	if len(b) != SecretSize {
		return nil, wire.Corruptf("dataset secret: %d bytes, want %d", len(b), SecretSize)
	}
	k, err := KEM().NewPrivateKey(b[:32])
	if err != nil {
		return nil, wire.Corruptf("dataset secret: invalid kem key")
	}
	s := &Secret{KEM: k}
	copy(s.MACKey[:], b[32:])
	return s, nil
}

// MACCommit returns the public commitment to a dedup MAC key: BLAKE3 in
// key-derivation mode with context "embassy v1 dataset dedup MAC key
// commitment". The key is 256 random bits, so the commitment reveals nothing
// usable about it.
func MACCommit(mac [32]byte) [32]byte {
	var out [32]byte
	blake3.DeriveKey(macCommitContext, mac[:], out[:])
	return out
}

// NewDataset creates a dataset identity with a fresh KEM key pair and MAC key
// for guest g, shared threshold-of-len(custodians) among custodians.
func NewDataset(g ID, guestName, name string, agent sig.PublicKey, threshold int, custodians []*custodian.Recipient) (*Dataset, *Secret, error) {
	d := &Dataset{Guest: g, GuestName: guestName, Name: name, Agent: agent, Threshold: threshold}
	for _, c := range custodians {
		d.Custodians = append(d.Custodians, CustodianRef{Name: c.Name, Fingerprint: c.Fingerprint()})
	}
	if _, err := rand.Read(d.ID[:]); err != nil {
		return nil, nil, fmt.Errorf("new dataset: %w", err)
	}
	k, err := KEM().GenerateKey()
	if err != nil {
		return nil, nil, fmt.Errorf("new dataset: generate kem key: %w", err)
	}
	s := &Secret{KEM: k}
	if _, err := rand.Read(s.MACKey[:]); err != nil {
		return nil, nil, fmt.Errorf("new dataset: generate mac key: %w", err)
	}
	d.KEM = k.PublicKey().Bytes()
	d.MACCommit = MACCommit(s.MACKey)
	if err := d.Validate(); err != nil {
		return nil, nil, fmt.Errorf("new dataset: %w", err)
	}
	return d, s, nil
}

// Validate checks every rule ParseDataset enforces.
func (d *Dataset) Validate() error {
	if d.Guest.IsZero() {
		return errors.New("guest id is zero")
	}
	if err := ValidName(d.GuestName); err != nil {
		return fmt.Errorf("guest name: %w", err)
	}
	if err := ValidName(d.Name); err != nil {
		return fmt.Errorf("dataset name: %w", err)
	}
	if d.ID == [16]byte{} {
		return errors.New("dataset id is zero")
	}
	if _, err := d.PublicKey(); err != nil {
		return err
	}
	if d.Agent.IsZero() {
		return errors.New("no agent key")
	}
	n := len(d.Custodians)
	if n < 1 || n > MaxCustodians {
		return fmt.Errorf("%d custodians, want 1 to %d", n, MaxCustodians)
	}
	if d.Threshold < 1 || d.Threshold > n {
		return fmt.Errorf("threshold %d of %d custodians, want 1 to %d", d.Threshold, n, n)
	}
	names := make(map[string]bool, n)
	fps := make(map[string]bool, n)
	for _, c := range d.Custodians {
		if err := custodian.ValidName(c.Name); err != nil {
			return err
		}
		if names[c.Name] {
			return fmt.Errorf("custodian %s listed twice", c.Name)
		}
		names[c.Name] = true
		if _, err := decodeFingerprint(c.Fingerprint); err != nil {
			return fmt.Errorf("custodian %s: %w", c.Name, err)
		}
		if fps[c.Fingerprint] {
			return fmt.Errorf("custodian %s: key fingerprint %s listed twice", c.Name, c.Fingerprint)
		}
		fps[c.Fingerprint] = true
	}
	return nil
}

func decodeFingerprint(s string) ([fingerprintSize]byte, error) {
	var fp [fingerprintSize]byte
	if len(s) != fingerprintHexSize {
		return fp, fmt.Errorf("fingerprint must be %d hex characters", fingerprintHexSize)
	}
	if _, err := hex.Decode(fp[:], []byte(s)); err != nil || hex.EncodeToString(fp[:]) != s {
		return fp, errors.New("fingerprint must be lowercase hex")
	}
	return fp, nil
}

// PublicKey returns the dataset's KEM public key.
func (d *Dataset) PublicKey() (hpke.PublicKey, error) {
	if len(d.KEM) != KEMPublicKeySize {
		return nil, fmt.Errorf("kem public key is %d bytes, want %d", len(d.KEM), KEMPublicKeySize)
	}
	k, err := KEM().NewPublicKey(d.KEM)
	if err != nil || !bytes.Equal(k.Bytes(), d.KEM) {
		return nil, errors.New("invalid kem public key")
	}
	return k, nil
}

// Custodian returns the entry for the custodian called name, or nil.
func (d *Dataset) Custodian(name string) *CustodianRef {
	for i := range d.Custodians {
		if d.Custodians[i].Name == name {
			return &d.Custodians[i]
		}
	}
	return nil
}

// Check returns nil if s is d's secret: its KEM public key is d.KEM and its
// MAC key matches d.MACCommit. Otherwise it returns ErrWrongSecret.
func (d *Dataset) Check(s *Secret) error {
	if s == nil || s.KEM == nil || s.KEM.KEM().ID() != KEM().ID() {
		return ErrWrongSecret
	}
	kemOK := bytes.Equal(s.KEM.PublicKey().Bytes(), d.KEM)
	c := MACCommit(s.MACKey)
	macOK := subtle.ConstantTimeCompare(c[:], d.MACCommit[:]) == 1
	switch {
	case !kemOK && !macOK:
		return fmt.Errorf("%w: neither the kem key nor the mac key match", ErrWrongSecret)
	case !kemOK:
		return fmt.Errorf("%w: kem key does not match", ErrWrongSecret)
	case !macOK:
		return fmt.Errorf("%w: mac key does not match", ErrWrongSecret)
	}
	return nil
}

// Marshal returns the binary encoding of d. d must be valid (as NewDataset
// and ParseDataset return it); Marshal panics if a custodian fingerprint is
// not 32 hex characters, which only a hand-built Dataset can have.
func (d *Dataset) Marshal() []byte {
	w := wire.NewWriter(make([]byte, 0, 3400+len(d.Custodians)*48))
	d.encode(w)
	return w.Bytes()
}

func (d *Dataset) encode(w *wire.Writer) {
	w.Fixed([]byte(DatasetMagic))
	w.Fixed(d.Guest[:])
	w.String(d.GuestName)
	w.String(d.Name)
	w.Fixed(d.ID[:])
	w.Uvarint(uint64(KEM().ID()))
	w.LenBytes(d.KEM)
	w.Fixed(d.Agent.Bytes())
	w.Fixed(d.MACCommit[:])
	w.Uvarint(uint64(d.Threshold))
	w.Uvarint(uint64(len(d.Custodians)))
	for _, c := range d.Custodians {
		fp, err := decodeFingerprint(c.Fingerprint)
		if err != nil {
			panic("guest: Marshal of an invalid Dataset: custodian " + c.Name + ": " + err.Error())
		}
		w.String(c.Name)
		w.Fixed(fp[:])
	}
}

// ParseDataset decodes a dataset identity.
func ParseDataset(b []byte) (*Dataset, error) {
	if len(b) > MaxDatasetSize {
		return nil, wire.Corruptf("dataset identity: %d bytes, limit %d", len(b), MaxDatasetSize)
	}
	r := wire.NewReader(b, "dataset identity")
	d := &Dataset{}
	r.Magic(DatasetMagic)
	r.FixedInto(d.Guest[:])
	d.GuestName = r.String(MaxNameLen, "guest name")
	d.Name = r.String(MaxNameLen, "dataset name")
	r.FixedInto(d.ID[:])
	if kem := r.Uvarint(); r.Err() == nil && kem != uint64(KEM().ID()) {
		r.Failf("kem %#x, want %#x (MLKEM768-X25519)", kem, KEM().ID())
	}
	d.KEM = bytes.Clone(r.LenBytes(KEMPublicKeySize, "kem key"))
	agent := r.Fixed(sig.PublicKeySize)
	r.FixedInto(d.MACCommit[:])
	d.Threshold = int(r.UvarintMax(MaxCustodians, "threshold"))
	n := int(r.UvarintMax(MaxCustodians, "custodian count"))
	for i := 0; i < n && r.Err() == nil; i++ {
		name := r.String(MaxNameLen, "custodian name")
		fp := r.Fixed(fingerprintSize)
		d.Custodians = append(d.Custodians, CustodianRef{Name: name, Fingerprint: hex.EncodeToString(fp)})
	}
	if err := r.Done(); err != nil {
		return nil, err
	}
	a, err := sig.ParsePublicKey(agent)
	if err != nil {
		return nil, wire.Corruptf("dataset identity: agent key: %v", err)
	}
	d.Agent = a
	if err := d.Validate(); err != nil {
		return nil, fmt.Errorf("%w: dataset identity: %w", wire.ErrCorrupt, err)
	}
	return d, nil
}

// Fingerprint is a short, stable name for the dataset identity that operators
// compare out of band (printed at init, checked at restore): the first 16
// bytes of BLAKE3 in key-derivation mode (context "embassy v1 dataset
// identity fingerprint") over Marshal(), in hex.
func (d *Dataset) Fingerprint() string { return fingerprint(datasetFPContext, d.Marshal()) }

// Equal reports whether d and o encode to the same bytes.
func (d *Dataset) Equal(o *Dataset) bool { return bytes.Equal(d.Marshal(), o.Marshal()) }

func fingerprint(context string, b []byte) string {
	out := make([]byte, fingerprintSize)
	blake3.DeriveKey(context, b, out)
	return hex.EncodeToString(out)
}

// Identity is the guest public identity file handed to auditors:
// `embassy check --identity FILE` verifies envelopes against Agent.
type Identity struct {
	Guest    ID
	Name     string
	Agent    sig.PublicKey
	Datasets []*Dataset
}

// NewIdentity returns the identity of guest g with the given datasets, after
// checking that they all belong to it.
func NewIdentity(g ID, name string, agent sig.PublicKey, datasets ...*Dataset) (*Identity, error) {
	i := &Identity{Guest: g, Name: name, Agent: agent, Datasets: datasets}
	if err := i.Validate(); err != nil {
		return nil, fmt.Errorf("new guest identity: %w", err)
	}
	return i, nil
}

// Validate checks every rule ParseIdentity enforces.
func (i *Identity) Validate() error {
	if i.Guest.IsZero() {
		return errors.New("guest id is zero")
	}
	if err := ValidName(i.Name); err != nil {
		return fmt.Errorf("guest name: %w", err)
	}
	if i.Agent.IsZero() {
		return errors.New("no agent key")
	}
	if len(i.Datasets) > MaxDatasets {
		return fmt.Errorf("%d datasets, limit %d", len(i.Datasets), MaxDatasets)
	}
	names := make(map[string]bool, len(i.Datasets))
	ids := make(map[[16]byte]bool, len(i.Datasets))
	for _, d := range i.Datasets {
		if err := d.Validate(); err != nil {
			return fmt.Errorf("dataset %s: %w", d.Name, err)
		}
		if d.Guest != i.Guest || d.GuestName != i.Name {
			return fmt.Errorf("dataset %s belongs to guest %s (%s), not %s (%s)", d.Name, d.GuestName, d.Guest, i.Name, i.Guest)
		}
		if !d.Agent.Equal(i.Agent) {
			return fmt.Errorf("dataset %s names agent key %s, the guest's is %s", d.Name, d.Agent.Fingerprint(), i.Agent.Fingerprint())
		}
		if names[d.Name] {
			return fmt.Errorf("dataset %s listed twice", d.Name)
		}
		names[d.Name] = true
		if ids[d.ID] {
			return fmt.Errorf("dataset %s: id %x used twice", d.Name, d.ID)
		}
		ids[d.ID] = true
	}
	return nil
}

// Dataset returns the dataset called name, or nil.
func (i *Identity) Dataset(name string) *Dataset {
	for _, d := range i.Datasets {
		if d.Name == name {
			return d
		}
	}
	return nil
}

// Marshal returns the binary encoding of i, datasets in slice order. Like
// Dataset.Marshal it expects a valid identity.
func (i *Identity) Marshal() []byte {
	w := wire.NewWriter(nil)
	w.Fixed([]byte(IdentityMagic))
	w.Fixed(i.Guest[:])
	w.String(i.Name)
	w.Fixed(i.Agent.Bytes())
	w.Uvarint(uint64(len(i.Datasets)))
	for _, d := range i.Datasets {
		w.LenBytes(d.Marshal())
	}
	return w.Bytes()
}

// ParseIdentity decodes a guest identity.
func ParseIdentity(b []byte) (*Identity, error) {
	r := wire.NewReader(b, "guest identity")
	i := &Identity{}
	r.Magic(IdentityMagic)
	r.FixedInto(i.Guest[:])
	i.Name = r.String(MaxNameLen, "guest name")
	agent := r.Fixed(sig.PublicKeySize)
	n := int(r.UvarintMax(MaxDatasets, "dataset count"))
	var raw [][]byte
	for j := 0; j < n && r.Err() == nil; j++ {
		raw = append(raw, r.LenBytes(MaxDatasetSize, "dataset identity"))
	}
	if err := r.Done(); err != nil {
		return nil, err
	}
	a, err := sig.ParsePublicKey(agent)
	if err != nil {
		return nil, wire.Corruptf("guest identity: agent key: %v", err)
	}
	i.Agent = a
	for j, db := range raw {
		d, err := ParseDataset(db)
		if err != nil {
			return nil, fmt.Errorf("guest identity: dataset %d: %w", j, err)
		}
		i.Datasets = append(i.Datasets, d)
	}
	if err := i.Validate(); err != nil {
		return nil, fmt.Errorf("%w: guest identity: %w", wire.ErrCorrupt, err)
	}
	return i, nil
}

// Fingerprint is a short, stable name for the guest identity: the first 16
// bytes of BLAKE3 in key-derivation mode (context "embassy v1 guest identity
// fingerprint") over Marshal(), in hex.
func (i *Identity) Fingerprint() string { return fingerprint(identityFPContext, i.Marshal()) }
