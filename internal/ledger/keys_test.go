package ledger

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"strings"
	"testing"

	fnote "github.com/transparency-dev/formats/note"
	"golang.org/x/mod/sumdb/note"

	"github.com/embassy-project/embassy/internal/wire"
)

func newKeys(t testing.TB, origin string) *Keys {
	t.Helper()
	priv, pub, err := GenerateKeys(origin)
	if err != nil {
		t.Fatal(err)
	}
	k, err := ParseKeys(priv)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(k.Public(), "\n") != strings.Join(pub, "\n") {
		t.Fatalf("ParseKeys derives other public keys:\n%q\n%q", k.Public(), pub)
	}
	return k
}

func TestKeys(t *testing.T) {
	priv, pub, err := GenerateKeys("embassy.host/a")
	if err != nil {
		t.Fatal(err)
	}
	k, err := ParseKeys(priv)
	if err != nil {
		t.Fatal(err)
	}
	if k.Origin() != "embassy.host/a" || len(pub) != 2 {
		t.Fatalf("origin %q, %d public keys", k.Origin(), len(pub))
	}
	if _, err := NewVerifier("embassy.host/a", []string{pub[1], pub[0]}); err != nil {
		t.Fatalf("keys in the other order: %v", err)
	}
	for _, o := range []string{"", "a b", "a+b", strings.Repeat("o", 256), "é"} {
		if _, _, err := GenerateKeys(o); err == nil {
			t.Errorf("origin %q accepted", o)
		}
	}

	lines := strings.Split(string(priv), "\n")
	secret := func(line string) string { return strings.SplitN(line, "+", 5)[4] }
	other, _, _ := GenerateKeys("embassy.host/b")
	otherLines := strings.Split(string(other), "\n")
	bad := map[string]string{
		"empty":           "",
		"no header":       lines[1] + "\n" + lines[2] + "\n",
		"swapped":         lines[0] + "\n" + lines[2] + "\n" + lines[1] + "\n",
		"names differ":    lines[0] + "\n" + lines[1] + "\n" + otherLines[2] + "\n",
		"no final \\n":    strings.TrimSuffix(string(priv), "\n"),
		"extra line":      string(priv) + "x\n",
		"bad hash":        strings.Replace(string(priv), lines[1], strings.Replace(lines[1], lines[1][len("PRIVATE+KEY+embassy.host/a+"):len("PRIVATE+KEY+embassy.host/a+")+8], "00000000", 1), 1),
		"ml-dsa hash":     lines[0] + "\n" + lines[1] + "\n" + strings.Replace(lines[2], lines[2][len("PRIVATE+KEY+embassy.host/a+"):len("PRIVATE+KEY+embassy.host/a+")+8], "00000000", 1) + "\n",
		"truncated":       string(priv[:len(priv)-10]) + "\n",
		"too long":        string(priv) + strings.Repeat("x", maxKeyFile),
		"not base64":      lines[0] + "\n" + strings.Replace(lines[1], secret(lines[1]), "!!!!", 1) + "\n" + lines[2] + "\n",
		"ml-dsa for both": lines[0] + "\n" + lines[2] + "\n" + lines[2] + "\n",
	}
	for name, b := range bad {
		_, err := ParseKeys([]byte(b))
		if !errors.Is(err, wire.ErrCorrupt) {
			t.Errorf("%s: %v", name, err)
			continue
		}
		for _, l := range lines[1:3] {
			if strings.Contains(err.Error(), secret(l)[:12]) {
				t.Errorf("%s: error shows key material: %v", name, err)
			}
		}
	}
}

func TestNewVerifierRejects(t *testing.T) {
	_, pub, _ := GenerateKeys("embassy.host/a")
	_, pubB, _ := GenerateKeys("embassy.host/b")
	_, edOnly, _ := note.GenerateKey(rand.Reader, "embassy.host/a")
	flipHash := func(vk string) string {
		name, rest, _ := strings.Cut(vk, "+")
		return name + "+00000000" + rest[8:]
	}
	for name, c := range map[string]struct {
		origin string
		keys   []string
	}{
		"one key":       {"embassy.host/a", pub[:1]},
		"three keys":    {"embassy.host/a", append(pub, pub[0])},
		"two ed25519":   {"embassy.host/a", []string{pub[0], edOnly}},
		"two ml-dsa":    {"embassy.host/a", []string{pub[1], pub[1]}},
		"wrong origin":  {"embassy.host/b", pub},
		"mixed logs":    {"embassy.host/a", []string{pub[0], pubB[1]}},
		"ed hash":       {"embassy.host/a", []string{flipHash(pub[0]), pub[1]}},
		"ml-dsa hash":   {"embassy.host/a", []string{pub[0], flipHash(pub[1])}},
		"private key":   {"embassy.host/a", []string{"PRIVATE+KEY+" + pub[0], pub[1]}},
		"bad origin":    {"a b", pub},
		"garbage":       {"embassy.host/a", []string{"x", "y"}},
		"cosig ed25519": {"embassy.host/a", []string{mustCosigV1(t, pub[0]), pub[1]}},
	} {
		if _, err := NewVerifier(c.origin, c.keys); !errors.Is(err, wire.ErrCorrupt) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func mustCosigV1(t *testing.T, vk string) string {
	t.Helper()
	s, err := fnote.VKeyToCosignatureV1(vk)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestParseCheckpointRefuses is tampering case (d): a checkpoint must carry
// both of the log's signatures, over a canonical body with its origin.
func TestParseCheckpointRefuses(t *testing.T) {
	k := newKeys(t, "embassy.host/a")
	v := k.Verifier()
	ed, ml := k.signers()
	root := h32(9)
	good := signCheckpoint(t, k.Origin(), 10, root, ed, ml)
	cp, err := v.ParseCheckpoint(good)
	if err != nil {
		t.Fatal(err)
	}
	if cp.Origin != k.Origin() || cp.Size != 10 || cp.Hash != root || !bytes.Equal(cp.Raw, good) || len(cp.Cosignatures) != 0 {
		t.Fatalf("parsed %+v", cp)
	}
	// The ML-DSA signature alone verifies with standard tooling too.
	mlv, err := fnote.NewVerifierForCosignatureV1(k.Public()[1])
	if err != nil {
		t.Fatal(err)
	}
	if _, err := note.Open(good, note.VerifierList(mlv)); err != nil {
		t.Fatalf("formats' cosignature verifier: %v", err)
	}

	other := newKeys(t, "embassy.host/a") // same origin, other keys
	oed, oml := other.signers()
	otherOrigin := newKeys(t, "embassy.host/b")
	bed, bml := otherOrigin.signers()
	witnessS, _, _ := note.GenerateKey(rand.Reader, "witness.example")
	witness, _ := note.NewSigner(witnessS)

	// A valid Ed25519 line with a corrupted ML-DSA line.
	lines := strings.Split(string(good), "\n")
	badML := strings.Join(lines[:5], "\n") + "\n" + lines[5][:len(lines[5])-8] + "AAAAAAA=\n"

	for name, b := range map[string][]byte{
		"ed25519 only":        signCheckpoint(t, k.Origin(), 10, root, ed),
		"ml-dsa only":         signCheckpoint(t, k.Origin(), 10, root, ml),
		"other keys":          signCheckpoint(t, k.Origin(), 10, root, oed, oml),
		"half other":          signCheckpoint(t, k.Origin(), 10, root, ed, oml),
		"other origin":        signCheckpoint(t, "embassy.host/b", 10, root, bed, bml),
		"witness only":        signCheckpoint(t, k.Origin(), 10, root, witness),
		"ed25519 and witness": signCheckpoint(t, k.Origin(), 10, root, ed, witness),
		"bad ml-dsa":          []byte(badML),
		"extension line":      mustSignText(t, k.Origin()+"\n10\n"+b64(root[:])+"\nextra\n", ed, ml),
		"non-canonical size":  mustSignText(t, k.Origin()+"\n010\n"+b64(root[:])+"\n", ed, ml),
		"short hash":          mustSignText(t, k.Origin()+"\n10\n"+b64(root[:31])+"\n", ed, ml),
		"body changed":        bytes.Replace(good, []byte("\n10\n"), []byte("\n11\n"), 1),
		"not a note":          []byte("embassy.host/a\n10\n"),
		"too big":             append(bytes.Clone(good), bytes.Repeat([]byte("— x AAAAAAA=\n"), MaxCheckpointSize/10)...),
	} {
		if _, err := v.ParseCheckpoint(b); !errors.Is(err, wire.ErrCorrupt) {
			t.Errorf("%s: %v", name, err)
		}
	}
	if _, err := (Verifier{}).ParseCheckpoint(good); !errors.Is(err, wire.ErrCorrupt) {
		t.Errorf("zero verifier: %v", err)
	}

	// Witness lines are kept, not verified.
	n, err := note.Open(good, note.VerifierList(v.ed, v.ml))
	if err != nil {
		t.Fatal(err)
	}
	cosigned, err := note.Sign(n, witness)
	if err != nil {
		t.Fatal(err)
	}
	cp, err = v.ParseCheckpoint(cosigned)
	if err != nil {
		t.Fatal(err)
	}
	if len(cp.Cosignatures) != 1 || cp.Cosignatures[0].Name != "witness.example" {
		t.Fatalf("cosignatures %+v", cp.Cosignatures)
	}
}

func b64(b []byte) string { return base64.StdEncoding.EncodeToString(b) }

func mustSignText(t *testing.T, text string, signers ...note.Signer) []byte {
	t.Helper()
	b, err := note.Sign(&note.Note{Text: text}, signers...)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
