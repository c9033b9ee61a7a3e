package custodian

import (
	"bytes"
	"crypto/hpke"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"

	"github.com/embassy-project/embassy/internal/sig"
	"github.com/embassy-project/embassy/internal/wire"
	"github.com/zeebo/blake3"
)

// Sizes of the key encodings.
const (
	KEMPrivateKeySize = 32   // MLKEM768-X25519 (X-Wing) seed
	KEMPublicKeySize  = 1216 // MLKEM768-X25519 encapsulation key
	MaxNameLen        = 64
	// MaxFileSize bounds what the parsers accept; real files are under 6 KiB.
	MaxFileSize = 64 << 10
)

// File headers.
const (
	IdentityHeader   = "embassy-custodian-identity-v1"
	RecipientHeader  = "embassy-custodian-recipient-v1"
	PassphraseHeader = "embassy-custodian-identity-v1-passphrase" // reserved
)

// Field names.
const (
	fieldName = "name"
	fieldKEM  = "kem-mlkem768x25519"
	fieldSign = "sign-ed25519-mldsa65"
)

// fingerprintContext is the BLAKE3 key-derivation context of Fingerprint.
const fingerprintContext = "embassy v1 custodian recipient fingerprint"

// ErrPassphrase is returned for a passphrase-protected identity file, a
// format reserved for a later version.
var ErrPassphrase = errors.New("passphrase-protected custodian identity is not supported by this version")

// KEM is the key encapsulation mechanism of custodian keys.
func KEM() hpke.KEM { return hpke.MLKEM768X25519() }

// Identity is a custodian's secret key pair. Keep it offline.
type Identity struct {
	Name   string
	KEM    hpke.PrivateKey
	Signer *sig.PrivateKey
}

// Recipient is a custodian's public keys: shares are encrypted to KEM, and
// orders signed by the custodian verify under Verifier.
type Recipient struct {
	Name     string
	KEM      hpke.PublicKey
	Verifier sig.PublicKey
}

// ValidName reports whether name is a valid custodian name:
// [a-z0-9][a-z0-9._-]{0,63}.
func ValidName(name string) error {
	if !wire.ValidName(name) {
		return errBadName
	}
	return nil
}

// errBadName does not quote the name: a mangled file could put anything there.
var errBadName = fmt.Errorf("custodian name must be 1 to %d characters of a-z, 0-9 and (not first) . _ -", MaxNameLen)

// Generate returns a fresh identity for the custodian called name.
func Generate(name string) (*Identity, error) {
	if err := ValidName(name); err != nil {
		return nil, fmt.Errorf("generate custodian identity: %w", err)
	}
	k, err := KEM().GenerateKey()
	if err != nil {
		return nil, fmt.Errorf("generate custodian kem key: %w", err)
	}
	s, err := sig.Generate()
	if err != nil {
		return nil, fmt.Errorf("generate custodian signing key: %w", err)
	}
	return &Identity{Name: name, KEM: k, Signer: s}, nil
}

// Recipient returns the public half of id.
func (id *Identity) Recipient() *Recipient {
	return &Recipient{Name: id.Name, KEM: id.KEM.PublicKey(), Verifier: id.Signer.Public()}
}

// Fingerprint returns the fingerprint of id's public keys.
func (id *Identity) Fingerprint() string { return id.Recipient().Fingerprint() }

// Fingerprint is a short, stable name for the custodian's public keys: the
// first 16 bytes of BLAKE3 in key-derivation mode (context
// "embassy v1 custodian recipient fingerprint") over the KEM public key
// followed by the signing public key, as 32 lowercase hex characters. The
// name is not part of it.
func (r *Recipient) Fingerprint() string {
	return hex.EncodeToString(r.fingerprint())
}

func (r *Recipient) fingerprint() []byte {
	material := append(r.KEM.Bytes(), r.Verifier.Bytes()...)
	out := make([]byte, 16)
	blake3.DeriveKey(fingerprintContext, material, out)
	return out
}

// Equal reports whether r and o have the same name and keys.
func (r *Recipient) Equal(o *Recipient) bool {
	return r.Name == o.Name && bytes.Equal(r.KEM.Bytes(), o.KEM.Bytes()) && r.Verifier.Equal(o.Verifier)
}

// Marshal returns the canonical identity file. It holds secret keys.
func (id *Identity) Marshal() []byte {
	kem, err := id.KEM.Bytes()
	if err != nil {
		// An X-Wing private key always serializes; anything else is a
		// programming error, not bad input.
		panic("custodian: kem private key does not serialize: " + err.Error())
	}
	signer := id.Signer.Bytes()
	var b bytes.Buffer
	b.WriteString("# embassy custodian identity - SECRET, keep offline\n")
	fmt.Fprintf(&b, "# fingerprint: %s\n", id.Fingerprint())
	b.WriteString(IdentityHeader + "\n")
	fmt.Fprintf(&b, "%s: %s\n", fieldName, id.Name)
	writeB64(&b, fieldKEM, kem)
	writeB64(&b, fieldSign, signer)
	// kem aliases the key's own seed (crypto/hpke returns it, not a copy):
	// never clear it. signer is a copy.
	clear(signer)
	return b.Bytes()
}

// Marshal returns the canonical recipient file.
func (r *Recipient) Marshal() []byte {
	var b bytes.Buffer
	b.WriteString("# embassy custodian recipient - public, give to the guest's operators\n")
	fmt.Fprintf(&b, "# fingerprint: %s\n", r.Fingerprint())
	b.WriteString(RecipientHeader + "\n")
	fmt.Fprintf(&b, "%s: %s\n", fieldName, r.Name)
	writeB64(&b, fieldKEM, r.KEM.Bytes())
	writeB64(&b, fieldSign, r.Verifier.Bytes())
	return b.Bytes()
}

func writeB64(b *bytes.Buffer, field string, v []byte) {
	b.WriteString(field)
	b.WriteString(": ")
	enc := make([]byte, base64.StdEncoding.EncodedLen(len(v)))
	base64.StdEncoding.Encode(enc, v)
	b.Write(enc)
	b.WriteByte('\n')
	clear(enc)
}

// ParseIdentity decodes an identity file.
func ParseIdentity(b []byte) (*Identity, error) {
	f, err := parseFile(b, IdentityHeader, "custodian identity")
	if err != nil {
		return nil, err
	}
	defer f.wipe()
	kemSeed, err := f.b64(fieldKEM, KEMPrivateKeySize)
	if err != nil {
		return nil, err
	}
	defer clear(kemSeed)
	k, err := KEM().NewPrivateKey(kemSeed)
	if err != nil {
		return nil, wire.Corruptf("custodian identity: invalid %s key", fieldKEM)
	}
	signSeed, err := f.b64(fieldSign, sig.PrivateKeySize)
	if err != nil {
		return nil, err
	}
	defer clear(signSeed)
	s, err := sig.NewPrivateKey(signSeed)
	if err != nil {
		return nil, wire.Corruptf("custodian identity: invalid %s key", fieldSign)
	}
	id := &Identity{Name: f.name, KEM: k, Signer: s}
	if err := f.checkFingerprint(id.Recipient()); err != nil {
		return nil, err
	}
	return id, nil
}

// ParseRecipient decodes a recipient (public key) file.
func ParseRecipient(b []byte) (*Recipient, error) {
	f, err := parseFile(b, RecipientHeader, "custodian recipient")
	if err != nil {
		return nil, err
	}
	kemPub, err := f.b64(fieldKEM, KEMPublicKeySize)
	if err != nil {
		return nil, err
	}
	k, err := KEM().NewPublicKey(kemPub)
	if err != nil || !bytes.Equal(k.Bytes(), kemPub) {
		return nil, wire.Corruptf("custodian recipient: invalid %s key", fieldKEM)
	}
	signPub, err := f.b64(fieldSign, sig.PublicKeySize)
	if err != nil {
		return nil, err
	}
	v, err := sig.ParsePublicKey(signPub)
	if err != nil {
		return nil, wire.Corruptf("custodian recipient: invalid %s key", fieldSign)
	}
	r := &Recipient{Name: f.name, KEM: k, Verifier: v}
	if err := f.checkFingerprint(r); err != nil {
		return nil, err
	}
	return r, nil
}

// file is a parsed key file before its keys are decoded.
type file struct {
	what        string
	name        string
	fields      map[string][]byte
	fingerprint string // from a "# fingerprint: " comment, or ""
}

func (f *file) wipe() {
	for _, v := range f.fields {
		clear(v)
	}
}

// b64 decodes field, which must be canonical standard base64 of size bytes.
func (f *file) b64(field string, size int) ([]byte, error) {
	v := f.fields[field]
	if len(v) != base64.StdEncoding.EncodedLen(size) {
		return nil, wire.Corruptf("%s: %s must be %d bytes of base64", f.what, field, size)
	}
	out := make([]byte, base64.StdEncoding.DecodedLen(len(v)))
	n, err := base64.StdEncoding.Strict().Decode(out, v)
	if err != nil || n != size {
		clear(out)
		return nil, wire.Corruptf("%s: %s is not valid base64 of %d bytes", f.what, field, size)
	}
	return out[:n:n], nil
}

func (f *file) checkFingerprint(r *Recipient) error {
	if f.fingerprint != "" && f.fingerprint != r.Fingerprint() {
		return wire.Corruptf("%s: fingerprint comment does not match the keys", f.what)
	}
	return nil
}

const fingerprintComment = "# fingerprint: "

// parseFile splits a key file into its fields and checks their presence.
func parseFile(b []byte, header, what string) (*file, error) {
	if len(b) > MaxFileSize {
		return nil, wire.Corruptf("%s: file is %d bytes, limit %d", what, len(b), MaxFileSize)
	}
	f := &file{what: what, fields: map[string][]byte{}}
	seenHeader := false
	lineNo := 0
	for rest := b; len(rest) > 0; {
		lineNo++
		var line []byte
		line, rest, _ = bytes.Cut(rest, []byte("\n"))
		line = bytes.TrimRight(line, " \t\r")
		if len(line) == 0 {
			continue
		}
		if line[0] == '#' {
			if fp, ok := bytes.CutPrefix(line, []byte(fingerprintComment)); ok {
				if f.fingerprint != "" {
					f.wipe()
					return nil, wire.Corruptf("%s: line %d: second fingerprint comment", what, lineNo)
				}
				f.fingerprint = string(fp)
			}
			continue
		}
		if !seenHeader {
			if err := checkHeader(string(line), header, what); err != nil {
				return nil, err
			}
			seenHeader = true
			continue
		}
		key, val, ok := bytes.Cut(line, []byte(": "))
		if !ok {
			f.wipe()
			return nil, wire.Corruptf("%s: line %d is not a \"field: value\" line", what, lineNo)
		}
		k := string(key)
		switch k {
		case fieldName, fieldKEM, fieldSign:
		default:
			f.wipe()
			if len(k) <= 32 && ValidName(k) == nil {
				return nil, wire.Corruptf("%s: line %d: unknown field %q", what, lineNo, k)
			}
			return nil, wire.Corruptf("%s: line %d: unknown field", what, lineNo)
		}
		if _, dup := f.fields[k]; dup {
			f.wipe()
			return nil, wire.Corruptf("%s: line %d: duplicate field %q", what, lineNo, k)
		}
		if len(val) == 0 || val[0] == ' ' || val[0] == '\t' {
			f.wipe()
			return nil, wire.Corruptf("%s: line %d: field %q: value must follow \": \" directly", what, lineNo, k)
		}
		f.fields[k] = bytes.Clone(val)
	}
	if !seenHeader {
		return nil, wire.Corruptf("%s: no %q header line", what, header)
	}
	for _, k := range []string{fieldName, fieldKEM, fieldSign} {
		if _, ok := f.fields[k]; !ok {
			f.wipe()
			return nil, wire.Corruptf("%s: missing field %q", what, k)
		}
	}
	f.name = string(f.fields[fieldName])
	if err := ValidName(f.name); err != nil {
		f.wipe()
		return nil, fmt.Errorf("%w: %s: %w", wire.ErrCorrupt, what, err)
	}
	return f, nil
}

func checkHeader(line, header, what string) error {
	switch {
	case line == header:
		return nil
	case line == PassphraseHeader && header == IdentityHeader:
		return ErrPassphrase
	case line == RecipientHeader:
		return wire.Corruptf("%s: this is a public recipient file (%s), not an identity", what, RecipientHeader)
	case line == IdentityHeader || line == PassphraseHeader:
		return wire.Corruptf("%s: this is a SECRET identity file (%s), not a recipient; do not share it", what, IdentityHeader)
	default:
		return wire.Corruptf("%s: first line is not %q", what, header)
	}
}
