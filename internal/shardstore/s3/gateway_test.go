package s3store_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"go/build"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	s3store "github.com/embassy-project/embassy/internal/shardstore/s3"
	"github.com/embassy-project/embassy/internal/testenv"
)

// gw is the versitygw every test of the package shares (started by TestMain).
var gw struct {
	err      error // why there is no gateway
	endpoint string
	dataDir  string // versitygw's posix root: DATA/BUCKET/KEY are the current versions
	creds    s3store.Credentials
	log      string
}

// lockedBucket is created with Object Lock (and so versioning) enabled.
const lockedBucket = "embassy-locked"

// testRetention is short: COMPLIANCE locks cannot be lifted, and the gateway's
// directories are thrown away after the run.
const testRetention = 2 * time.Minute

func TestMain(m *testing.M) {
	flag.Parse()
	if f := flag.Lookup("test.fuzz"); f != nil && f.Value.String() != "" {
		// Fuzzing (and every fuzz worker process) needs no S3 server.
		gw.err = errors.New("not started while fuzzing")
		os.Exit(m.Run())
	}
	stop := startGateway()
	code := m.Run()
	stop()
	os.Exit(code)
}

func findVersitygw() (string, error) {
	if p, err := exec.LookPath("versitygw"); err == nil {
		return p, nil
	}
	gopath := os.Getenv("GOPATH")
	if gopath == "" {
		gopath = build.Default.GOPATH
	}
	for _, dir := range filepath.SplitList(gopath) {
		p := filepath.Join(dir, "bin", "versitygw")
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	return "", errors.New("versitygw not found in PATH or $GOPATH/bin: go install github.com/versity/versitygw/cmd/versitygw@v1.8.0")
}

func startGateway() (stop func()) {
	stop = func() {}
	bin, err := findVersitygw()
	if err != nil {
		gw.err = err
		return stop
	}
	root, err := os.MkdirTemp("", "embassy-s3store-*")
	if err != nil {
		gw.err = err
		return stop
	}
	cleanup := func() { os.RemoveAll(root) }
	data, vers := filepath.Join(root, "data"), filepath.Join(root, "versions")
	for _, d := range []string{data, vers} {
		if err := os.Mkdir(d, 0o700); err != nil {
			gw.err = err
			cleanup()
			return stop
		}
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		gw.err = err
		cleanup()
		return stop
	}
	addr := l.Addr().String()
	l.Close()
	gw.creds = s3store.Credentials{AccessKeyID: "embassy" + randHex(6), SecretAccessKey: randHex(20)}
	gw.log = filepath.Join(root, "versitygw.log")
	logf, err := os.Create(gw.log)
	if err != nil {
		gw.err = err
		cleanup()
		return stop
	}
	cmd := exec.Command(bin, "--port", addr, "--quiet", "posix", "--versioning-dir", vers, data)
	cmd.Env = append(os.Environ(),
		"ROOT_ACCESS_KEY_ID="+gw.creds.AccessKeyID,
		"ROOT_SECRET_ACCESS_KEY="+gw.creds.SecretAccessKey)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		gw.err = fmt.Errorf("start versitygw: %w", err)
		logf.Close()
		cleanup()
		return stop
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	stop = func() {
		cmd.Process.Kill()
		<-exited
		logf.Close()
		cleanup()
	}
	gw.endpoint = "http://" + addr
	gw.dataDir = data
	deadline := time.Now().Add(20 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			break
		}
		select {
		case <-exited:
			b, _ := os.ReadFile(gw.log)
			gw.err = fmt.Errorf("versitygw exited at start: %s", b)
			return stop
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			gw.err = errors.New("versitygw did not listen within 20 s")
			return stop
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	_, err = rawClient(nil).CreateBucket(ctx, &s3.CreateBucketInput{
		Bucket:                     aws.String(lockedBucket),
		ObjectLockEnabledForBucket: aws.Bool(true),
	})
	if err != nil {
		gw.err = fmt.Errorf("create bucket with object lock: %w", err)
	}
	return stop
}

func randHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// needGateway skips (fails in CI) if versitygw could not be started.
func needGateway(t testing.TB) {
	t.Helper()
	if gw.err != nil {
		testenv.SkipOrFail(t, "no S3 server to test against: %v", gw.err)
	}
}

// rawClient is an SDK client with the store's own credentials: what anyone
// holding the host's keys could do to the bucket directly.
func rawClient(hc *http.Client) *s3.Client {
	opts := s3.Options{
		BaseEndpoint: aws.String(gw.endpoint),
		Region:       "us-east-1",
		UsePathStyle: true,
		Credentials: aws.CredentialsProviderFunc(func(context.Context) (aws.Credentials, error) {
			return aws.Credentials{AccessKeyID: gw.creds.AccessKeyID, SecretAccessKey: gw.creds.SecretAccessKey}, nil
		}),
		RequestChecksumCalculation: aws.RequestChecksumCalculationWhenRequired,
	}
	if hc != nil {
		opts.HTTPClient = hc
	}
	return s3.New(opts)
}

var prefixes atomic.Int64

// freshPrefix returns a prefix no other test uses.
func freshPrefix(t testing.TB) string {
	name := strings.NewReplacer("/", "-", "#", "-").Replace(t.Name())
	name = strings.Map(func(r rune) rune {
		if 'a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' || '0' <= r && r <= '9' || r == '-' || r == '_' || r == '.' {
			return r
		}
		return '_'
	}, name)
	return fmt.Sprintf("t%d-%s", prefixes.Add(1), name)
}

func storeURL(bucket, prefix string) string {
	u := "s3://" + bucket
	if prefix != "" {
		u += "/" + prefix
	}
	return u + "?endpoint=" + gw.endpoint + "&region=us-east-1"
}

// openStore opens a store on a fresh prefix of the locked bucket.
func openStore(t testing.TB, hc *http.Client) (*s3store.Store, string) {
	t.Helper()
	needGateway(t)
	prefix := freshPrefix(t)
	return openAt(t, prefix, hc), prefix
}

// openAt opens a store on prefix; a second store on the same prefix has an
// empty pin cache, like a restarted host.
func openAt(t testing.TB, prefix string, hc *http.Client) *s3store.Store {
	t.Helper()
	s, err := s3store.Open(context.Background(), s3store.Config{
		URL:              storeURL(lockedBucket, prefix),
		Credentials:      gw.creds,
		DefaultRetention: testRetention,
		HTTPClient:       hc,
	})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return s
}
