// Package sig is embassy's hybrid signature: every signature is an Ed25519
// signature and an ML-DSA-65 signature over the same domain-separated message,
// and verification requires both. A break of either scheme alone forges
// nothing.
//
// Encodings:
//
//	public key  = ed25519 public key (32) || ML-DSA-65 public key (1952)   = 1984 bytes
//	private key = ed25519 seed (32)       || ML-DSA-65 seed (32)           = 64 bytes
//	signature   = ed25519 signature (64)  || ML-DSA-65 signature (3309)    = 3373 bytes
//
// The Ed25519 message is "embassy-sig-v1\x00" || domain || "\x00" || msg; the
// ML-DSA-65 message is msg with the context string "embassy-sig-v1:" || domain
// (FIPS 204 pure mode, randomized). A domain names what is being signed
// ("snapshot-envelope", "order", …) so a signature on one kind of object is
// never valid for another.
package sig

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"

	"github.com/cloudflare/circl/sign/mldsa/mldsa65"
	"github.com/zeebo/blake3"
)

// Sizes of the encodings.
const (
	PublicKeySize  = ed25519.PublicKeySize + mldsa65.PublicKeySize
	PrivateKeySize = ed25519.SeedSize + mldsa65.SeedSize
	SignatureSize  = ed25519.SignatureSize + mldsa65.SignatureSize
)

// ErrBadSignature is returned when a signature does not verify.
var ErrBadSignature = errors.New("signature does not verify")

const prefix = "embassy-sig-v1"

// PrivateKey holds both signing keys.
type PrivateKey struct {
	seed [PrivateKeySize]byte
	ed   ed25519.PrivateKey
	ml   *mldsa65.PrivateKey
	pub  PublicKey
}

// PublicKey holds both verification keys.
type PublicKey struct {
	ed ed25519.PublicKey
	ml *mldsa65.PublicKey
	b  []byte
}

// Generate returns a fresh key pair.
func Generate() (*PrivateKey, error) {
	var seed [PrivateKeySize]byte
	if _, err := rand.Read(seed[:]); err != nil {
		return nil, fmt.Errorf("generate signing key: %w", err)
	}
	return NewPrivateKey(seed[:])
}

// NewPrivateKey rebuilds a key pair from its 64-byte encoding.
func NewPrivateKey(b []byte) (*PrivateKey, error) {
	if len(b) != PrivateKeySize {
		return nil, fmt.Errorf("signing key: want %d bytes, got %d", PrivateKeySize, len(b))
	}
	k := &PrivateKey{}
	copy(k.seed[:], b)
	k.ed = ed25519.NewKeyFromSeed(k.seed[:ed25519.SeedSize])
	var mlSeed [mldsa65.SeedSize]byte
	copy(mlSeed[:], k.seed[ed25519.SeedSize:])
	mlPub, mlPriv := mldsa65.NewKeyFromSeed(&mlSeed)
	k.ml = mlPriv
	edPub := k.ed.Public().(ed25519.PublicKey)
	k.pub = PublicKey{ed: edPub, ml: mlPub, b: append(append([]byte{}, edPub...), mlPub.Bytes()...)}
	return k, nil
}

// Bytes returns the 64-byte private encoding. Handle as a secret.
func (k *PrivateKey) Bytes() []byte { return bytes.Clone(k.seed[:]) }

// Public returns the public key.
func (k *PrivateKey) Public() PublicKey { return k.pub }

// Sign signs msg under domain.
func (k *PrivateKey) Sign(domain string, msg []byte) ([]byte, error) {
	out := make([]byte, SignatureSize)
	copy(out, ed25519.Sign(k.ed, edMessage(domain, msg)))
	if err := mldsa65.SignTo(k.ml, msg, []byte(prefix+":"+domain), true, out[ed25519.SignatureSize:]); err != nil {
		return nil, fmt.Errorf("ml-dsa sign: %w", err)
	}
	return out, nil
}

func edMessage(domain string, msg []byte) []byte {
	m := make([]byte, 0, len(prefix)+len(domain)+2+len(msg))
	m = append(m, prefix...)
	m = append(m, 0)
	m = append(m, domain...)
	m = append(m, 0)
	return append(m, msg...)
}

// ParsePublicKey decodes a 1984-byte public key.
func ParsePublicKey(b []byte) (PublicKey, error) {
	if len(b) != PublicKeySize {
		return PublicKey{}, fmt.Errorf("public key: want %d bytes, got %d", PublicKeySize, len(b))
	}
	var ml mldsa65.PublicKey
	if err := ml.UnmarshalBinary(b[ed25519.PublicKeySize:]); err != nil {
		return PublicKey{}, fmt.Errorf("ml-dsa public key: %w", err)
	}
	if !bytes.Equal(ml.Bytes(), b[ed25519.PublicKeySize:]) {
		return PublicKey{}, errors.New("ml-dsa public key: non-canonical encoding")
	}
	return PublicKey{ed: bytes.Clone(b[:ed25519.PublicKeySize]), ml: &ml, b: bytes.Clone(b)}, nil
}

// Bytes returns the 1984-byte encoding.
func (p PublicKey) Bytes() []byte { return bytes.Clone(p.b) }

// IsZero reports whether p is the zero value.
func (p PublicKey) IsZero() bool { return len(p.b) == 0 }

// Equal reports whether p and q are the same key.
func (p PublicKey) Equal(q PublicKey) bool { return bytes.Equal(p.b, q.b) }

// Fingerprint is a short, stable name for the key: 16 bytes of BLAKE3 in
// derive-key mode (context "embassy v1 signing-key fingerprint") over its
// encoding, in hex.
func (p PublicKey) Fingerprint() string {
	var h [16]byte
	blake3.DeriveKey("embassy v1 signing-key fingerprint", p.b, h[:])
	return fmt.Sprintf("%x", h)
}

// Verify checks sig on msg under domain. Both component signatures must verify.
func (p PublicKey) Verify(domain string, msg, sig []byte) error {
	if p.IsZero() {
		return fmt.Errorf("%w: no public key", ErrBadSignature)
	}
	if len(sig) != SignatureSize {
		return fmt.Errorf("%w: signature is %d bytes, want %d", ErrBadSignature, len(sig), SignatureSize)
	}
	if !ed25519.Verify(p.ed, edMessage(domain, msg), sig[:ed25519.SignatureSize]) {
		return fmt.Errorf("%w: ed25519 part", ErrBadSignature)
	}
	if !mldsa65.Verify(p.ml, msg, []byte(prefix+":"+domain), sig[ed25519.SignatureSize:]) {
		return fmt.Errorf("%w: ml-dsa-65 part", ErrBadSignature)
	}
	return nil
}
