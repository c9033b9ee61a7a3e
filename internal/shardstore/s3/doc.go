// Package s3store is the shardstore.Store on an S3 bucket with versioning and
// Object Lock in COMPLIANCE mode, so that not even the host's own credentials
// can delete or replace a stored shard before its retain-until date.
//
// Layout (docs/spec/s3-store.md):
//
//	s3://BUCKET/PREFIX/shards/ab/ab12…(64 hex)     one object per shard, versioned
//	s3://BUCKET/PREFIX/envelopes/cd/cd34…          one object per envelope
//
// Every write is a conditional create (If-None-Match: *) that carries
// x-amz-checksum-sha256 (the server verifies the body), x-amz-object-lock-mode:
// COMPLIANCE and x-amz-object-lock-retain-until-date; objects over 64 MiB go
// up in 16 MiB parts and an upload that fails is aborted, so nothing partial
// ever becomes visible.
//
// Version pinning: an object's canonical version is the oldest version of its
// key whose bytes hash to its address. Get, Stat, ReaderAt and Retain use that
// version by its version ID, so a newer version written straight to the bucket
// (with the host's own credentials: the bucket cannot tell it from ours), a
// delete marker, or garbage planted under the key before the first Put change
// nothing the store serves.
package s3store
