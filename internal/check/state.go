package check

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/zeebo/blake3"

	"github.com/embassy-project/embassy/internal/atomicfile"
	"github.com/embassy-project/embassy/internal/ledger"
	"github.com/embassy-project/embassy/internal/wire"
)

// DirState keeps an auditor's state in a directory:
//
//	trust/HOST.checkpoint                 the last accepted checkpoint of HOST's log (ledger.Trusted text)
//	evidence/HOST/TIME-DIGEST.challenge   a storage-proof challenge sent to HOST
//	evidence/HOST/TIME-DIGEST.receipt     HOST's signed receipt for it
//
// The guest's own checks use HOME; an auditor passes --state DIR.
type DirState struct {
	Dir string
	Now func() time.Time
}

// Load implements TrustStore.
func (d DirState) Load(host string) (ledger.Trusted, error) {
	if !wire.ValidName(host) {
		return ledger.Trusted{}, fmt.Errorf("host name %q", host)
	}
	b, err := os.ReadFile(filepath.Join(d.Dir, "trust", host+".checkpoint"))
	if errors.Is(err, os.ErrNotExist) {
		return ledger.Trusted{}, nil
	}
	if err != nil {
		return ledger.Trusted{}, err
	}
	return ledger.ParseTrusted(b)
}

// Save implements TrustStore.
func (d DirState) Save(host string, t ledger.Trusted) error {
	if !wire.ValidName(host) {
		return fmt.Errorf("host name %q", host)
	}
	b, err := t.MarshalText()
	if err != nil {
		return err
	}
	dir := filepath.Join(d.Dir, "trust")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	return atomicfile.Write(filepath.Join(dir, host+".checkpoint"), b, 0o600)
}

// Evidence keeps a challenge and its receipt (Audit.Evidence).
func (d DirState) Evidence(host string, challenge, receipt []byte) error {
	if !wire.ValidName(host) {
		return fmt.Errorf("host name %q", host)
	}
	now := time.Now
	if d.Now != nil {
		now = d.Now
	}
	dir := filepath.Join(d.Dir, "evidence", host)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	h := blake3.Sum256(challenge)
	base := filepath.Join(dir, fmt.Sprintf("%s-%x", now().UTC().Format("20060102T150405Z"), h[:6]))
	if err := atomicfile.Write(base+".challenge", challenge, 0o600); err != nil {
		return err
	}
	return atomicfile.Write(base+".receipt", receipt, 0o600)
}
