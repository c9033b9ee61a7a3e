package witness

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"filippo.io/mldsa"
	fnote "github.com/transparency-dev/formats/note"
	"golang.org/x/mod/sumdb/note"

	"github.com/embassy-project/embassy/internal/wire"
)

// Signature algorithm bytes of signed-note keys (c2sp.org/signed-note).
const (
	algEd25519Cosig = 0x04 // Ed25519 cosignature/v1
	algMLDSA44Cosig = 0x06 // ML-DSA-44 cosignature (subtree/v1 over [0, size))
)

const keyMagic = "embassy-witness-key-v1"

// Keys is a witness's private signing keys, in signed-note's
// "PRIVATE+KEY+<name>+<hash>+<base64(alg || key)>" form, both under the
// witness's name. Its String and GoString never reveal the keys.
type Keys struct {
	// Ed25519 is an Ed25519 cosignature/v1 key (alg 0x04, 32-byte seed).
	Ed25519 string
	// MLDSA is an ML-DSA-44 cosignature key (alg 0x06, 32-byte seed).
	MLDSA string
}

// PublicKeys is a witness's two verifier keys ("<name>+<hash>+<base64(alg ||
// public key)>"), what logs and policies configure.
type PublicKeys struct {
	Ed25519 string
	MLDSA   string
}

// Verifiers returns both verifier keys, the form Named.Verifiers takes.
func (p PublicKeys) Verifiers() []string { return []string{p.Ed25519, p.MLDSA} }

func (Keys) String() string   { return "witness.Keys{redacted}" }
func (Keys) GoString() string { return "witness.Keys{redacted}" }

// GenerateKeys creates a witness key pair named name (a signed-note key name:
// no spaces, no "+"; conventionally a host name and path such as
// "host-a.example/witness").
func GenerateKeys(name string) (Keys, PublicKeys, error) {
	if !validKeyName(name) {
		return Keys{}, PublicKeys{}, fmt.Errorf("generate witness keys: invalid key name %q", name)
	}
	_, priv, err := ed25519.GenerateKey(nil)
	if err != nil {
		return Keys{}, PublicKeys{}, fmt.Errorf("generate witness keys: %w", err)
	}
	enc := base64.StdEncoding.EncodeToString(append([]byte{algEd25519Cosig}, priv.Seed()...))
	// formats ignores the hash field when loading a signer, so load it once
	// to learn the key hash, then write the key with it.
	s, err := fnote.NewSignerForCosignatureV1("PRIVATE+KEY+" + name + "+00000000+" + enc)
	if err != nil {
		return Keys{}, PublicKeys{}, fmt.Errorf("generate witness keys: Ed25519: %w", err)
	}
	var k Keys
	k.Ed25519 = fmt.Sprintf("PRIVATE+KEY+%s+%08x+%s", name, s.KeyHash(), enc)
	if k.MLDSA, _, err = fnote.GenerateMLDSAKey(name); err != nil {
		return Keys{}, PublicKeys{}, fmt.Errorf("generate witness keys: ML-DSA-44: %w", err)
	}
	_, _, pub, err := k.load()
	if err != nil {
		return Keys{}, PublicKeys{}, fmt.Errorf("generate witness keys: %w", err)
	}
	return k, pub, nil
}

// Public returns the verifier keys of k.
func (k Keys) Public() (PublicKeys, error) {
	_, _, pub, err := k.load()
	return pub, err
}

// Name returns the witness's key name.
func (k Keys) Name() string {
	_, rest, _ := strings.Cut(k.Ed25519, "PRIVATE+KEY+")
	name, _, _ := strings.Cut(rest, "+")
	return name
}

// load checks k (both keys well-formed, of the right algorithms, with correct
// key hashes, under one name) and returns the two signers and public keys.
// Errors never include key material.
func (k Keys) load() (ed, ml note.Signer, pub PublicKeys, err error) {
	edName, edHash, seed, err := splitSkey(k.Ed25519, algEd25519Cosig, ed25519.SeedSize)
	if err != nil {
		return nil, nil, PublicKeys{}, fmt.Errorf("witness Ed25519 key: %w", err)
	}
	mlName, mlHash, mlSeed, err := splitSkey(k.MLDSA, algMLDSA44Cosig, mldsa.PrivateKeySize)
	if err != nil {
		return nil, nil, PublicKeys{}, fmt.Errorf("witness ML-DSA-44 key: %w", err)
	}
	if edName != mlName {
		return nil, nil, PublicKeys{}, errors.New("witness keys: Ed25519 and ML-DSA-44 keys have different names")
	}
	edSigner, err := fnote.NewSignerForCosignatureV1(k.Ed25519)
	if err != nil || edSigner.KeyHash() != edHash {
		return nil, nil, PublicKeys{}, errors.New("witness Ed25519 key: malformed or wrong key hash")
	}
	mlSigner, err := fnote.NewMLDSASigner(k.MLDSA)
	if err != nil || mlSigner.KeyHash() != mlHash {
		return nil, nil, PublicKeys{}, errors.New("witness ML-DSA-44 key: malformed or wrong key hash")
	}
	edPub := ed25519.NewKeyFromSeed(seed).Public().(ed25519.PublicKey)
	mlPriv, err := mldsa.NewPrivateKey(mldsa.MLDSA44(), mlSeed)
	if err != nil {
		return nil, nil, PublicKeys{}, errors.New("witness ML-DSA-44 key: malformed")
	}
	pub = PublicKeys{
		Ed25519: vkey(edName, edHash, algEd25519Cosig, edPub),
		MLDSA:   vkey(mlName, mlHash, algMLDSA44Cosig, mlPriv.PublicKey().Bytes()),
	}
	return edSigner, mlSigner, pub, nil
}

// splitSkey splits "PRIVATE+KEY+<name>+<8 hex>+<base64(alg || key)>" and
// checks the algorithm and key length.
func splitSkey(skey string, alg byte, size int) (name string, hash uint32, key []byte, err error) {
	parts := strings.SplitN(skey, "+", 5)
	if len(parts) != 5 || parts[0] != "PRIVATE" || parts[1] != "KEY" || !validKeyName(parts[2]) || len(parts[3]) != 8 {
		return "", 0, nil, errors.New("not a PRIVATE+KEY+<name>+<hash>+<key> string")
	}
	h, err := strconv.ParseUint(parts[3], 16, 32)
	if err != nil || fmt.Sprintf("%08x", h) != parts[3] {
		return "", 0, nil, errors.New("malformed key hash")
	}
	raw, err := b64.DecodeString(parts[4])
	if err != nil || len(raw) != 1+size || raw[0] != alg {
		return "", 0, nil, fmt.Errorf("key is not algorithm 0x%02x with %d key bytes", alg, size)
	}
	return parts[2], uint32(h), raw[1:], nil
}

func vkey(name string, hash uint32, alg byte, pub []byte) string {
	return fmt.Sprintf("%s+%08x+%s", name, hash, base64.StdEncoding.EncodeToString(append([]byte{alg}, pub...)))
}

// keyAlg returns the algorithm byte of a verifier key.
func keyAlg(vk string) (byte, error) {
	parts := strings.SplitN(vk, "+", 3)
	if len(parts) != 3 {
		return 0, errors.New("not a <name>+<hash>+<key> string")
	}
	raw, err := base64.StdEncoding.DecodeString(parts[2])
	if err != nil || len(raw) < 2 {
		return 0, errors.New("malformed key encoding")
	}
	return raw[0], nil
}

// Marshal returns the private key file:
//
//	embassy-witness-key-v1
//	PRIVATE+KEY+<name>+<hash>+<base64(0x04 || Ed25519 seed)>
//	PRIVATE+KEY+<name>+<hash>+<base64(0x06 || ML-DSA-44 seed)>
func (k Keys) Marshal() []byte {
	return []byte(keyMagic + "\n" + k.Ed25519 + "\n" + k.MLDSA + "\n")
}

// ParseKeys parses and checks a private key file. Errors wrap wire.ErrCorrupt
// and never include key material.
func ParseKeys(b []byte) (Keys, error) {
	if len(b) > 1<<10 {
		return Keys{}, wire.Corruptf("witness key file: too large")
	}
	lines := bytes.Split(b, []byte("\n"))
	if len(lines) != 4 || len(lines[3]) != 0 || string(lines[0]) != keyMagic {
		return Keys{}, wire.Corruptf("witness key file: want %q and two key lines", keyMagic)
	}
	k := Keys{Ed25519: string(lines[1]), MLDSA: string(lines[2])}
	if _, _, _, err := k.load(); err != nil {
		return Keys{}, wire.Corruptf("witness key file: %v", err)
	}
	return k, nil
}
