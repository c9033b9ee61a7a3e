package gov

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

func agrSeeds(f *testing.F) (text, signed []byte) {
	text, err := os.ReadFile(filepath.Join(agrGoldenDir, "agreement-v1.json"))
	if err != nil {
		f.Fatal(err)
	}
	signed, err = os.ReadFile(filepath.Join(agrGoldenDir, "agreement-v1.signed"))
	if err != nil {
		f.Fatal(err)
	}
	return text, signed
}

// FuzzParseAgreement: a text parses only if it is canonical (Marshal gives
// it back), and every refusal is ErrMalformed or ErrUnsafe.
func FuzzParseAgreement(f *testing.F) {
	text, _ := agrSeeds(f)
	f.Add(text)
	f.Add(bytes.Replace(text, []byte(`"witness_threshold": 2`), []byte(`"witness_threshold": 1`), 1))
	f.Add(bytes.Replace(text, []byte(`"version": 1`), []byte(`"version": 2`), 1))
	f.Add([]byte("{}\n"))
	f.Add([]byte("null\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		a, err := ParseAgreement(b)
		if err != nil {
			if !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrUnsafe) {
				t.Fatalf("error %v is neither ErrMalformed nor ErrUnsafe", err)
			}
			return
		}
		if !bytes.Equal(a.Marshal(), b) {
			t.Fatal("parsed a text that is not canonical")
		}
	})
}

// FuzzOpenAgreement: no panics; what opens has a canonical text and
// signers it names.
func FuzzOpenAgreement(f *testing.F) {
	text, signed := agrSeeds(f)
	f.Add(signed)
	f.Add(text)
	f.Add(append(bytes.Clone(text), "\n— custodian:alice AAAAAAAA\n"...))
	f.Add(append(bytes.Clone(text), "\n— host:a AAAAAAAAAAAA\n"...))
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := OpenAgreement(b, nil)
		if err != nil {
			return
		}
		if !bytes.Equal(s.Text, s.Agreement.Marshal()) {
			t.Fatal("opened a text that is not canonical")
		}
		for _, n := range s.Custodians {
			if s.Agreement.Custodian(n) == nil {
				t.Fatalf("signer %s is not a custodian", n)
			}
		}
		for _, n := range s.Acks {
			if s.Agreement.Host(n) == nil {
				t.Fatalf("ack by %s, not a host", n)
			}
		}
	})
}
