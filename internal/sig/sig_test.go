package sig

import (
	"errors"
	"testing"
)

func TestSignVerify(t *testing.T) {
	k, err := Generate()
	if err != nil {
		t.Fatal(err)
	}
	msg := []byte("snapshot 7")
	s, err := k.Sign("test", msg)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := ParsePublicKey(k.Public().Bytes())
	if err != nil {
		t.Fatal(err)
	}
	if err := pub.Verify("test", msg, s); err != nil {
		t.Fatal(err)
	}
	k2, _ := NewPrivateKey(k.Bytes())
	if !k2.Public().Equal(pub) {
		t.Fatal("key not reproducible from its bytes")
	}
	other, _ := Generate()
	bad := map[string]func() error{
		"domain":  func() error { return pub.Verify("other", msg, s) },
		"message": func() error { return pub.Verify("test", []byte("snapshot 8"), s) },
		"key":     func() error { return other.Public().Verify("test", msg, s) },
		"short":   func() error { return pub.Verify("test", msg, s[:10]) },
		"zero":    func() error { return PublicKey{}.Verify("test", msg, s) },
		"ed flip": func() error { c := append([]byte{}, s...); c[3] ^= 1; return pub.Verify("test", msg, c) },
		"ml flip": func() error { c := append([]byte{}, s...); c[100] ^= 1; return pub.Verify("test", msg, c) },
		"ed only": func() error { // a valid ed25519 half with the ML-DSA half from another key
			o, _ := other.Sign("test", msg)
			c := append(append([]byte{}, s[:64]...), o[64:]...)
			return pub.Verify("test", msg, c)
		},
	}
	for name, f := range bad {
		if err := f(); !errors.Is(err, ErrBadSignature) {
			t.Errorf("%s: got %v, want ErrBadSignature", name, err)
		}
	}
}

func TestParseErrors(t *testing.T) {
	if _, err := ParsePublicKey(make([]byte, 10)); err == nil {
		t.Fatal("short key accepted")
	}
	if _, err := NewPrivateKey(make([]byte, 10)); err == nil {
		t.Fatal("short seed accepted")
	}
}

func BenchmarkSign(b *testing.B) {
	k, _ := Generate()
	msg := make([]byte, 1024)
	for b.Loop() {
		if _, err := k.Sign("bench", msg); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkVerify(b *testing.B) {
	k, _ := Generate()
	msg := make([]byte, 1024)
	s, _ := k.Sign("bench", msg)
	pub := k.Public()
	for b.Loop() {
		if err := pub.Verify("bench", msg, s); err != nil {
			b.Fatal(err)
		}
	}
}
