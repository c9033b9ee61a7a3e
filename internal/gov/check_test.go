package gov

import (
	"errors"
	"strings"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/embassy-project/embassy/internal/custodian"
)

// checkCase is one row of TestCheck: an order of kind, edited, signed by
// signers (the file optionally tampered with), opened and checked against a
// state at f.now+at.
type checkCase struct {
	name    string
	kind    Action
	edit    func(f *orderFixture, o *Order)
	signers []string
	file    func(t *testing.T, f *orderFixture, file []byte, o *Order) []byte // tamper with the signed file
	so      func(so *SignedOrder)                                             // tamper with the opened order
	state   func(t *testing.T, f *orderFixture, s State, o *Order) State
	at      time.Duration
	want    error  // nil: Check passes
	msg     string // the error must mention this
}

func checkCases() []checkCase {
	active := func(t *testing.T, f *orderFixture, _ State, _ *Order) State { return f.activeState(t) }
	revoked := func(name string) func(*testing.T, *orderFixture, State, *Order) State {
		return func(_ *testing.T, f *orderFixture, s State, _ *Order) State {
			s.Revoked = append(s.Revoked, f.a.Custodian(name).Fingerprint)
			return s
		}
	}
	skew := 300 * time.Second
	return []checkCase{
		// Every kind passes when it is right.
		{name: "activate", kind: Activate, signers: []string{"alice", "bob"}},
		{name: "activate from armed", kind: Activate, signers: []string{"alice", "bob"},
			state: func(_ *testing.T, f *orderFixture, s State, _ *Order) State {
				s, _ = s.Tick(f.a, f.now.Add(2*time.Hour))
				return s
			}},
		{name: "activate another host while active", kind: Activate, signers: []string{"alice", "carol"}, state: active,
			edit: func(f *orderFixture, o *Order) { o.Host, o.Epoch = "a", 3 }},
		{name: "activate highly-restricted on an allowed host", kind: Activate, signers: []string{"alice", "bob"},
			edit: func(f *orderFixture, o *Order) { o.Dataset, o.Host = "secrets", "a" }},
		{name: "return", kind: Return, signers: []string{"bob", "carol"}, state: active},
		{name: "expire", kind: Expire, signers: []string{"bob", "carol"}},
		{name: "expire exactly at the end of retention", kind: Expire, signers: []string{"bob", "carol"},
			edit: func(f *orderFixture, o *Order) { o.Before = f.now.Add(-30 * 24 * time.Hour) }},
		{name: "grant", kind: Grant, signers: []string{"alice", "carol"}},
		{name: "rotate custodian keys", kind: Rotate, signers: []string{"alice", "bob"}},
		{name: "rotate re-share", kind: Rotate, signers: []string{"alice", "bob"},
			edit: func(f *orderFixture, o *Order) { o.Custodian, o.NewKeys, o.Dataset = "", "", "population" }},
		{name: "amend", kind: Amend, signers: []string{"alice", "carol"}},
		{name: "revoke", kind: Revoke, signers: []string{"alice", "bob"}},
		{name: "three signers", kind: Activate, signers: []string{"carol", "bob", "alice"}},

		// Signatures.
		{name: "forged signature", kind: Activate, signers: []string{"alice", "bob"}, want: ErrBadSignature, msg: "custodian:bob",
			file: func(t *testing.T, f *orderFixture, file []byte, _ *Order) []byte {
				other := f.sign(t, f.order(t, Activate), "bob")
				return []byte(strings.Replace(string(file), sigLines(file)[1], sigLines(other)[0], 1))
			}},
		{name: "damaged signature", kind: Activate, signers: []string{"alice", "bob"}, want: ErrBadSignature, msg: "custodian:alice",
			file: func(t *testing.T, _ *orderFixture, file []byte, _ *Order) []byte {
				return []byte(strings.Replace(string(file), sigLines(file)[0], flipSigBit(t, sigLines(file)[0], 3000), 1))
			}},
		{name: "text changed after signing", kind: Activate, signers: []string{"alice", "bob"}, want: ErrBadSignature,
			file: func(_ *testing.T, _ *orderFixture, file []byte, _ *Order) []byte {
				return []byte(strings.Replace(string(file), "epoch: 2", "epoch: 3", 1))
			}},
		{name: "unknown key", kind: Activate, signers: []string{"alice", "bob", "mallory"}, want: ErrUnknownSigner,
			msg: "signature by a key not in agreement v1: custodian:mallory"},
		{name: "custodian name with another key", kind: Activate, signers: []string{"alice", "bob"}, want: ErrUnknownSigner,
			msg: "custodian:carol",
			file: func(t *testing.T, f *orderFixture, file []byte, _ *Order) []byte {
				impostor, err := custodian.Generate("carol")
				if err != nil {
					t.Fatal(err)
				}
				out, err := SignOrder(file, impostor)
				if err != nil {
					t.Fatal(err)
				}
				return out
			}},
		{name: "host key", kind: Activate, signers: []string{"alice", "bob"}, want: ErrUnknownSigner, msg: "host:b",
			file: func(t *testing.T, f *orderFixture, file []byte, _ *Order) []byte {
				n, err := splitOrderFile(file)
				if err != nil {
					t.Fatal(err)
				}
				out, err := noteSignFile(n, "host:b", f)
				if err != nil {
					t.Fatal(err)
				}
				return out
			}},
		{name: "signed only by unknown keys", kind: Activate, signers: []string{"mallory"}, want: ErrUnknownSigner},
		{name: "revoked key", kind: Activate, signers: []string{"alice", "bob"}, state: revoked("bob"), want: ErrRevoked,
			msg: "custodian bob"},
		{name: "same custodian twice in the file", kind: Activate, signers: []string{"alice"}, want: ErrQuorum,
			msg: "2 of 3 custodians needed, signed by: alice",
			file: func(t *testing.T, f *orderFixture, file []byte, o *Order) []byte {
				// A second, separately made signature by alice (ML-DSA
				// signatures are randomised, so the line differs).
				second := f.sign(t, o, "alice")
				if sigLines(second)[0] == sigLines(file)[0] {
					t.Fatal("two signatures by alice are identical")
				}
				return append(file, sigLines(second)[0]+"\n"...)
			}},
		{name: "same custodian twice in Signers", kind: Activate, signers: []string{"alice"}, want: ErrQuorum,
			msg: "signed by: alice", so: func(so *SignedOrder) { so.Signers = []string{"alice", "alice"} }},
		{name: "below quorum", kind: Activate, signers: []string{"alice"}, want: ErrQuorum,
			msg: "2 of 3 custodians needed, signed by: alice"},
		{name: "no signatures", kind: Activate, signers: []string{"alice"}, want: ErrQuorum, msg: "signed by: nobody",
			so: func(so *SignedOrder) { so.Signers = nil }},
		{name: "signer not in the agreement", kind: Activate, signers: []string{"alice"}, want: ErrUnknownSigner,
			so: func(so *SignedOrder) { so.Signers = append(so.Signers, "zed") }},
		{name: "wrong role", kind: Activate, signers: []string{"bob", "carol"}, want: ErrRole, msg: "role \"minister\""},
		{name: "amend without the minister", kind: Amend, signers: []string{"bob", "carol"}, want: ErrRole, msg: "minister"},

		// Guest, agreement, time, replay.
		{name: "other guest", kind: Activate, signers: []string{"alice", "bob"}, want: ErrWrongGuest, msg: "fedcba9876543210fedcba9876543210",
			edit: func(_ *orderFixture, o *Order) { o.Guest = "fedcba9876543210fedcba9876543210" }},
		{name: "other agreement version", kind: Activate, signers: []string{"alice", "bob"}, want: ErrWrongAgreement, msg: "v2",
			edit: func(_ *orderFixture, o *Order) { o.Agreement = 2 }},
		{name: "state at another agreement version", kind: Activate, signers: []string{"alice", "bob"}, want: ErrWrongAgreement,
			state: func(_ *testing.T, _ *orderFixture, s State, _ *Order) State { s.Agreement = 2; return s }},
		{name: "expired", kind: Activate, signers: []string{"alice", "bob"}, at: 23*time.Hour + skew + time.Second, want: ErrExpired},
		{name: "expired at the edge of the skew", kind: Activate, signers: []string{"alice", "bob"}, at: 23*time.Hour + skew},
		{name: "not yet valid", kind: Activate, signers: []string{"alice", "bob"}, at: -time.Hour - skew - time.Second, want: ErrNotYetValid},
		{name: "valid at the edge of the skew", kind: Activate, signers: []string{"alice", "bob"}, at: -time.Hour - skew},
		{name: "replayed", kind: Activate, signers: []string{"alice", "bob"}, want: ErrReplay,
			state: func(_ *testing.T, _ *orderFixture, s State, o *Order) State {
				s.Orders = append(s.Orders, o.IDString())
				return s
			}},
		{name: "malformed order", kind: Activate, signers: []string{"alice", "bob"}, want: ErrMalformed,
			so: func(so *SignedOrder) { so.Order.Reason = "" }},
		{name: "malformed text", kind: Activate, signers: []string{"alice", "bob"}, want: ErrMalformed,
			file: func(t *testing.T, f *orderFixture, _ []byte, o *Order) []byte {
				text := strings.Replace(string(o.Marshal()), "kind: activate", "kind: activate ", 1)
				file, err := signOrderUnchecked([]byte(text), f.ids["alice"])
				if err != nil {
					t.Fatal(err)
				}
				return file
			}},

		// Epochs.
		{name: "stale epoch", kind: Activate, signers: []string{"alice", "bob"}, want: ErrStaleEpoch, msg: "must name epoch 2",
			edit: func(_ *orderFixture, o *Order) { o.Epoch = 1 }},
		{name: "stale epoch after activation", kind: Activate, signers: []string{"alice", "bob"}, state: active, want: ErrStaleEpoch},
		{name: "epoch gap", kind: Activate, signers: []string{"alice", "bob"}, want: ErrEpochGap,
			edit: func(_ *orderFixture, o *Order) { o.Epoch = 3 }},
		{name: "return stale epoch", kind: Return, signers: []string{"alice", "bob"}, state: active, want: ErrStaleEpoch,
			edit: func(_ *orderFixture, o *Order) { o.Epoch = 2 }},
		{name: "return epoch gap", kind: Return, signers: []string{"alice", "bob"}, state: active, want: ErrEpochGap,
			edit: func(_ *orderFixture, o *Order) { o.Epoch = 4 }},

		// Kind-specific rules.
		{name: "activate unknown dataset", kind: Activate, signers: []string{"alice", "bob"}, want: ErrNotAllowed, msg: "dataset \"payroll\"",
			edit: func(_ *orderFixture, o *Order) { o.Dataset = "payroll" }},
		{name: "activate unknown host", kind: Activate, signers: []string{"alice", "bob"}, want: ErrNotAllowed, msg: "host \"z\"",
			edit: func(_ *orderFixture, o *Order) { o.Host = "z" }},
		{name: "activate on a host not allowed for the class", kind: Activate, signers: []string{"alice", "bob"}, want: ErrNotAllowed,
			msg: "highly-restricted", edit: func(_ *orderFixture, o *Order) { o.Dataset, o.Host = "secrets", "c" }},
		{name: "dataset without state", kind: Activate, signers: []string{"alice", "bob"}, want: ErrTransition,
			state: func(_ *testing.T, _ *orderFixture, s State, _ *Order) State {
				delete(s.Datasets, "population")
				return s
			}},
		{name: "return while normal", kind: Return, signers: []string{"alice", "bob"}, want: ErrTransition, msg: "normal",
			edit: func(_ *orderFixture, o *Order) { o.Epoch = 2 }},
		{name: "return while armed", kind: Return, signers: []string{"alice", "bob"}, want: ErrTransition, msg: "armed",
			edit: func(_ *orderFixture, o *Order) { o.Epoch = 2 },
			state: func(_ *testing.T, f *orderFixture, s State, _ *Order) State {
				s, _ = s.Tick(f.a, f.now.Add(2*time.Hour))
				return s
			}},
		{name: "return of another dataset", kind: Return, signers: []string{"alice", "bob"}, state: active, want: ErrTransition,
			edit: func(_ *orderFixture, o *Order) { o.Dataset, o.Epoch = "web", 2 }},
		{name: "expire within retention", kind: Expire, signers: []string{"alice", "bob"}, want: ErrTransition, msg: "retention not over",
			edit: func(f *orderFixture, o *Order) { o.Before = f.now.Add(-29 * 24 * time.Hour) }},
		{name: "expire unknown dataset", kind: Expire, signers: []string{"alice", "bob"}, want: ErrNotAllowed,
			edit: func(_ *orderFixture, o *Order) { o.Dataset = "payroll" }},
		{name: "grant unknown dataset", kind: Grant, signers: []string{"alice", "bob"}, want: ErrNotAllowed,
			edit: func(_ *orderFixture, o *Order) { o.Dataset = "payroll" }},
		{name: "rotate unknown custodian", kind: Rotate, signers: []string{"alice", "bob"}, want: ErrNotAllowed,
			edit: func(_ *orderFixture, o *Order) { o.Custodian = "zed" }},
		{name: "rotate revoked custodian", kind: Rotate, signers: []string{"alice", "bob"}, state: revoked("carol"), want: ErrRevoked},
		{name: "rotate to the same keys", kind: Rotate, signers: []string{"alice", "bob"}, want: ErrTransition,
			edit: func(f *orderFixture, o *Order) { o.NewKeys = f.a.Custodian("carol").Fingerprint }},
		{name: "rotate to revoked keys", kind: Rotate, signers: []string{"alice", "bob"}, want: ErrRevoked,
			edit: func(f *orderFixture, o *Order) { o.Custodian = "bob" },
			state: func(_ *testing.T, f *orderFixture, s State, o *Order) State {
				s.Revoked = append(s.Revoked, o.NewKeys)
				return s
			}},
		{name: "rotate re-share unknown dataset", kind: Rotate, signers: []string{"alice", "bob"}, want: ErrNotAllowed,
			edit: func(_ *orderFixture, o *Order) { o.Dataset, o.Custodian, o.NewKeys = "payroll", "", "" }},
		{name: "rotate dataset to the keys it has", kind: Rotate, signers: []string{"alice", "bob"}, want: ErrTransition, msg: "already has the keys",
			state: func(_ *testing.T, _ *orderFixture, s State, _ *Order) State {
				d := s.Datasets["population"]
				d.Keys = strings.Repeat("7e", 16)
				s.Datasets["population"] = d
				return s
			},
			edit: func(_ *orderFixture, o *Order) { o.Dataset, o.Custodian = "population", "" }},
		{name: "revoke unknown custodian", kind: Revoke, signers: []string{"alice", "bob"}, want: ErrNotAllowed,
			edit: func(_ *orderFixture, o *Order) { o.Custodian = "zed" }},
		{name: "revoke twice", kind: Revoke, signers: []string{"alice", "bob"}, state: revoked("carol"), want: ErrTransition,
			msg: "already revoked"},
		{name: "revoke the only minister", kind: Revoke, signers: []string{"bob", "carol"}, want: ErrUnsafe, msg: "amend quorum",
			edit: func(_ *orderFixture, o *Order) { o.Custodian = "alice" }},
	}
}

// noteSignFile adds a signature line named name made with host b's key.
func noteSignFile(n *note.Note, name string, f *orderFixture) ([]byte, error) {
	return note.Sign(n, noteSigner(name, OrderDomain, f.hosts["b"]))
}

func TestCheck(t *testing.T) {
	f := testOrderAgreement(t)
	for _, c := range checkCases() {
		t.Run(c.name, func(t *testing.T) {
			o := f.order(t, c.kind)
			if c.edit != nil {
				c.edit(f, o)
			}
			file := f.sign(t, o, c.signers...)
			if c.file != nil {
				file = c.file(t, f, file, o)
			}
			s := f.state()
			if c.state != nil {
				s = c.state(t, f, s, o)
			}
			so, err := OpenOrder(file, f.a)
			if err == nil {
				if c.so != nil {
					c.so(so)
				}
				err = Check(so, f.a, s, f.now.Add(c.at))
			}
			if c.want == nil {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			if !errors.Is(err, c.want) {
				t.Fatalf("err = %v, want %v", err, c.want)
			}
			if !strings.Contains(err.Error(), c.msg) {
				t.Errorf("err = %q, want it to mention %q", err, c.msg)
			}
			// Every sentinel stays distinct: a refusal matches one.
			n := 0
			for _, s := range allSentinels {
				if errors.Is(err, s) {
					n++
				}
			}
			if n != 1 {
				t.Errorf("err %q matches %d sentinels", err, n)
			}
		})
	}
}

var allSentinels = []error{ErrMalformed, ErrUnsafe, ErrBadSignature, ErrUnknownSigner, ErrRevoked, ErrQuorum, ErrRole,
	ErrNotYetValid, ErrExpired, ErrReplay, ErrStaleEpoch, ErrEpochGap, ErrWrongGuest, ErrWrongAgreement, ErrNotAllowed,
	ErrNotAcknowledged, ErrTransition, ErrWrongWriter}

func TestCheckNil(t *testing.T) {
	f := testOrderAgreement(t)
	if err := Check(nil, f.a, f.state(), f.now); !errors.Is(err, ErrMalformed) {
		t.Errorf("Check(nil) = %v", err)
	}
	so := f.open(t, f.sign(t, f.order(t, Activate), "alice", "bob"))
	if err := Check(so, nil, f.state(), f.now); err == nil {
		t.Error("Check without an agreement passed")
	}
}

func TestCheckSignatures(t *testing.T) {
	f := testOrderAgreement(t)
	so := f.open(t, f.sign(t, f.order(t, Activate), "alice", "bob"))
	if err := CheckSignatures(so, f.a, nil); err != nil {
		t.Fatal(err)
	}
	if err := CheckSignatures(so, f.a, []string{f.a.Custodian("alice").Fingerprint}); !errors.Is(err, ErrRevoked) {
		t.Fatalf("revoked alice: %v", err)
	}
}
