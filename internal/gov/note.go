package gov

import (
	"crypto/sha256"
	"encoding/binary"

	"golang.org/x/mod/sumdb/note"

	"github.com/embassy-project/embassy/internal/sig"
)

// algHybrid is the signed-note algorithm byte of embassy's hybrid
// Ed25519+ML-DSA-65 signature over a domain (internal/sig). It only enters
// the key hash; the signature bytes are sig.PrivateKey.Sign(domain, text).
const algHybrid = 0x07

// Signer name prefixes of the signature lines of agreements and orders.
const (
	custodianPrefix = "custodian:"
	hostPrefix      = "host:"
)

// keyHash is the signed-note key hash of a hybrid key under a signer name:
// the first 4 bytes (big-endian) of SHA-256(name || "\n" || 0x07 || key).
func keyHash(name string, pk sig.PublicKey) uint32 {
	h := sha256.New()
	h.Write([]byte(name))
	h.Write([]byte{'\n', algHybrid})
	h.Write(pk.Bytes())
	return binary.BigEndian.Uint32(h.Sum(nil)[:4])
}

// noteSigner adapts a hybrid private key to a note.Signer that signs the
// note text under domain.
func noteSigner(name, domain string, k *sig.PrivateKey) note.Signer {
	return &hybridSigner{name: name, domain: domain, k: k, hash: keyHash(name, k.Public())}
}

// noteVerifier adapts a hybrid public key to a note.Verifier that checks
// signatures made by noteSigner with the same domain.
func noteVerifier(name, domain string, pk sig.PublicKey) note.Verifier {
	return &hybridVerifier{name: name, domain: domain, pk: pk, hash: keyHash(name, pk)}
}

type hybridSigner struct {
	name, domain string
	k            *sig.PrivateKey
	hash         uint32
}

func (s *hybridSigner) Name() string    { return s.name }
func (s *hybridSigner) KeyHash() uint32 { return s.hash }
func (s *hybridSigner) Sign(msg []byte) ([]byte, error) {
	return s.k.Sign(s.domain, msg)
}

type hybridVerifier struct {
	name, domain string
	pk           sig.PublicKey
	hash         uint32
}

func (v *hybridVerifier) Name() string    { return v.name }
func (v *hybridVerifier) KeyHash() uint32 { return v.hash }
func (v *hybridVerifier) Verify(msg, s []byte) bool {
	return v.pk.Verify(v.domain, msg, s) == nil
}
