package s3store

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/embassy-project/embassy/internal/shardstore"
)

const (
	// MultipartThreshold is the size above which Put uploads in parts.
	MultipartThreshold = 64 << 20
	// PartSize is the size of every part but the last.
	PartSize = 16 << 20
	// partConcurrency is how many parts are in flight at once.
	partConcurrency = 4
	// maxPins bounds the pin cache (≈ 250 bytes an entry). Past it the
	// cache is emptied: a pin is only an optimisation, recomputed from the
	// version listing on the next use.
	maxPins = 1 << 18
	// maxAttempts is the SDK retryer's attempt limit per request.
	maxAttempts = 5
	// abortTimeout bounds the clean-up of a failed multipart upload, which
	// runs even when the caller's context is cancelled.
	abortTimeout = 30 * time.Second
)

// maxBackoff caps the retryer's delay between attempts (tests shorten it).
var maxBackoff = retry.DefaultMaxBackoff

// Store is a shardstore.Store on an S3 bucket with Object Lock. It is safe for
// concurrent use, also by several processes on the same bucket and prefix.
type Store struct {
	client    *s3.Client
	loc       Location
	retention time.Duration
	now       func() time.Time

	// pins caches each key's canonical version (key → pin); npins counts
	// its entries roughly, to bound it.
	pins  sync.Map
	npins atomic.Int64
	// noConditional is set once the server has answered an If-None-Match
	// write with 501 Not Implemented; Put then checks before it writes.
	noConditional atomic.Bool
}

var _ shardstore.Store = (*Store)(nil)

// pin is a key's canonical version: the oldest whose bytes hash to the id.
type pin struct {
	versionID string
	size      int64
	// retained is a lower bound of the version's retain-until date (zero if
	// unknown). COMPLIANCE retention only grows, so it never goes stale.
	retained time.Time
}

// Open connects to the bucket named by cfg.URL and checks that it exists, has
// Object Lock enabled and versioning Enabled; it refuses to run otherwise,
// since without them a write-once store is only a promise. It writes nothing.
func Open(ctx context.Context, cfg Config) (*Store, error) {
	loc, err := ParseURL(cfg.URL)
	if err != nil {
		return nil, fmt.Errorf("open S3 store: %w", err)
	}
	if err := cfg.Credentials.check(); err != nil {
		return nil, fmt.Errorf("open S3 store %s: %w", loc.display(), err)
	}
	if cfg.DefaultRetention <= 0 || cfg.DefaultRetention > MaxRetention {
		return nil, fmt.Errorf("open S3 store %s: default retention %v must be positive and at most %v",
			loc.display(), cfg.DefaultRetention, MaxRetention)
	}
	creds := cfg.Credentials
	opts := s3.Options{
		BaseEndpoint: aws.String(loc.Endpoint),
		Region:       loc.Region,
		UsePathStyle: true,
		Credentials: aws.CredentialsProviderFunc(func(context.Context) (aws.Credentials, error) {
			return aws.Credentials{
				AccessKeyID:     creds.AccessKeyID,
				SecretAccessKey: creds.SecretAccessKey,
				SessionToken:    creds.SessionToken,
				Source:          "embassy",
			}, nil
		}),
		Retryer: retry.NewStandard(func(o *retry.StandardOptions) {
			o.MaxAttempts = maxAttempts
			o.MaxBackoff = maxBackoff
		}),
		// Every write carries its own SHA-256 checksum; no CRC trailers on top.
		RequestChecksumCalculation: aws.RequestChecksumCalculationWhenRequired,
		ResponseChecksumValidation: aws.ResponseChecksumValidationWhenRequired,
	}
	if cfg.HTTPClient != nil {
		opts.HTTPClient = cfg.HTTPClient
	}
	s := &Store{
		client:    s3.New(opts),
		loc:       loc,
		retention: cfg.DefaultRetention,
		now:       time.Now,
	}
	if err := s.checkBucket(ctx); err != nil {
		return nil, fmt.Errorf("open S3 store %s: %w", loc.display(), err)
	}
	return s, nil
}

// display names the bucket and prefix in errors and logs.
func (loc Location) display() string {
	s := "s3://" + loc.Bucket
	if loc.Prefix != "" {
		s += "/" + loc.Prefix
	}
	return s + " at " + loc.Endpoint
}

// Location returns where the store keeps its objects.
func (s *Store) Location() Location { return s.loc }

func (s *Store) checkBucket(ctx context.Context) error {
	bucket := aws.String(s.loc.Bucket)
	if _, err := s.client.HeadBucket(ctx, &s3.HeadBucketInput{Bucket: bucket}); err != nil {
		switch code, status := apiCode(err), httpStatus(err); {
		case code == "NoSuchBucket" || code == "NotFound" || status == 404:
			return fmt.Errorf("bucket %q does not exist: create it with Object Lock enabled "+
				"(CreateBucket with ObjectLockEnabledForBucket, e.g. aws s3api create-bucket --object-lock-enabled-for-bucket)", s.loc.Bucket)
		case status == 403 || code == "AccessDenied" || code == "InvalidAccessKeyId" || code == "SignatureDoesNotMatch":
			return fmt.Errorf("access to bucket %q denied: check the access key and its permissions (%s)", s.loc.Bucket, errSummary(err))
		}
		return fmt.Errorf("check bucket %q: %w", s.loc.Bucket, err)
	}
	lock, err := s.client.GetObjectLockConfiguration(ctx, &s3.GetObjectLockConfigurationInput{Bucket: bucket})
	enabled := err == nil && lock.ObjectLockConfiguration != nil &&
		lock.ObjectLockConfiguration.ObjectLockEnabled == types.ObjectLockEnabledEnabled
	if err != nil && apiCode(err) != "ObjectLockConfigurationNotFoundError" && httpStatus(err) != 404 {
		return fmt.Errorf("read Object Lock configuration of bucket %q: %w", s.loc.Bucket, err)
	}
	if !enabled {
		return fmt.Errorf("bucket %q does not have Object Lock enabled, so stored shards could be deleted "+
			"or overwritten: Object Lock can only be turned on when a bucket is created, so create a new bucket "+
			"with it (CreateBucket with ObjectLockEnabledForBucket, e.g. aws s3api create-bucket --object-lock-enabled-for-bucket)", s.loc.Bucket)
	}
	ver, err := s.client.GetBucketVersioning(ctx, &s3.GetBucketVersioningInput{Bucket: bucket})
	if err != nil {
		return fmt.Errorf("read versioning state of bucket %q: %w", s.loc.Bucket, err)
	}
	if ver.Status != types.BucketVersioningStatusEnabled {
		state := string(ver.Status)
		if state == "" {
			state = "never enabled"
		}
		return fmt.Errorf("bucket %q has versioning %s: enable it (PutBucketVersioning Status=Enabled, "+
			"e.g. aws s3api put-bucket-versioning --versioning-configuration Status=Enabled)", s.loc.Bucket, strings.ToLower(state))
	}
	return nil
}

// Key returns the object key of id in kind: PREFIX/KIND/ab/abcd…
func (s *Store) Key(kind shardstore.Kind, id shardstore.ID) string {
	h := id.String()
	k := string(kind) + "/" + h[:2] + "/" + h
	if s.loc.Prefix != "" {
		k = s.loc.Prefix + "/" + k
	}
	return k
}

func (s *Store) kindPrefix(kind shardstore.Kind) string {
	if s.loc.Prefix != "" {
		return s.loc.Prefix + "/" + string(kind) + "/"
	}
	return string(kind) + "/"
}

func check(ctx context.Context, kind shardstore.Kind) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return shardstore.CheckKind(kind)
}

// Put stores data under id with the default retention:
// PutRetained(ctx, kind, id, data, now+DefaultRetention).
func (s *Store) Put(ctx context.Context, kind shardstore.Kind, id shardstore.ID, data []byte) error {
	return s.PutRetained(ctx, kind, id, data, s.now().Add(s.retention))
}

// PutRetained stores data under id, locked in COMPLIANCE mode until at least
// until (rounded up to a whole second). It checks Sum(data) == id before
// sending anything. If the object is already stored it is a success that
// extends the stored version's retention to until if that is later: a
// deduplicated write must still be kept as long as its writer was promised.
// Bytes already under the key that do not hash to id are left alone and a
// new version with data is written beside them.
func (s *Store) PutRetained(ctx context.Context, kind shardstore.Kind, id shardstore.ID, data []byte, until time.Time) error {
	if err := s.put(ctx, kind, id, data, until); err != nil {
		return fmt.Errorf("put %s/%s: %w", kind, id, err)
	}
	return nil
}

func (s *Store) put(ctx context.Context, kind shardstore.Kind, id shardstore.ID, data []byte, until time.Time) error {
	if err := check(ctx, kind); err != nil {
		return err
	}
	if shardstore.Sum(data) != id {
		return shardstore.ErrMismatch
	}
	until, err := s.checkUntil(until)
	if err != nil {
		return err
	}
	key := s.Key(kind, id)
	if p, ok := s.cached(key); ok {
		return s.retain(ctx, key, p, until)
	}
	for attempt := 0; ; attempt++ {
		conditional := !s.noConditional.Load()
		if !conditional {
			// The server cannot create conditionally: look first. Two
			// writers racing here may both write; each writes a version
			// with the same bytes, and the oldest is canonical.
			vs, err := s.versions(ctx, key)
			if err != nil {
				return err
			}
			if len(vs) > 0 {
				return s.putExisting(ctx, key, id, data, until)
			}
		}
		err := s.create(ctx, key, data, until, conditional)
		switch {
		case err == nil:
			return nil
		case conditional && isPreconditionFailed(err):
			return s.putExisting(ctx, key, id, data, until)
		case conditional && isNotImplemented(err):
			s.noConditional.Store(true)
		case isConditionalConflict(err) && attempt < 3:
			// A concurrent conditional write to the same key: try again,
			// to learn whether it created the object.
		default:
			return err
		}
	}
}

// checkUntil rounds until up to a whole second (S3 keeps retain-until dates
// to the second) and checks it is in the future and not absurdly far.
func (s *Store) checkUntil(until time.Time) (time.Time, error) {
	if t := until.Truncate(time.Second); !t.Equal(until) {
		until = t.Add(time.Second)
	}
	until = until.UTC()
	now := s.now()
	if !until.After(now) {
		return time.Time{}, fmt.Errorf("retain-until %s is not in the future", until.Format(time.RFC3339))
	}
	if until.Sub(now) > MaxRetention {
		return time.Time{}, fmt.Errorf("retain-until %s is more than %v away", until.Format(time.RFC3339), MaxRetention)
	}
	return until, nil
}

// putExisting handles a Put whose key already has versions: if one of them
// holds data it is the object (extend its retention); if none does, the key
// holds someone else's bytes and data goes in as a new version.
func (s *Store) putExisting(ctx context.Context, key string, id shardstore.ID, data []byte, until time.Time) error {
	p, _, err := s.resolve(ctx, key, id, false)
	switch {
	case err == nil:
		return s.retain(ctx, key, p, until)
	case errors.Is(err, shardstore.ErrMismatch), errors.Is(err, shardstore.ErrNotFound):
		return s.create(ctx, key, data, until, false)
	default:
		return err
	}
}

// create writes data as a new version of key, locked until until. With
// conditional it is refused (412) if the key has a current version.
func (s *Store) create(ctx context.Context, key string, data []byte, until time.Time, conditional bool) error {
	if len(data) > MultipartThreshold {
		return s.createMultipart(ctx, key, data, until, conditional)
	}
	in := &s3.PutObjectInput{
		Bucket:                    aws.String(s.loc.Bucket),
		Key:                       aws.String(key),
		Body:                      bytes.NewReader(data),
		ContentLength:             aws.Int64(int64(len(data))),
		ContentType:               aws.String("application/octet-stream"),
		ChecksumSHA256:            aws.String(sha256Base64(data)),
		ObjectLockMode:            types.ObjectLockModeCompliance,
		ObjectLockRetainUntilDate: aws.Time(until),
	}
	if conditional {
		in.IfNoneMatch = aws.String("*")
	}
	out, err := s.client.PutObject(ctx, in)
	if err != nil {
		return err
	}
	s.created(key, aws.ToString(out.VersionId), int64(len(data)), until)
	return nil
}

// created caches the version a successful write made.
func (s *Store) created(key, versionID string, size int64, until time.Time) {
	if versionID != "" && versionID != "null" {
		s.storePin(key, pin{versionID: versionID, size: size, retained: until})
	}
}

func sha256Base64(b []byte) string {
	sum := sha256.Sum256(b)
	return base64.StdEncoding.EncodeToString(sum[:])
}

// createMultipart uploads data in PartSize parts and completes the upload
// (conditionally if asked). Any failure aborts the upload, also when ctx is
// cancelled, so no parts stay behind and nothing becomes visible.
func (s *Store) createMultipart(ctx context.Context, key string, data []byte, until time.Time, conditional bool) (err error) {
	bucket := aws.String(s.loc.Bucket)
	mp, err := s.client.CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{
		Bucket:                    bucket,
		Key:                       aws.String(key),
		ContentType:               aws.String("application/octet-stream"),
		ChecksumAlgorithm:         types.ChecksumAlgorithmSha256,
		ObjectLockMode:            types.ObjectLockModeCompliance,
		ObjectLockRetainUntilDate: aws.Time(until),
	})
	if err != nil {
		return fmt.Errorf("start multipart upload: %w", err)
	}
	uploadID := mp.UploadId
	defer func() {
		if err == nil {
			return
		}
		actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), abortTimeout)
		defer cancel()
		_, aerr := s.client.AbortMultipartUpload(actx, &s3.AbortMultipartUploadInput{
			Bucket: bucket, Key: aws.String(key), UploadId: uploadID,
		})
		if aerr != nil && apiCode(aerr) != "NoSuchUpload" {
			err = fmt.Errorf("%w (aborting the upload also failed, its parts remain until a lifecycle rule removes them: %v)", err, aerr)
		}
	}()

	nparts := (len(data) + PartSize - 1) / PartSize
	parts := make([]types.CompletedPart, nparts)
	pctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		wg      sync.WaitGroup
		once    sync.Once
		partErr error
		sem     = make(chan struct{}, partConcurrency)
	)
	for i := range nparts {
		select {
		case sem <- struct{}{}:
		case <-pctx.Done():
		}
		if pctx.Err() != nil {
			break
		}
		chunk := data[i*PartSize : min((i+1)*PartSize, len(data))]
		n := int32(i + 1)
		wg.Go(func() {
			defer func() { <-sem }()
			sum := sha256Base64(chunk)
			out, err := s.client.UploadPart(pctx, &s3.UploadPartInput{
				Bucket:         bucket,
				Key:            aws.String(key),
				UploadId:       uploadID,
				PartNumber:     aws.Int32(n),
				Body:           bytes.NewReader(chunk),
				ContentLength:  aws.Int64(int64(len(chunk))),
				ChecksumSHA256: aws.String(sum),
			})
			if err != nil {
				once.Do(func() { partErr = fmt.Errorf("upload part %d of %d: %w", n, nparts, err); cancel() })
				return
			}
			parts[n-1] = types.CompletedPart{ETag: out.ETag, PartNumber: aws.Int32(n), ChecksumSHA256: aws.String(sum)}
		})
	}
	wg.Wait()
	if partErr != nil {
		return partErr
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	in := &s3.CompleteMultipartUploadInput{
		Bucket:          bucket,
		Key:             aws.String(key),
		UploadId:        uploadID,
		MultipartUpload: &types.CompletedMultipartUpload{Parts: parts},
	}
	if conditional {
		in.IfNoneMatch = aws.String("*")
	}
	out, err := s.client.CompleteMultipartUpload(ctx, in)
	if err != nil {
		return err
	}
	s.created(key, aws.ToString(out.VersionId), int64(len(data)), until)
	return nil
}

// Get returns the bytes of the object's canonical version, checked against id.
func (s *Store) Get(ctx context.Context, kind shardstore.Kind, id shardstore.ID) ([]byte, error) {
	data, err := s.get(ctx, kind, id)
	if err != nil {
		return nil, fmt.Errorf("get %s/%s: %w", kind, id, err)
	}
	return data, nil
}

func (s *Store) get(ctx context.Context, kind shardstore.Kind, id shardstore.ID) ([]byte, error) {
	if err := check(ctx, kind); err != nil {
		return nil, err
	}
	key := s.Key(kind, id)
	if p, ok := s.cached(key); ok {
		data, sum, err := s.fetch(ctx, key, p.versionID, p.size, true)
		switch {
		case err == nil && sum == id:
			return data, nil
		case err == nil || errors.Is(err, shardstore.ErrNotFound):
			// The pinned version is damaged or gone (a server that does
			// not honour the lock): pin again.
			if _, loaded := s.pins.LoadAndDelete(key); loaded {
				s.npins.Add(-1)
			}
		default:
			return nil, err
		}
	}
	_, data, err := s.resolve(ctx, key, id, true)
	return data, err
}

// Stat returns the size of the object's canonical version. It hashes nothing
// unless the key has several versions and none is pinned yet.
func (s *Store) Stat(ctx context.Context, kind shardstore.Kind, id shardstore.ID) (int64, error) {
	size, err := s.stat(ctx, kind, id)
	if err != nil {
		return 0, fmt.Errorf("stat %s/%s: %w", kind, id, err)
	}
	return size, nil
}

func (s *Store) stat(ctx context.Context, kind shardstore.Kind, id shardstore.ID) (int64, error) {
	if err := check(ctx, kind); err != nil {
		return 0, err
	}
	key := s.Key(kind, id)
	if p, ok := s.cached(key); ok {
		return p.size, nil
	}
	vs, err := s.versions(ctx, key)
	if err != nil {
		return 0, err
	}
	return s.sizeOf(ctx, key, id, vs)
}

// sizeOf returns the size of the canonical version among vs (oldest first):
// the only one, or the one resolve finds. A key none of whose versions hash
// reports its oldest version's size, like a damaged file in the fs store;
// Get reports the damage.
func (s *Store) sizeOf(ctx context.Context, key string, id shardstore.ID, vs []version) (int64, error) {
	switch len(vs) {
	case 0:
		return 0, shardstore.ErrNotFound
	case 1:
		return vs[0].size, nil
	}
	p, _, err := s.resolveAmong(ctx, key, id, vs, false)
	if errors.Is(err, shardstore.ErrMismatch) {
		return vs[0].size, nil
	}
	if err != nil {
		return 0, err
	}
	return p.size, nil
}

// List calls fn once for every object of kind (however many versions its key
// has), with the size of its canonical version. Keys that are not canonical
// object names are skipped.
func (s *Store) List(ctx context.Context, kind shardstore.Kind, fn func(shardstore.ID, int64) error) error {
	if err := check(ctx, kind); err != nil {
		return fmt.Errorf("list %s: %w", kind, err)
	}
	prefix := s.kindPrefix(kind)
	var (
		curKey string
		curID  shardstore.ID
		cur    []version // newest first, as listed
	)
	flush := func() error {
		if len(cur) == 0 {
			return nil
		}
		vs := reversed(cur)
		cur = nil
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("list %s: %w", kind, err)
		}
		var size int64
		if p, ok := s.cached(curKey); ok {
			size = p.size
		} else {
			var err error
			if size, err = s.sizeOf(ctx, curKey, curID, vs); err != nil {
				return fmt.Errorf("list %s: %s: %w", kind, curKey, err)
			}
		}
		return fn(curID, size)
	}
	pg := s3.NewListObjectVersionsPaginator(s.client, &s3.ListObjectVersionsInput{
		Bucket: aws.String(s.loc.Bucket),
		Prefix: aws.String(prefix),
	})
	for pg.HasMorePages() {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("list %s: %w", kind, err)
		}
		page, err := pg.NextPage(ctx)
		if err != nil {
			return fmt.Errorf("list %s: %w", kind, err)
		}
		for _, v := range page.Versions {
			key := aws.ToString(v.Key)
			if key != curKey {
				if err := flush(); err != nil {
					return err
				}
				curKey = key
				var ok bool
				if curID, ok = parseKey(strings.TrimPrefix(key, prefix)); !ok {
					curKey = ""
					continue
				}
			}
			if curKey == "" {
				continue
			}
			cur = append(cur, versionOf(v))
		}
	}
	return flush()
}

// parseKey parses "ab/abcd…" (the part of a key after KIND/).
func parseKey(rest string) (shardstore.ID, bool) {
	fan, name, ok := strings.Cut(rest, "/")
	if !ok || len(fan) != 2 || !strings.HasPrefix(name, fan) {
		return shardstore.ID{}, false
	}
	id, err := shardstore.ParseID(name)
	return id, err == nil
}

func (s *Store) storePin(key string, p pin) {
	if _, loaded := s.pins.Swap(key, p); !loaded && s.npins.Add(1) > maxPins {
		s.pins.Clear()
		s.npins.Store(0)
	}
}

func (s *Store) cached(key string) (pin, bool) {
	v, ok := s.pins.Load(key)
	if !ok {
		return pin{}, false
	}
	return v.(pin), true
}
