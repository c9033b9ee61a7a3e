package witness

import (
	"bytes"
	"encoding/base64"
	"strconv"
	"unicode"
	"unicode/utf8"

	"github.com/transparency-dev/formats/log"

	"github.com/embassy-project/embassy/internal/wire"
)

const (
	// MaxRequestSize caps an add-checkpoint request body and a witness's
	// response body. A request with 63 proof lines and a checkpoint carrying
	// several ML-DSA signatures is well under it.
	MaxRequestSize = 64 << 10

	// MaxProofLen is the most consistency proof hashes a request may carry
	// (c2sp.org/tlog-witness: a client MUST NOT send more than 63).
	MaxProofLen = 63

	// maxSigLines is note.Open's own limit on signatures in a note.
	maxSigLines = 100

	// HashSize is the size of a tree hash (RFC 6962 with SHA-256).
	HashSize = 32
)

// sigPrefix starts every note signature line: U+2014 EM DASH and a space.
const sigPrefix = "\u2014 "

var b64 = base64.StdEncoding.Strict()

// Request is a parsed add-checkpoint request body.
type Request struct {
	// Old is the tree size the client believes the witness last cosigned.
	Old uint64
	// Proof is the consistency proof from Old to the checkpoint's size.
	Proof [][]byte
	// Checkpoint is the signed checkpoint note, exactly as sent.
	Checkpoint []byte
}

// ParseRequest parses an add-checkpoint body. It checks the framing (size
// line, hash lines, empty line, a non-empty note ending in a newline); the
// note's signatures and checkpoint text are checked by the witness. Every
// error wraps wire.ErrCorrupt.
func ParseRequest(b []byte) (Request, error) {
	if len(b) > MaxRequestSize {
		return Request{}, wire.Corruptf("add-checkpoint: body of %d bytes over the %d-byte cap", len(b), MaxRequestSize)
	}
	line, rest, ok := bytes.Cut(b, []byte("\n"))
	if !ok {
		return Request{}, wire.Corruptf("add-checkpoint: no old size line")
	}
	num, ok := bytes.CutPrefix(line, []byte("old "))
	if !ok {
		return Request{}, wire.Corruptf("add-checkpoint: first line is not \"old <size>\"")
	}
	old, err := parseDecimal(num)
	if err != nil {
		return Request{}, wire.Corruptf("add-checkpoint: old size: %v", err)
	}
	r := Request{Old: old}
	for {
		line, rest, ok = bytes.Cut(rest, []byte("\n"))
		if !ok {
			return Request{}, wire.Corruptf("add-checkpoint: no empty line before the checkpoint")
		}
		if len(line) == 0 {
			break
		}
		if len(r.Proof) == MaxProofLen {
			return Request{}, wire.Corruptf("add-checkpoint: more than %d proof lines", MaxProofLen)
		}
		h, err := parseHash(line)
		if err != nil {
			return Request{}, wire.Corruptf("add-checkpoint: proof line %d: %v", len(r.Proof)+1, err)
		}
		r.Proof = append(r.Proof, h)
	}
	if len(rest) == 0 || rest[len(rest)-1] != '\n' {
		return Request{}, wire.Corruptf("add-checkpoint: checkpoint missing or not ending in a newline")
	}
	r.Checkpoint = rest
	return r, nil
}

// Marshal returns the request body.
func (r Request) Marshal() []byte {
	b := make([]byte, 0, 32+len(r.Proof)*45+len(r.Checkpoint))
	b = append(b, "old "...)
	b = strconv.AppendUint(b, r.Old, 10)
	b = append(b, '\n')
	for _, h := range r.Proof {
		b = b64.AppendEncode(b, h)
		b = append(b, '\n')
	}
	b = append(b, '\n')
	return append(b, r.Checkpoint...)
}

// origin returns the first line of a note: a checkpoint's origin.
func origin(note []byte) string {
	line, _, _ := bytes.Cut(note, []byte("\n"))
	return string(line)
}

// parseDecimal parses an ASCII decimal with no sign and no leading zeros.
func parseDecimal(b []byte) (uint64, error) {
	if len(b) == 0 || len(b) > 1 && b[0] == '0' || b[0] == '+' {
		return 0, strconv.ErrSyntax
	}
	return strconv.ParseUint(string(b), 10, 64)
}

// parseHash decodes one canonical base64 tree hash.
func parseHash(b []byte) ([]byte, error) {
	h, err := b64.DecodeString(string(b))
	if err != nil {
		return nil, err
	}
	if len(h) != HashSize {
		return nil, strconv.ErrRange
	}
	return h, nil
}

// Checkpoint is the part of a checkpoint a witness checks: c2sp.org/tlog-checkpoint's
// first three lines.
type Checkpoint struct {
	Origin string
	Size   uint64
	Root   [HashSize]byte
}

// parseCheckpointText parses a checkpoint note's text (without signatures):
// origin, canonical decimal size, canonical base64 32-byte root, then any
// extension lines, which it returns. Errors wrap wire.ErrCorrupt.
func parseCheckpointText(text []byte) (Checkpoint, []byte, error) {
	var c log.Checkpoint
	ext, err := c.Unmarshal(text)
	if err != nil {
		return Checkpoint{}, nil, wire.Corruptf("checkpoint: %v", err)
	}
	if !validOrigin(c.Origin) {
		return Checkpoint{}, nil, wire.Corruptf("checkpoint: invalid origin line")
	}
	if len(c.Hash) != HashSize {
		return Checkpoint{}, nil, wire.Corruptf("checkpoint: root hash is %d bytes, want %d", len(c.Hash), HashSize)
	}
	// formats accepts "007" and padding-bit variants; require the one canonical form.
	if !bytes.HasPrefix(text, c.Marshal()) {
		return Checkpoint{}, nil, wire.Corruptf("checkpoint: size or root hash not in canonical form")
	}
	cp := Checkpoint{Origin: c.Origin, Size: c.Size}
	copy(cp.Root[:], c.Hash)
	return cp, ext, nil
}

// marshalCheckpointText is parseCheckpointText's inverse.
func marshalCheckpointText(cp Checkpoint, ext []byte) []byte {
	return append(log.Checkpoint{Origin: cp.Origin, Size: cp.Size, Hash: cp.Root[:]}.Marshal(), ext...)
}

// validOrigin reports whether s can be an origin line: non-empty UTF-8
// without control characters.
func validOrigin(s string) bool {
	if s == "" || !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		if unicode.IsControl(r) {
			return false
		}
	}
	return true
}

// sigLine is one note signature line.
type sigLine struct {
	name string
	hash uint32
	line []byte // the whole line including "— " and "\n"
}

// parseSigLines parses a block of note signature lines ("— <name>
// <base64(4-byte key hash || signature)>\n" each), the body of a witness's
// 200 response and the tail of a signed note. Errors wrap wire.ErrCorrupt.
func parseSigLines(b []byte) ([]sigLine, error) {
	var out []sigLine
	for len(b) > 0 {
		i := bytes.IndexByte(b, '\n')
		if i < 0 {
			return nil, wire.Corruptf("signature line does not end in a newline")
		}
		line := b[:i+1]
		b = b[i+1:]
		if len(out) == maxSigLines {
			return nil, wire.Corruptf("more than %d signature lines", maxSigLines)
		}
		rest, ok := bytes.CutPrefix(line[:i], []byte(sigPrefix))
		if !ok {
			return nil, wire.Corruptf("signature line %d does not start with \"— \"", len(out)+1)
		}
		name, enc, ok := bytes.Cut(rest, []byte(" "))
		if !ok || !validKeyName(string(name)) {
			return nil, wire.Corruptf("signature line %d: bad key name", len(out)+1)
		}
		sig, err := base64.StdEncoding.DecodeString(string(enc))
		if err != nil || len(sig) < 5 {
			return nil, wire.Corruptf("signature line %d: bad signature encoding", len(out)+1)
		}
		out = append(out, sigLine{
			name: string(name),
			hash: uint32(sig[0])<<24 | uint32(sig[1])<<16 | uint32(sig[2])<<8 | uint32(sig[3]),
			line: line,
		})
	}
	return out, nil
}

// validKeyName is signed-note's rule for key names: non-empty UTF-8 with no
// spaces and no "+".
func validKeyName(s string) bool {
	if s == "" || !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		if unicode.IsSpace(r) || r == '+' || unicode.IsControl(r) {
			return false
		}
	}
	return true
}

// splitNote splits a signed note into its text (ending in "\n") and its
// signature block, at the last blank line, as note.Open does.
func splitNote(n []byte) (text, sigs []byte, err error) {
	i := bytes.LastIndex(n, []byte("\n\n"))
	if i < 0 {
		return nil, nil, wire.Corruptf("note: no blank line before the signatures")
	}
	return n[:i+1], n[i+2:], nil
}
