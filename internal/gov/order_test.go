package gov

import (
	"bytes"
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/embassy-project/embassy/internal/custodian"
	"github.com/embassy-project/embassy/internal/sig"
	"github.com/embassy-project/embassy/internal/transport"
)

var updateOrder = flag.Bool("update-order", false, "rewrite the golden files testdata/gov/order-*")

// orderFixture is an agreement with real keys: custodians alice (minister),
// bob (cio) and carol; hosts a, b, c and an outside witness; datasets
// population (confidential, on every host), secrets (highly-restricted,
// hosts a and b only) and web (public). mallory has custodian keys but is
// not in the agreement.
type orderFixture struct {
	a     *Agreement
	ids   map[string]*custodian.Identity
	hosts map[string]*sig.PrivateKey
	home  *sig.PrivateKey
	homeW string // base64 of home's agent key
	bW    string // base64 of host b's signing key, the writer after activation
	now   time.Time
}

const testOrderGuest = "0123456789abcdef0123456789abcdef"

var orderFix struct {
	once sync.Once
	f    *orderFixture
	err  error
}

// testOrderAgreement returns the shared order fixture (keys are generated
// once per test binary).
func testOrderAgreement(t testing.TB) *orderFixture {
	t.Helper()
	orderFix.once.Do(func() { orderFix.f, orderFix.err = newOrderFixture() })
	if orderFix.err != nil {
		t.Fatal(orderFix.err)
	}
	return orderFix.f
}

func b64(b []byte) string { return base64.StdEncoding.EncodeToString(b) }

func testHostEntry(name, party string, signer *sig.PrivateKey, classes ...Class) (Host, error) {
	kem, err := custodian.KEM().GenerateKey()
	if err != nil {
		return Host{}, err
	}
	return Host{
		Name:  name,
		Party: party,
		Descriptor: transport.Descriptor{
			Version:    transport.DescriptorVersion,
			Name:       name,
			URL:        "https://" + name + ".example:8443",
			TLS:        "sha256:" + strings.Repeat("ab", 32),
			Log:        transport.KeySet{Origin: "embassy.host/" + name, Keys: []string{"embassy.host/" + name + "+00000001+AAAA"}},
			Witness:    transport.KeySet{Origin: "embassy.witness/" + name, Keys: []string{"embassy.witness/" + name + "+00000002+AAAA"}},
			SigningKey: b64(signer.Public().Bytes()),
			KEMKey:     b64(kem.PublicKey().Bytes()),
		},
		Classes:    classes,
		QuotaBytes: 1 << 40,
	}, nil
}

func newOrderFixture() (*orderFixture, error) {
	f := &orderFixture{
		ids:   map[string]*custodian.Identity{},
		hosts: map[string]*sig.PrivateKey{},
		now:   time.Date(2030, 3, 1, 12, 0, 0, 0, time.UTC),
	}
	for _, n := range []string{"alice", "bob", "carol", "mallory"} {
		id, err := custodian.Generate(n)
		if err != nil {
			return nil, err
		}
		f.ids[n] = id
	}
	var err error
	if f.home, err = sig.Generate(); err != nil {
		return nil, err
	}
	f.homeW = b64(f.home.Public().Bytes())
	a := &Agreement{
		Format:        AgreementFormat,
		Guest:         testOrderGuest,
		GuestName:     "ruritania",
		GuestIdentity: strings.Repeat("5a", 16),
		Version:       1,
		Parties: []Party{
			{Name: "ruritania", Role: "guest", Jurisdiction: "EE"},
			{Name: "luxembourg", Role: "host", Jurisdiction: "LU"},
			{Name: "belgium", Role: "host", Jurisdiction: "BE"},
		},
		GoverningLaw:     "Agreement between Ruritania and its hosts, 2030",
		WitnessThreshold: 2,
		Witnesses: []Witness{{Descriptor: transport.Descriptor{
			Version: transport.DescriptorVersion, Name: "outside", URL: "https://outside.example",
			TLS:     "sha256:" + strings.Repeat("cd", 32),
			Witness: transport.KeySet{Origin: "embassy.witness/outside", Keys: []string{"embassy.witness/outside+00000003+AAAA"}},
		}}},
		Datasets: []Dataset{
			{Name: "population", Class: Confidential, DataShards: 2, RetentionDays: 30, RPOSeconds: 60, RTOSeconds: 3600},
			{Name: "secrets", Class: HighlyRestricted, DataShards: 1, RetentionDays: 365, RPOSeconds: 60, RTOSeconds: 3600},
			{Name: "web", Class: Public, DataShards: 1, RetentionDays: 7},
		},
		Quorums: map[Action]Quorum{
			Activate: {Threshold: 2, Roles: []RoleRequirement{{Role: "minister", Count: 1}}},
			Return:   {Threshold: 2},
			Expire:   {Threshold: 2},
			Grant:    {Threshold: 2},
			Rotate:   {Threshold: 2},
			Amend:    {Threshold: 2, Roles: []RoleRequirement{{Role: "minister", Count: 1}}},
			Revoke:   {Threshold: 2},
		},
		Activation:       Activation{HomeSilentSeconds: 3600},
		ClockSkewSeconds: 300,
	}
	roles := map[string][]string{"alice": {"minister"}, "bob": {"cio"}, "carol": nil}
	for _, n := range []string{"alice", "bob", "carol"} {
		a.Custodians = append(a.Custodians, NewCustodian(f.ids[n].Recipient(), roles[n]...))
	}
	for _, h := range []struct {
		name, party string
		classes     []Class
	}{
		{"a", "luxembourg", []Class{Public, Sensitive, Confidential, HighlyRestricted}},
		{"b", "luxembourg", []Class{Public, Sensitive, Confidential, HighlyRestricted}},
		{"c", "belgium", []Class{Public, Sensitive, Confidential}},
	} {
		k, err := sig.Generate()
		if err != nil {
			return nil, err
		}
		f.hosts[h.name] = k
		e, err := testHostEntry(h.name, h.party, k, h.classes...)
		if err != nil {
			return nil, err
		}
		a.Hosts = append(a.Hosts, e)
	}
	f.bW = b64(f.hosts["b"].Public().Bytes())
	if err := a.Validate(); err != nil {
		return nil, fmt.Errorf("test agreement: %w", err)
	}
	f.a = a
	return f, nil
}

// order returns a valid order of kind for the fixture's fresh state at f.now
// (return: for the state after activate).
func (f *orderFixture) order(t testing.TB, kind Action) *Order {
	t.Helper()
	id, err := NewOrderID()
	if err != nil {
		t.Fatal(err)
	}
	o := &Order{
		Kind: kind, ID: id, Guest: testOrderGuest, Agreement: 1,
		Issued: f.now.Add(-time.Hour), NotBefore: f.now.Add(-time.Hour), NotAfter: f.now.Add(23 * time.Hour),
		Reason: "test order: " + string(kind),
	}
	switch kind {
	case Activate:
		o.Dataset, o.Epoch, o.Host, o.Writer, o.Snapshot = "population", 2, "b", f.bW, strings.Repeat("0f", 32)
	case Return:
		o.Dataset, o.Epoch, o.Writer = "population", 3, f.homeW
	case Expire:
		o.Dataset, o.Before = "population", f.now.Add(-31*24*time.Hour)
	case Grant:
		o.Dataset, o.Reader = "population", "sha256:"+strings.Repeat("3c", 32)
	case Rotate:
		o.Custodian, o.NewKeys = "carol", strings.Repeat("7e", 16)
	case Amend:
		o.Text = "blake3:" + strings.Repeat("9d", 32)
	case Revoke:
		o.Custodian = "carol"
	}
	if err := o.Validate(); err != nil {
		t.Fatal(err)
	}
	return o
}

// sign returns o's file signed by the named custodians, in order.
func (f *orderFixture) sign(t testing.TB, o *Order, signers ...string) []byte {
	t.Helper()
	file := o.Marshal()
	for _, n := range signers {
		var err error
		if file, err = SignOrder(file, f.ids[n]); err != nil {
			t.Fatal(err)
		}
	}
	return file
}

func (f *orderFixture) open(t testing.TB, file []byte) *SignedOrder {
	t.Helper()
	so, err := OpenOrder(file, f.a)
	if err != nil {
		t.Fatal(err)
	}
	return so
}

// state is the fixture's fresh state (home heard from ten minutes ago).
func (f *orderFixture) state() State { return NewState(f.a, f.homeW, f.now.Add(-10*time.Minute)) }

// activeState is the state after population was activated on host b at
// epoch 2.
func (f *orderFixture) activeState(t testing.TB) State {
	t.Helper()
	so := f.open(t, f.sign(t, f.order(t, Activate), "alice", "bob"))
	s, _, err := f.state().Apply(so, f.a, f.now)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestOrderRoundTrip(t *testing.T) {
	f := testOrderAgreement(t)
	for _, kind := range Actions {
		t.Run(string(kind), func(t *testing.T) {
			o := f.order(t, kind)
			text := o.Marshal()
			p, err := ParseOrder(text)
			if err != nil {
				t.Fatalf("ParseOrder: %v\n%s", err, text)
			}
			if !reflect.DeepEqual(p, o) {
				t.Errorf("round trip: got %+v, want %+v", p, o)
			}
			if !bytes.Equal(p.Marshal(), text) {
				t.Error("Marshal(ParseOrder(text)) != text")
			}
		})
	}
	// Rotate's other forms.
	for _, edit := range []func(*Order){
		func(o *Order) { o.Custodian, o.NewKeys, o.Dataset = "", "", "population" },
		func(o *Order) { o.Custodian, o.Dataset = "", "population" },
	} {
		o := f.order(t, Rotate)
		edit(o)
		if _, err := ParseOrder(o.Marshal()); err != nil {
			t.Errorf("rotate %+v: %v", o, err)
		}
	}
}

func TestOrderIDs(t *testing.T) {
	a, err := NewOrderID()
	if err != nil {
		t.Fatal(err)
	}
	b, _ := NewOrderID()
	if a == b || a == [16]byte{} {
		t.Fatalf("NewOrderID: %x, %x", a, b)
	}
	o := &Order{ID: a}
	if s := o.IDString(); len(s) != 32 || strings.ToLower(s) != s {
		t.Fatalf("IDString %q", s)
	}
}

// TestParseOrderRejects edits the text of a valid activate order line by
// line; each edit must be refused with ErrMalformed naming the line.
func TestParseOrderRejects(t *testing.T) {
	f := testOrderAgreement(t)
	base := string(f.order(t, Activate).Marshal())
	lines := strings.Split(strings.TrimSuffix(base, "\n"), "\n")
	// lines: 1 header, 2 kind, 3 id, 4 guest, 5 agreement, 6 issued,
	// 7 not-before, 8 not-after, 9 dataset, 10 epoch, 11 host, 12 writer,
	// 13 snapshot, 14 reason.
	set := func(n int, l string) string {
		c := append([]string(nil), lines...)
		c[n-1] = l
		return strings.Join(c, "\n") + "\n"
	}
	del := func(n int) string {
		c := append([]string(nil), lines[:n-1]...)
		c = append(c, lines[n:]...)
		return strings.Join(c, "\n") + "\n"
	}
	ins := func(n int, l string) string { // l becomes line n
		c := append([]string(nil), lines[:n-1]...)
		c = append(c, l)
		c = append(c, lines[n-1:]...)
		return strings.Join(c, "\n") + "\n"
	}
	swap := func(i, j int) string {
		c := append([]string(nil), lines...)
		c[i-1], c[j-1] = c[j-1], c[i-1]
		return strings.Join(c, "\n") + "\n"
	}
	tmpl := func(o *Order) string { return string(o.Marshal()) }
	withOrder := func(edit func(*Order)) string {
		o := f.order(t, Activate)
		edit(o)
		return tmpl(o)
	}
	cases := []struct {
		name, text, want string
	}{
		{"empty", "", "end with a line feed"},
		{"no final newline", strings.TrimSuffix(base, "\n"), "end with a line feed"},
		{"too long", base + strings.Repeat("x", MaxOrderText), "more than"},
		{"bad header", set(1, "embassy order v2"), "line 1"},
		{"CRLF", strings.ReplaceAll(base, "\n", "\r\n"), "line 1: control character"},
		{"tab", set(14, "reason: a\tb"), "line 14: control character"},
		{"not UTF-8", set(14, "reason: a\xffb"), "line 14: not UTF-8"},
		{"blank line", ins(9, ""), "line 9: want \"key: value\""},
		{"no separator", set(9, "dataset=population"), "line 9"},
		{"colon without space", set(9, "dataset:population"), "line 9"},
		{"unknown key", ins(9, "colour: blue"), "line 9: unknown key \"colour\""},
		{"upper-case key", set(9, "Dataset: population"), "line 9: unknown key"},
		{"duplicate key", ins(10, lines[8]), "line 10: duplicate key \"dataset\" (first on line 9)"},
		{"out of order", swap(9, 10), "line 10: key \"dataset\" out of order"},
		{"empty value", set(9, "dataset: "), "line 9: dataset is empty"},
		{"missing kind", del(2), "missing key \"kind\""},
		{"missing reason", del(14), "line 14: missing key \"reason\""},
		{"missing snapshot", del(13), "missing key \"snapshot\" (activate orders need it)"},
		{"field not used by kind", ins(14, "reader: sha256:"+strings.Repeat("00", 32)), "line 14: key \"reader\" is not used by activate orders"},
		{"unknown kind", set(2, "kind: launch"), "line 2: unknown kind \"launch\""},
		{"upper-case id", set(3, "id: "+strings.ToUpper(strings.TrimPrefix(lines[2], "id: "))), "line 3: id"},
		{"short id", set(3, "id: 0123"), "line 3: id"},
		{"zero id", set(3, "id: "+strings.Repeat("0", 32)), "order id is zero"},
		{"short guest", set(4, "guest: abc"), "line 4: guest"},
		{"agreement 0", set(5, "agreement: 0"), "agreement version is 0"},
		{"agreement leading zero", set(5, "agreement: 01"), "line 5: agreement"},
		{"agreement sign", set(5, "agreement: +1"), "line 5: agreement"},
		{"time with offset", set(6, "issued: 2030-03-01T11:00:00+00:00"), "line 6: issued"},
		{"time with fraction", set(6, "issued: 2030-03-01T11:00:00.5Z"), "line 6: issued"},
		{"time lower-case z", set(6, "issued: 2030-03-01T11:00:00z"), "line 6: issued"},
		{"time before 1970", set(6, "issued: 1969-12-31T23:59:59Z"), "line 6: issued"},
		{"epoch 0", set(10, "epoch: 0"), "line 10: epoch: epochs start at 1"},
		{"epoch leading zero", set(10, "epoch: 02"), "line 10: epoch"},
		{"epoch overflow", set(10, "epoch: 18446744073709551616"), "line 10: epoch"},
		{"bad dataset name", set(9, "dataset: Population"), "not a valid name"},
		{"bad host name", set(11, "host: -b"), "not a valid name"},
		{"writer not base64", set(12, "writer: ***"), "writer"},
		{"writer short", set(12, "writer: "+b64([]byte("short key"))), "writer"},
		{"writer unpadded", set(12, "writer: "+strings.TrimRight(f.bW, "=")+"A"), "writer"},
		{"snapshot short", set(13, "snapshot: abcd"), "snapshot"},
		{"snapshot upper", set(13, "snapshot: "+strings.Repeat("0F", 32)), "snapshot"},
		{"reason leading space", set(14, "reason:  why"), "white space"},
		{"reason too long", set(14, "reason: "+strings.Repeat("x", MaxReason+1)), "more than 1024"},
		{"reason DEL", set(14, "reason: a\x7fb"), "control character"},
		{"reason line separator", set(14, "reason: a\u2028b"), "non-printable"},
		{"window too long", withOrder(func(o *Order) { o.NotAfter = o.NotBefore.Add(MaxOrderValidity + time.Second) }), "longer than"},
		{"not-after before not-before", withOrder(func(o *Order) { o.NotAfter = o.NotBefore.Add(-time.Second) }), "is before not-before"},
		{"issued after not-after", withOrder(func(o *Order) { o.Issued = o.NotAfter.Add(time.Second) }), "is after not-after"},
		{"rotate custodian without keys", func() string {
			o := f.order(t, Rotate)
			o.NewKeys = ""
			return tmpl(o)
		}(), "new-keys"},
		{"rotate custodian and dataset", func() string {
			o := f.order(t, Rotate)
			o.Dataset = "population"
			return tmpl(o)
		}(), "not both"},
		{"rotate nothing", func() string {
			o := f.order(t, Rotate)
			o.NewKeys, o.Custodian = "", ""
			return tmpl(o)
		}(), "needs custodian and new-keys"},
		{"bad text hash", func() string {
			o := f.order(t, Amend)
			o.Text = "sha256:" + strings.Repeat("9d", 32)
			return tmpl(o)
		}(), "text must be"},
		{"bad reader", func() string {
			o := f.order(t, Grant)
			o.Reader = strings.Repeat("3c", 32)
			return tmpl(o)
		}(), "reader must be"},
		{"bad new-keys", func() string {
			o := f.order(t, Rotate)
			o.NewKeys = "7e"
			return tmpl(o)
		}(), "new-keys"},
		{"bad custodian name", func() string {
			o := f.order(t, Revoke)
			o.Custodian = "Carol"
			return tmpl(o)
		}(), "not a valid"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := ParseOrder([]byte(c.text))
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("err = %v, want ErrMalformed", err)
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Errorf("err = %q, want it to mention %q", err, c.want)
			}
		})
	}
}

func TestOrderValidateRejects(t *testing.T) {
	f := testOrderAgreement(t)
	cases := []struct {
		name string
		edit func(o *Order)
		// canonical: Marshal writes a valid text anyway (it writes times
		// in UTC, whole seconds).
		canonical bool
	}{
		{"unknown kind", func(o *Order) { o.Kind = "launch" }, false},
		{"zero id", func(o *Order) { o.ID = [16]byte{} }, false},
		{"no guest", func(o *Order) { o.Guest = "" }, false},
		{"agreement 0", func(o *Order) { o.Agreement = 0 }, false},
		{"zero times", func(o *Order) { o.Issued = time.Time{} }, false},
		{"local time", func(o *Order) { o.NotBefore = o.NotBefore.In(time.FixedZone("X", 3600)) }, true},
		{"fraction", func(o *Order) { o.NotAfter = o.NotAfter.Add(time.Millisecond) }, true},
		{"no epoch", func(o *Order) { o.Epoch = 0 }, false},
		{"extra field", func(o *Order) { o.Text = "blake3:" + strings.Repeat("00", 32) }, false},
		{"empty reason", func(o *Order) { o.Reason = "" }, false},
		{"bad writer", func(o *Order) { o.Writer = "AAAA" }, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			o := f.order(t, Activate)
			c.edit(o)
			if err := o.Validate(); !errors.Is(err, ErrMalformed) {
				t.Fatalf("Validate = %v, want ErrMalformed", err)
			}
			if _, err := ParseOrder(o.Marshal()); !c.canonical && !errors.Is(err, ErrMalformed) {
				t.Fatalf("ParseOrder(Marshal) = %v, want ErrMalformed", err)
			}
		})
	}
}

func sigLines(file []byte) []string {
	_, sigs, ok := strings.Cut(string(file), "\n\n")
	if !ok {
		return nil
	}
	return strings.Split(strings.TrimSuffix(sigs, "\n"), "\n")
}

func TestSignOrder(t *testing.T) {
	f := testOrderAgreement(t)
	o := f.order(t, Activate)
	one := f.sign(t, o, "alice")
	if n := len(sigLines(one)); n != 1 || !strings.HasPrefix(sigLines(one)[0], "— custodian:alice ") {
		t.Fatalf("after one signature: %q", sigLines(one))
	}
	again, err := SignOrder(one, f.ids["alice"])
	if err != nil {
		t.Fatal(err)
	}
	if n := len(sigLines(again)); n != 1 {
		t.Fatalf("signing twice by alice: %d signature lines, want 1", n)
	}
	two, err := SignOrder(again, f.ids["bob"])
	if err != nil {
		t.Fatal(err)
	}
	so := f.open(t, two)
	if !reflect.DeepEqual(so.Signers, []string{"alice", "bob"}) || len(so.Unknown) != 0 {
		t.Fatalf("signers %q, unknown %q", so.Signers, so.Unknown)
	}
	if !bytes.Equal(so.Text, o.Marshal()) || !bytes.Equal(so.File, two) || !reflect.DeepEqual(so.Order, o) {
		t.Fatal("opened order does not match what was signed")
	}
	// Refusals.
	if _, err := SignOrder([]byte("embassy order v1\nkind: activate\n"), f.ids["alice"]); !errors.Is(err, ErrMalformed) {
		t.Errorf("sign a malformed text: %v", err)
	}
	if _, err := SignOrder(append(o.Marshal(), "\nnot a signature\n"...), f.ids["alice"]); !errors.Is(err, ErrMalformed) {
		t.Errorf("sign a malformed note: %v", err)
	}
	if _, err := SignOrder(o.Marshal(), &custodian.Identity{Name: "alice"}); err == nil {
		t.Error("sign without a signing key succeeded")
	}
}

func TestOpenOrder(t *testing.T) {
	f := testOrderAgreement(t)
	o := f.order(t, Activate)
	signed := f.sign(t, o, "alice", "bob")

	// Only keys the agreement does not list: not an error here.
	so, err := OpenOrder(f.sign(t, o, "mallory"), f.a)
	if err != nil {
		t.Fatalf("open an order signed only by an unknown key: %v", err)
	}
	if len(so.Signers) != 0 || !reflect.DeepEqual(so.Unknown, []string{"custodian:mallory"}) {
		t.Fatalf("signers %q unknown %q", so.Signers, so.Unknown)
	}

	other := f.sign(t, f.order(t, Activate), "bob")
	forged := strings.Replace(string(signed), sigLines(signed)[1], sigLines(other)[0], 1)
	flipped := []byte(strings.Replace(string(signed), sigLines(signed)[1], flipSigBit(t, sigLines(signed)[1], 100), 1))
	tampered := strings.Replace(string(signed), "reason: ", "reason: not ", 1)

	cases := []struct {
		name string
		file []byte
		want error
		msg  string
	}{
		{"bare text", o.Marshal(), ErrMalformed, "not a signed note"},
		{"garbage", []byte("hello\n\n— x y\n"), ErrMalformed, ""},
		{"too large", bytes.Repeat([]byte("a"), maxOrderFile+1), ErrMalformed, "more than"},
		{"signature of another order", []byte(forged), ErrBadSignature, "custodian:bob"},
		{"flipped signature byte", flipped, ErrBadSignature, "custodian:bob"},
		{"text changed after signing", []byte(tampered), ErrBadSignature, "custodian:alice"},
		{"malformed text, validly signed", func() []byte {
			bad := f.order(t, Activate)
			bad.Reason = ""
			file, err := signOrderUnchecked(bad.Marshal(), f.ids["alice"])
			if err != nil {
				t.Fatal(err)
			}
			return file
		}(), ErrMalformed, "reason"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := OpenOrder(c.file, f.a)
			if !errors.Is(err, c.want) {
				t.Fatalf("OpenOrder = %v, want %v", err, c.want)
			}
			if !strings.Contains(err.Error(), c.msg) {
				t.Errorf("OpenOrder = %q, want it to mention %q", err, c.msg)
			}
		})
	}
}

// flipSigBit flips one bit of the signature bytes (not the key hash) of a
// signature line "— NAME BASE64".
func flipSigBit(t testing.TB, line string, at int) string {
	t.Helper()
	i := strings.LastIndexByte(line, ' ')
	raw, err := base64.StdEncoding.DecodeString(line[i+1:])
	if err != nil {
		t.Fatal(err)
	}
	raw[4+at] ^= 1
	return line[:i+1] + b64(raw)
}

// signOrderUnchecked signs text as c without parsing it (to test that
// OpenOrder parses what it verifies).
func signOrderUnchecked(text []byte, c *custodian.Identity) ([]byte, error) {
	n, err := splitOrderFile(text)
	if err != nil {
		return nil, err
	}
	return note.Sign(n, noteSigner(signerName(c.Name), OrderDomain, c.Signer))
}

// TestOrderGolden keeps testdata/gov/order-activate.txt (a bare activate
// order) and order-activate.signed (the same text signed by the test
// custodians alice and bob of testdata/gov/custodian-*.key) parsing,
// opening against the golden agreement testdata/gov/agreement-v1.signed and
// passing Check. Regenerate with -update-order.
func TestOrderGolden(t *testing.T) {
	dir := filepath.Join("..", "..", "testdata", "gov")
	af, err := os.ReadFile(filepath.Join(dir, "agreement-v1.signed"))
	if err != nil {
		t.Fatal(err)
	}
	sa, err := OpenAgreement(af, nil)
	if err != nil {
		t.Fatal(err)
	}
	a := sa.Agreement
	writer, err := sig.NewPrivateKey(bytes.Repeat([]byte{0x42}, sig.PrivateKeySize))
	if err != nil {
		t.Fatal(err)
	}
	want := &Order{
		Kind: Activate, ID: [16]byte{0x6f, 0x72, 0x64, 0x65, 0x72, 0x2d, 0x67, 0x6f, 0x6c, 0x64, 0x65, 0x6e, 0x2d, 0x76, 0x30, 0x31},
		Guest: a.Guest, Agreement: 1,
		Issued:    time.Date(2030, 3, 1, 9, 30, 0, 0, time.UTC),
		NotBefore: time.Date(2030, 3, 1, 9, 30, 0, 0, time.UTC),
		NotAfter:  time.Date(2030, 3, 2, 9, 30, 0, 0, time.UTC),
		Dataset:   "population", Epoch: 2, Host: "b", Writer: b64(writer.Public().Bytes()),
		Snapshot: "c0ffee" + strings.Repeat("00", 29),
		Reason:   "Home data centre unreachable since 06:10 UTC; cabinet decision 2030/17: continue from the last snapshot on host b",
	}
	txt := filepath.Join(dir, "order-activate.txt")
	signedPath := filepath.Join(dir, "order-activate.signed")
	if *updateOrder {
		file := want.Marshal()
		for _, n := range []string{"alice", "bob"} {
			b, err := os.ReadFile(filepath.Join(dir, "custodian-"+n+".key"))
			if err != nil {
				t.Fatal(err)
			}
			id, err := custodian.ParseIdentity(b)
			if err != nil {
				t.Fatal(err)
			}
			if file, err = SignOrder(file, id); err != nil {
				t.Fatal(err)
			}
		}
		if err := os.WriteFile(txt, want.Marshal(), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(signedPath, file, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("wrote %s and %s", txt, signedPath)
	}
	text, err := os.ReadFile(txt)
	if err != nil {
		t.Fatalf("%v (run go test ./internal/gov -run OrderGolden -update-order)", err)
	}
	o, err := ParseOrder(text)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(o, want) || !bytes.Equal(o.Marshal(), text) {
		t.Fatalf("golden order parses to %+v, want %+v", o, want)
	}
	signed, err := os.ReadFile(signedPath)
	if err != nil {
		t.Fatal(err)
	}
	so, err := OpenOrder(signed, a)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(so.Text, text) || !reflect.DeepEqual(so.Signers, []string{"alice", "bob"}) || len(so.Unknown) != 0 {
		t.Fatalf("golden signed order: signers %q unknown %q", so.Signers, so.Unknown)
	}
	s := NewState(a, b64(writer.Public().Bytes()), want.NotBefore)
	if err := Check(so, a, s, want.NotBefore.Add(time.Hour)); err != nil {
		t.Fatalf("Check golden order: %v", err)
	}
	if err := Check(so, a, s, want.NotAfter.Add(time.Hour)); !errors.Is(err, ErrExpired) {
		t.Fatalf("Check golden order a day later: %v", err)
	}
}
