package hostnode

import (
	"bytes"
	"crypto/hpke"
	"encoding/base64"
	"fmt"
	"path/filepath"

	"github.com/embassy-project/embassy/internal/atomicfile"
	"github.com/embassy-project/embassy/internal/sig"
)

// Key file headers (first line of each file; the second is base64 of the
// secret seed).
const (
	signingKeyHeader = "embassy-host-signing-key-v1"
	kemKeyHeader     = "embassy-host-kem-key-v1"
)

// generateHostKeys writes DIR/sign.key (hybrid signing key: acknowledges
// agreements) and DIR/kem.key (ML-KEM-768+X25519: custodians re-wrap key
// shares to it on activation) and returns their public halves, base64.
func generateHostKeys(dir string) (signing, kem string, err error) {
	sk, err := sig.Generate()
	if err != nil {
		return "", "", err
	}
	kk, err := hpke.MLKEM768X25519().GenerateKey()
	if err != nil {
		return "", "", err
	}
	seed, err := kk.Bytes()
	if err != nil {
		return "", "", err
	}
	if err := writeKeyFile(dir, signingKeyFile, signingKeyHeader, sk.Bytes()); err != nil {
		return "", "", err
	}
	if err := writeKeyFile(dir, kemKeyFile, kemKeyHeader, seed); err != nil {
		return "", "", err
	}
	return base64.StdEncoding.EncodeToString(sk.Public().Bytes()), base64.StdEncoding.EncodeToString(kk.PublicKey().Bytes()), nil
}

func writeKeyFile(dir, name, header string, secret []byte) error {
	b := []byte(header + "\n" + base64.StdEncoding.EncodeToString(secret) + "\n")
	defer clear(b)
	defer clear(secret)
	return atomicfile.WriteNew(filepath.Join(dir, name), b, 0o600)
}

func parseKeyFile(b []byte, header string) ([]byte, error) {
	first, rest, ok := bytes.Cut(b, []byte("\n"))
	if !ok || string(first) != header {
		return nil, fmt.Errorf("not an %s file", header)
	}
	rest = bytes.TrimSuffix(rest, []byte("\n"))
	out := make([]byte, base64.StdEncoding.DecodedLen(len(rest)))
	n, err := base64.StdEncoding.Decode(out, rest)
	if err != nil {
		clear(out)
		return nil, fmt.Errorf("%s: not base64", header)
	}
	return out[:n], nil
}

// LoadSigningKey reads the host's signing key from DIR/sign.key.
func LoadSigningKey(dir string) (*sig.PrivateKey, error) {
	return loadKey(dir, signingKeyFile, func(b []byte) (*sig.PrivateKey, error) {
		seed, err := parseKeyFile(b, signingKeyHeader)
		if err != nil {
			return nil, err
		}
		defer clear(seed)
		return sig.NewPrivateKey(seed)
	})
}

// LoadKEMKey reads the host's KEM private key from DIR/kem.key.
func LoadKEMKey(dir string) (hpke.PrivateKey, error) {
	return loadKey(dir, kemKeyFile, func(b []byte) (hpke.PrivateKey, error) {
		seed, err := parseKeyFile(b, kemKeyHeader)
		if err != nil {
			return nil, err
		}
		defer clear(seed)
		return hpke.MLKEM768X25519().NewPrivateKey(seed)
	})
}
