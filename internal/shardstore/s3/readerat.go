package s3store

import (
	"context"
	"fmt"
	"io"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/embassy-project/embassy/internal/shardstore"
)

// ReaderAt returns a reader of the object's canonical version and its size,
// for reading parts of a shard (storage proofs) without downloading it. Each
// ReadAt is one ranged GET of that version under ctx; nothing is hashed (the
// caller checks what it reads against the address, e.g. with Bao).
func (s *Store) ReaderAt(ctx context.Context, kind shardstore.Kind, id shardstore.ID) (io.ReaderAt, int64, error) {
	if err := check(ctx, kind); err != nil {
		return nil, 0, fmt.Errorf("open %s/%s: %w", kind, id, err)
	}
	key := s.Key(kind, id)
	p, err := s.pinned(ctx, key, id)
	if err != nil {
		return nil, 0, fmt.Errorf("open %s/%s: %w", kind, id, err)
	}
	return &readerAt{ctx: ctx, s: s, key: key, p: p}, p.size, nil
}

type readerAt struct {
	ctx context.Context
	s   *Store
	key string
	p   pin
}

// ReadAt reads len(b) bytes at off with one ranged GET; it returns io.EOF if
// fewer remain.
func (r *readerAt) ReadAt(b []byte, off int64) (int, error) {
	if off < 0 {
		return 0, fmt.Errorf("read %s at %d: negative offset", r.key, off)
	}
	if off >= r.p.size {
		return 0, io.EOF
	}
	n := int64(len(b))
	if n == 0 {
		return 0, nil
	}
	n = min(n, r.p.size-off)
	out, err := r.s.client.GetObject(r.ctx, &s3.GetObjectInput{
		Bucket:    aws.String(r.s.loc.Bucket),
		Key:       aws.String(r.key),
		VersionId: aws.String(r.p.versionID),
		Range:     aws.String(fmt.Sprintf("bytes=%d-%d", off, off+n-1)),
	})
	if err != nil {
		if isNotFound(err) {
			err = shardstore.ErrNotFound
		}
		return 0, fmt.Errorf("read %s at %d: %w", r.key, off, err)
	}
	defer out.Body.Close()
	got, err := io.ReadFull(out.Body, b[:n])
	if err != nil {
		return got, fmt.Errorf("read %s at %d: %w", r.key, off, err)
	}
	if n < int64(len(b)) {
		return got, io.EOF
	}
	return got, nil
}
