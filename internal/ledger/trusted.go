package ledger

import (
	"encoding/base64"
	"fmt"
	"strconv"
	"strings"

	"github.com/embassy-project/embassy/internal/wire"
)

// TrustedHeader is the first line of a Trusted's text form.
const TrustedHeader = "embassy-ledger-trusted-v1"

// Trusted is what an auditor remembers about a log: the last checkpoint it
// accepted. The zero value trusts nothing yet (the first checkpoint is
// accepted on its signatures alone).
type Trusted struct {
	Origin string
	Size   uint64
	Hash   [32]byte
}

// IsZero reports whether t is the zero value.
func (t Trusted) IsZero() bool { return t == Trusted{} }

// MarshalText returns the text form: TrustedHeader, origin, decimal size and
// standard base64 of the hash, each line ending in "\n".
func (t Trusted) MarshalText() ([]byte, error) {
	if !ValidOrigin(t.Origin) {
		return nil, fmt.Errorf("marshal trusted state: bad origin %q", t.Origin)
	}
	return fmt.Appendf(nil, "%s\n%s\n%d\n%s\n", TrustedHeader, t.Origin, t.Size, base64.StdEncoding.EncodeToString(t.Hash[:])), nil
}

// UnmarshalText parses the text form strictly (only what MarshalText
// writes). Errors wrap wire.ErrCorrupt.
func (t *Trusted) UnmarshalText(b []byte) error {
	v, err := ParseTrusted(b)
	if err != nil {
		return err
	}
	*t = v
	return nil
}

// ParseTrusted parses a Trusted's text form. Errors wrap wire.ErrCorrupt.
func ParseTrusted(b []byte) (Trusted, error) {
	if len(b) > 1024 {
		return Trusted{}, wire.Corruptf("trusted state: %d bytes, too long", len(b))
	}
	lines := strings.Split(string(b), "\n")
	if len(lines) != 5 || lines[0] != TrustedHeader || lines[4] != "" {
		return Trusted{}, wire.Corruptf("trusted state: want %q and three lines", TrustedHeader)
	}
	t := Trusted{Origin: lines[1]}
	if !ValidOrigin(t.Origin) {
		return Trusted{}, wire.Corruptf("trusted state: bad origin")
	}
	size, err := strconv.ParseUint(lines[2], 10, 64)
	if err != nil || strconv.FormatUint(size, 10) != lines[2] {
		return Trusted{}, wire.Corruptf("trusted state: bad size")
	}
	t.Size = size
	h, err := base64.StdEncoding.DecodeString(lines[3])
	if err != nil || len(h) != 32 || base64.StdEncoding.EncodeToString(h) != lines[3] {
		return Trusted{}, wire.Corruptf("trusted state: bad hash")
	}
	copy(t.Hash[:], h)
	return t, nil
}
