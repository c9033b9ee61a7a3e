package main

import (
	"context"
	"crypto/rand"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/embassy-project/embassy/internal/shardstore/s3/s3test"
)

// TestHostOnS3: host c keeps its shards in an S3 bucket with Object Lock
// (a real versitygw). The guest's writes carry its retain-until; check
// audits that c enforces it; the host's own credentials can neither delete
// nor replace what it serves; restore works from b and c.
func TestHostOnS3(t *testing.T) {
	gw := s3test.Start(t)
	gw.CreateLockedBucket(t, "embassy-hosts")
	g := newRemoteGuestWith(t, remoteOptions{
		hostArgs:  map[string][]string{"c": {"--store", gw.URL("embassy-hosts", "host-c")}},
		hostEnv:   map[string][]string{"c": gw.Env()},
		guestArgs: []string{"--retention-days", "1"},
	}, "registry")
	g.backupSample(t, 61)
	// The guest now asks for two days: the second backup reuses most packs,
	// and must extend their retention before publishing its snapshot, or
	// check (which audits against two days) reports them as retention-short.
	cfgPath := filepath.Join(g.home, "config.json")
	cfg, err := os.ReadFile(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(cfg), "\"retention_days\": 1\n") {
		t.Fatal("HOME config has no one-day retention")
	}
	cfg = []byte(strings.Replace(string(cfg), "\"retention_days\": 1\n", "\"retention_days\": 2\n", 1))
	if err := os.WriteFile(cfgPath, cfg, 0o600); err != nil {
		t.Fatal(err)
	}
	src := g.backupSample(t, 62)
	rep := g.waitWitnessed(t, "--read-data")
	for _, h := range rep.Hosts {
		want := "none"
		if h.Name == "c" {
			want = "enforced"
		}
		if h.Retention != want {
			t.Fatalf("host %s retention %q, want %q", h.Name, h.Retention, want)
		}
	}

	// With the host's own credentials, directly against the bucket: a
	// delete of a shard's version is refused, and an overwrite changes
	// nothing the host serves.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cl := gw.Client()
	vs, err := cl.ListObjectVersions(ctx, &s3.ListObjectVersionsInput{Bucket: aws.String("embassy-hosts"), Prefix: aws.String("host-c/")})
	if err != nil || len(vs.Versions) == 0 {
		t.Fatalf("list versions: %v (%d)", err, len(vs.Versions))
	}
	var shard *string
	for _, v := range vs.Versions {
		if strings.Contains(*v.Key, "/shards/") {
			shard = v.Key
			if _, err := cl.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String("embassy-hosts"), Key: v.Key, VersionId: v.VersionId}); err == nil {
				t.Fatalf("the bucket let the host's credentials delete locked version %s of %s", *v.VersionId, *v.Key)
			}
			break
		}
	}
	junk := make([]byte, 4096)
	rand.Read(junk)
	if _, err := cl.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String("embassy-hosts"), Key: shard, Body: strings.NewReader(string(junk))}); err != nil {
		t.Logf("direct overwrite refused: %v", err)
	}
	rep, r := g.check(t, "--home", g.home, "--read-data")
	if r.code != 0 {
		t.Fatalf("after a direct overwrite of %s, check: exit %d: %s", *shard, r.code, checkKinds(rep))
	}
	g.hosts["a"].stop(t)
	g.restoreWithGrant(t, src, "a", "b", "c")
}
