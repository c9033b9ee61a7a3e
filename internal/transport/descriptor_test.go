package transport

import (
	"bytes"
	"errors"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/embassy-project/embassy/internal/ledger"
	"github.com/embassy-project/embassy/internal/testenv"
	"github.com/embassy-project/embassy/internal/wire"
	"github.com/embassy-project/embassy/internal/witness"
)

const goldenDir = "../../testdata/transport"

// newDescriptor returns a valid descriptor for host name with fresh log and
// witness keys, its URL and pin placeholders the caller may replace.
func newDescriptor(t testing.TB, name string) *Descriptor {
	t.Helper()
	_, logPub, err := ledger.GenerateKeys(ledger.Origin(name))
	if err != nil {
		t.Fatal(err)
	}
	_, witPub, err := witness.GenerateKeys("embassy.witness/" + name)
	if err != nil {
		t.Fatal(err)
	}
	return &Descriptor{
		Version: DescriptorVersion,
		Name:    name,
		URL:     "https://" + name + ".example:8443",
		TLS:     "sha256:" + strings.Repeat("0123456789abcdef", 4),
		Log:     KeySet{Origin: ledger.Origin(name), Keys: logPub},
		Witness: KeySet{Origin: "embassy.witness/" + name, Keys: witPub.Verifiers()},
	}
}

func TestDescriptorRoundTrip(t *testing.T) {
	d := newDescriptor(t, "lu-1")
	if err := d.Validate(); err != nil {
		t.Fatal(err)
	}
	b := d.Marshal()
	if !bytes.HasSuffix(b, []byte("}\n")) {
		t.Fatalf("Marshal does not end in a newline: %q", b[len(b)-5:])
	}
	got, err := ParseDescriptor(b)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, d) {
		t.Fatalf("round trip:\n got %+v\nwant %+v", got, d)
	}
	if !bytes.Equal(got.Marshal(), b) {
		t.Fatal("Marshal(ParseDescriptor(Marshal(d))) differs")
	}
	if !got.HasLog() || got.Name != "lu-1" {
		t.Fatalf("HasLog %v, Name %q", got.HasLog(), got.Name)
	}

	// A trailing slash on the URL is allowed and dropped by BaseURL.
	d.URL = "https://lu-1.example:8443/"
	if _, err := ParseDescriptor(d.Marshal()); err != nil {
		t.Fatal(err)
	}
	if got := d.BaseURL(); got != "https://lu-1.example:8443" {
		t.Fatalf("BaseURL %q", got)
	}
	// Compact JSON with whitespace around it parses too.
	compact := []byte(` {"version":1,"name":"a","url":"https://127.0.0.1:1","tls_fingerprint":"` + d.TLS + `",` +
		`"log":{"origin":"o","keys":["o+01234567+AQ"]},"witness":{"origin":"w","keys":["w+01234567+BA"]}}` + "\n\t ")
	if _, err := ParseDescriptor(compact); err != nil {
		t.Fatalf("compact descriptor: %v", err)
	}
}

// A guest's own witness has no log: a descriptor without one is valid.
func TestDescriptorWitnessOnly(t *testing.T) {
	d := newDescriptor(t, "home-witness")
	d.Log = KeySet{}
	got, err := ParseDescriptor(d.Marshal())
	if err != nil {
		t.Fatal(err)
	}
	if got.HasLog() {
		t.Fatal("witness-only descriptor reports a log")
	}
	if len(got.Witness.Keys) != 2 {
		t.Fatalf("witness keys %q", got.Witness.Keys)
	}
	// An explicit empty log is the same.
	d.Log = KeySet{Origin: "", Keys: []string{}}
	if _, err := ParseDescriptor(d.Marshal()); err != nil {
		t.Fatal(err)
	}
}

func TestParseDescriptorRejects(t *testing.T) {
	base := newDescriptor(t, "lu-1")
	edit := func(f func(d *Descriptor)) []byte {
		d := *base
		d.Log.Keys = append([]string(nil), base.Log.Keys...)
		d.Witness.Keys = append([]string(nil), base.Witness.Keys...)
		f(&d)
		return d.Marshal()
	}
	valid := base.Marshal()
	for _, tc := range []struct {
		name string
		in   []byte
	}{
		{"empty", nil},
		{"not json", []byte("version: 1\n")},
		{"json array", []byte("[]")},
		{"json null", []byte("null")},
		{"version 0", edit(func(d *Descriptor) { d.Version = 0 })},
		{"version 2", edit(func(d *Descriptor) { d.Version = 2 })},
		{"version string", bytes.Replace(valid, []byte(`"version": 1`), []byte(`"version": "1"`), 1)},
		{"no name", edit(func(d *Descriptor) { d.Name = "" })},
		{"upper-case name", edit(func(d *Descriptor) { d.Name = "Lu-1" })},
		{"name with slash", edit(func(d *Descriptor) { d.Name = "lu/1" })},
		{"name starting with a dot", edit(func(d *Descriptor) { d.Name = ".lu" })},
		{"long name", edit(func(d *Descriptor) { d.Name = strings.Repeat("a", 65) })},
		{"no url", edit(func(d *Descriptor) { d.URL = "" })},
		{"http url", edit(func(d *Descriptor) { d.URL = "http://lu-1.example:8443" })},
		{"ftp url", edit(func(d *Descriptor) { d.URL = "ftp://lu-1.example" })},
		{"no scheme", edit(func(d *Descriptor) { d.URL = "lu-1.example:8443" })},
		{"no host", edit(func(d *Descriptor) { d.URL = "https:///v1" })},
		{"opaque", edit(func(d *Descriptor) { d.URL = "https:lu-1.example" })},
		{"url with path", edit(func(d *Descriptor) { d.URL = "https://lu-1.example/embassy" })},
		{"url with double slash", edit(func(d *Descriptor) { d.URL = "https://lu-1.example//" })},
		{"url with query", edit(func(d *Descriptor) { d.URL = "https://lu-1.example/?a=b" })},
		{"url with empty query", edit(func(d *Descriptor) { d.URL = "https://lu-1.example/?" })},
		{"url with fragment", edit(func(d *Descriptor) { d.URL = "https://lu-1.example#x" })},
		{"url with empty fragment", edit(func(d *Descriptor) { d.URL = "https://lu-1.example#" })},
		{"url with userinfo", edit(func(d *Descriptor) { d.URL = "https://user:pw@lu-1.example" })},
		{"url with user", edit(func(d *Descriptor) { d.URL = "https://user@lu-1.example" })},
		{"url with bad port", edit(func(d *Descriptor) { d.URL = "https://lu-1.example:port" })},
		{"url with space", edit(func(d *Descriptor) { d.URL = "https://lu 1.example" })},
		{"no fingerprint", edit(func(d *Descriptor) { d.TLS = "" })},
		{"fingerprint without prefix", edit(func(d *Descriptor) { d.TLS = strings.TrimPrefix(base.TLS, "sha256:") })},
		{"fingerprint sha1", edit(func(d *Descriptor) { d.TLS = "sha1:" + strings.Repeat("ab", 20) })},
		{"fingerprint upper-case prefix", edit(func(d *Descriptor) { d.TLS = "SHA256:" + strings.TrimPrefix(base.TLS, "sha256:") })},
		{"fingerprint upper-case hex", edit(func(d *Descriptor) { d.TLS = "sha256:" + strings.Repeat("AB", 32) })},
		{"fingerprint short", edit(func(d *Descriptor) { d.TLS = base.TLS[:len(base.TLS)-1] })},
		{"fingerprint long", edit(func(d *Descriptor) { d.TLS = base.TLS + "0" })},
		{"fingerprint not hex", edit(func(d *Descriptor) { d.TLS = "sha256:" + strings.Repeat("g", 64) })},
		{"fingerprint base64", edit(func(d *Descriptor) { d.TLS = "sha256:" + strings.Repeat("A", 43) + "=" })},
		{"fingerprint with space", edit(func(d *Descriptor) { d.TLS = "sha256: " + strings.Repeat("a", 63) })},
		{"log keys without origin", edit(func(d *Descriptor) { d.Log.Origin = "" })},
		{"log origin without keys", edit(func(d *Descriptor) { d.Log.Keys = nil })},
		{"log origin with empty keys", edit(func(d *Descriptor) { d.Log.Keys = []string{} })},
		{"no witness", edit(func(d *Descriptor) { d.Witness = KeySet{} })},
		{"witness without name", edit(func(d *Descriptor) { d.Witness.Origin = "" })},
		{"witness without keys", edit(func(d *Descriptor) { d.Witness.Keys = nil })},
		{"empty log key", edit(func(d *Descriptor) { d.Log.Keys[1] = "" })},
		{"log key with space", edit(func(d *Descriptor) { d.Log.Keys[0] = "a b" })},
		{"log key with newline", edit(func(d *Descriptor) { d.Log.Keys[0] += "\n" })},
		{"witness key with tab", edit(func(d *Descriptor) { d.Witness.Keys[0] += "\t" })},
		{"long key", edit(func(d *Descriptor) { d.Witness.Keys[1] = strings.Repeat("k", 8193) })},
		{"private log key", edit(func(d *Descriptor) { d.Log.Keys[0] = "PRIVATE+KEY+" + d.Log.Keys[0] })},
		{"private witness key", edit(func(d *Descriptor) { d.Witness.Keys[1] = "PRIVATE+KEY+" + d.Witness.Keys[1] })},
		{"unknown field", bytes.Replace(valid, []byte(`"version": 1,`), []byte(`"version": 1, "comment": "x",`), 1)},
		{"unknown nested field", bytes.Replace(valid, []byte(`"log": {`), []byte(`"log": {"threshold": 2,`), 1)},
		{"truncated", valid[:len(valid)/2]},
		{"trailing object", append(append([]byte{}, valid...), "{}"...)},
		{"trailing garbage", append(append([]byte{}, valid...), "x"...)},
		{"trailing brace", append(append([]byte{}, valid...), "}"...)},
		{"trailing bracket", append(append([]byte{}, valid...), "]"...)},
		{"two descriptors", append(append([]byte{}, valid...), valid...)},
		{"oversized", append(append([]byte{}, valid...), bytes.Repeat([]byte(" "), MaxDescriptorSize)...)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d, err := ParseDescriptor(tc.in)
			if !errors.Is(err, wire.ErrCorrupt) {
				t.Fatalf("ParseDescriptor accepted it (URL %q) or failed otherwise: %v", descURL(d), err)
			}
			if strings.Contains(err.Error(), "PRIVATE+") {
				t.Fatalf("error repeats key material: %v", err)
			}
		})
	}
	// The size cap is on the input, not on the descriptor: whitespace up to
	// the cap is fine.
	padded := append(append([]byte{}, valid...), bytes.Repeat([]byte(" "), MaxDescriptorSize-len(valid))...)
	if _, err := ParseDescriptor(padded); err != nil {
		t.Fatalf("descriptor of exactly MaxDescriptorSize bytes: %v", err)
	}
}

// TestGoldenDescriptor checks the committed descriptor, the one the golden
// receipt (receipt_test.go) verifies under. It is written by -update only if
// missing, since its log keys sign testdata/transport/receipt.bin.
func TestGoldenDescriptor(t *testing.T) {
	if *update {
		goldenLogKey(t) // makes descriptor.json if it is missing
	}
	b := testenv.ReadFile(t, filepath.Join(goldenDir, "descriptor.json"))
	d, err := ParseDescriptor(b)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(d.Marshal(), b) {
		t.Fatal("Marshal(ParseDescriptor(descriptor.json)) differs from the file")
	}
	if d.Name != goldenHost || d.URL != "https://golden-host.example:8443" || !d.HasLog() || d.Log.Origin != ledger.Origin(goldenHost) {
		t.Fatalf("unexpected golden descriptor %+v", d)
	}
	if _, err := ledger.NewVerifier(d.Log.Origin, d.Log.Keys); err != nil {
		t.Fatalf("golden log keys: %v", err)
	}
}

func descURL(d *Descriptor) string {
	if d == nil {
		return ""
	}
	return d.URL
}

func FuzzParseDescriptor(f *testing.F) {
	f.Add(newDescriptor(f, "lu-1").Marshal())
	w := newDescriptor(f, "w")
	w.Log = KeySet{}
	f.Add(w.Marshal())
	f.Add([]byte(`{"version":1,"name":"a","url":"https://h","tls_fingerprint":"sha256:` + strings.Repeat("a", 64) + `","witness":{"origin":"w","keys":["k"]}}`))
	f.Add([]byte(`{"version":1,"NAME":"a","name":"b","url":"https://h/","tls_fingerprint":"sha256:` + strings.Repeat("a", 64) + `","log":{"origin":"o","keys":["\u00e9"]},"witness":{"origin":"w","keys":["k"]}}`))
	f.Add([]byte("{}"))
	f.Fuzz(func(t *testing.T, b []byte) {
		d, err := ParseDescriptor(b)
		if err != nil {
			if !errors.Is(err, wire.ErrCorrupt) {
				t.Fatalf("error does not wrap ErrCorrupt: %v", err)
			}
			return
		}
		// JSON is not canonical, so the property is parse → marshal →
		// parse gives the same descriptor, and marshalling is stable.
		m := d.Marshal()
		d2, err := ParseDescriptor(m)
		if err != nil {
			t.Fatalf("re-marshalled descriptor does not parse: %v\n%s", err, m)
		}
		if !reflect.DeepEqual(d, d2) {
			t.Fatalf("re-parsed descriptor differs:\n%+v\n%+v", d, d2)
		}
		if !bytes.Equal(d2.Marshal(), m) {
			t.Fatal("Marshal is not stable")
		}
	})
}
