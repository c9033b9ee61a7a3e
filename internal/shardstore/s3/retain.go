package s3store

import (
	"context"
	"fmt"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/embassy-project/embassy/internal/shardstore"
)

// Retain extends the COMPLIANCE retention of the object's canonical version to
// until (rounded up to a whole second) if that is later than its current
// retain-until date. It never shortens a retention: an earlier until is a
// no-op. ErrNotFound if the object is absent.
func (s *Store) Retain(ctx context.Context, kind shardstore.Kind, id shardstore.ID, until time.Time) error {
	if err := s.retainObject(ctx, kind, id, until); err != nil {
		return fmt.Errorf("retain %s/%s: %w", kind, id, err)
	}
	return nil
}

func (s *Store) retainObject(ctx context.Context, kind shardstore.Kind, id shardstore.ID, until time.Time) error {
	if err := check(ctx, kind); err != nil {
		return err
	}
	if t := until.Truncate(time.Second); !t.Equal(until) {
		until = t.Add(time.Second)
	}
	until = until.UTC()
	key := s.Key(kind, id)
	p, err := s.pinned(ctx, key, id)
	if err != nil {
		return err
	}
	return s.retain(ctx, key, p, until)
}

// retain makes sure version p of key is locked in COMPLIANCE mode until at
// least until.
func (s *Store) retain(ctx context.Context, key string, p pin, until time.Time) error {
	if !p.retained.IsZero() && !p.retained.Before(until) {
		return nil
	}
	cur, mode, err := s.getRetention(ctx, key, p.versionID)
	if err != nil {
		return err
	}
	if mode == types.ObjectLockRetentionModeCompliance && !cur.Before(until) {
		s.noteRetained(key, p, cur)
		return nil
	}
	if !until.After(s.now()) {
		if mode == types.ObjectLockRetentionModeCompliance {
			return nil // nothing to extend: until has passed
		}
		return fmt.Errorf("version %s has no COMPLIANCE retention and retain-until %s has passed",
			p.versionID, until.Format(time.RFC3339))
	}
	if until.Sub(s.now()) > MaxRetention {
		return fmt.Errorf("retain-until %s is more than %v away", until.Format(time.RFC3339), MaxRetention)
	}
	_, err = s.client.PutObjectRetention(ctx, &s3.PutObjectRetentionInput{
		Bucket:    aws.String(s.loc.Bucket),
		Key:       aws.String(key),
		VersionId: aws.String(p.versionID),
		Retention: &types.ObjectLockRetention{
			Mode:            types.ObjectLockRetentionModeCompliance,
			RetainUntilDate: aws.Time(until),
		},
	})
	if err != nil {
		// A concurrent Retain to a later date makes the server refuse ours
		// as a shortening; that is success.
		if cur, mode, rerr := s.getRetention(ctx, key, p.versionID); rerr == nil &&
			mode == types.ObjectLockRetentionModeCompliance && !cur.Before(until) {
			s.noteRetained(key, p, cur)
			return nil
		}
		return fmt.Errorf("extend retention of version %s to %s: %w", p.versionID, until.Format(time.RFC3339), err)
	}
	s.noteRetained(key, p, until)
	return nil
}

func (s *Store) noteRetained(key string, p pin, until time.Time) {
	if until.After(p.retained) {
		p.retained = until
		s.storePin(key, p)
	}
}

// getRetention returns a version's retain-until date and mode (zero values if it
// has none).
func (s *Store) getRetention(ctx context.Context, key, versionID string) (time.Time, types.ObjectLockRetentionMode, error) {
	out, err := s.client.GetObjectRetention(ctx, &s3.GetObjectRetentionInput{
		Bucket:    aws.String(s.loc.Bucket),
		Key:       aws.String(key),
		VersionId: aws.String(versionID),
	})
	if err != nil {
		if code := apiCode(err); code == "NoSuchObjectLockConfiguration" || code == "ObjectLockConfigurationNotFoundError" {
			return time.Time{}, "", nil
		}
		if isNotFound(err) {
			return time.Time{}, "", shardstore.ErrNotFound
		}
		return time.Time{}, "", fmt.Errorf("read retention of version %s: %w", versionID, err)
	}
	if out.Retention == nil {
		return time.Time{}, "", nil
	}
	return aws.ToTime(out.Retention.RetainUntilDate), out.Retention.Mode, nil
}

// RetainUntil returns the retain-until date of the object's canonical version
// as the server reports it (the zero time if it has no retention).
func (s *Store) RetainUntil(ctx context.Context, kind shardstore.Kind, id shardstore.ID) (time.Time, error) {
	t, err := s.retainUntil(ctx, kind, id)
	if err != nil {
		return time.Time{}, fmt.Errorf("retain-until of %s/%s: %w", kind, id, err)
	}
	return t, nil
}

func (s *Store) retainUntil(ctx context.Context, kind shardstore.Kind, id shardstore.ID) (time.Time, error) {
	if err := check(ctx, kind); err != nil {
		return time.Time{}, err
	}
	key := s.Key(kind, id)
	p, err := s.pinned(ctx, key, id)
	if err != nil {
		return time.Time{}, err
	}
	t, mode, err := s.getRetention(ctx, key, p.versionID)
	if err != nil {
		return time.Time{}, err
	}
	if mode == types.ObjectLockRetentionModeCompliance {
		s.noteRetained(key, p, t)
	}
	return t, nil
}

// pinned returns key's canonical version, from the cache or by resolving it.
func (s *Store) pinned(ctx context.Context, key string, id shardstore.ID) (pin, error) {
	if p, ok := s.cached(key); ok {
		return p, nil
	}
	p, _, err := s.resolve(ctx, key, id, false)
	return p, err
}
