package transport

import (
	"crypto/hpke"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strings"

	"github.com/embassy-project/embassy/internal/sig"
	"github.com/embassy-project/embassy/internal/wire"
)

// DescriptorVersion is the descriptor format version this code writes and reads.
const DescriptorVersion = 1

// MaxDescriptorSize bounds what ParseDescriptor accepts.
const MaxDescriptorSize = 64 << 10

// Descriptor is what a host operator hands to the guest: enough to reach the
// host, pin its TLS key, and verify its log and its witness cosignatures.
// Format: docs/spec/host-descriptor.md.
type Descriptor struct {
	Version int    `json:"version"`
	Name    string `json:"name"`
	URL     string `json:"url"`             // https://HOST:PORT
	TLS     string `json:"tls_fingerprint"` // "sha256:" + hex SHA-256 of the server's SubjectPublicKeyInfo
	Log     KeySet `json:"log"`
	Witness KeySet `json:"witness"`
	// SigningKey is base64 (standard) of the host's hybrid signing public
	// key (sig.PublicKey): it acknowledges agreements. Empty for a witness
	// that is not a host, and for descriptors written before agreements.
	SigningKey string `json:"signing_key,omitempty"`
	// KEMKey is base64 (standard) of the host's ML-KEM-768+X25519 public
	// key: custodians re-wrap key shares to it on activation.
	KEMKey string `json:"kem_key,omitempty"`
}

// KeySet names a signer and its note verifier keys (signed-note vkey strings).
type KeySet struct {
	Origin string   `json:"origin"` // the log origin, or the witness name
	Keys   []string `json:"keys"`
}

// Marshal returns the descriptor file's bytes (indented JSON).
func (d *Descriptor) Marshal() []byte {
	b, err := json.MarshalIndent(d, "", "  ")
	if err != nil {
		panic(err) // only strings and ints
	}
	return append(b, '\n')
}

// ParseDescriptor parses and validates a descriptor file. Errors wrap
// wire.ErrCorrupt.
func ParseDescriptor(b []byte) (*Descriptor, error) {
	if len(b) > MaxDescriptorSize {
		return nil, wire.Corruptf("host descriptor: %d bytes, more than %d", len(b), MaxDescriptorSize)
	}
	dec := json.NewDecoder(strings.NewReader(string(b)))
	dec.DisallowUnknownFields()
	var d Descriptor
	if err := dec.Decode(&d); err != nil {
		return nil, wire.Corruptf("host descriptor: %v", err)
	}
	if strings.Trim(string(b[dec.InputOffset():]), " \t\r\n") != "" { // dec.More misses a trailing ] or }
		return nil, wire.Corruptf("host descriptor: trailing data")
	}
	if err := d.Validate(); err != nil {
		return nil, fmt.Errorf("%w: host descriptor: %v", wire.ErrCorrupt, err)
	}
	return &d, nil
}

// Validate checks the rules ParseDescriptor enforces.
func (d *Descriptor) Validate() error {
	if d.Version != DescriptorVersion {
		return fmt.Errorf("version %d, want %d", d.Version, DescriptorVersion)
	}
	if !wire.ValidName(d.Name) {
		return errors.New("name must be 1 to 64 characters of a-z, 0-9 and (not first) . _ -")
	}
	u, err := url.Parse(d.URL)
	if err != nil || u.Scheme != "https" || u.Host == "" || u.User != nil || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" || strings.ContainsAny(d.URL, "?#") {
		return fmt.Errorf("url %q: want https://HOST[:PORT]", d.URL)
	}
	if err := checkFingerprint(d.TLS); err != nil {
		return err
	}
	// A witness-only node (a guest's own witness) has no log.
	if (d.Log.Origin == "") != (len(d.Log.Keys) == 0) {
		return errors.New("log: origin and keys go together")
	}
	if d.Witness.Origin == "" || len(d.Witness.Keys) == 0 {
		return errors.New("witness: name and keys are required")
	}
	for _, k := range append(append([]string{}, d.Log.Keys...), d.Witness.Keys...) {
		if k == "" || len(k) > 8192 || strings.ContainsAny(k, " \n\t") || strings.HasPrefix(k, "PRIVATE+") {
			return errors.New("a key is not a signed-note verifier key")
		}
	}
	if d.SigningKey != "" {
		b, err := base64.StdEncoding.DecodeString(d.SigningKey)
		if err != nil {
			return errors.New("signing_key: not base64")
		}
		if _, err := sig.ParsePublicKey(b); err != nil {
			return fmt.Errorf("signing_key: %v", err)
		}
	}
	if d.KEMKey != "" {
		b, err := base64.StdEncoding.DecodeString(d.KEMKey)
		if err != nil {
			return errors.New("kem_key: not base64")
		}
		if _, err := hpke.MLKEM768X25519().NewPublicKey(b); err != nil {
			return fmt.Errorf("kem_key: %v", err)
		}
	}
	return nil
}

// Signing returns the host's signing public key; an error if the
// descriptor has none.
func (d *Descriptor) Signing() (sig.PublicKey, error) {
	if d.SigningKey == "" {
		return sig.PublicKey{}, fmt.Errorf("host %s: the descriptor has no signing key (re-run embassy host init with this version)", d.Name)
	}
	b, err := base64.StdEncoding.DecodeString(d.SigningKey)
	if err != nil {
		return sig.PublicKey{}, fmt.Errorf("host %s: signing_key: not base64", d.Name)
	}
	return sig.ParsePublicKey(b)
}

// KEM returns the host's KEM public key; an error if the descriptor has
// none.
func (d *Descriptor) KEM() (hpke.PublicKey, error) {
	if d.KEMKey == "" {
		return nil, fmt.Errorf("host %s: the descriptor has no KEM key (re-run embassy host init with this version)", d.Name)
	}
	b, err := base64.StdEncoding.DecodeString(d.KEMKey)
	if err != nil {
		return nil, fmt.Errorf("host %s: kem_key: not base64", d.Name)
	}
	return hpke.MLKEM768X25519().NewPublicKey(b)
}

// HasLog reports whether the node runs a log (hosts do; a guest's witness
// does not).
func (d *Descriptor) HasLog() bool { return d.Log.Origin != "" }

// BaseURL returns the URL without a trailing slash.
func (d *Descriptor) BaseURL() string { return strings.TrimSuffix(d.URL, "/") }

func checkFingerprint(fp string) error {
	h, ok := strings.CutPrefix(fp, "sha256:")
	if !ok || len(h) != 64 || strings.ToLower(h) != h {
		return fmt.Errorf("tls_fingerprint %q: want sha256: and 64 lowercase hex digits", fp)
	}
	if _, err := hex.DecodeString(h); err != nil {
		return fmt.Errorf("tls_fingerprint %q: %v", fp, err)
	}
	return nil
}
