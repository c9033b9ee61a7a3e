package s3store_test

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	s3store "github.com/embassy-project/embassy/internal/shardstore/s3"
)

func TestParseURL(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want s3store.Location
	}{
		{"s3://bucket?endpoint=http://127.0.0.1:7070", s3store.Location{Bucket: "bucket", Endpoint: "http://127.0.0.1:7070", Region: "us-east-1"}},
		{"s3://my.bucket-1/a/b_c/D.e?endpoint=https://s3.example.com&region=eu-central-1",
			s3store.Location{Bucket: "my.bucket-1", Prefix: "a/b_c/D.e", Endpoint: "https://s3.example.com", Region: "eu-central-1"}},
		{"s3://bkt/p?region=x&endpoint=https://h:1/", s3store.Location{Bucket: "bkt", Prefix: "p", Endpoint: "https://h:1", Region: "x"}},
		{"s3://bkt?endpoint=http%3A%2F%2F%5B%3A%3A1%5D%3A9000", s3store.Location{Bucket: "bkt", Endpoint: "http://[::1]:9000", Region: "us-east-1"}},
	} {
		got, err := s3store.ParseURL(tc.in)
		if err != nil || got != tc.want {
			t.Errorf("ParseURL(%q) = %+v, %v; want %+v", tc.in, got, err, tc.want)
			continue
		}
		again, err := s3store.ParseURL(got.String())
		if err != nil || again != got {
			t.Errorf("ParseURL(%q.String() = %q) = %+v, %v", tc.in, got.String(), again, err)
		}
	}
	const ep = "?endpoint=http://h:1"
	for _, tc := range []struct{ in, want string }{
		{"", "scheme"},
		{"http://bucket" + ep, "scheme"},
		{"s3:bucket" + ep, "s3://BUCKET"},
		{"s3://user:hunter2@bucket" + ep, "user info"},
		{"s3://bucket/" + ep, "empty prefix"},
		{"s3://bucket/a//b" + ep, "empty segment"},
		{"s3://bucket/a/" + ep, "empty segment"},
		{"s3://bucket/a/../b" + ep, ". or .."},
		{"s3://bucket/a%2Fb" + ep, "escaped"},
		{"s3://bucket/a:b" + ep, "prefix must be"},
		{"s3://BUCKET" + ep, "lowercase"},
		{"s3://ab" + ep, "3–63"},
		{"s3://" + strings.Repeat("a", 64) + ep, "3–63"},
		{"s3://-bucket" + ep, "begin and end"},
		{"s3://a..b" + ep, `".."`},
		{"s3://bucket:80" + ep, "lowercase"},
		{"s3://bucket" + ep + "#frag", "fragment"},
		{"s3://bucket/" + strings.Repeat("p", 300) + ep, "longer than"},
		{"s3://bucket", "endpoint parameter missing"},
		{"s3://bucket?", "empty query"},
		{"s3://bucket?endpoint=ftp://h", "https://"},
		{"s3://bucket?endpoint=http://key:hunter2@h", "user info"},
		{"s3://bucket?endpoint=http://h/path", "path"},
		{"s3://bucket?endpoint=http://h?x=1", "query"},
		{"s3://bucket?endpoint=http://", "no host"},
		{"s3://bucket?endpoint=http://h:port", "not a URL"},
		{"s3://bucket?endpoint=http://h&endpoint=http://g", "2 times"},
		{"s3://bucket?endpoint=http://h&hunter2=1", "unknown parameter"},
		{"s3://bucket?endpoint=http://h&region=US_EAST", "region"},
		{"s3://bucket?endpoint=http://h&region=", "region"},
		{"s3://bucket?endpoint=http://h;x=1", "malformed query"},
		{"s3://bucket?endpoint=" + strings.Repeat("x", 3000), "longer than"},
	} {
		_, err := s3store.ParseURL(tc.in)
		if err == nil {
			t.Errorf("ParseURL(%q) succeeded", tc.in)
			continue
		}
		if !errors.Is(err, s3store.ErrInvalidURL) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("ParseURL(%q) = %q, want ErrInvalidURL saying %q", tc.in, err, tc.want)
		}
		if strings.Contains(err.Error(), "hunter2") && tc.want != "unknown parameter" {
			t.Errorf("ParseURL(%q) error repeats the input: %q", tc.in, err)
		}
	}
}

func FuzzParseURL(f *testing.F) {
	for _, s := range []string{
		"s3://bucket?endpoint=http://127.0.0.1:7070",
		"s3://my.bucket-1/a/b_c/D.e?endpoint=https://s3.example.com&region=eu-central-1",
		"s3://bkt?endpoint=http%3A%2F%2F%5B%3A%3A1%5D%3A9000&region=x",
		"s3://bucket/a//b?endpoint=http://h",
		"s3://bucket?endpoint=http://h?x=1",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		loc, err := s3store.ParseURL(s)
		if err != nil {
			if !errors.Is(err, s3store.ErrInvalidURL) {
				t.Fatalf("error does not wrap ErrInvalidURL: %v", err)
			}
			return
		}
		canon := loc.String()
		again, err := s3store.ParseURL(canon)
		if err != nil || again != loc || again.String() != canon {
			t.Fatalf("ParseURL(%q) = %+v; its String %q parses to %+v, %v", s, loc, canon, again, err)
		}
	})
}

const (
	testKeyID  = "AKIAEXAMPLE123"
	testSecret = "wJalrXUtnFEMI-secret-value"
	testToken  = "FwoGZXIvYXdzE-session-token"
)

func noSecret(t *testing.T, what, s string) {
	t.Helper()
	for _, secret := range []string{testSecret, testToken, "hunter2"} {
		if strings.Contains(s, secret) {
			t.Errorf("%s reveals a secret: %q", what, s)
		}
	}
}

func TestCredentialsRedacted(t *testing.T) {
	c := s3store.Credentials{AccessKeyID: testKeyID, SecretAccessKey: testSecret, SessionToken: testToken}
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%d", "%x", "%q", "%10.3v"} {
		out := fmt.Sprintf(verb, c)
		noSecret(t, verb, out)
		if !strings.Contains(out, "REDACTED") {
			t.Errorf("%s of Credentials = %q, want the redacted form", verb, out)
		}
		noSecret(t, verb+" of a pointer", fmt.Sprintf(verb, &c))
		noSecret(t, verb+" inside a struct", fmt.Sprintf(verb, struct{ C s3store.Credentials }{c}))
	}
	var buf bytes.Buffer
	slog.New(slog.NewJSONHandler(&buf, nil)).Info("creds", "c", c)
	noSecret(t, "slog", buf.String())
	if !strings.Contains(buf.String(), testKeyID) {
		t.Errorf("slog output %q lacks the access key ID", buf.String())
	}
}

func TestCredentialsFromEnv(t *testing.T) {
	t.Setenv(s3store.EnvCredentialsFile, "")
	t.Setenv(s3store.EnvAccessKeyID, testKeyID)
	t.Setenv(s3store.EnvSecretAccessKey, testSecret)
	t.Setenv(s3store.EnvSessionToken, testToken)
	c, err := s3store.CredentialsFromEnv()
	want := s3store.Credentials{AccessKeyID: testKeyID, SecretAccessKey: testSecret, SessionToken: testToken}
	if err != nil || c != want {
		t.Fatalf("CredentialsFromEnv = %v, %v", c, err)
	}
	for _, tc := range []struct{ id, secret, want string }{
		{"", "", "no S3 credentials"},
		{testKeyID, "", "AWS_SECRET_ACCESS_KEY is not"},
		{"", testSecret, "AWS_ACCESS_KEY_ID is not"},
	} {
		t.Setenv(s3store.EnvAccessKeyID, tc.id)
		t.Setenv(s3store.EnvSecretAccessKey, tc.secret)
		_, err := s3store.CredentialsFromEnv()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("CredentialsFromEnv with id %q = %v, want an error saying %q", tc.id, err, tc.want)
		} else {
			noSecret(t, "error", err.Error())
		}
	}
}

func TestCredentialsFromFile(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := write("good", "# S3 key for the host\r\n\n  access_key_id = "+testKeyID+"\r\nsecret_access_key="+testSecret+"\nsession_token="+testToken+"\n", 0o600)
	want := s3store.Credentials{AccessKeyID: testKeyID, SecretAccessKey: testSecret, SessionToken: testToken}
	if c, err := s3store.CredentialsFromFile(good); err != nil || c != want {
		t.Fatalf("CredentialsFromFile = %v, %v", c, err)
	}
	// The file wins over the AWS variables when both are set.
	t.Setenv(s3store.EnvCredentialsFile, good)
	t.Setenv(s3store.EnvAccessKeyID, "other")
	t.Setenv(s3store.EnvSecretAccessKey, "other")
	if c, err := s3store.CredentialsFromEnv(); err != nil || c != want {
		t.Fatalf("CredentialsFromEnv with a file = %v, %v", c, err)
	}
	noToken := write("notoken", "access_key_id="+testKeyID+"\nsecret_access_key="+testSecret, 0o400)
	if c, err := s3store.CredentialsFromFile(noToken); err != nil || c.SessionToken != "" || c.SecretAccessKey != testSecret {
		t.Fatalf("CredentialsFromFile without a token = %v, %v", c, err)
	}

	body := "access_key_id=" + testKeyID + "\nsecret_access_key=" + testSecret + "\n"
	for _, tc := range []struct {
		name, content string
		mode          os.FileMode
		want          string
	}{
		{"world", body, 0o644, "chmod 600"},
		{"group", body, 0o640, "chmod 600"},
		{"groupwrite", body, 0o620, "chmod 600"},
		{"noid", "secret_access_key=" + testSecret + "\n", 0o600, "access_key_id missing"},
		{"nosecret", "access_key_id=" + testKeyID + "\n", 0o600, "secret_access_key missing"},
		{"unknown", body + "password=hunter2\n", 0o600, "line 3: unknown key"},
		{"noequals", body + testSecret + "\n", 0o600, "line 3: want key=value"},
		{"twice", body + "secret_access_key=hunter2\n", 0o600, "given twice"},
		{"empty", "access_key_id=\n", 0o600, "empty"},
		{"huge", body + "# " + strings.Repeat("x", 70<<10) + "\n", 0o600, "larger than"},
	} {
		p := write(tc.name, tc.content, tc.mode)
		_, err := s3store.CredentialsFromFile(p)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: CredentialsFromFile = %v, want an error saying %q", tc.name, err, tc.want)
			continue
		}
		noSecret(t, tc.name+" error", err.Error())
		t.Setenv(s3store.EnvCredentialsFile, p)
		if _, err := s3store.CredentialsFromEnv(); err == nil {
			t.Errorf("%s: CredentialsFromEnv accepted the file", tc.name)
		}
	}
	if _, err := s3store.CredentialsFromFile(dir); err == nil || !strings.Contains(err.Error(), "regular file") {
		t.Errorf("CredentialsFromFile(directory) = %v", err)
	}
	if _, err := s3store.CredentialsFromFile(filepath.Join(dir, "absent")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("CredentialsFromFile(absent) = %v", err)
	}
}
