package ledger

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"filippo.io/mldsa"
	flog "github.com/transparency-dev/formats/log"
	fnote "github.com/transparency-dev/formats/note"
	"golang.org/x/mod/sumdb/note"

	"github.com/embassy-project/embassy/internal/wire"
)

// KeyHeader is the first line of a private key file.
const KeyHeader = "embassy-ledger-key-v1"

// Signature algorithm bytes of signed-note keys (C2SP signed-note).
const (
	algEd25519 = 0x01 // standard signed-note Ed25519
	algMLDSA44 = 0x06 // ML-DSA-44, C2SP tlog-cosignature (subtree/v1) style
)

// maxKeyFile bounds what ParseKeys reads; a real file is about 200 bytes.
const maxKeyFile = 4096

// Keys are a log's two checkpoint signing keys: every checkpoint carries an
// Ed25519 signed-note signature and an ML-DSA-44 signature in the C2SP
// cosignature format, both under the key name Origin.
type Keys struct {
	origin string
	ed     note.Signer
	ml     note.Signer
	public []string
	v      Verifier
}

// GenerateKeys returns a new key pair for the log origin. private is the
// key file's content (KeyHeader, then the Ed25519 and ML-DSA-44 signed-note
// private keys, one per line); the caller stores it mode 0600. public holds
// the two verifier keys (vkeys), Ed25519 first, for the host descriptor.
func GenerateKeys(origin string) (private []byte, public []string, err error) {
	if !ValidOrigin(origin) {
		return nil, nil, fmt.Errorf("generate log keys: bad origin %q", origin)
	}
	edS, edV, err := note.GenerateKey(rand.Reader, origin)
	if err != nil {
		return nil, nil, fmt.Errorf("generate log keys: %w", err)
	}
	mlS, mlV, err := fnote.GenerateMLDSAKey(origin)
	if err != nil {
		return nil, nil, fmt.Errorf("generate log keys: %w", err)
	}
	return []byte(KeyHeader + "\n" + edS + "\n" + mlS + "\n"), []string{edV, mlV}, nil
}

// ParseKeys reads a private key file written from GenerateKeys. Errors wrap
// wire.ErrCorrupt and never contain key material.
func ParseKeys(private []byte) (*Keys, error) {
	if len(private) > maxKeyFile {
		return nil, wire.Corruptf("log key file: %d bytes, more than %d", len(private), maxKeyFile)
	}
	lines := strings.Split(string(private), "\n")
	if len(lines) != 4 || lines[0] != KeyHeader || lines[3] != "" {
		return nil, wire.Corruptf("log key file: want %q and two key lines", KeyHeader)
	}
	edName, _, edKey, err := splitSkey(lines[1], algEd25519, ed25519.SeedSize)
	if err != nil {
		return nil, wire.Corruptf("log key file: Ed25519 key: %v", err)
	}
	mlName, mlHash, mlKey, err := splitSkey(lines[2], algMLDSA44, mldsa.PrivateKeySize)
	if err != nil {
		return nil, wire.Corruptf("log key file: ML-DSA key: %v", err)
	}
	if edName != mlName || !ValidOrigin(edName) {
		return nil, wire.Corruptf("log key file: key names differ or are not a valid origin")
	}
	ed, err := note.NewSigner(lines[1]) // also checks the key hash
	if err != nil {
		return nil, wire.Corruptf("log key file: Ed25519 key: %v", err)
	}
	ml, err := fnote.NewMLDSASigner(lines[2])
	if err != nil {
		return nil, wire.Corruptf("log key file: ML-DSA key: %v", err)
	}
	if ml.KeyHash() != mlHash {
		return nil, wire.Corruptf("log key file: ML-DSA key hash does not match the key")
	}
	edVkey, err := note.NewEd25519VerifierKey(edName, ed25519.NewKeyFromSeed(edKey).Public().(ed25519.PublicKey))
	if err != nil {
		return nil, wire.Corruptf("log key file: Ed25519 key: %v", err)
	}
	mlPriv, err := mldsa.NewPrivateKey(mldsa.MLDSA44(), mlKey)
	if err != nil {
		return nil, wire.Corruptf("log key file: ML-DSA key: %v", err)
	}
	mlVkey := fmt.Sprintf("%s+%08x+%s", mlName, ml.KeyHash(),
		base64.StdEncoding.EncodeToString(append([]byte{algMLDSA44}, mlPriv.PublicKey().Bytes()...)))
	k := &Keys{origin: edName, ed: ed, ml: ml, public: []string{edVkey, mlVkey}}
	if k.v, err = NewVerifier(edName, k.public); err != nil {
		return nil, fmt.Errorf("log key file: %w", err)
	}
	return k, nil
}

// splitSkey checks the shape of a signed-note private key line
// "PRIVATE+KEY+name+hash+base64(alg||key)" and returns its parts.
func splitSkey(s string, alg byte, keySize int) (name string, hash uint32, key []byte, err error) {
	parts := strings.SplitN(s, "+", 5)
	if len(parts) != 5 || parts[0] != "PRIVATE" || parts[1] != "KEY" || len(parts[3]) != 8 {
		return "", 0, nil, errors.New("not a signed-note private key")
	}
	h, err := strconv.ParseUint(parts[3], 16, 32)
	if err != nil {
		return "", 0, nil, errors.New("bad key hash")
	}
	raw, err := base64.StdEncoding.DecodeString(parts[4])
	if err != nil || len(raw) != 1+keySize {
		return "", 0, nil, errors.New("bad key encoding")
	}
	if raw[0] != alg {
		return "", 0, nil, fmt.Errorf("algorithm 0x%02x, want 0x%02x", raw[0], alg)
	}
	return parts[2], uint32(h), raw[1:], nil
}

// Origin returns the log origin the keys sign for.
func (k *Keys) Origin() string { return k.origin }

// Public returns the two verifier keys (Ed25519 first).
func (k *Keys) Public() []string { return append([]string(nil), k.public...) }

// Verifier returns the verifier for the keys' public halves.
func (k *Keys) Verifier() Verifier { return k.v }

// signers returns the checkpoint signers, Ed25519 first (tessera's primary
// signer; both have the origin as their name, as tessera requires).
func (k *Keys) signers() (note.Signer, note.Signer) { return k.ed, k.ml }

// Verifier checks checkpoints of one log: both the Ed25519 and the ML-DSA-44
// signature must verify, and the origin must match. The zero Verifier
// accepts nothing.
type Verifier struct {
	origin string
	ed, ml note.Verifier
}

// NewVerifier builds a verifier for log origin from its two verifier keys
// (vkeys, in either order): one Ed25519 (algorithm 0x01) and one ML-DSA-44
// (algorithm 0x06), both named origin. Errors wrap wire.ErrCorrupt.
func NewVerifier(origin string, vkeys []string) (Verifier, error) {
	if !ValidOrigin(origin) {
		return Verifier{}, wire.Corruptf("log verifier: bad origin %q", origin)
	}
	if len(vkeys) != 2 {
		return Verifier{}, wire.Corruptf("log verifier: %d keys, want an Ed25519 and an ML-DSA-44 key", len(vkeys))
	}
	v := Verifier{origin: origin}
	for _, vk := range vkeys {
		parts := strings.SplitN(vk, "+", 3)
		if len(parts) != 3 || len(parts[1]) != 8 {
			return Verifier{}, wire.Corruptf("log verifier: key is not a signed-note verifier key")
		}
		if parts[0] != origin {
			return Verifier{}, wire.Corruptf("log verifier: key name %q is not the origin %q", parts[0], origin)
		}
		raw, err := base64.StdEncoding.DecodeString(parts[2])
		if err != nil || len(raw) == 0 {
			return Verifier{}, wire.Corruptf("log verifier: bad key encoding")
		}
		var nv note.Verifier
		switch raw[0] {
		case algEd25519:
			if v.ed != nil {
				return Verifier{}, wire.Corruptf("log verifier: two Ed25519 keys")
			}
			nv, err = note.NewVerifier(vk)
			v.ed = nv
		case algMLDSA44:
			if v.ml != nil {
				return Verifier{}, wire.Corruptf("log verifier: two ML-DSA keys")
			}
			nv, err = fnote.NewMLDSAVerifier(vk)
			v.ml = nv
		default:
			return Verifier{}, wire.Corruptf("log verifier: key algorithm 0x%02x, want 0x01 or 0x06", raw[0])
		}
		if err != nil {
			return Verifier{}, wire.Corruptf("log verifier: %v", err)
		}
		// formats' ML-DSA parser does not check the key hash; check both.
		if fmt.Sprintf("%08x", nv.KeyHash()) != parts[1] {
			return Verifier{}, wire.Corruptf("log verifier: key hash does not match the key")
		}
	}
	if v.ed.KeyHash() == v.ml.KeyHash() {
		return Verifier{}, wire.Corruptf("log verifier: both keys have the same key hash")
	}
	return v, nil
}

// Origin returns the log origin.
func (v Verifier) Origin() string { return v.origin }

// MaxCheckpointSize bounds a checkpoint note, cosignatures included.
const MaxCheckpointSize = 64 << 10

// Checkpoint is a verified checkpoint of a log (C2SP tlog-checkpoint).
type Checkpoint struct {
	Origin string
	Size   uint64
	Hash   [32]byte // RFC 6962 root hash of the first Size entries
	// Raw is the signed note exactly as received.
	Raw []byte
	// Cosignatures are the signature lines from keys other than the log's
	// (witnesses). They are not verified here.
	Cosignatures []note.Signature
}

// Trusted returns the state an auditor stores after accepting c.
func (c *Checkpoint) Trusted() Trusted { return Trusted{Origin: c.Origin, Size: c.Size, Hash: c.Hash} }

// ParseCheckpoint verifies b as a checkpoint of v's log: a signed note whose
// body is exactly "origin\nsize\nbase64(hash)\n" with no extension lines,
// carrying valid signatures by both of the log's keys. Signature lines by
// other keys are kept in Cosignatures. Every failure wraps wire.ErrCorrupt.
func (v Verifier) ParseCheckpoint(b []byte) (*Checkpoint, error) {
	if v.ed == nil || v.ml == nil {
		return nil, wire.Corruptf("checkpoint: verifier has no keys")
	}
	if len(b) > MaxCheckpointSize {
		return nil, wire.Corruptf("checkpoint: %d bytes, more than %d", len(b), MaxCheckpointSize)
	}
	cp, ext, n, err := flog.ParseCheckpoint(b, v.origin, v.ed, v.ml)
	if err != nil {
		return nil, wire.Corruptf("checkpoint of %s: %v", v.origin, err)
	}
	var haveML bool
	for _, s := range n.Sigs {
		if s.Name == v.ml.Name() && s.Hash == v.ml.KeyHash() {
			haveML = true
		}
	}
	if !haveML {
		return nil, wire.Corruptf("checkpoint of %s: no ML-DSA signature by the log", v.origin)
	}
	if len(ext) != 0 {
		return nil, wire.Corruptf("checkpoint of %s: unexpected extension lines", v.origin)
	}
	if len(cp.Hash) != 32 {
		return nil, wire.Corruptf("checkpoint of %s: root hash is %d bytes", v.origin, len(cp.Hash))
	}
	if !bytes.Equal(cp.Marshal(), []byte(n.Text)) {
		return nil, wire.Corruptf("checkpoint of %s: body is not in canonical form", v.origin)
	}
	c := &Checkpoint{Origin: cp.Origin, Size: cp.Size, Raw: bytes.Clone(b), Cosignatures: n.UnverifiedSigs}
	copy(c.Hash[:], cp.Hash)
	return c, nil
}
