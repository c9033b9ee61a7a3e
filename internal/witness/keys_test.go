package witness

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	fnote "github.com/transparency-dev/formats/note"

	"github.com/embassy-project/embassy/internal/wire"
)

func TestGenerateKeys(t *testing.T) {
	k, pub, err := GenerateKeys("host-a.example/witness")
	if err != nil {
		t.Fatal(err)
	}
	if k.Name() != "host-a.example/witness" {
		t.Fatalf("name %q", k.Name())
	}
	for _, tc := range []struct {
		skey, vkey string
		alg        byte
	}{
		{k.Ed25519, pub.Ed25519, algEd25519Cosig},
		{k.MLDSA, pub.MLDSA, algMLDSA44Cosig},
	} {
		if a, err := keyAlg(tc.vkey); err != nil || a != tc.alg {
			t.Fatalf("vkey algorithm 0x%02x, want 0x%02x (%v)", a, tc.alg, err)
		}
		v, err := fnote.NewVerifierForCosignatureV1(tc.vkey)
		if err != nil {
			t.Fatal(err)
		}
		// The hash in the skey and vkey is formats' key hash.
		if !strings.Contains(tc.skey, fmt.Sprintf("+%08x+", v.KeyHash())) || !strings.HasPrefix(tc.vkey, fmt.Sprintf("host-a.example/witness+%08x+", v.KeyHash())) {
			t.Fatalf("key hash %08x not in keys", v.KeyHash())
		}
	}
	if p2, err := k.Public(); err != nil || p2 != pub {
		t.Fatalf("Public: %v", err)
	}
	k2, err := ParseKeys(k.Marshal())
	if err != nil || k2 != k {
		t.Fatalf("ParseKeys(Marshal): %v", err)
	}
	for _, s := range []string{fmt.Sprint(k), fmt.Sprintf("%+v", k), fmt.Sprintf("%#v", k), fmt.Sprintf("%v", []Keys{k})} {
		if strings.Contains(s, "PRIVATE") {
			t.Fatalf("formatting reveals keys: %s", s)
		}
	}
	for _, name := range []string{"", "a b", "a+b", "a\nb"} {
		if _, _, err := GenerateKeys(name); err == nil {
			t.Errorf("GenerateKeys(%q) succeeded", name)
		}
	}
}

func TestParseKeysRejects(t *testing.T) {
	k, _ := keysFor(t, "w.example/a")
	other, _ := keysFor(t, "w.example/b")
	swapHash := func(s string) string {
		parts := strings.SplitN(s, "+", 5)
		parts[3] = "00000000"
		return strings.Join(parts, "+")
	}
	flipKey := func(s string) string {
		// Change the algorithm byte: 0x04 ↔ 0x01, 0x06 → 0x05.
		parts := strings.SplitN(s, "+", 5)
		raw, _ := b64.DecodeString(parts[4])
		raw[0] ^= 5
		parts[4] = b64.EncodeToString(raw)
		return strings.Join(parts, "+")
	}
	for name, b := range map[string]string{
		"empty":          "",
		"no magic":       k.Ed25519 + "\n" + k.MLDSA + "\n",
		"bad magic":      "embassy-witness-key-v2\n" + k.Ed25519 + "\n" + k.MLDSA + "\n",
		"one key":        keyMagic + "\n" + k.Ed25519 + "\n",
		"no final nl":    keyMagic + "\n" + k.Ed25519 + "\n" + k.MLDSA,
		"extra line":     keyMagic + "\n" + k.Ed25519 + "\n" + k.MLDSA + "\n\n",
		"swapped":        keyMagic + "\n" + k.MLDSA + "\n" + k.Ed25519 + "\n",
		"two names":      keyMagic + "\n" + k.Ed25519 + "\n" + other.MLDSA + "\n",
		"wrong ed hash":  keyMagic + "\n" + swapHash(k.Ed25519) + "\n" + k.MLDSA + "\n",
		"wrong ml hash":  keyMagic + "\n" + k.Ed25519 + "\n" + swapHash(k.MLDSA) + "\n",
		"plain Ed25519":  keyMagic + "\n" + flipKey(k.Ed25519) + "\n" + k.MLDSA + "\n",
		"wrong ml alg":   keyMagic + "\n" + k.Ed25519 + "\n" + flipKey(k.MLDSA) + "\n",
		"upper hex hash": keyMagic + "\n" + upperHash(k.Ed25519) + "\n" + k.MLDSA + "\n",
	} {
		if name == "upper hex hash" && upperHash(k.Ed25519) == k.Ed25519 {
			continue // the hash has no letters to upper-case
		}
		_, err := ParseKeys([]byte(b))
		if !errors.Is(err, wire.ErrCorrupt) {
			t.Errorf("%s: %v, want ErrCorrupt", name, err)
			continue
		}
		for _, secret := range []string{strings.SplitN(k.Ed25519, "+", 5)[4], strings.SplitN(k.MLDSA, "+", 5)[4]} {
			if strings.Contains(err.Error(), secret) {
				t.Errorf("%s: error reveals key material", name)
			}
		}
	}
}

// upperHash upper-cases the hex key hash of a private key string.
func upperHash(skey string) string {
	parts := strings.SplitN(skey, "+", 5)
	parts[3] = strings.ToUpper(parts[3])
	return strings.Join(parts, "+")
}
