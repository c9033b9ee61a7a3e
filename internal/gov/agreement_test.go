package gov

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"golang.org/x/mod/sumdb/note"

	"github.com/embassy-project/embassy/internal/custodian"
	"github.com/embassy-project/embassy/internal/sig"
	"github.com/embassy-project/embassy/internal/transport"
	"github.com/embassy-project/embassy/internal/wire"
)

var updateAgreement = flag.Bool("update-agreement", false, "regenerate testdata/gov/agreement-* and the test keys")

const agrGoldenDir = "../../testdata/gov"

// agrKeys are the keys of the test agreement: custodians alice (minister),
// bob (cio), carol (archivist); hosts a, b, c.
type agrKeys struct {
	cust    []*custodian.Identity
	hostSig []*sig.PrivateKey
	hostKEM []string // base64 public keys
}

var agrHostNames = []string{"a", "b", "c"}

func agrNewKeys() *agrKeys {
	k := &agrKeys{}
	for _, n := range []string{"alice", "bob", "carol"} {
		id, err := custodian.Generate(n)
		if err != nil {
			panic(err)
		}
		k.cust = append(k.cust, id)
	}
	for range agrHostNames {
		s, err := sig.Generate()
		if err != nil {
			panic(err)
		}
		kk, err := custodian.KEM().GenerateKey()
		if err != nil {
			panic(err)
		}
		k.hostSig = append(k.hostSig, s)
		k.hostKEM = append(k.hostKEM, base64.StdEncoding.EncodeToString(kk.PublicKey().Bytes()))
	}
	return k
}

var agrTestKeys = sync.OnceValue(agrNewKeys)

func agrVkey(origin string) string {
	_, vkey, err := note.GenerateKey(rand.Reader, origin)
	if err != nil {
		panic(err)
	}
	return vkey
}

func agrDescriptor(name string, log bool, signing, kem string) transport.Descriptor {
	tls := sha256.Sum256([]byte("tls " + name))
	d := transport.Descriptor{
		Version:    transport.DescriptorVersion,
		Name:       name,
		URL:        "https://" + name + ".example:8443",
		TLS:        "sha256:" + hex.EncodeToString(tls[:]),
		Witness:    transport.KeySet{Origin: "embassy.witness/" + name, Keys: []string{agrVkey("embassy.witness/" + name)}},
		SigningKey: signing,
		KEMKey:     kem,
	}
	if log {
		d.Log = transport.KeySet{Origin: "embassy.host/" + name, Keys: []string{agrVkey("embassy.host/" + name)}}
	}
	return d
}

// agrBuild returns the test agreement: 3 hosts (c may not hold
// highly-restricted) + 1 witness outside home, w=2, f=0; datasets population
// (confidential, k=2) and archive (highly-restricted, k=1).
func agrBuild(k *agrKeys) *Agreement {
	a := &Agreement{
		Format:        AgreementFormat,
		Guest:         "0123456789abcdef0123456789abcdef",
		GuestName:     "estonia",
		GuestIdentity: "00112233445566778899aabbccddeeff",
		Version:       1,
		Parties: []Party{
			{Name: "estonia", Role: "guest", Jurisdiction: "EE"},
			{Name: "luxembourg", Role: "host", Jurisdiction: "LU"},
			{Name: "belgium", Role: "host", Jurisdiction: "BE-BRU"},
		},
		GoverningLaw:             "Agreement between Estonia and Luxembourg on the hosting of data, 2017, Art. 7",
		Witnesses:                []Witness{{Descriptor: agrDescriptor("w1", false, "", "")}},
		WitnessThreshold:         2,
		ToleratedFaultyWitnesses: 0,
		Datasets: []Dataset{
			{Name: "population", Class: Confidential, DataShards: 2, RetentionDays: 3650, RPOSeconds: 60, RTOSeconds: 3600},
			{Name: "archive", Class: HighlyRestricted, DataShards: 1, RetentionDays: 36500, RPOSeconds: 86400, RTOSeconds: 86400},
		},
		Quorums:          map[Action]Quorum{},
		Activation:       Activation{HomeSilentSeconds: 900},
		ClockSkewSeconds: 120,
	}
	parties := []string{"luxembourg", "luxembourg", "belgium"}
	for i, n := range agrHostNames {
		classes := []Class{Public, Sensitive, Confidential, HighlyRestricted}
		if n == "c" {
			classes = classes[:3]
		}
		a.Hosts = append(a.Hosts, Host{
			Name:       n,
			Party:      parties[i],
			Descriptor: agrDescriptor(n, true, base64.StdEncoding.EncodeToString(k.hostSig[i].Public().Bytes()), k.hostKEM[i]),
			Classes:    classes,
			QuotaBytes: 1 << 40,
		})
	}
	roles := [][]string{{"minister"}, {"cio"}, {"archivist"}}
	for i, c := range k.cust {
		a.Custodians = append(a.Custodians, NewCustodian(c.Recipient(), roles[i]...))
	}
	for _, act := range Actions {
		a.Quorums[act] = Quorum{Threshold: 2}
	}
	a.Quorums[Activate] = Quorum{Threshold: 2, Roles: []RoleRequirement{{Role: "minister", Count: 1}}}
	return a
}

// agrClone deep-copies a through its JSON.
func agrClone(t testing.TB, a *Agreement) *Agreement {
	t.Helper()
	var b Agreement
	if err := json.Unmarshal(a.Marshal(), &b); err != nil {
		t.Fatal(err)
	}
	return &b
}

func agrFixture(t testing.TB) (*agrKeys, *Agreement) {
	t.Helper()
	k := agrTestKeys()
	return k, agrBuild(k)
}

func TestAgreementValidate(t *testing.T) {
	k, _ := agrFixture(t)
	other, err := custodian.Generate("dave")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		mutate func(a *Agreement)
		want   error
		msg    string
	}{
		{"good", func(a *Agreement) {}, nil, ""},
		{"good amendment", func(a *Agreement) { a.Version = 2; a.Previous = HashPrefix + strings.Repeat("ab", 32) }, nil, ""},
		{"format", func(a *Agreement) { a.Format = "embassy-agreement-v2" }, ErrMalformed, "format"},
		{"guest not hex", func(a *Agreement) { a.Guest = strings.ToUpper(a.Guest) }, ErrMalformed, "guest:"},
		{"guest name", func(a *Agreement) { a.GuestName = "Estonia" }, ErrMalformed, "guest_name"},
		{"guest identity", func(a *Agreement) { a.GuestIdentity = "xyz" }, ErrMalformed, "guest_identity"},
		{"version 0", func(a *Agreement) { a.Version = 0 }, ErrMalformed, "version must be at least 1"},
		{"v1 with previous", func(a *Agreement) { a.Previous = HashPrefix + strings.Repeat("ab", 32) }, ErrMalformed, "previous must be empty"},
		{"v2 without previous", func(a *Agreement) { a.Version = 2 }, ErrMalformed, "is an amendment"},
		{"v2 bad previous", func(a *Agreement) { a.Version = 2; a.Previous = "sha256:" + strings.Repeat("ab", 32) }, ErrMalformed, "is an amendment"},
		{"no parties", func(a *Agreement) { a.Parties = nil }, ErrMalformed, "no parties"},
		{"party name", func(a *Agreement) { a.Parties[0].Name = "Estonia" }, ErrMalformed, "parties[0]: name"},
		{"party twice", func(a *Agreement) { a.Parties[2].Name = "luxembourg" }, ErrMalformed, "party luxembourg is listed twice"},
		{"party role", func(a *Agreement) { a.Parties[1].Role = "witness" }, ErrMalformed, `role "witness"`},
		{"two guests", func(a *Agreement) { a.Parties[1].Role = "guest" }, ErrMalformed, "2 parties with role guest"},
		{"no guest", func(a *Agreement) { a.Parties[0].Role = "host" }, ErrMalformed, "0 parties with role guest"},
		{"jurisdiction", func(a *Agreement) { a.Parties[0].Jurisdiction = "Estonia" }, ErrMalformed, "jurisdiction"},
		{"jurisdiction subdivision", func(a *Agreement) { a.Parties[0].Jurisdiction = "EE-" }, ErrMalformed, "jurisdiction"},
		{"governing law empty", func(a *Agreement) { a.GoverningLaw = "" }, ErrMalformed, "governing_law"},
		{"governing law control", func(a *Agreement) { a.GoverningLaw = "a\tb" }, ErrMalformed, "governing_law"},
		{"no hosts", func(a *Agreement) { a.Hosts = nil }, ErrMalformed, "no hosts"},
		{"host name", func(a *Agreement) { a.Hosts[0].Name = "A" }, ErrMalformed, "hosts[0]: name"},
		{"host twice", func(a *Agreement) { a.Hosts[1] = a.Hosts[0] }, ErrMalformed, "host a is listed twice"},
		{"host party guest", func(a *Agreement) { a.Hosts[0].Party = "estonia" }, ErrMalformed, `party "estonia" is not a party with role host`},
		{"host party unknown", func(a *Agreement) { a.Hosts[0].Party = "france" }, ErrMalformed, `party "france"`},
		{"descriptor invalid", func(a *Agreement) { a.Hosts[0].Descriptor.URL = "http://a.example" }, ErrMalformed, "host a: descriptor: url"},
		{"descriptor other host", func(a *Agreement) { a.Hosts[0].Descriptor.Name = "z" }, ErrMalformed, `descriptor is for host "z"`},
		{"descriptor no log", func(a *Agreement) { a.Hosts[0].Descriptor.Log = transport.KeySet{} }, ErrMalformed, "has no log"},
		{"descriptor no signing key", func(a *Agreement) { a.Hosts[1].Descriptor.SigningKey = "" }, ErrMalformed, "host b: descriptor has no signing or KEM key"},
		{"descriptor no kem key", func(a *Agreement) { a.Hosts[2].Descriptor.KEMKey = "" }, ErrMalformed, "host c: descriptor has no signing or KEM key"},
		{"witness origin twice", func(a *Agreement) { a.Witnesses[0].Descriptor.Witness = a.Hosts[0].Descriptor.Witness }, ErrMalformed, "is used twice"},
		{"witness key twice", func(a *Agreement) { a.Witnesses[0].Descriptor.Witness.Keys = a.Hosts[0].Descriptor.Witness.Keys }, ErrMalformed, "witness key is used twice"},
		{"witness named like host", func(a *Agreement) { a.Witnesses[0].Descriptor.Name = "a" }, ErrMalformed, "witness a: the name is already used"},
		{"witness descriptor invalid", func(a *Agreement) { a.Witnesses[0].Descriptor.TLS = "md5:00" }, ErrMalformed, "witnesses[0]: descriptor"},
		{"host no classes", func(a *Agreement) { a.Hosts[0].Classes = nil }, ErrMalformed, "host a: no classes"},
		{"host bad class", func(a *Agreement) { a.Hosts[0].Classes[0] = "secret" }, ErrMalformed, `class "secret"`},
		{"host class twice", func(a *Agreement) { a.Hosts[0].Classes[1] = Public }, ErrMalformed, "class public is listed twice"},
		{"quota negative", func(a *Agreement) { a.Hosts[0].QuotaBytes = -1 }, ErrMalformed, "quota_bytes"},
		{"witness threshold 0", func(a *Agreement) { a.WitnessThreshold = 0 }, ErrMalformed, "witness_threshold must be at least 1"},
		{"faulty negative", func(a *Agreement) { a.ToleratedFaultyWitnesses = -1 }, ErrMalformed, "tolerated_faulty_witnesses"},
		{"no custodians", func(a *Agreement) { a.Custodians = nil }, ErrMalformed, "no custodians"},
		{"custodian name", func(a *Agreement) { a.Custodians[0].Name = "Alice" }, ErrMalformed, "custodians[0]"},
		{"custodian twice", func(a *Agreement) { a.Custodians[1].Name = "alice" }, ErrMalformed, "custodian alice is listed twice"},
		{"custodian role", func(a *Agreement) { a.Custodians[0].Roles = []string{"Minister"} }, ErrMalformed, "custodian alice: role"},
		{"custodian role twice", func(a *Agreement) { a.Custodians[1].Roles = []string{"cio", "cio"} }, ErrMalformed, "role cio is listed twice"},
		{"custodian kem not base64", func(a *Agreement) { a.Custodians[0].KEM = "!!" }, ErrMalformed, "custodian alice: kem_key: not base64"},
		{"custodian kem short", func(a *Agreement) { a.Custodians[0].KEM = "AAAA" }, ErrMalformed, "custodian alice: kem_key"},
		{"custodian signing key", func(a *Agreement) { a.Custodians[0].Signing = "AAAA" }, ErrMalformed, "custodian alice: signing_key"},
		{"custodian fingerprint", func(a *Agreement) { a.Custodians[0].Fingerprint = strings.Repeat("0", 32) }, ErrMalformed, "does not match the keys"},
		{"custodian other keys", func(a *Agreement) {
			c := NewCustodian(other.Recipient(), "minister")
			c.Name = "alice"
			c.Fingerprint = a.Custodians[0].Fingerprint
			a.Custodians[0] = c
		}, ErrMalformed, "does not match the keys"},
		{"custodian same keys", func(a *Agreement) { c := a.Custodians[0]; c.Name = "alice2"; a.Custodians = append(a.Custodians, c) }, ErrMalformed, "same keys"},
		{"no datasets", func(a *Agreement) { a.Datasets = nil }, ErrMalformed, "no datasets"},
		{"dataset name", func(a *Agreement) { a.Datasets[0].Name = "" }, ErrMalformed, "datasets[0]"},
		{"dataset twice", func(a *Agreement) { a.Datasets[1].Name = "population" }, ErrMalformed, "dataset population is listed twice"},
		{"dataset class", func(a *Agreement) { a.Datasets[0].Class = "top-secret" }, ErrMalformed, `class "top-secret"`},
		{"dataset k 0", func(a *Agreement) { a.Datasets[0].DataShards = 0 }, ErrMalformed, "data_shards (erasure k) 0"},
		{"dataset retention 0", func(a *Agreement) { a.Datasets[0].RetentionDays = 0 }, ErrMalformed, "retention_days 0"},
		{"dataset rpo negative", func(a *Agreement) { a.Datasets[0].RPOSeconds = -1 }, ErrMalformed, "rpo_seconds"},
		{"dataset rto negative", func(a *Agreement) { a.Datasets[0].RTOSeconds = -1 }, ErrMalformed, "rto_seconds"},
		{"quorum missing", func(a *Agreement) { delete(a.Quorums, Revoke) }, ErrMalformed, "no quorum for action revoke"},
		{"quorum unknown action", func(a *Agreement) { a.Quorums["launch"] = Quorum{Threshold: 1} }, ErrMalformed, `unknown action "launch"`},
		{"quorum threshold 0", func(a *Agreement) { a.Quorums[Grant] = Quorum{} }, ErrMalformed, "quorum grant: threshold 0: want 1 to 3"},
		{"quorum threshold too big", func(a *Agreement) { a.Quorums[Grant] = Quorum{Threshold: 4} }, ErrMalformed, "quorum grant: threshold 4"},
		{"quorum role unheld", func(a *Agreement) {
			a.Quorums[Amend] = Quorum{Threshold: 2, Roles: []RoleRequirement{{Role: "president", Count: 1}}}
		}, ErrMalformed, "no custodian has role president"},
		{"quorum role count above holders", func(a *Agreement) {
			a.Quorums[Amend] = Quorum{Threshold: 2, Roles: []RoleRequirement{{Role: "cio", Count: 2}}}
		}, ErrMalformed, "role cio count 2: want 1 to 1"},
		{"quorum role count above threshold", func(a *Agreement) {
			a.Custodians[0].Roles = []string{"cio"}
			a.Custodians[2].Roles = []string{"cio"}
			a.Quorums[Activate] = Quorum{Threshold: 2}
			a.Quorums[Amend] = Quorum{Threshold: 2, Roles: []RoleRequirement{{Role: "cio", Count: 3}}}
		}, ErrMalformed, "role cio count 3: want 1 to 2"},
		{"quorum role count 0", func(a *Agreement) {
			a.Quorums[Amend] = Quorum{Threshold: 2, Roles: []RoleRequirement{{Role: "cio", Count: 0}}}
		}, ErrMalformed, "role cio count 0"},
		{"quorum role twice", func(a *Agreement) {
			a.Quorums[Amend] = Quorum{Threshold: 2, Roles: []RoleRequirement{{Role: "cio", Count: 1}, {Role: "cio", Count: 1}}}
		}, ErrMalformed, "role cio is listed twice"},
		{"home silent short", func(a *Agreement) { a.Activation.HomeSilentSeconds = 59 }, ErrMalformed, "home_silent_seconds 59"},
		{"clock skew big", func(a *Agreement) { a.ClockSkewSeconds = 601 }, ErrMalformed, "clock_skew_seconds 601"},
		{"clock skew negative", func(a *Agreement) { a.ClockSkewSeconds = -1 }, ErrMalformed, "clock_skew_seconds -1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := agrBuild(k)
			tt.mutate(a)
			err := a.Validate()
			agrCheckErr(t, err, tt.want, tt.msg)
			if tt.want != nil && errors.Is(tt.want, ErrMalformed) && !errors.Is(err, wire.ErrCorrupt) {
				t.Errorf("%v does not wrap wire.ErrCorrupt", err)
			}
		})
	}
}

func agrCheckErr(t *testing.T, err, want error, msg string) {
	t.Helper()
	if want == nil {
		if err != nil {
			t.Fatalf("unexpected error: %v", err)
		}
		return
	}
	if !errors.Is(err, want) {
		t.Fatalf("error %v, want %v", err, want)
	}
	if !strings.Contains(err.Error(), msg) {
		t.Fatalf("error %q does not mention %q", err, msg)
	}
}

func TestAgreementSafety(t *testing.T) {
	k, _ := agrFixture(t)
	dropWitness := func(a *Agreement) { a.Witnesses = nil }
	tests := []struct {
		name   string
		mutate func(a *Agreement)
		want   error
		msg    string
	}{
		{"3 hosts + 1 witness outside home, w=2, f=0", func(a *Agreement) {}, nil, ""},
		{"w more than W", func(a *Agreement) { a.WitnessThreshold = 4 }, ErrUnsafe, "witness threshold w=4 is more than the W=3 witnesses"},
		{"quorums do not intersect f=1", func(a *Agreement) { a.ToleratedFaultyWitnesses = 1 }, ErrUnsafe,
			"2w − W = 2×2 − 3 = 1 must exceed f=1 tolerated faulty witnesses (w is the witness threshold and W the witness count of each host's log, not the erasure k); raise witness_threshold to at least 3"},
		{"quorums do not intersect w=1", func(a *Agreement) { a.WitnessThreshold = 1 }, ErrUnsafe, "2w − W = 2×1 − 3 = -1 must exceed f=0"},
		{"w=3 f=1 is safe with 4 hosts and a witness", func(a *Agreement) {
			h := a.Hosts[2]
			h.Name, h.Descriptor = "d", agrDescriptor("d", true, h.Descriptor.SigningKey, h.Descriptor.KEMKey)
			a.Hosts = append(a.Hosts, h)
			a.WitnessThreshold, a.ToleratedFaultyWitnesses = 3, 1
		}, nil, ""},
		{"k larger than allowed hosts", func(a *Agreement) { a.Datasets[1].DataShards = 3 }, ErrUnsafe,
			"dataset archive: erasure k=3 larger than the 2 hosts allowed for class highly-restricted"},
		{"home plus one host down cannot restore", func(a *Agreement) { a.Datasets[1].DataShards = 2 }, ErrUnsafe,
			"dataset archive: with home and one of the 2 hosts allowed for class highly-restricted down, 1 hosts remain, fewer than erasure k=2"},
		{"3 hosts, no witness, w=2", dropWitness, ErrUnsafe,
			"home plus one host down blocks activation: a host's log then reaches W − 1 − at_home = 2 − 1 − 0 = 1 witnesses, fewer than the witness threshold w=2"},
		{"3 hosts + 1 witness at home, w=2", func(a *Agreement) { a.Witnesses[0].AtHome = true }, ErrUnsafe,
			"W − 1 − at_home = 3 − 1 − 1 = 1 witnesses, fewer than the witness threshold w=2"},
		{"3 hosts + 1 at home + 1 outside, w=3 f=0", func(a *Agreement) {
			a.Witnesses[0].AtHome = true
			a.Witnesses = append(a.Witnesses, Witness{Descriptor: agrDescriptor("w2", false, "", "")})
			a.WitnessThreshold = 3
		}, ErrUnsafe, "W − 1 − at_home = 4 − 1 − 1 = 2 witnesses, fewer than the witness threshold w=3"},
		{"3 hosts + 1 at home + 2 outside, w=3 f=0", func(a *Agreement) {
			a.Witnesses[0].AtHome = true
			a.Witnesses = append(a.Witnesses, Witness{Descriptor: agrDescriptor("w2", false, "", "")}, Witness{Descriptor: agrDescriptor("w3", false, "", "")})
			a.WitnessThreshold = 3
		}, nil, ""},
		{"4 hosts, no witness, w=2", func(a *Agreement) {
			dropWitness(a)
			h := a.Hosts[2]
			h.Name, h.Descriptor = "d", agrDescriptor("d", true, h.Descriptor.SigningKey, h.Descriptor.KEMKey)
			a.Hosts = append(a.Hosts, h)
		}, nil, ""},
		{"one host", func(a *Agreement) { a.Hosts = a.Hosts[:1]; a.Datasets = a.Datasets[1:]; a.WitnessThreshold = 1 }, ErrUnsafe, "dataset archive: with home and one of the 1 hosts"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := agrBuild(k)
			tt.mutate(a)
			agrCheckErr(t, a.Validate(), tt.want, tt.msg)
		})
	}
}

func TestAgreementCanonical(t *testing.T) {
	_, a := agrFixture(t)
	text := a.Marshal()
	if bytes.Contains(text, []byte("\t")) || !bytes.HasSuffix(text, []byte("}\n")) || bytes.Contains(text, []byte("\n\n")) {
		t.Fatal("canonical text has a tab, a blank line or no final newline")
	}
	b, err := ParseAgreement(text)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(b.Marshal(), text) || b.Hash() != a.Hash() {
		t.Fatal("round trip changed the text")
	}
	if h := a.Hash(); !validAgreementHash(h) {
		t.Fatalf("hash %q", h)
	}
	compact := new(bytes.Buffer)
	if err := json.Compact(compact, text); err != nil {
		t.Fatal(err)
	}
	big := append(bytes.Repeat([]byte(" "), MaxAgreementSize), text...)
	tests := []struct {
		name string
		in   []byte
		msg  string
	}{
		{"tabs", bytes.ReplaceAll(text, []byte("  "), []byte("\t")), "not in canonical form"},
		{"compact", append(compact.Bytes(), '\n'), "not in canonical form"},
		{"no final newline", bytes.TrimSuffix(text, []byte("\n")), "not in canonical form"},
		{"two final newlines", append(slices.Clone(text), '\n'), "not in canonical form"},
		{"CRLF", bytes.ReplaceAll(text, []byte("\n"), []byte("\r\n")), "not in canonical form"},
		{"trailing data", append(slices.Clone(text), "{}\n"...), "trailing data"},
		{"unknown field", bytes.Replace(text, []byte(`"format"`), []byte(`"extra": 1, "format"`), 1), "unknown field"},
		{"upper-case field name", bytes.Replace(text, []byte(`"format"`), []byte(`"Format"`), 1), "not in canonical form"},
		{"escaped character", bytes.Replace(text, []byte(`"estonia"`), []byte(`"\u0065stonia"`), 1), "not in canonical form"},
		{"too big", big, "more than"},
		{"not json", []byte("embassy\n"), "agreement"},
		{"empty", nil, "agreement"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseAgreement(tt.in)
			agrCheckErr(t, err, ErrMalformed, tt.msg)
		})
	}
	// An unsafe agreement does not parse either.
	u := agrClone(t, a)
	u.Witnesses = nil
	if _, err := ParseAgreement(u.Marshal()); !errors.Is(err, ErrUnsafe) {
		t.Fatalf("unsafe agreement: %v", err)
	}
}

func TestAgreementAccessors(t *testing.T) {
	k, a := agrFixture(t)
	if a.Custodian("bob") == nil || a.Custodian("mallory") != nil || a.Host("c") == nil || a.Host("z") != nil ||
		a.Dataset("archive") == nil || a.Dataset("x") != nil {
		t.Fatal("lookup by name")
	}
	r, err := a.Custodian("bob").Recipient()
	if err != nil || !r.Equal(k.cust[1].Recipient()) {
		t.Fatalf("recipient: %v", err)
	}
	pk, err := a.Host("b").SigningKey()
	if err != nil || !pk.Equal(k.hostSig[1].Public()) {
		t.Fatalf("host signing key: %v", err)
	}
	if !a.Host("a").Allows(HighlyRestricted) || a.Host("c").Allows(HighlyRestricted) {
		t.Fatal("Allows")
	}
	if q := a.Quorum(Activate); q.Threshold != 2 || len(q.Roles) != 1 {
		t.Fatalf("quorum %+v", q)
	}
	if got := a.AllowedHosts(HighlyRestricted); !slices.Equal(got, []string{"a", "b"}) {
		t.Fatalf("allowed hosts %v", got)
	}
	if a.WitnessCount() != 3 {
		t.Fatalf("W = %d", a.WitnessCount())
	}
}

func TestAgreementCheckPlacement(t *testing.T) {
	_, a := agrFixture(t)
	tests := []struct {
		dataset string
		hosts   []string
		msg     string
	}{
		{"population", []string{"a", "b", "c"}, ""},
		{"archive", []string{"a", "b"}, ""},
		{"archive", []string{"b"}, ""},
		{"archive", []string{"a", "b", "c"}, "dataset archive is highly-restricted; agreement v1 allows host c to hold only public, sensitive, confidential"},
		{"census", []string{"a"}, `dataset "census" is not in agreement v1`},
		{"population", []string{"a", "x"}, `host "x" is not a host of agreement v1`},
		{"population", []string{"a", "a"}, "host a is named twice"},
		{"population", nil, "no hosts"},
		{"population", []string{"w1"}, `host "w1" is not a host`},
	}
	for _, tt := range tests {
		t.Run(tt.dataset+"/"+strings.Join(tt.hosts, ","), func(t *testing.T) {
			err := a.CheckPlacement(tt.dataset, tt.hosts)
			if tt.msg == "" {
				agrCheckErr(t, err, nil, "")
			} else {
				agrCheckErr(t, err, ErrNotAllowed, tt.msg)
			}
		})
	}
}

func TestNoteKeyHash(t *testing.T) {
	k, err := sig.Generate()
	if err != nil {
		t.Fatal(err)
	}
	h := sha256.Sum256(append([]byte("custodian:alice\n\x07"), k.Public().Bytes()...))
	if got, want := keyHash("custodian:alice", k.Public()), binary.BigEndian.Uint32(h[:4]); got != want {
		t.Fatalf("key hash %08x, want %08x", got, want)
	}
	s := noteSigner("custodian:alice", AgreementDomain, k)
	msg, err := note.Sign(&note.Note{Text: "hello\n"}, s)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := note.Open(msg, note.VerifierList(noteVerifier("custodian:alice", AgreementDomain, k.Public()))); err != nil {
		t.Fatal(err)
	}
	// The domain separates agreement signatures from acks and orders.
	_, err = note.Open(msg, note.VerifierList(noteVerifier("custodian:alice", AckDomain, k.Public())))
	var invalid *note.InvalidSignatureError
	if !errors.As(err, &invalid) {
		t.Fatalf("other domain: %v", err)
	}
}

// agrSignAll signs text by the named custodians and acks it by the named
// hosts.
func agrSignAll(t *testing.T, k *agrKeys, file []byte, custodians []int, hosts []int) []byte {
	t.Helper()
	var err error
	for _, i := range custodians {
		if file, err = SignAgreement(file, k.cust[i]); err != nil {
			t.Fatal(err)
		}
	}
	for _, i := range hosts {
		if file, err = AckAgreement(file, agrHostNames[i], k.hostSig[i]); err != nil {
			t.Fatal(err)
		}
	}
	return file
}

// agrFlipSig corrupts the signature on the line by name.
func agrFlipSig(t *testing.T, file []byte, name string) []byte {
	t.Helper()
	lines := strings.Split(string(file), "\n")
	for i, l := range lines {
		if rest, ok := strings.CutPrefix(l, "— "+name+" "); ok {
			raw, err := base64.StdEncoding.DecodeString(rest)
			if err != nil {
				t.Fatal(err)
			}
			raw[len(raw)-1] ^= 1
			lines[i] = "— " + name + " " + base64.StdEncoding.EncodeToString(raw)
			return []byte(strings.Join(lines, "\n"))
		}
	}
	t.Fatalf("no line by %s", name)
	return nil
}

func TestAgreementSignOpen(t *testing.T) {
	k, a := agrFixture(t)
	text := a.Marshal()
	all := agrSignAll(t, k, text, []int{0, 1, 2}, []int{0, 1, 2})
	mallory, err := custodian.Generate("mallory")
	if err != nil {
		t.Fatal(err)
	}
	strangerHost, err := sig.Generate()
	if err != nil {
		t.Fatal(err)
	}
	addLine := func(file []byte, s note.Signer) []byte {
		t.Helper()
		body, sigs, err := splitAgreementFile(file)
		if err != nil {
			t.Fatal(err)
		}
		out, err := signAgreementNote(body, sigs, s)
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	changed := agrClone(t, a)
	changed.GoverningLaw = "something else"
	_, sigBlock, _ := bytes.Cut(all, []byte("}\n\n"))
	tampered := append(append(changed.Marshal(), '\n'), sigBlock...)

	// Two different lines by alice (ML-DSA signatures are randomised).
	twice, err := SignAgreement(agrSignAll(t, k, text, nil, []int{0, 1, 2}), k.cust[0])
	if err != nil {
		t.Fatal(err)
	}
	aliceAgain, err := note.Sign(&note.Note{Text: string(text)}, noteSigner("custodian:alice", AgreementDomain, k.cust[0].Signer))
	if err != nil {
		t.Fatal(err)
	}
	_, aliceLine, _ := bytes.Cut(aliceAgain, []byte("}\n\n"))
	twice = append(twice, aliceLine...)

	strictAmend := agrClone(t, a)
	strictAmend.Quorums[Amend] = Quorum{Threshold: 2, Roles: []RoleRequirement{{Role: "minister", Count: 1}}}
	strictText := strictAmend.Marshal()

	tests := []struct {
		name       string
		file       []byte
		openErr    error
		openMsg    string
		custodians []string
		acks       []string
		forceErr   error
		forceMsg   string
	}{
		{"all signed and acked", all, nil, "", []string{"alice", "bob", "carol"}, []string{"a", "b", "c"}, nil, ""},
		{"quorum of 2 and acks", agrSignAll(t, k, text, []int{2, 1}, []int{2, 0, 1}), nil, "", []string{"bob", "carol"}, []string{"a", "b", "c"}, nil, ""},
		{"bare text", text, nil, "", nil, nil, ErrQuorum, "signed by 0 of the 3 custodians of v1 (none); the amend quorum needs 2"},
		{"acks only", agrSignAll(t, k, text, nil, []int{0, 1, 2}), nil, "", nil, []string{"a", "b", "c"}, ErrQuorum, "signed by 0 of the 3"},
		{"below quorum", agrSignAll(t, k, text, []int{0}, []int{0, 1, 2}), nil, "", []string{"alice"}, []string{"a", "b", "c"}, ErrQuorum,
			"agreement v1 is signed by 1 of the 3 custodians of v1 (alice); the amend quorum needs 2"},
		{"same custodian twice counts once", twice, nil, "", []string{"alice"}, []string{"a", "b", "c"}, ErrQuorum, "signed by 1 of the 3"},
		{"re-signing replaces the line", agrSignAll(t, k, text, []int{0, 0, 0}, nil), nil, "", []string{"alice"}, nil, ErrQuorum, "signed by 1"},
		{"missing role", agrSignAll(t, k, strictText, []int{1, 2}, []int{0, 1, 2}), nil, "", []string{"bob", "carol"}, []string{"a", "b", "c"}, ErrRole,
			"the amend quorum needs 1 signer(s) with role minister, it has 0"},
		{"role present", agrSignAll(t, k, strictText, []int{1, 0}, []int{0, 1, 2}), nil, "", []string{"alice", "bob"}, []string{"a", "b", "c"}, nil, ""},
		{"missing host acks", agrSignAll(t, k, text, []int{0, 1}, []int{0}), nil, "", []string{"alice", "bob"}, []string{"a"}, ErrNotAcknowledged,
			"not acknowledged by host(s) b, c"},
		{"forged custodian signature", agrFlipSig(t, all, "custodian:bob"), ErrBadSignature, "the signature by custodian:bob does not verify", nil, nil, nil, ""},
		{"forged host ack", agrFlipSig(t, all, "host:c"), ErrBadSignature, "signature by host:c", nil, nil, nil, ""},
		{"text changed after signing", tampered, ErrBadSignature, "does not verify over this text", nil, nil, nil, ""},
		{"unknown custodian", addLine(all, noteSigner("custodian:mallory", AgreementDomain, mallory.Signer)), ErrUnknownSigner,
			"signature by custodian:mallory", nil, nil, nil, ""},
		{"custodian name with another key", addLine(text, noteSigner("custodian:alice", AgreementDomain, mallory.Signer)), ErrUnknownSigner,
			"signature by custodian:alice (key hash", nil, nil, nil, ""},
		{"unknown host", addLine(all, noteSigner("host:z", AckDomain, strangerHost)), ErrUnknownSigner, "signature by host:z", nil, nil, nil, ""},
		{"host ack in the custodian domain", addLine(text, noteSigner("host:a", AgreementDomain, k.hostSig[0])), ErrBadSignature, "host:a", nil, nil, nil, ""},
		{"custodian signature in the ack domain", addLine(text, noteSigner("custodian:bob", AckDomain, k.cust[1].Signer)), ErrBadSignature, "custodian:bob", nil, nil, nil, ""},
		{"garbage signature block", append(slices.Clone(text), "\nnot a signature\n"...), ErrMalformed, "not a signed note", nil, nil, nil, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := OpenAgreement(tt.file, nil)
			agrCheckErr(t, err, tt.openErr, tt.openMsg)
			if err != nil {
				return
			}
			if !slices.Equal(s.Custodians, tt.custodians) || !slices.Equal(s.Acks, tt.acks) {
				t.Fatalf("custodians %v acks %v, want %v %v", s.Custodians, s.Acks, tt.custodians, tt.acks)
			}
			if !bytes.Equal(s.Text, s.Agreement.Marshal()) {
				t.Fatal("Text is not the canonical text")
			}
			for _, h := range agrHostNames {
				if s.Acked(h) != slices.Contains(tt.acks, h) {
					t.Fatalf("Acked(%s)", h)
				}
			}
			agrCheckErr(t, s.InForce(s.Agreement), tt.forceErr, tt.forceMsg)
		})
	}

	t.Run("sign refuses a non-custodian", func(t *testing.T) {
		_, err := SignAgreement(text, mallory)
		agrCheckErr(t, err, ErrUnknownSigner, "mallory")
	})
	t.Run("ack refuses another key", func(t *testing.T) {
		_, err := AckAgreement(text, "a", k.hostSig[1])
		agrCheckErr(t, err, ErrUnknownSigner, "not host a's signing key")
	})
	t.Run("ack refuses an unknown host", func(t *testing.T) {
		_, err := AckAgreement(text, "z", k.hostSig[0])
		agrCheckErr(t, err, ErrUnknownSigner, `"z" is not a host`)
	})
	t.Run("InForce refuses other rules", func(t *testing.T) {
		s, err := OpenAgreement(all, nil)
		if err != nil {
			t.Fatal(err)
		}
		agrCheckErr(t, s.InForce(changed), ErrWrongAgreement, "another text of version 1")
	})
}

// agrAmend returns version 2 of a with its custodians bob and carol
// replaced by dave and erin when replace is set.
func agrAmend(t *testing.T, a *Agreement, replace []*custodian.Identity) *Agreement {
	t.Helper()
	b := agrClone(t, a)
	b.Version = 2
	b.Previous = a.Hash()
	b.Datasets = append(b.Datasets, Dataset{Name: "land", Class: Sensitive, DataShards: 2, RetentionDays: 365, RPOSeconds: 60, RTOSeconds: 600})
	for i, id := range replace {
		b.Custodians[i+1] = NewCustodian(id.Recipient(), b.Custodians[i+1].Roles...)
	}
	if err := b.Validate(); err != nil {
		t.Fatal(err)
	}
	return b
}

func TestAgreementAmend(t *testing.T) {
	k, v1 := agrFixture(t)
	dave, err := custodian.Generate("dave")
	if err != nil {
		t.Fatal(err)
	}
	erin, err := custodian.Generate("erin")
	if err != nil {
		t.Fatal(err)
	}
	v2 := agrAmend(t, v1, nil)
	good := agrSignAll(t, k, v2.Marshal(), []int{0, 2}, []int{0, 1, 2})

	newCust := agrAmend(t, v1, []*custodian.Identity{dave, erin})
	byNew := newCust.Marshal()
	for _, id := range []*custodian.Identity{dave, erin} {
		if byNew, err = SignAgreement(byNew, id); err != nil {
			t.Fatal(err)
		}
	}
	byNew = agrSignAll(t, k, byNew, nil, []int{0, 1, 2})
	byOldAndNew, err := SignAgreement(byNew, k.cust[1]) // bob, replaced in v2
	if err != nil {
		t.Fatal(err)
	}
	byOldAndNew, err = SignAgreement(byOldAndNew, k.cust[0])
	if err != nil {
		t.Fatal(err)
	}

	wrongPrev := agrClone(t, v2)
	wrongPrev.Previous = HashPrefix + strings.Repeat("00", 32)
	wrongVersion := agrClone(t, v2)
	wrongVersion.Version = 3
	otherGuest := agrClone(t, v2)
	otherGuest.Guest = strings.Repeat("ff", 16)

	tests := []struct {
		name       string
		file       []byte
		prev       *Agreement
		openErr    error
		openMsg    string
		custodians []string
		forceErr   error
		forceMsg   string
	}{
		{"signed by the old quorum", good, v1, nil, "", []string{"alice", "carol"}, nil, ""},
		{"amendment without previous", good, nil, ErrWrongAgreement, "version 2 is an amendment; open it with version 1", nil, nil, ""},
		{"wrong previous hash", wrongPrev.Marshal(), v1, ErrWrongAgreement, "it amends another text", nil, nil, ""},
		{"wrong version", wrongVersion.Marshal(), v1, ErrWrongAgreement, "the amendment is version 3; after version 1 comes 2", nil, nil, ""},
		{"other guest", otherGuest.Marshal(), v1, ErrWrongGuest, "guest ffff", nil, nil, ""},
		{"quorum of the new custodians only", byNew, v1, nil, "", []string{"dave", "erin"}, ErrQuorum,
			"agreement v2 is signed by 0 of the 3 custodians of v1 (none); the amend quorum needs 2"},
		{"one old custodian who stays, one who leaves", byOldAndNew, v1, nil, "", []string{"alice", "bob", "dave", "erin"}, nil, ""},
		{"v1 does not amend itself", v1.Marshal(), v1, ErrWrongAgreement, "after version 1 comes 2", nil, nil, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := OpenAgreement(tt.file, tt.prev)
			agrCheckErr(t, err, tt.openErr, tt.openMsg)
			if err != nil {
				return
			}
			if !slices.Equal(s.Custodians, tt.custodians) {
				t.Fatalf("custodians %v, want %v", s.Custodians, tt.custodians)
			}
			agrCheckErr(t, s.InForce(tt.prev), tt.forceErr, tt.forceMsg)
		})
	}

	t.Run("amendment is not in force under its own rules", func(t *testing.T) {
		s, err := OpenAgreement(byNew, v1)
		if err != nil {
			t.Fatal(err)
		}
		agrCheckErr(t, s.InForce(s.Agreement), ErrWrongAgreement, "an amendment is in force only under the version it amends")
	})
	t.Run("signer in neither version", func(t *testing.T) {
		mallory, err := custodian.Generate("mallory")
		if err != nil {
			t.Fatal(err)
		}
		f, err := SignAgreement(good, mallory) // allowed: SignAgreement cannot know v1
		if err != nil {
			t.Fatal(err)
		}
		_, err = OpenAgreement(f, v1)
		agrCheckErr(t, err, ErrUnknownSigner, "custodian:mallory")
	})
}

// --- golden files ---

func agrWriteHostKey(t *testing.T, dir string, k *sig.PrivateKey) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	b := "embassy-host-signing-key-v1\n" + base64.StdEncoding.EncodeToString(k.Bytes()) + "\n"
	if err := os.WriteFile(filepath.Join(dir, "sign.key"), []byte(b), 0o600); err != nil {
		t.Fatal(err)
	}
}

func agrReadHostKey(t *testing.T, dir string) *sig.PrivateKey {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "sign.key"))
	if err != nil {
		t.Fatal(err)
	}
	rest, ok := strings.CutPrefix(string(b), "embassy-host-signing-key-v1\n")
	if !ok {
		t.Fatalf("%s/sign.key: bad header", dir)
	}
	seed, err := base64.StdEncoding.DecodeString(strings.TrimSuffix(rest, "\n"))
	if err != nil {
		t.Fatal(err)
	}
	k, err := sig.NewPrivateKey(seed)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestAgreementGolden(t *testing.T) {
	jsonFile := filepath.Join(agrGoldenDir, "agreement-v1.json")
	signedFile := filepath.Join(agrGoldenDir, "agreement-v1.signed")
	if *updateAgreement {
		k := agrNewKeys()
		a := agrBuild(k)
		if err := os.MkdirAll(agrGoldenDir, 0o755); err != nil {
			t.Fatal(err)
		}
		for _, c := range k.cust {
			if err := os.WriteFile(filepath.Join(agrGoldenDir, "custodian-"+c.Name+".key"), c.Marshal(), 0o600); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(agrGoldenDir, "custodian-"+c.Name+".pub"), c.Recipient().Marshal(), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		for i, h := range agrHostNames {
			agrWriteHostKey(t, filepath.Join(agrGoldenDir, "host-"+h), k.hostSig[i])
		}
		if err := os.WriteFile(jsonFile, a.Marshal(), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(signedFile, agrSignAll(t, k, a.Marshal(), []int{0, 1, 2}, []int{0, 1, 2}), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	text, err := os.ReadFile(jsonFile)
	if err != nil {
		t.Fatalf("%v (regenerate with go test ./internal/gov -run AgreementGolden -update-agreement)", err)
	}
	a, err := ParseAgreement(text)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a.Marshal(), text) {
		t.Fatal("golden text is not canonical")
	}
	signed, err := os.ReadFile(signedFile)
	if err != nil {
		t.Fatal(err)
	}
	s, err := OpenAgreement(signed, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(s.Text, text) {
		t.Fatal("the signed file's text differs from agreement-v1.json")
	}
	if !slices.Equal(s.Custodians, []string{"alice", "bob", "carol"}) || !slices.Equal(s.Acks, agrHostNames) {
		t.Fatalf("signers %v acks %v", s.Custodians, s.Acks)
	}
	if err := s.InForce(a); err != nil {
		t.Fatal(err)
	}
	// The committed keys are the ones in the agreement and can sign again.
	for _, n := range []string{"alice", "bob", "carol"} {
		b, err := os.ReadFile(filepath.Join(agrGoldenDir, "custodian-"+n+".key"))
		if err != nil {
			t.Fatal(err)
		}
		id, err := custodian.ParseIdentity(b)
		if err != nil {
			t.Fatal(err)
		}
		if c := a.Custodian(n); c == nil || c.Fingerprint != id.Fingerprint() {
			t.Fatalf("custodian-%s.key is not the agreement's %s", n, n)
		}
		if _, err := SignAgreement(text, id); err != nil {
			t.Fatal(err)
		}
	}
	for _, h := range agrHostNames {
		if _, err := AckAgreement(text, h, agrReadHostKey(t, filepath.Join(agrGoldenDir, "host-"+h))); err != nil {
			t.Fatal(err)
		}
	}
	if err := a.CheckPlacement("archive", []string{"a", "b", "c"}); !errors.Is(err, ErrNotAllowed) {
		t.Fatalf("golden placement: %v", err)
	}
}
