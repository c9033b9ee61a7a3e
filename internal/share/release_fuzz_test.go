package share

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/embassy-project/embassy/internal/custodian"
	"github.com/embassy-project/embassy/internal/sig"
	"github.com/embassy-project/embassy/internal/wire"
)

// FuzzInspectRelease checks that InspectRelease never panics, fails only with
// ErrCorrupt or ErrNotCustodian, and that a release it accepts re-encodes to
// exactly its input.
func FuzzInspectRelease(f *testing.F) {
	for _, n := range goldenReleasers {
		b, err := os.ReadFile(filepath.Join(goldenDir, "release-v1."+n+".rel"))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
		f.Add(b[:len(b)-sig.SignatureSize])
		f.Add(b[:len(b)/2])
	}
	f.Add([]byte(ReleaseMagic))
	f.Add([]byte(ReleaseMagic + "\x05alice"))
	f.Fuzz(func(t *testing.T, b []byte) {
		h, err := InspectRelease(b)
		if err != nil {
			if !errors.Is(err, wire.ErrCorrupt) && !errors.Is(err, ErrNotCustodian) {
				t.Fatalf("error wraps neither ErrCorrupt nor ErrNotCustodian: %v", err)
			}
			return
		}
		ref := h.Dataset.Custodian(h.Custodian)
		if ref == nil || ref.Fingerprint != h.Fingerprint {
			t.Fatal("accepted a release whose custodian the dataset does not list")
		}
		p, err := parseRelease(b)
		if err != nil {
			t.Fatal(err)
		}
		if p.recipient.Fingerprint() != h.Fingerprint || p.recipient.Name != h.Custodian {
			t.Fatal("embedded recipient does not match the header")
		}
		// The header re-encodes to the bytes it came from.
		w := wire.NewWriter(nil)
		w.Fixed([]byte(ReleaseMagic))
		w.String(h.Custodian)
		w.Fixed(p.recipient.KEM.Bytes())
		w.Fixed(p.recipient.Verifier.Bytes())
		w.LenBytes(h.Dataset.Marshal())
		w.Fixed(h.Order[:])
		w.String(h.Host)
		if !bytes.HasPrefix(b, w.Bytes()) || len(b) != w.Len()+EncSize+1+SealedSize+sig.SignatureSize {
			t.Fatal("release does not re-encode to the input")
		}
		if len(p.recipient.KEM.Bytes()) != custodian.KEMPublicKeySize {
			t.Fatal("bad KEM key size")
		}
	})
}
