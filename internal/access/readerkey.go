package access

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"

	"github.com/embassy-project/embassy/internal/wire"
)

// ReaderKeyHeader is the header line of a reader key file.
const ReaderKeyHeader = "embassy-reader-key-v1"

const (
	readerKeyField       = "ed25519-seed: "
	readerKeyFingerprint = "# tls key: "
	maxReaderKeyFile     = 4 << 10
)

// MarshalReaderKey returns the reader key file for k: line-oriented text in
// the style of custodian key files, holding the 32-byte Ed25519 seed in
// base64. It is a secret; write it 0600.
//
//	# embassy reader TLS key - SECRET, use it with the grant made for it
//	# tls key: sha256:<SPKI fingerprint of the public key>
//	embassy-reader-key-v1
//	ed25519-seed: <base64>
func MarshalReaderKey(k ed25519.PrivateKey) []byte {
	var b bytes.Buffer
	b.WriteString("# embassy reader TLS key - SECRET, use it with the grant made for it\n")
	b.WriteString(readerKeyFingerprint + keyFingerprint(k.Public().(ed25519.PublicKey)) + "\n")
	b.WriteString(ReaderKeyHeader + "\n")
	b.WriteString(readerKeyField)
	seed := k.Seed()
	enc := make([]byte, base64.StdEncoding.EncodedLen(len(seed)))
	base64.StdEncoding.Encode(enc, seed)
	b.Write(enc)
	b.WriteByte('\n')
	clear(seed)
	clear(enc)
	return b.Bytes()
}

// ParseReaderKey decodes a reader key file. Lines starting with '#' and blank
// lines are ignored and trailing whitespace is trimmed; a "# tls key:"
// comment, if present, must match the key. Errors wrap wire.ErrCorrupt and
// never quote the file.
func ParseReaderKey(b []byte) (ed25519.PrivateKey, error) {
	if len(b) > maxReaderKeyFile {
		return nil, wire.Corruptf("reader key: file is %d bytes, limit %d", len(b), maxReaderKeyFile)
	}
	var lines [][]byte
	fingerprint := ""
	for rest := b; len(rest) > 0; {
		var line []byte
		line, rest, _ = bytes.Cut(rest, []byte("\n"))
		line = bytes.TrimRight(line, " \t\r")
		switch {
		case len(line) == 0:
		case line[0] == '#':
			if fp, ok := bytes.CutPrefix(line, []byte(readerKeyFingerprint)); ok {
				if fingerprint != "" {
					return nil, wire.Corruptf("reader key: second tls key comment")
				}
				fingerprint = string(fp)
			}
		default:
			lines = append(lines, line)
		}
	}
	if len(lines) == 0 || string(lines[0]) != ReaderKeyHeader {
		return nil, wire.Corruptf("reader key: first line is not %q", ReaderKeyHeader)
	}
	if len(lines) != 2 {
		return nil, wire.Corruptf("reader key: want the header and one %q line", readerKeyField)
	}
	v, ok := bytes.CutPrefix(lines[1], []byte(readerKeyField))
	if !ok || len(v) != base64.StdEncoding.EncodedLen(ed25519.SeedSize) {
		return nil, wire.Corruptf("reader key: want %q and %d bytes of base64", readerKeyField, ed25519.SeedSize)
	}
	seed := make([]byte, ed25519.SeedSize+2)
	defer clear(seed)
	n, err := base64.StdEncoding.Strict().Decode(seed, v)
	if err != nil || n != ed25519.SeedSize {
		return nil, wire.Corruptf("reader key: seed is not valid base64 of %d bytes", ed25519.SeedSize)
	}
	k := ed25519.NewKeyFromSeed(seed[:n])
	if fingerprint != "" && fingerprint != keyFingerprint(k.Public().(ed25519.PublicKey)) {
		return nil, wire.Corruptf("reader key: tls key comment does not match the key")
	}
	return k, nil
}
