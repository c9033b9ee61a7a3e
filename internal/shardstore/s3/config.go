package s3store

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"
)

// Config configures Open.
type Config struct {
	// URL names the bucket, an optional key prefix, the endpoint and the
	// region: s3://BUCKET[/PREFIX]?endpoint=https://host:port&region=REGION
	// (region defaults to us-east-1). See ParseURL.
	URL string
	// Credentials sign every request.
	Credentials Credentials
	// DefaultRetention is how long Put locks a new object (Put =
	// PutRetained(now+DefaultRetention)). Required, at most MaxRetention.
	DefaultRetention time.Duration
	// HTTPClient, if not nil, sends the requests (timeouts, TLS roots,
	// proxies). The SDK's default client is used otherwise.
	HTTPClient *http.Client
}

// MaxRetention bounds DefaultRetention and every retain-until date: COMPLIANCE
// locks cannot be lifted, so a typo must not lock objects for centuries.
const MaxRetention = 100 * 365 * 24 * time.Hour

// ErrInvalidURL is wrapped by every ParseURL error.
var ErrInvalidURL = errors.New("invalid S3 store URL")

// Location is a parsed store URL.
type Location struct {
	Bucket   string // S3 bucket name
	Prefix   string // key prefix without leading or trailing slash; may be empty
	Endpoint string // http(s)://host[:port], no path
	Region   string // signing region
}

// DefaultRegion is the region used when the URL names none.
const DefaultRegion = "us-east-1"

const maxURLLen = 2048

// ParseURL parses s3://BUCKET[/PREFIX]?endpoint=http(s)://host[:port][&region=REGION].
// It is strict: no user info, fragment, trailing slash, empty or dot path
// segment, unknown or repeated parameter. Errors wrap ErrInvalidURL and never
// repeat the input (an operator might have pasted a secret into it).
func ParseURL(s string) (Location, error) {
	bad := func(format string, args ...any) (Location, error) {
		return Location{}, fmt.Errorf("%w: %s", ErrInvalidURL, fmt.Sprintf(format, args...))
	}
	if len(s) > maxURLLen {
		return bad("longer than %d bytes", maxURLLen)
	}
	u, err := url.Parse(s)
	if err != nil {
		return bad("not a URL; want s3://BUCKET[/PREFIX]?endpoint=https://HOST:PORT&region=REGION")
	}
	switch {
	case u.Scheme != "s3":
		return bad("scheme must be s3://")
	case u.Opaque != "":
		return bad("want s3://BUCKET, not s3:BUCKET")
	case u.User != nil:
		return bad("user info is not allowed; give credentials separately")
	case u.Fragment != "" || strings.Contains(s, "#"):
		return bad("fragment (#…) is not allowed")
	}
	var loc Location
	loc.Bucket = u.Host
	if err := checkBucket(loc.Bucket); err != nil {
		return bad("%v", err)
	}
	if u.RawPath != "" || strings.Contains(u.Path, "%") {
		return bad("prefix must not contain escaped characters")
	}
	if u.Path != "" {
		p := strings.TrimPrefix(u.Path, "/")
		if err := checkPrefix(p); err != nil {
			return bad("%v", err)
		}
		loc.Prefix = p
	}
	if u.ForceQuery && u.RawQuery == "" {
		return bad("empty query")
	}
	q, err := url.ParseQuery(u.RawQuery)
	if err != nil {
		return bad("malformed query")
	}
	for k, v := range q {
		switch k {
		case "endpoint", "region":
			if len(v) != 1 {
				return bad("parameter %s given %d times", k, len(v))
			}
		default:
			return bad("unknown parameter %q (allowed: endpoint, region)", truncate(k, 32))
		}
	}
	ep, ok := q["endpoint"]
	if !ok {
		return bad("endpoint parameter missing; add ?endpoint=https://HOST:PORT")
	}
	if loc.Endpoint, err = checkEndpoint(ep[0]); err != nil {
		return bad("%v", err)
	}
	loc.Region = DefaultRegion
	if r, ok := q["region"]; ok {
		if !validRegion(r[0]) {
			return bad("region must be 1–32 characters of a-z, 0-9 and -")
		}
		loc.Region = r[0]
	}
	return loc, nil
}

// String returns the canonical URL of loc; ParseURL(loc.String()) == loc.
func (loc Location) String() string {
	u := url.URL{Scheme: "s3", Host: loc.Bucket}
	if loc.Prefix != "" {
		u.Path = "/" + loc.Prefix
	}
	u.RawQuery = url.Values{"endpoint": {loc.Endpoint}, "region": {loc.Region}}.Encode()
	return u.String()
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}

// checkBucket enforces the S3 bucket naming rules.
func checkBucket(b string) error {
	if len(b) < 3 || len(b) > 63 {
		return fmt.Errorf("bucket name must be 3–63 characters")
	}
	for i := 0; i < len(b); i++ {
		c := b[i]
		if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '.') {
			return fmt.Errorf("bucket name must be lowercase letters, digits, '-' and '.'")
		}
	}
	if !isAlnum(b[0]) || !isAlnum(b[len(b)-1]) {
		return fmt.Errorf("bucket name must begin and end with a letter or digit")
	}
	if strings.Contains(b, "..") {
		return fmt.Errorf("bucket name must not contain \"..\"")
	}
	return nil
}

func isAlnum(c byte) bool { return 'a' <= c && c <= 'z' || '0' <= c && c <= '9' }

const maxPrefixLen = 256

// checkPrefix allows slash-separated segments of [A-Za-z0-9._-], none empty,
// "." or "..".
func checkPrefix(p string) error {
	if p == "" {
		return fmt.Errorf("empty prefix: write s3://BUCKET without a trailing slash")
	}
	if len(p) > maxPrefixLen {
		return fmt.Errorf("prefix longer than %d bytes", maxPrefixLen)
	}
	for _, seg := range strings.Split(p, "/") {
		if seg == "" {
			return fmt.Errorf("prefix has an empty segment (a doubled or trailing slash)")
		}
		if seg == "." || seg == ".." {
			return fmt.Errorf("prefix must not contain . or .. segments")
		}
		for i := 0; i < len(seg); i++ {
			c := seg[i]
			if !(isAlnum(c) || 'A' <= c && c <= 'Z' || c == '-' || c == '_' || c == '.') {
				return fmt.Errorf("prefix must be letters, digits, '-', '_', '.' and '/'")
			}
		}
	}
	return nil
}

func checkEndpoint(s string) (string, error) {
	u, err := url.Parse(s)
	if err != nil {
		return "", fmt.Errorf("endpoint is not a URL")
	}
	switch {
	case u.Scheme != "http" && u.Scheme != "https":
		return "", fmt.Errorf("endpoint must start with https:// or http://")
	case u.User != nil:
		return "", fmt.Errorf("endpoint must not carry user info; give credentials separately")
	case u.Host == "" || u.Opaque != "":
		return "", fmt.Errorf("endpoint has no host")
	case u.Path != "" && u.Path != "/" || u.RawPath != "":
		return "", fmt.Errorf("endpoint must not have a path (the bucket goes in s3://BUCKET)")
	case u.RawQuery != "" || u.ForceQuery || u.Fragment != "":
		return "", fmt.Errorf("endpoint must not have a query or fragment")
	case u.Hostname() == "":
		return "", fmt.Errorf("endpoint has no host")
	}
	if p := u.Port(); p != "" {
		for i := 0; i < len(p); i++ {
			if p[i] < '0' || p[i] > '9' {
				return "", fmt.Errorf("endpoint port is not a number")
			}
		}
	}
	for i := 0; i < len(u.Host); i++ {
		if c := u.Host[i]; c <= ' ' || c >= 0x7f || c == '%' {
			return "", fmt.Errorf("endpoint host has unexpected characters")
		}
	}
	return u.Scheme + "://" + u.Host, nil
}

func validRegion(r string) bool {
	if len(r) == 0 || len(r) > 32 {
		return false
	}
	for i := 0; i < len(r); i++ {
		if c := r[i]; !(isAlnum(c) || c == '-') {
			return false
		}
	}
	return true
}

// Credentials are an S3 access key. Its String, GoString, Format and
// LogValue methods never reveal the secret key or the session token.
type Credentials struct {
	AccessKeyID     string
	SecretAccessKey string
	SessionToken    string // optional (temporary credentials)
}

const redacted = "REDACTED"

// String returns the access key ID with the secrets redacted.
func (c Credentials) String() string {
	tok := ""
	if c.SessionToken != "" {
		tok = ", SessionToken: " + redacted
	}
	return fmt.Sprintf("Credentials{AccessKeyID: %q, SecretAccessKey: %s%s}", c.AccessKeyID, redacted, tok)
}

// GoString is String: %#v must not print the secret either.
func (c Credentials) GoString() string { return c.String() }

// Format makes every fmt verb (%v, %+v, %#v, %s, %d, %x, …) print String.
func (c Credentials) Format(f fmt.State, verb rune) { io.WriteString(f, c.String()) }

// LogValue keeps the secrets out of slog output.
func (c Credentials) LogValue() slog.Value {
	return slog.GroupValue(slog.String("access_key_id", c.AccessKeyID), slog.String("secret_access_key", redacted))
}

func (c Credentials) check() error {
	if c.AccessKeyID == "" || c.SecretAccessKey == "" {
		return errors.New("S3 credentials incomplete: need an access key ID and a secret access key")
	}
	return nil
}

// Environment variables read by CredentialsFromEnv.
const (
	EnvCredentialsFile = "EMBASSY_S3_CREDENTIALS_FILE"
	EnvAccessKeyID     = "AWS_ACCESS_KEY_ID"
	EnvSecretAccessKey = "AWS_SECRET_ACCESS_KEY"
	EnvSessionToken    = "AWS_SESSION_TOKEN"
)

// CredentialsFromEnv reads the file named by EMBASSY_S3_CREDENTIALS_FILE if
// that is set (see CredentialsFromFile), and otherwise AWS_ACCESS_KEY_ID,
// AWS_SECRET_ACCESS_KEY and the optional AWS_SESSION_TOKEN.
func CredentialsFromEnv() (Credentials, error) {
	if path := os.Getenv(EnvCredentialsFile); path != "" {
		return CredentialsFromFile(path)
	}
	c := Credentials{
		AccessKeyID:     os.Getenv(EnvAccessKeyID),
		SecretAccessKey: os.Getenv(EnvSecretAccessKey),
		SessionToken:    os.Getenv(EnvSessionToken),
	}
	switch {
	case c.AccessKeyID == "" && c.SecretAccessKey == "":
		return Credentials{}, fmt.Errorf("no S3 credentials: set %s to a credentials file, or %s and %s",
			EnvCredentialsFile, EnvAccessKeyID, EnvSecretAccessKey)
	case c.AccessKeyID == "":
		return Credentials{}, fmt.Errorf("S3 credentials: %s is set but %s is not", EnvSecretAccessKey, EnvAccessKeyID)
	case c.SecretAccessKey == "":
		return Credentials{}, fmt.Errorf("S3 credentials: %s is set but %s is not", EnvAccessKeyID, EnvSecretAccessKey)
	}
	return c, nil
}

const maxCredentialsFile = 64 << 10

// CredentialsFromFile reads a credentials file: lines access_key_id=…,
// secret_access_key=… and optionally session_token=…; blank lines and lines
// starting with # are ignored. The file must be a regular file that neither
// group nor others may read or write (chmod 600). Errors name the file and
// line, never a value.
func CredentialsFromFile(path string) (Credentials, error) {
	fail := func(format string, args ...any) (Credentials, error) {
		return Credentials{}, fmt.Errorf("S3 credentials file %s: %s", path, fmt.Sprintf(format, args...))
	}
	f, err := os.Open(path)
	if err != nil {
		return Credentials{}, fmt.Errorf("S3 credentials file: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return Credentials{}, fmt.Errorf("S3 credentials file: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return fail("not a regular file")
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return fail("group or others may access it (mode %04o); run chmod 600 %s", perm, path)
	}
	if fi.Size() > maxCredentialsFile {
		return fail("larger than %d bytes", maxCredentialsFile)
	}
	b, err := io.ReadAll(io.LimitReader(f, maxCredentialsFile+1))
	if err != nil {
		return Credentials{}, fmt.Errorf("S3 credentials file: %w", err)
	}
	if len(b) > maxCredentialsFile {
		return fail("larger than %d bytes", maxCredentialsFile)
	}
	var c Credentials
	seen := map[string]bool{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 0, 4096), maxCredentialsFile)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			return fail("line %d: want key=value", n)
		}
		k, v = strings.TrimSpace(k), strings.TrimSpace(v)
		var dst *string
		switch k {
		case "access_key_id":
			dst = &c.AccessKeyID
		case "secret_access_key":
			dst = &c.SecretAccessKey
		case "session_token":
			dst = &c.SessionToken
		default:
			return fail("line %d: unknown key (allowed: access_key_id, secret_access_key, session_token)", n)
		}
		if seen[k] {
			return fail("line %d: %s given twice", n, k)
		}
		seen[k] = true
		if v == "" {
			return fail("line %d: %s is empty", n, k)
		}
		*dst = v
	}
	if err := sc.Err(); err != nil {
		return fail("unreadable (a line is too long?)")
	}
	if c.AccessKeyID == "" {
		return fail("access_key_id missing")
	}
	if c.SecretAccessKey == "" {
		return fail("secret_access_key missing")
	}
	return c, nil
}
