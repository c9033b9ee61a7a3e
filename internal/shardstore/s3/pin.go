package s3store

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"slices"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/zeebo/blake3"

	"github.com/embassy-project/embassy/internal/shardstore"
)

// version is one stored version of a key (delete markers are not versions).
type version struct {
	id       string
	size     int64
	modified time.Time
}

func versionOf(v types.ObjectVersion) version {
	return version{id: aws.ToString(v.VersionId), size: aws.ToInt64(v.Size), modified: aws.ToTime(v.LastModified)}
}

func reversed(vs []version) []version {
	out := slices.Clone(vs)
	slices.Reverse(out)
	return out
}

// versions lists the versions of exactly key, oldest first. S3 lists the
// versions of a key newest first.
func (s *Store) versions(ctx context.Context, key string) ([]version, error) {
	var vs []version
	pg := s3.NewListObjectVersionsPaginator(s.client, &s3.ListObjectVersionsInput{
		Bucket: aws.String(s.loc.Bucket),
		Prefix: aws.String(key),
	})
	for pg.HasMorePages() {
		page, err := pg.NextPage(ctx)
		if err != nil {
			return nil, fmt.Errorf("list versions: %w", err)
		}
		for _, v := range page.Versions {
			if aws.ToString(v.Key) == key {
				vs = append(vs, versionOf(v))
			}
		}
	}
	slices.Reverse(vs)
	return vs, nil
}

// resolve finds and caches key's canonical version: the oldest version whose
// bytes hash to id. With keep it also returns that version's bytes. It
// returns ErrNotFound if the key has no version, and an error wrapping
// ErrMismatch if none of them hashes to id.
func (s *Store) resolve(ctx context.Context, key string, id shardstore.ID, keep bool) (pin, []byte, error) {
	vs, err := s.versions(ctx, key)
	if err != nil {
		return pin{}, nil, err
	}
	return s.resolveAmong(ctx, key, id, vs, keep)
}

func (s *Store) resolveAmong(ctx context.Context, key string, id shardstore.ID, vs []version, keep bool) (pin, []byte, error) {
	if len(vs) == 0 {
		return pin{}, nil, shardstore.ErrNotFound
	}
	for _, v := range vs {
		data, sum, err := s.fetch(ctx, key, v.id, v.size, keep)
		if err == shardstore.ErrNotFound {
			continue // removed since the listing (its retention ran out)
		}
		if err != nil {
			return pin{}, nil, err
		}
		if sum == id {
			p := pin{versionID: v.id, size: v.size}
			if old, ok := s.cached(key); ok && old.versionID == v.id {
				p.retained = old.retained
			}
			s.storePin(key, p)
			return p, data, nil
		}
	}
	if len(vs) == 1 {
		return pin{}, nil, fmt.Errorf("stored bytes damaged: %w", shardstore.ErrMismatch)
	}
	return pin{}, nil, fmt.Errorf("none of the %d versions of the key hashes to its address: %w", len(vs), shardstore.ErrMismatch)
}

// fetch reads one version of key and returns its BLAKE3-256 (and its bytes if
// keep). It returns shardstore.ErrNotFound (unwrapped) if the version is gone.
func (s *Store) fetch(ctx context.Context, key, versionID string, size int64, keep bool) ([]byte, shardstore.ID, error) {
	out, err := s.client.GetObject(ctx, &s3.GetObjectInput{
		Bucket:    aws.String(s.loc.Bucket),
		Key:       aws.String(key),
		VersionId: aws.String(versionID),
	})
	if err != nil {
		if isNotFound(err) {
			return nil, shardstore.ID{}, shardstore.ErrNotFound
		}
		return nil, shardstore.ID{}, fmt.Errorf("read version %s: %w", versionID, err)
	}
	defer out.Body.Close()
	h := blake3.New()
	var w io.Writer = h
	var buf *bytes.Buffer
	if keep {
		buf = bytes.NewBuffer(make([]byte, 0, max(0, min(size, 1<<30))))
		w = io.MultiWriter(h, buf)
	}
	if _, err := io.Copy(w, out.Body); err != nil {
		return nil, shardstore.ID{}, fmt.Errorf("read version %s: %w", versionID, err)
	}
	var sum shardstore.ID
	h.Sum(sum[:0])
	if !keep {
		return nil, sum, nil
	}
	return buf.Bytes(), sum, nil
}
