package s3store_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"

	s3store "github.com/embassy-project/embassy/internal/shardstore/s3"
)

func TestOpenRefuses(t *testing.T) {
	needGateway(t)
	raw := rawClient(nil)
	ctx := context.Background()
	// A bucket without Object Lock, and one with versioning but no lock.
	for _, b := range []string{"embassy-plain", "embassy-versioned"} {
		if _, err := raw.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(b)}); err != nil {
			t.Fatalf("CreateBucket %s: %v", b, err)
		}
	}
	if _, err := raw.PutBucketVersioning(ctx, &s3.PutBucketVersioningInput{
		Bucket:                  aws.String("embassy-versioned"),
		VersioningConfiguration: &types.VersioningConfiguration{Status: types.BucketVersioningStatusEnabled},
	}); err != nil {
		t.Fatalf("PutBucketVersioning: %v", err)
	}
	// A locked bucket whose versioning someone suspended, if the server
	// lets them (AWS does not).
	suspended := "embassy-suspended"
	if _, err := raw.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(suspended), ObjectLockEnabledForBucket: aws.Bool(true)}); err != nil {
		t.Fatalf("CreateBucket: %v", err)
	}
	_, suspendErr := raw.PutBucketVersioning(ctx, &s3.PutBucketVersioningInput{
		Bucket:                  aws.String(suspended),
		VersioningConfiguration: &types.VersioningConfiguration{Status: types.BucketVersioningStatusSuspended},
	})
	t.Logf("suspending versioning on a locked bucket: %v", suspendErr)

	wrong := gw.creds
	wrong.SecretAccessKey = "not-the-secret-" + randHex(8)
	good := s3store.Config{URL: storeURL(lockedBucket, "p"), Credentials: gw.creds, DefaultRetention: time.Minute}
	type refusal struct {
		name string
		cfg  func(c *s3store.Config)
		want string
	}
	cases := []refusal{
		{"MissingBucket", func(c *s3store.Config) { c.URL = storeURL("embassy-missing", "") }, "does not exist"},
		{"NoObjectLock", func(c *s3store.Config) { c.URL = storeURL("embassy-plain", "") }, "does not have Object Lock enabled"},
		{"VersionedNoLock", func(c *s3store.Config) { c.URL = storeURL("embassy-versioned", "x") }, "does not have Object Lock enabled"},
		{"WrongSecret", func(c *s3store.Config) { c.Credentials = wrong }, "denied"},
		{"NoCredentials", func(c *s3store.Config) { c.Credentials = s3store.Credentials{} }, "credentials incomplete"},
		{"NoRetention", func(c *s3store.Config) { c.DefaultRetention = 0 }, "retention"},
		{"HugeRetention", func(c *s3store.Config) { c.DefaultRetention = s3store.MaxRetention + time.Hour }, "retention"},
		{"BadURL", func(c *s3store.Config) { c.URL = "s3://Bad_Bucket?endpoint=" + gw.endpoint }, "bucket name"},
		{"NoEndpoint", func(c *s3store.Config) { c.URL = "s3://" + lockedBucket }, "endpoint"},
	}
	if suspendErr == nil {
		cases = append(cases, refusal{"VersioningSuspended", func(c *s3store.Config) { c.URL = storeURL(suspended, "") }, "versioning suspended"})
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := good
			tc.cfg(&cfg)
			s, err := s3store.Open(ctx, cfg)
			if err == nil {
				t.Fatalf("Open succeeded on %s", s.Location())
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Open error %q does not say %q", err, tc.want)
			}
			if strings.Contains(err.Error(), gw.creds.SecretAccessKey) || strings.Contains(err.Error(), wrong.SecretAccessKey) {
				t.Errorf("Open error reveals the secret key: %q", err)
			}
			t.Logf("%v", err)
		})
	}
	if _, err := s3store.Open(ctx, good); err != nil {
		t.Fatalf("Open of the locked bucket: %v", err)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := s3store.Open(cctx, good); !errors.Is(err, context.Canceled) {
		t.Fatalf("Open with a cancelled context = %v", err)
	}
}
