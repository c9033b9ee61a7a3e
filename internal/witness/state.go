package witness

import (
	"bytes"
	"strconv"

	"github.com/transparency-dev/formats/log"

	"github.com/embassy-project/embassy/internal/wire"
)

const stateMagic = "embassy-witness-state-v1"

// maxStateFile caps a state file: the magic, an origin and three short lines.
const maxStateFile = 4 << 10

// savedState is one state file: the log it belongs to, the state, and when it
// was written (Unix seconds by the witness's clock; informative).
type savedState struct {
	Origin string
	State  State
	Time   uint64
}

// stateFileName is the state file's name for origin under the witness's
// directory: the tlog log ID (hex SHA-256 of "o:" || origin), so any origin
// maps to a safe, fixed-length name.
func stateFileName(origin string) string {
	return log.ID(origin) + ".state"
}

// marshal returns the state file's bytes.
func (s savedState) marshal() []byte {
	b := make([]byte, 0, 128+len(s.Origin))
	b = append(b, stateMagic+"\n"...)
	b = append(b, s.Origin...)
	b = append(b, '\n')
	b = strconv.AppendUint(b, s.State.Size, 10)
	b = append(b, '\n')
	b = b64.AppendEncode(b, s.State.Root[:])
	b = append(b, '\n')
	b = strconv.AppendUint(b, s.Time, 10)
	return append(b, '\n')
}

// parseState parses a state file. Errors wrap wire.ErrCorrupt.
func parseState(b []byte) (savedState, error) {
	if len(b) > maxStateFile {
		return savedState{}, wire.Corruptf("witness state: %d bytes over the %d-byte cap", len(b), maxStateFile)
	}
	lines := bytes.Split(b, []byte("\n"))
	if len(lines) != 6 || len(lines[5]) != 0 {
		return savedState{}, wire.Corruptf("witness state: want 5 lines each ending in a newline")
	}
	if string(lines[0]) != stateMagic {
		return savedState{}, wire.Corruptf("witness state: bad magic line")
	}
	var s savedState
	s.Origin = string(lines[1])
	if !validOrigin(s.Origin) {
		return savedState{}, wire.Corruptf("witness state: invalid origin line")
	}
	var err error
	if s.State.Size, err = parseDecimal(lines[2]); err != nil {
		return savedState{}, wire.Corruptf("witness state: size: %v", err)
	}
	h, err := parseHash(lines[3])
	if err != nil {
		return savedState{}, wire.Corruptf("witness state: root hash: %v", err)
	}
	copy(s.State.Root[:], h)
	if s.Time, err = parseDecimal(lines[4]); err != nil {
		return savedState{}, wire.Corruptf("witness state: time: %v", err)
	}
	return s, nil
}
