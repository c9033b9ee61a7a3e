package s3store_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"

	"github.com/embassy-project/embassy/internal/shardstore"
	s3store "github.com/embassy-project/embassy/internal/shardstore/s3"
	"github.com/embassy-project/embassy/internal/shardstore/storetest"
	"github.com/embassy-project/embassy/internal/wire"
)

var bg = context.Background()

// hookTransport lets a test see, change or answer each request.
type hookTransport struct {
	hook func(*http.Request) (*http.Response, error) // nil, nil: send as is
}

func (h hookTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	if resp, err := h.hook(r); resp != nil || err != nil {
		return resp, err
	}
	return http.DefaultTransport.RoundTrip(r)
}

func hookClient(hook func(*http.Request) (*http.Response, error)) *http.Client {
	return &http.Client{Transport: hookTransport{hook}}
}

// recorded is one request a store sent.
type recorded struct {
	method string
	query  string
	header http.Header
}

type recorder struct {
	mu   sync.Mutex
	reqs []recorded
}

func (rec *recorder) client() *http.Client {
	return hookClient(func(r *http.Request) (*http.Response, error) {
		rec.mu.Lock()
		rec.reqs = append(rec.reqs, recorded{r.Method, r.URL.RawQuery, r.Header.Clone()})
		rec.mu.Unlock()
		return nil, nil
	})
}

func (rec *recorder) take() []recorded {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	r := rec.reqs
	rec.reqs = nil
	return r
}

func apiCode(err error) string {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		return ae.ErrorCode()
	}
	return ""
}

func putObj(t *testing.T, s *s3store.Store, kind shardstore.Kind, data []byte) shardstore.ID {
	t.Helper()
	id := shardstore.Sum(data)
	if err := s.Put(bg, kind, id, data); err != nil {
		t.Fatalf("Put: %v", err)
	}
	return id
}

func mustGet(t *testing.T, s *s3store.Store, id shardstore.ID, want []byte) {
	t.Helper()
	got, err := s.Get(bg, shardstore.KindShard, id)
	if err != nil {
		t.Fatalf("Get: %v", err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("Get returned %d other bytes, want the %d stored", len(got), len(want))
	}
	if n, err := s.Stat(bg, shardstore.KindShard, id); err != nil || n != int64(len(want)) {
		t.Fatalf("Stat = %d, %v; want %d", n, err, len(want))
	}
}

func listShards(t *testing.T, s *s3store.Store) map[shardstore.ID]int64 {
	t.Helper()
	m := map[shardstore.ID]int64{}
	err := s.List(bg, shardstore.KindShard, func(id shardstore.ID, n int64) error {
		if _, dup := m[id]; dup {
			t.Errorf("List reported %s twice", id)
		}
		m[id] = n
		return nil
	})
	if err != nil {
		t.Fatalf("List: %v", err)
	}
	return m
}

func versionsOf(t *testing.T, c *s3.Client, key string) []types.ObjectVersion {
	t.Helper()
	out, err := c.ListObjectVersions(bg, &s3.ListObjectVersionsInput{Bucket: aws.String(lockedBucket), Prefix: aws.String(key)})
	if err != nil {
		t.Fatalf("ListObjectVersions: %v", err)
	}
	return out.Versions
}

func serverRetention(t *testing.T, c *s3.Client, key, versionID string) (time.Time, types.ObjectLockRetentionMode) {
	t.Helper()
	out, err := c.GetObjectRetention(bg, &s3.GetObjectRetentionInput{
		Bucket: aws.String(lockedBucket), Key: aws.String(key), VersionId: aws.String(versionID),
	})
	if err != nil {
		t.Fatalf("GetObjectRetention: %v", err)
	}
	return aws.ToTime(out.Retention.RetainUntilDate), out.Retention.Mode
}

// TestWriteHeaders checks what every write carries, for a single PUT and a
// multipart upload, and that the server applied the lock it was sent.
func TestWriteHeaders(t *testing.T) {
	var rec recorder
	s, _ := openStore(t, rec.client())
	raw := rawClient(nil)
	for _, size := range []int{1000, s3store.MultipartThreshold + 1} {
		rec.take()
		data, id := storetest.Object(uint64(size), size)
		until := time.Now().Add(90 * time.Second)
		if err := s.PutRetained(bg, shardstore.KindShard, id, data, until); err != nil {
			t.Fatalf("PutRetained(%d bytes): %v", size, err)
		}
		var writes int
		for _, r := range rec.take() {
			h := r.header
			switch {
			case r.method == http.MethodPut && !strings.Contains(r.query, "partNumber"): // PutObject
				writes++
				// Over http:// the signature covers the body's SHA-256 too.
				if got := h.Get("X-Amz-Content-Sha256"); len(got) != 64 {
					t.Errorf("PutObject x-amz-content-sha256 = %q, want the body's hash", got)
				}
				for name, want := range map[string]string{
					"If-None-Match":                       "*",
					"X-Amz-Object-Lock-Mode":              "COMPLIANCE",
					"X-Amz-Object-Lock-Retain-Until-Date": "",
					"X-Amz-Checksum-Sha256":               "",
				} {
					if got := h.Get(name); got == "" || want != "" && got != want {
						t.Errorf("PutObject header %s = %q, want %q", name, got, want)
					}
				}
			case r.method == http.MethodPost && strings.Contains(r.query, "uploads"): // CreateMultipartUpload
				writes++
				if h.Get("X-Amz-Object-Lock-Mode") != "COMPLIANCE" || h.Get("X-Amz-Object-Lock-Retain-Until-Date") == "" ||
					h.Get("X-Amz-Checksum-Algorithm") != "SHA256" {
					t.Errorf("CreateMultipartUpload headers lack the lock or checksum algorithm: %v", h)
				}
			case r.method == http.MethodPut: // UploadPart
				if h.Get("X-Amz-Checksum-Sha256") == "" {
					t.Errorf("UploadPart without x-amz-checksum-sha256")
				}
			case r.method == http.MethodPost && strings.Contains(r.query, "uploadId"): // Complete
				if h.Get("If-None-Match") != "*" {
					t.Errorf("CompleteMultipartUpload without If-None-Match: *")
				}
			}
		}
		if writes != 1 {
			t.Errorf("%d-byte Put made %d creating requests, want 1", size, writes)
		}
		vs := versionsOf(t, raw, s.Key(shardstore.KindShard, id))
		if len(vs) != 1 {
			t.Fatalf("%d versions after one Put", len(vs))
		}
		got, mode := serverRetention(t, raw, s.Key(shardstore.KindShard, id), aws.ToString(vs[0].VersionId))
		want := until.Truncate(time.Second).Add(time.Second)
		if mode != types.ObjectLockRetentionModeCompliance || !got.Equal(want) {
			t.Errorf("%d bytes: server retention %s %v, want COMPLIANCE %v", size, mode, got, want)
		}
		if ru, err := s.RetainUntil(bg, shardstore.KindShard, id); err != nil || !ru.Equal(want) {
			t.Errorf("RetainUntil = %v, %v; want %v", ru, err, want)
		}
		mustGet(t, s, id, data)
	}
}

// TestServerVerifiesChecksum: a body that does not match its
// x-amz-checksum-sha256 is refused and leaves nothing.
func TestServerVerifiesChecksum(t *testing.T) {
	needGateway(t)
	raw := rawClient(nil)
	key := freshPrefix(t) + "/x"
	_, err := raw.PutObject(bg, &s3.PutObjectInput{
		Bucket:         aws.String(lockedBucket),
		Key:            aws.String(key),
		Body:           strings.NewReader("the bytes"),
		ChecksumSHA256: aws.String("47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="), // SHA-256 of ""
	})
	if err == nil {
		t.Fatal("server accepted a body whose SHA-256 does not match x-amz-checksum-sha256")
	}
	t.Logf("server refused the bad checksum: %s", apiCode(err))
	if vs := versionsOf(t, raw, key); len(vs) != 0 {
		t.Fatalf("refused PUT left %d versions", len(vs))
	}
}

// TestLockHoldsAgainstOwnCredentials plays someone holding the host's keys.
func TestLockHoldsAgainstOwnCredentials(t *testing.T) {
	s, prefix := openStore(t, nil)
	raw := rawClient(nil)
	data, id := storetest.Object(1, 5000)
	putObj(t, s, shardstore.KindShard, data)
	key := s.Key(shardstore.KindShard, id)
	vs := versionsOf(t, raw, key)
	if len(vs) != 1 {
		t.Fatalf("%d versions after Put", len(vs))
	}
	vid := aws.ToString(vs[0].VersionId)
	until, _ := serverRetention(t, raw, key, vid)

	// Deleting the locked version is refused.
	_, err := raw.DeleteObject(bg, &s3.DeleteObjectInput{Bucket: aws.String(lockedBucket), Key: aws.String(key), VersionId: aws.String(vid)})
	if code := apiCode(err); code != "AccessDenied" && code != "InvalidRequest" {
		t.Fatalf("DeleteObject of the locked version = %v, want AccessDenied or InvalidRequest", err)
	}
	t.Logf("server refused deleting the locked version: %s", apiCode(err))
	mustGet(t, s, id, data)

	// Even with governance bypass.
	_, err = raw.DeleteObject(bg, &s3.DeleteObjectInput{Bucket: aws.String(lockedBucket), Key: aws.String(key),
		VersionId: aws.String(vid), BypassGovernanceRetention: aws.Bool(true)})
	if err == nil {
		t.Fatal("DeleteObject with BypassGovernanceRetention removed a COMPLIANCE version")
	}
	t.Logf("server refused deleting with governance bypass: %s", apiCode(err))

	// Shortening the retention is refused.
	_, err = raw.PutObjectRetention(bg, &s3.PutObjectRetentionInput{
		Bucket: aws.String(lockedBucket), Key: aws.String(key), VersionId: aws.String(vid),
		Retention: &types.ObjectLockRetention{Mode: types.ObjectLockRetentionModeCompliance, RetainUntilDate: aws.Time(until.Add(-time.Minute))},
	})
	if err == nil {
		t.Fatal("PutObjectRetention with an earlier date was accepted")
	}
	t.Logf("server refused shortening the retention: %s", apiCode(err))
	// So is switching to GOVERNANCE.
	_, err = raw.PutObjectRetention(bg, &s3.PutObjectRetentionInput{
		Bucket: aws.String(lockedBucket), Key: aws.String(key), VersionId: aws.String(vid),
		Retention: &types.ObjectLockRetention{Mode: types.ObjectLockRetentionModeGovernance, RetainUntilDate: aws.Time(until)},
	})
	if err == nil {
		t.Fatal("PutObjectRetention switching COMPLIANCE to GOVERNANCE was accepted")
	}
	t.Logf("server refused switching to GOVERNANCE: %s", apiCode(err))
	if got, mode := serverRetention(t, raw, key, vid); !got.Equal(until) || mode != types.ObjectLockRetentionModeCompliance {
		t.Fatalf("retention became %s %v, want COMPLIANCE %v", mode, got, until)
	}

	// An overwrite makes a new version; nothing served changes.
	evil := []byte("replaced by someone holding the host's keys")
	if _, err := raw.PutObject(bg, &s3.PutObjectInput{Bucket: aws.String(lockedBucket), Key: aws.String(key), Body: bytes.NewReader(evil)}); err != nil {
		t.Fatalf("direct overwrite: %v", err)
	}
	// And a plain delete only adds a delete marker.
	if _, err := raw.DeleteObject(bg, &s3.DeleteObjectInput{Bucket: aws.String(lockedBucket), Key: aws.String(key)}); err != nil {
		t.Fatalf("DeleteObject without a version: %v", err)
	}
	if n := len(versionsOf(t, raw, key)); n != 2 {
		t.Fatalf("%d versions after the overwrite, want 2", n)
	}
	// The original, now a non-current version, is still locked.
	_, err = raw.DeleteObject(bg, &s3.DeleteObjectInput{Bucket: aws.String(lockedBucket), Key: aws.String(key), VersionId: aws.String(vid)})
	if code := apiCode(err); code != "AccessDenied" && code != "InvalidRequest" {
		t.Fatalf("DeleteObject of the locked non-current version = %v, want AccessDenied or InvalidRequest", err)
	}
	restarted := openAt(t, prefix, nil) // no cached pin: resolves from the listing
	for name, st := range map[string]*s3store.Store{"same store": s, "restarted store": restarted} {
		t.Run(name, func(t *testing.T) {
			mustGet(t, st, id, data)
			if got := listShards(t, st); len(got) != 1 || got[id] != int64(len(data)) {
				t.Fatalf("List = %v, want only %s with %d bytes", got, id, len(data))
			}
			r, size, err := st.ReaderAt(bg, shardstore.KindShard, id)
			if err != nil || size != int64(len(data)) {
				t.Fatalf("ReaderAt = %d, %v", size, err)
			}
			b := make([]byte, 10)
			if _, err := r.ReadAt(b, 100); err != nil || !bytes.Equal(b, data[100:110]) {
				t.Fatalf("ReadAt after overwrite: %v", err)
			}
			// The "same store" subtest's Put below stores the bytes again
			// with a later retain-until; versitygw times versions to the
			// second, so a restarted store may pin either valid version
			// (both hash to the address): the retention is at least the
			// original's.
			if ru, err := st.RetainUntil(bg, shardstore.KindShard, id); err != nil || ru.Before(until) {
				t.Fatalf("RetainUntil = %v, %v; want at least the original version's %v", ru, err, until)
			}
			// A Put of the same object is still a no-op.
			putObj(t, st, shardstore.KindShard, data)
		})
	}
	if n := len(versionsOf(t, raw, key)); n != 2 {
		t.Fatalf("%d versions after the idempotent Puts, want 2", n)
	}
}

// TestPlantedBeforePut: bytes put under an id's key before the store's first
// Put (they do not hash to it) neither block the Put nor get served.
func TestPlantedBeforePut(t *testing.T) {
	s, prefix := openStore(t, nil)
	raw := rawClient(nil)
	data, id := storetest.Object(2, 3000)
	key := s.Key(shardstore.KindShard, id)
	if _, err := raw.PutObject(bg, &s3.PutObjectInput{Bucket: aws.String(lockedBucket), Key: aws.String(key), Body: strings.NewReader("planted")}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(bg, shardstore.KindShard, id); !errors.Is(err, shardstore.ErrMismatch) {
		t.Fatalf("Get of planted bytes = %v, want ErrMismatch", err)
	}
	putObj(t, s, shardstore.KindShard, data)
	mustGet(t, s, id, data)
	restarted := openAt(t, prefix, nil)
	mustGet(t, restarted, id, data)
	if got := listShards(t, restarted); got[id] != int64(len(data)) {
		t.Fatalf("List = %v", got)
	}
	vs := versionsOf(t, raw, key)
	if len(vs) != 2 {
		t.Fatalf("%d versions, want planted + ours", len(vs))
	}
	ours := aws.ToString(vs[0].VersionId) // newest first
	if _, mode := serverRetention(t, raw, key, ours); mode != types.ObjectLockRetentionModeCompliance {
		t.Fatalf("the version Put wrote beside planted bytes is not locked (%q)", mode)
	}
}

func TestRetain(t *testing.T) {
	s, prefix := openStore(t, nil)
	data, id := storetest.Object(3, 2000)
	before := time.Now()
	putObj(t, s, shardstore.KindShard, data)
	ru, err := s.RetainUntil(bg, shardstore.KindShard, id)
	if err != nil {
		t.Fatal(err)
	}
	if ru.Before(before.Add(testRetention)) || ru.After(time.Now().Add(testRetention+time.Second)) {
		t.Fatalf("Put's retain-until %v is not now+%v", ru, testRetention)
	}

	later := time.Now().Add(testRetention + time.Minute).Truncate(time.Second)
	if err := s.Retain(bg, shardstore.KindShard, id, later); err != nil {
		t.Fatalf("Retain: %v", err)
	}
	if got, err := s.RetainUntil(bg, shardstore.KindShard, id); err != nil || !got.Equal(later) {
		t.Fatalf("RetainUntil after Retain = %v, %v; want %v", got, err, later)
	}
	// An earlier date shortens nothing, on this store or a fresh one.
	restarted := openAt(t, prefix, nil)
	for _, st := range []*s3store.Store{s, restarted} {
		if err := st.Retain(bg, shardstore.KindShard, id, time.Now().Add(time.Minute)); err != nil {
			t.Fatalf("Retain(earlier): %v", err)
		}
		if got, err := restarted.RetainUntil(bg, shardstore.KindShard, id); err != nil || !got.Equal(later) {
			t.Fatalf("RetainUntil after an earlier Retain = %v, %v; want %v", got, err, later)
		}
	}
	// A deduplicated Put extends the retention, also from a fresh store
	// (which learns the object exists from the server's 412).
	evenLater := later.Add(time.Minute)
	if err := openAt(t, prefix, nil).PutRetained(bg, shardstore.KindShard, id, data, evenLater); err != nil {
		t.Fatalf("PutRetained of a stored object: %v", err)
	}
	if got, err := openAt(t, prefix, nil).RetainUntil(bg, shardstore.KindShard, id); err != nil || !got.Equal(evenLater) {
		t.Fatalf("RetainUntil after a deduplicated PutRetained = %v, %v; want %v", got, err, evenLater)
	}
	if n := len(versionsOf(t, rawClient(nil), s.Key(shardstore.KindShard, id))); n != 1 {
		t.Fatalf("%d versions after a deduplicated Put, want 1 (If-None-Match ignored?)", n)
	}
	// Sub-second dates round up.
	frac := evenLater.Add(10*time.Second + 300*time.Millisecond)
	if err := s.Retain(bg, shardstore.KindShard, id, frac); err != nil {
		t.Fatal(err)
	}
	if got, _ := restarted.RetainUntil(bg, shardstore.KindShard, id); !got.Equal(evenLater.Add(11 * time.Second)) {
		t.Fatalf("RetainUntil = %v, want %v rounded up", got, frac)
	}

	_, absent := storetest.Object(4, 10)
	if err := s.Retain(bg, shardstore.KindShard, absent, later); !errors.Is(err, shardstore.ErrNotFound) {
		t.Fatalf("Retain of an absent object = %v, want ErrNotFound", err)
	}
	if _, err := s.RetainUntil(bg, shardstore.KindShard, absent); !errors.Is(err, shardstore.ErrNotFound) {
		t.Fatalf("RetainUntil of an absent object = %v, want ErrNotFound", err)
	}
	for _, bad := range []time.Time{time.Now().Add(-time.Second), time.Now().Add(s3store.MaxRetention + time.Hour)} {
		d2, id2 := storetest.Object(5, 10)
		if err := s.PutRetained(bg, shardstore.KindShard, id2, d2, bad); err == nil {
			t.Fatalf("PutRetained until %v accepted", bad)
		}
	}
}

func TestReaderAt(t *testing.T) {
	s, _ := openStore(t, nil)
	data, id := storetest.Object(6, 100_000)
	putObj(t, s, shardstore.KindShard, data)
	r, size, err := s.ReaderAt(bg, shardstore.KindShard, id)
	if err != nil || size != int64(len(data)) {
		t.Fatalf("ReaderAt = %d, %v", size, err)
	}
	for _, tc := range []struct {
		off, n int
		eof    bool
	}{
		{0, 1, false}, {0, 16384, false}, {16384, 16384, false}, {99_999, 1, false},
		{12345, 6789, false}, {99_990, 20, true}, {0, 100_000, false}, {0, 100_001, true},
	} {
		b := make([]byte, tc.n)
		n, err := r.ReadAt(b, int64(tc.off))
		want := data[tc.off:min(tc.off+tc.n, len(data))]
		if n != len(want) || !bytes.Equal(b[:n], want) {
			t.Errorf("ReadAt(%d bytes at %d) = %d bytes, want %d equal bytes", tc.n, tc.off, n, len(want))
		}
		if tc.eof != (err == io.EOF) || !tc.eof && err != nil {
			t.Errorf("ReadAt(%d bytes at %d) error = %v, want EOF: %v", tc.n, tc.off, err, tc.eof)
		}
	}
	if n, err := r.ReadAt(make([]byte, 5), 100_000); n != 0 || err != io.EOF {
		t.Errorf("ReadAt at the end = %d, %v; want 0, EOF", n, err)
	}
	if _, err := r.ReadAt(make([]byte, 5), -1); err == nil {
		t.Error("ReadAt at a negative offset succeeded")
	}
	// ReaderAt satisfies io.SectionReader users.
	all, err := io.ReadAll(io.NewSectionReader(r, 0, size))
	if err != nil || !bytes.Equal(all, data) {
		t.Fatalf("reading everything through a SectionReader: %v", err)
	}
	empty := putObj(t, s, shardstore.KindShard, nil)
	r, size, err = s.ReaderAt(bg, shardstore.KindShard, empty)
	if err != nil || size != 0 {
		t.Fatalf("ReaderAt(empty) = %d, %v", size, err)
	}
	if n, err := r.ReadAt(make([]byte, 1), 0); n != 0 || err != io.EOF {
		t.Fatalf("ReadAt on an empty object = %d, %v", n, err)
	}
	_, absent := storetest.Object(7, 10)
	if _, _, err := s.ReaderAt(bg, shardstore.KindShard, absent); !errors.Is(err, shardstore.ErrNotFound) {
		t.Fatalf("ReaderAt(absent) = %v, want ErrNotFound", err)
	}
}

// TestTamperedObject changes the stored bytes behind the server's back (in
// versitygw's directory): Get must report ErrMismatch, not serve them.
func TestTamperedObject(t *testing.T) {
	s, prefix := openStore(t, nil)
	data, id := storetest.Object(8, 4096)
	putObj(t, s, shardstore.KindShard, data)
	path := filepath.Join(gw.dataDir, lockedBucket, filepath.FromSlash(s.Key(shardstore.KindShard, id)))
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatalf("open versitygw's file of the object: %v", err)
	}
	if _, err := f.WriteAt([]byte{data[77] ^ 1}, 77); err != nil {
		t.Fatal(err)
	}
	f.Close()
	for name, st := range map[string]*s3store.Store{"pinned": s, "fresh": openAt(t, prefix, nil)} {
		_, err := st.Get(bg, shardstore.KindShard, id)
		if !errors.Is(err, shardstore.ErrMismatch) || !errors.Is(err, wire.ErrCorrupt) {
			t.Errorf("%s store: Get of tampered bytes = %v, want ErrMismatch", name, err)
		}
	}
}

// TestInterruptedUpload: an upload that fails or is cancelled part-way leaves
// no object, no version and no unfinished multipart upload.
func TestInterruptedUpload(t *testing.T) {
	needGateway(t)
	// A cut connection is retried (5 attempts); do not wait 20 s for it.
	defer s3store.SetMaxBackoff(20 * time.Millisecond)()
	big, bigID := storetest.Object(9, s3store.MultipartThreshold+3*s3store.PartSize/2)
	small, smallID := storetest.Object(10, 1<<20)
	cut := errors.New("injected: connection cut")
	// Every attempt of the chosen request fails (the retries too).
	for _, tc := range []struct {
		name   string
		data   []byte
		id     shardstore.ID
		cancel bool // cancel the context when the hook fires, else cut the body
		fire   func(r *http.Request) bool
	}{
		{"CancelDuringMultipart", big, bigID, true, func(r *http.Request) bool { return r.URL.Query().Get("partNumber") == "3" }},
		{"CutMultipartPart", big, bigID, false, func(r *http.Request) bool { return r.URL.Query().Get("partNumber") == "2" }},
		{"CutPutObject", small, smallID, false, func(r *http.Request) bool { return r.Method == http.MethodPut }},
		{"CancelPutObject", small, smallID, true, func(r *http.Request) bool { return r.Method == http.MethodPut }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(bg)
			defer cancel()
			hc := hookClient(func(r *http.Request) (*http.Response, error) {
				if !tc.fire(r) {
					return nil, nil
				}
				if tc.cancel {
					r.Body = &failAfter{r: r.Body, n: 100 << 10, onLimit: func() error { cancel(); return context.Canceled }}
				} else {
					r.Body = &failAfter{r: r.Body, n: 100 << 10, onLimit: func() error { return cut }}
				}
				return nil, nil
			})
			s, prefix := openStore(t, hc)
			err := s.Put(ctx, shardstore.KindShard, tc.id, tc.data)
			if err == nil {
				t.Fatal("interrupted Put succeeded")
			}
			if tc.cancel && !errors.Is(err, context.Canceled) {
				t.Errorf("cancelled Put = %v, want context.Canceled", err)
			}
			if _, err := s.Stat(bg, shardstore.KindShard, tc.id); !errors.Is(err, shardstore.ErrNotFound) {
				t.Errorf("Stat after the interrupted Put = %v, want ErrNotFound", err)
			}
			if got := listShards(t, s); len(got) != 0 {
				t.Errorf("List after the interrupted Put = %v", got)
			}
			raw := rawClient(nil)
			if vs := versionsOf(t, raw, prefix+"/"); len(vs) != 0 {
				t.Errorf("%d versions under the prefix after the interrupted Put", len(vs))
			}
			mu, err := raw.ListMultipartUploads(bg, &s3.ListMultipartUploadsInput{Bucket: aws.String(lockedBucket), Prefix: aws.String(prefix + "/")})
			if err != nil {
				t.Fatal(err)
			}
			if len(mu.Uploads) != 0 {
				t.Errorf("%d unfinished multipart uploads remain", len(mu.Uploads))
			}
			// The same Put without interruption works afterwards.
			if err := openAt(t, prefix, nil).Put(bg, shardstore.KindShard, tc.id, tc.data); err != nil {
				t.Fatalf("Put after the interrupted one: %v", err)
			}
			mustGet(t, openAt(t, prefix, nil), tc.id, tc.data)
		})
	}
}

// TestRetriedAfterCut: a write whose first attempt is cut is retried and
// leaves exactly one version and no unfinished upload.
func TestRetriedAfterCut(t *testing.T) {
	needGateway(t)
	defer s3store.SetMaxBackoff(20 * time.Millisecond)()
	big, bigID := storetest.Object(12, s3store.MultipartThreshold+1)
	small, smallID := storetest.Object(13, 300<<10)
	for _, tc := range []struct {
		name string
		data []byte
		id   shardstore.ID
		fire func(r *http.Request) bool
	}{
		{"PutObject", small, smallID, func(r *http.Request) bool { return r.Method == http.MethodPut }},
		{"UploadPart", big, bigID, func(r *http.Request) bool { return r.URL.Query().Get("partNumber") == "4" }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var mu sync.Mutex
			fired := 0
			hc := hookClient(func(r *http.Request) (*http.Response, error) {
				mu.Lock()
				defer mu.Unlock()
				if tc.fire(r) && fired == 0 {
					fired++
					r.Body = &failAfter{r: r.Body, n: 64 << 10, onLimit: func() error { return errors.New("injected: connection reset") }}
				}
				return nil, nil
			})
			s, prefix := openStore(t, hc)
			if err := s.Put(bg, shardstore.KindShard, tc.id, tc.data); err != nil {
				t.Fatalf("Put with one cut attempt: %v", err)
			}
			if fired != 1 {
				t.Fatal("the cut never happened")
			}
			mustGet(t, openAt(t, prefix, nil), tc.id, tc.data)
			raw := rawClient(nil)
			if n := len(versionsOf(t, raw, prefix+"/")); n != 1 {
				t.Errorf("%d versions, want 1", n)
			}
			ups, err := raw.ListMultipartUploads(bg, &s3.ListMultipartUploadsInput{Bucket: aws.String(lockedBucket), Prefix: aws.String(prefix + "/")})
			if err != nil || len(ups.Uploads) != 0 {
				t.Errorf("ListMultipartUploads = %v, %v; want none", ups, err)
			}
		})
	}
}

// failAfter passes n bytes through, then fails with what onLimit returns.
type failAfter struct {
	r       io.ReadCloser
	n       int
	onLimit func() error
}

func (f *failAfter) Read(b []byte) (int, error) {
	if f.n <= 0 {
		return 0, f.onLimit()
	}
	if len(b) > f.n {
		b = b[:f.n]
	}
	n, err := f.r.Read(b)
	f.n -= n
	return n, err
}

func (f *failAfter) Close() error { return f.r.Close() }

// TestNoConditionalWrites runs against a server that answers If-None-Match
// with 501 Not Implemented: the store falls back to look-then-write.
func TestNoConditionalWrites(t *testing.T) {
	var refused sync.Map
	hc := hookClient(func(r *http.Request) (*http.Response, error) {
		if r.Header.Get("If-None-Match") == "" {
			return nil, nil
		}
		refused.Store(r.URL.Path, true)
		body := `<?xml version="1.0" encoding="UTF-8"?><Error><Code>NotImplemented</Code>` +
			`<Message>A header you provided implies functionality that is not implemented</Message></Error>`
		return &http.Response{
			StatusCode: http.StatusNotImplemented, Status: "501 Not Implemented",
			Header: http.Header{"Content-Type": {"application/xml"}}, Body: io.NopCloser(strings.NewReader(body)),
			ContentLength: int64(len(body)), Request: r, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		}, nil
	})
	s, prefix := openStore(t, hc)
	data, id := storetest.Object(11, 7000)
	for range 3 {
		putObj(t, s, shardstore.KindShard, data)
	}
	putObj(t, openAt(t, prefix, hc), shardstore.KindShard, data)
	mustGet(t, openAt(t, prefix, nil), id, data)
	if n := len(versionsOf(t, rawClient(nil), s.Key(shardstore.KindShard, id))); n != 1 {
		t.Fatalf("%d versions after repeated Puts without conditional writes, want 1", n)
	}
	n := 0
	refused.Range(func(any, any) bool { n++; return true })
	if n == 0 {
		t.Fatal("the store never tried a conditional write")
	}
}

// TestConcurrentRetain: racing Retains to different dates all succeed and the
// latest date wins.
func TestConcurrentRetain(t *testing.T) {
	s, prefix := openStore(t, nil)
	data, id := storetest.Object(14, 100)
	putObj(t, s, shardstore.KindShard, data)
	base := time.Now().Add(testRetention).Truncate(time.Second)
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for i := range 16 {
		st := s
		if i%2 == 1 {
			st = openAt(t, prefix, nil)
		}
		wg.Go(func() { errs <- st.Retain(bg, shardstore.KindShard, id, base.Add(time.Duration(i+1)*time.Second)) })
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Errorf("concurrent Retain: %v", err)
		}
	}
	want := base.Add(16 * time.Second)
	if got, err := openAt(t, prefix, nil).RetainUntil(bg, shardstore.KindShard, id); err != nil || !got.Equal(want) {
		t.Fatalf("RetainUntil = %v, %v; want %v", got, err, want)
	}
}
