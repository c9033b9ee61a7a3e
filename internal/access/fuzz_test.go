package access

import (
	"bytes"
	"encoding/asn1"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/embassy-project/embassy/internal/testenv"
	"github.com/embassy-project/embassy/internal/wire"
)

func goldenSeed(f *testing.F, name string) []byte {
	b, err := os.ReadFile(filepath.Join(goldenDir, name))
	if err != nil {
		f.Fatal(err)
	}
	return b
}

func FuzzParseGrant(f *testing.F) {
	b := goldenSeed(f, "grant.bin")
	f.Add(b)
	g, err := ParseGrant(b)
	if err != nil {
		f.Fatal(err)
	}
	g.Signatures = nil
	f.Add(g.Marshal()) // an unsigned request
	f.Add(b[:len(b)-10])
	f.Add([]byte(GrantMagic))
	f.Fuzz(func(t *testing.T, b []byte) {
		testenv.RoundTrip(t, b, ParseGrant, func(g *Grant) ([]byte, error) { return g.Marshal(), nil })
	})
}

func FuzzParseAgentCredential(f *testing.F) {
	b := goldenSeed(f, "agent.cred")
	f.Add(b)
	f.Add(b[:len(b)-1])
	f.Add([]byte(AgentMagic))
	f.Fuzz(func(t *testing.T, b []byte) {
		testenv.RoundTrip(t, b, ParseAgentCredential, func(c *AgentCredential) ([]byte, error) { return c.Marshal(), nil })
	})
}

// FuzzParseExtension covers the credential extension's value: a DER OCTET
// STRING holding either credential.
func FuzzParseExtension(f *testing.F) {
	for _, name := range []string{"grant.bin", "agent.cred"} {
		v, err := asn1.Marshal(goldenSeed(f, name))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(v)
	}
	f.Add([]byte{0x04, 0x00})
	f.Add([]byte{0x04, 0x81, 0x01, 'E'}) // non-minimal length
	f.Fuzz(func(t *testing.T, b []byte) {
		testenv.RoundTrip(t, b, parseExtension, func(c any) ([]byte, error) {
			switch c := c.(type) {
			case *AgentCredential:
				return asn1.Marshal(c.Marshal())
			case *Grant:
				return asn1.Marshal(c.Marshal())
			}
			return nil, errors.New("unknown credential type")
		})
	})
}

func FuzzParseReaderKey(f *testing.F) {
	b := goldenSeed(f, "reader.key")
	f.Add(b)
	f.Add(bytes.ReplaceAll(b, []byte("\n"), []byte("\r\n")))
	f.Add([]byte(ReaderKeyHeader + "\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		k, err := ParseReaderKey(b)
		if err != nil {
			if !errors.Is(err, wire.ErrCorrupt) {
				t.Fatalf("error does not wrap ErrCorrupt: %v", err)
			}
			return
		}
		m := MarshalReaderKey(k)
		k2, err := ParseReaderKey(m)
		if err != nil || !k2.Equal(k) || !bytes.Equal(MarshalReaderKey(k2), m) {
			t.Fatalf("canonical encoding does not round-trip: %v", err)
		}
	})
}

// FuzzVerify feeds certificates to Verify: it must not panic, and every
// refusal must be one of the documented outcomes.
func FuzzVerify(f *testing.F) {
	fx := loadFixture(f)
	for _, name := range []string{"agent.crt", "reader.crt"} {
		der := readPEMCert(f, name)
		f.Add(der)
		f.Add(der[:len(der)/2])
	}
	outcomes := []error{ErrMalformed, ErrKeyMismatch, ErrUnknownGuest, ErrUnknownDataset, ErrNotYetValid, ErrExpired, ErrBadSignature, ErrNotCustodian, ErrBelowThreshold}
	now := goldenAgentFrom.Add(time.Hour)
	f.Fuzz(func(t *testing.T, der []byte) {
		p, err := Verify([][]byte{der}, fx.guests, now, time.Minute)
		if err == nil {
			if p.Guest != fx.id.Guest || (p.Role != Agent && p.Role != Reader) {
				t.Fatalf("accepted peer %+v", p)
			}
			return
		}
		for _, o := range outcomes {
			if errors.Is(err, o) {
				return
			}
		}
		t.Fatalf("refusal is none of the documented outcomes: %v", err)
	})
}
