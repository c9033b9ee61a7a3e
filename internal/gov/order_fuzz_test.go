package gov

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// FuzzParseOrder: every input parses to an order that marshals back to the
// same bytes, or fails cleanly with ErrMalformed.
func FuzzParseOrder(f *testing.F) {
	fx := testOrderAgreement(f)
	for _, kind := range Actions {
		f.Add(fx.order(f, kind).Marshal())
	}
	if b, err := os.ReadFile(filepath.Join("..", "..", "testdata", "gov", "order-activate.txt")); err == nil {
		f.Add(b)
	}
	f.Add([]byte(OrderHeader + "\n"))
	f.Add([]byte(OrderHeader + "\nkind: revoke\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		o, err := ParseOrder(b)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error does not wrap ErrMalformed: %v", err)
			}
			return
		}
		if m := o.Marshal(); !bytes.Equal(m, b) {
			t.Fatalf("Marshal(ParseOrder(b)) != b:\n%q\n%q", m, b)
		}
		if err := o.Validate(); err != nil {
			t.Fatalf("parsed order does not validate: %v", err)
		}
	})
}

// FuzzOpenOrder: any file opens against the fixture agreement or fails
// with ErrMalformed or ErrBadSignature; what opens has a text that
// parses, signers of the agreement, and Check does not panic on it.
func FuzzOpenOrder(f *testing.F) {
	fx := testOrderAgreement(f)
	for _, kind := range Actions {
		f.Add(fx.sign(f, fx.order(f, kind), "alice", "bob"))
	}
	f.Add(fx.sign(f, fx.order(f, Activate), "mallory"))
	if b, err := os.ReadFile(filepath.Join("..", "..", "testdata", "gov", "order-activate.signed")); err == nil {
		f.Add(b)
	}
	f.Add(fx.order(f, Activate).Marshal())
	f.Fuzz(func(t *testing.T, b []byte) {
		so, err := OpenOrder(b, fx.a)
		if err != nil {
			if !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrBadSignature) {
				t.Fatalf("unexpected error class: %v", err)
			}
			return
		}
		if _, err := ParseOrder(so.Text); err != nil {
			t.Fatalf("opened text does not parse: %v", err)
		}
		if !bytes.HasPrefix(so.File, so.Text) {
			t.Fatal("text is not the start of the file")
		}
		for _, s := range so.Signers {
			if fx.a.Custodian(s) == nil {
				t.Fatalf("signer %q is not a custodian", s)
			}
		}
		for _, u := range so.Unknown {
			if strings.ContainsAny(u, " \n") {
				t.Fatalf("unknown signer name %q", u)
			}
		}
		_ = Check(so, fx.a, fx.state(), fx.now.Add(time.Duration(len(b))*time.Second))
	})
}
