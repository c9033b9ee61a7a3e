package custodian

import (
	"bytes"
	"encoding/base64"
	"errors"
	"flag"
	"github.com/embassy-project/embassy/internal/testenv"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/embassy-project/embassy/internal/wire"
)

var update = flag.Bool("update", false, "regenerate the golden custodian keys in testdata/custodian (breaks testdata/guest and testdata/share until they are regenerated too)")

const goldenDir = "../../testdata/custodian"

// GoldenNames are the committed test custodians.
var goldenNames = []string{"alice", "bob", "carol", "dave", "erin"}

func mustGenerate(t testing.TB, name string) *Identity {
	t.Helper()
	id, err := Generate(name)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func TestRoundTrip(t *testing.T) {
	id := mustGenerate(t, "alice")
	file := id.Marshal()
	got, err := ParseIdentity(file)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got.Marshal(), file) {
		t.Fatal("identity: Marshal(Parse(x)) != x")
	}
	if !bytes.Equal(id.Marshal(), file) || !bytes.Equal(got.Marshal(), file) {
		t.Fatal("identity: second Marshal differs (was key material cleared?)")
	}
	if got.Fingerprint() != id.Fingerprint() {
		t.Fatal("identity: fingerprint changed")
	}
	pub := id.Recipient().Marshal()
	r, err := ParseRecipient(pub)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(r.Marshal(), pub) {
		t.Fatal("recipient: Marshal(Parse(x)) != x")
	}
	if !r.Equal(id.Recipient()) || r.Fingerprint() != id.Fingerprint() {
		t.Fatal("recipient differs from identity's")
	}
	if len(r.Fingerprint()) != 32 {
		t.Fatalf("fingerprint %q, want 32 hex characters", r.Fingerprint())
	}
	if other := mustGenerate(t, "alice"); other.Fingerprint() == id.Fingerprint() || other.Recipient().Equal(r) {
		t.Fatal("two identities share a fingerprint")
	}
	if !strings.Contains(string(pub), "# fingerprint: "+r.Fingerprint()+"\n") {
		t.Fatal("recipient file lacks its fingerprint comment")
	}
}

func TestLenientLayout(t *testing.T) {
	id := mustGenerate(t, "bob")
	canon := id.Marshal()
	lines := strings.Split(strings.TrimSuffix(string(canon), "\n"), "\n")
	// Reordered fields, CRLF, blank lines, extra comments, trailing blanks,
	// no fingerprint comment, no final newline.
	var b strings.Builder
	b.WriteString("\r\n# my key\r\n")
	b.WriteString(lines[2] + "  \r\n") // header
	b.WriteString("\n# note\n")
	b.WriteString(lines[5] + "\r\n")
	b.WriteString(lines[3] + "\t\n")
	b.WriteString(lines[4])
	got, err := ParseIdentity([]byte(b.String()))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got.Marshal(), canon) {
		t.Fatal("not canonicalised")
	}
}

func TestValidName(t *testing.T) {
	for _, tc := range []struct {
		name string
		ok   bool
	}{
		{"alice", true}, {"a", true}, {"0", true}, {"a.b_c-d9", true},
		{strings.Repeat("a", 64), true},
		{"", false}, {strings.Repeat("a", 65), false}, {"Alice", false}, {"-a", false},
		{".a", false}, {"_a", false}, {"a b", false}, {"a/b", false}, {"é", false}, {"a:", false},
	} {
		err := ValidName(tc.name)
		if (err == nil) != tc.ok {
			t.Errorf("ValidName(%q) = %v, want ok=%v", tc.name, err, tc.ok)
		}
		if _, err := Generate(tc.name); (err == nil) != tc.ok {
			t.Errorf("Generate(%q) = %v, want ok=%v", tc.name, err, tc.ok)
		}
	}
}

// edit replaces the line starting with prefix (the first one) with repl;
// repl "" drops it.
func edit(file []byte, prefix, repl string) []byte {
	lines := strings.Split(string(file), "\n")
	for i, l := range lines {
		if strings.HasPrefix(l, prefix) {
			if repl == "" {
				lines = append(lines[:i], lines[i+1:]...)
			} else {
				lines[i] = repl
			}
			break
		}
	}
	return []byte(strings.Join(lines, "\n"))
}

func field(file []byte, name string) string {
	for _, l := range strings.Split(string(file), "\n") {
		if v, ok := strings.CutPrefix(l, name+": "); ok {
			return v
		}
	}
	return ""
}

// badB64 changes the last data character so the padding bits are not zero:
// still decodable by a lax decoder, refused by a strict one.
func badB64(v string) string {
	i := strings.IndexByte(v, '=') - 1
	if i < 0 {
		i = len(v) - 1
	}
	c := strings.IndexByte("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/", v[i])
	return v[:i] + string("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"[c^1]) + v[i+1:]
}

func TestParseStrict(t *testing.T) {
	id := mustGenerate(t, "carol")
	key := id.Marshal()
	pub := id.Recipient().Marshal()
	other := mustGenerate(t, "dave")
	kemK, signK := field(key, fieldKEM), field(key, fieldSign)
	kemP, signP := field(pub, fieldKEM), field(pub, fieldSign)
	short := base64.StdEncoding.EncodeToString(make([]byte, 31))

	type tc struct {
		name string
		file []byte
	}
	cases := func(file []byte, header, kem, sign string) []tc {
		return []tc{
			{"empty", nil},
			{"only comments", []byte("# nothing\n\n")},
			{"no header", edit(file, header, "")},
			{"wrong header", edit(file, header, "embassy-custodian-identity-v2")},
			{"unknown field", edit(file, "name: ", "name: carol\nexpires: never")},
			{"unknown field with junk name", edit(file, "name: ", "name: carol\n"+kem+": x")},
			{"duplicate field", edit(file, "name: ", "name: carol\nname: carol")},
			{"duplicate key field", edit(file, fieldKEM, fieldKEM+": "+kem+"\n"+fieldKEM+": "+kem)},
			{"missing name", edit(file, "name: ", "")},
			{"missing kem", edit(file, fieldKEM, "")},
			{"missing sign", edit(file, fieldSign, "")},
			{"bad name", edit(file, "name: ", "name: Carol")},
			{"empty name", edit(file, "name: ", "name: ")},
			{"space before value", edit(file, "name: ", "name:  carol")},
			{"no separator", edit(file, "name: ", "name carol")},
			{"colon no space", edit(file, "name: ", "name:carol")},
			{"bare key line", edit(file, "name: ", kem)},
			{"bad base64 char", edit(file, fieldKEM, fieldKEM+": !"+kem[1:])},
			{"non-canonical base64", edit(file, fieldKEM, fieldKEM+": "+badB64(kem))},
			{"unpadded base64", edit(file, fieldKEM, fieldKEM+": "+strings.TrimRight(kem, "="))},
			{"wrong size kem", edit(file, fieldKEM, fieldKEM+": "+short)},
			{"wrong size sign", edit(file, fieldSign, fieldSign+": "+short)},
			{"kem and sign swapped", edit(edit(file, fieldKEM, fieldKEM+": "+sign), fieldSign, fieldSign+": "+kem)},
			{"another key's fingerprint", edit(file, "# fingerprint: ", "# fingerprint: "+other.Fingerprint())},
			{"two fingerprint comments", edit(file, "# fingerprint: ", "# fingerprint: "+id.Fingerprint()+"\n# fingerprint: "+id.Fingerprint())},
			{"another key's sign key", edit(file, fieldSign, fieldSign+": "+field(other.Marshal(), fieldSign))},
			{"too large", append(bytes.Clone(file), bytes.Repeat([]byte("#\n"), MaxFileSize)...)},
		}
	}
	check := func(t *testing.T, err error, secrets ...string) {
		t.Helper()
		if !errors.Is(err, wire.ErrCorrupt) {
			t.Fatalf("got %v, want ErrCorrupt", err)
		}
		for _, s := range secrets {
			for i := 0; i+16 <= len(s); i += 8 {
				if strings.Contains(err.Error(), s[i:i+16]) {
					t.Fatalf("error quotes key material: %v", err)
				}
			}
		}
	}
	for _, c := range cases(key, IdentityHeader, kemK, signK) {
		t.Run("identity/"+c.name, func(t *testing.T) {
			_, err := ParseIdentity(c.file)
			check(t, err, kemK, signK)
		})
	}
	for _, c := range cases(pub, RecipientHeader, kemP, signP) {
		t.Run("recipient/"+c.name, func(t *testing.T) {
			_, err := ParseRecipient(c.file)
			check(t, err, kemP, signP)
		})
	}
	t.Run("recipient file as identity", func(t *testing.T) {
		_, err := ParseIdentity(pub)
		check(t, err)
		if !strings.Contains(err.Error(), "recipient") {
			t.Fatalf("error does not say what the file is: %v", err)
		}
	})
	t.Run("identity file as recipient", func(t *testing.T) {
		_, err := ParseRecipient(key)
		check(t, err, kemK, signK)
		if !strings.Contains(err.Error(), "SECRET") {
			t.Fatalf("error does not warn: %v", err)
		}
	})
	t.Run("passphrase header", func(t *testing.T) {
		_, err := ParseIdentity(edit(key, IdentityHeader, PassphraseHeader))
		if !errors.Is(err, ErrPassphrase) {
			t.Fatalf("got %v, want ErrPassphrase", err)
		}
	})
}

func TestGolden(t *testing.T) {
	if *update {
		for _, name := range goldenNames {
			id := mustGenerate(t, name)
			testenv.WriteFile(t, filepath.Join(goldenDir, name+".key"), id.Marshal())
			testenv.WriteFile(t, filepath.Join(goldenDir, name+".pub"), id.Recipient().Marshal())
		}
	}
	for _, name := range goldenNames {
		t.Run(name, func(t *testing.T) {
			key := testenv.ReadFile(t, filepath.Join(goldenDir, name+".key"))
			pub := testenv.ReadFile(t, filepath.Join(goldenDir, name+".pub"))
			id, err := ParseIdentity(key)
			if err != nil {
				t.Fatal(err)
			}
			r, err := ParseRecipient(pub)
			if err != nil {
				t.Fatal(err)
			}
			if id.Name != name || r.Name != name {
				t.Fatalf("names %q, %q", id.Name, r.Name)
			}
			if !bytes.Equal(id.Marshal(), key) || !bytes.Equal(r.Marshal(), pub) {
				t.Fatal("golden file is not canonical")
			}
			if !bytes.Equal(id.Recipient().Marshal(), pub) {
				t.Fatal(".pub does not belong to .key")
			}
		})
	}
}

func seeds(f *testing.F) {
	f.Helper()
	for _, name := range goldenNames[:2] {
		key, err := os.ReadFile(filepath.Join(goldenDir, name+".key"))
		if err != nil {
			f.Fatal(err)
		}
		pub, err := os.ReadFile(filepath.Join(goldenDir, name+".pub"))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(key)
		f.Add(pub)
		f.Add(edit(key, "name: ", "name: x\nname: y"))
		f.Add(edit(pub, "# fingerprint", ""))
	}
	f.Add([]byte(IdentityHeader + "\nname: a\n"))
	f.Add([]byte(RecipientHeader + "\r\n\r\n#\r\n"))
	f.Add([]byte(PassphraseHeader + "\n"))
}

// fuzzCheck asserts the parser contract: a clean error, or a value whose
// canonical encoding parses back to itself.
func fuzzCheck[T interface{ Marshal() []byte }](t *testing.T, v T, err error, parse func([]byte) (T, error)) {
	if err != nil {
		if !errors.Is(err, wire.ErrCorrupt) && !errors.Is(err, ErrPassphrase) {
			t.Fatalf("error does not wrap ErrCorrupt: %v", err)
		}
		return
	}
	m := v.Marshal()
	v2, err := parse(m)
	if err != nil {
		t.Fatalf("canonical encoding does not parse: %v", err)
	}
	if !bytes.Equal(v2.Marshal(), m) {
		t.Fatal("Marshal(Parse(Marshal(v))) != Marshal(v)")
	}
}

func FuzzParseIdentity(f *testing.F) {
	seeds(f)
	f.Fuzz(func(t *testing.T, b []byte) {
		id, err := ParseIdentity(b)
		fuzzCheck(t, id, err, ParseIdentity)
	})
}

func FuzzParseRecipient(f *testing.F) {
	seeds(f)
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := ParseRecipient(b)
		fuzzCheck(t, r, err, ParseRecipient)
	})
}
