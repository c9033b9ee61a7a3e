// Package s3test starts a real S3 server with Object Lock (versitygw) for
// tests outside the S3 store's own package: end-to-end tests of host nodes
// that keep shards in a bucket.
package s3test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"go/build"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	s3store "github.com/embassy-project/embassy/internal/shardstore/s3"
	"github.com/embassy-project/embassy/internal/testenv"
)

// Gateway is a running versitygw on loopback.
type Gateway struct {
	Endpoint string // http://127.0.0.1:PORT
	Creds    s3store.Credentials
}

// Env returns the environment variables that give a host these credentials.
func (g *Gateway) Env() []string {
	return []string{"AWS_ACCESS_KEY_ID=" + g.Creds.AccessKeyID, "AWS_SECRET_ACCESS_KEY=" + g.Creds.SecretAccessKey}
}

// URL is the store URL of bucket with prefix.
func (g *Gateway) URL(bucket, prefix string) string {
	return s3store.Location{Bucket: bucket, Prefix: prefix, Endpoint: g.Endpoint, Region: s3store.DefaultRegion}.String()
}

// Client is an SDK client with the gateway's credentials: what anyone
// holding a host's keys could do to the bucket directly.
func (g *Gateway) Client() *s3.Client {
	return s3.New(s3.Options{
		BaseEndpoint: aws.String(g.Endpoint),
		Region:       s3store.DefaultRegion,
		UsePathStyle: true,
		Credentials: aws.CredentialsProviderFunc(func(context.Context) (aws.Credentials, error) {
			return aws.Credentials{AccessKeyID: g.Creds.AccessKeyID, SecretAccessKey: g.Creds.SecretAccessKey}, nil
		}),
		RequestChecksumCalculation: aws.RequestChecksumCalculationWhenRequired,
	})
}

// CreateLockedBucket creates a bucket with Object Lock (and so versioning).
func (g *Gateway) CreateLockedBucket(t testing.TB, name string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := g.Client().CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(name), ObjectLockEnabledForBucket: aws.Bool(true)}); err != nil {
		t.Fatalf("create bucket %s with object lock: %v", name, err)
	}
}

func find() (string, error) {
	if p, err := exec.LookPath("versitygw"); err == nil {
		return p, nil
	}
	gopath := os.Getenv("GOPATH")
	if gopath == "" {
		gopath = build.Default.GOPATH
	}
	for _, dir := range filepath.SplitList(gopath) {
		if p := filepath.Join(dir, "bin", "versitygw"); fileExists(p) {
			return p, nil
		}
	}
	return "", errors.New("versitygw not found in PATH or $GOPATH/bin: go install github.com/versity/versitygw/cmd/versitygw@v1.8.0")
}

func fileExists(p string) bool { _, err := os.Stat(p); return err == nil }

// Start runs versitygw for the test (stopped at cleanup), or skips the test
// (fails it in CI) when the binary is missing.
func Start(t testing.TB) *Gateway {
	t.Helper()
	bin, err := find()
	if err != nil {
		testenv.SkipOrFail(t, "no S3 server to test against: %v", err)
	}
	root := t.TempDir()
	data, vers := filepath.Join(root, "data"), filepath.Join(root, "versions")
	for _, d := range []string{data, vers} {
		if err := os.Mkdir(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	g := &Gateway{Endpoint: "http://" + addr, Creds: s3store.Credentials{AccessKeyID: "embassy" + randHex(6), SecretAccessKey: randHex(20)}}
	logf, err := os.Create(filepath.Join(root, "versitygw.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "--port", addr, "--quiet", "posix", "--versioning-dir", vers, data)
	cmd.Env = append(os.Environ(), "ROOT_ACCESS_KEY_ID="+g.Creds.AccessKeyID, "ROOT_SECRET_ACCESS_KEY="+g.Creds.SecretAccessKey)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatalf("start versitygw: %v", err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-exited
		logf.Close()
	})
	deadline := time.Now().Add(20 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return g
		}
		select {
		case <-exited:
			b, _ := os.ReadFile(logf.Name())
			t.Fatalf("versitygw exited at start: %s", b)
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatal(fmt.Errorf("versitygw did not listen within 20 s"))
		}
	}
}

func randHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}
