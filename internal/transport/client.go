package transport

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode"

	"github.com/embassy-project/embassy/internal/access"
	"github.com/embassy-project/embassy/internal/guest"
	"github.com/embassy-project/embassy/internal/shardstore"
)

// Errors a caller may branch on, besides shardstore.ErrNotFound and
// shardstore.ErrMismatch.
var (
	// ErrUnavailable means the host could not be reached or failed (network
	// errors, timeouts, 5xx) after the retries.
	ErrUnavailable = errors.New("host unavailable")
	// ErrRefused means the host refused the request (403): the credential does
	// not allow it.
	ErrRefused = errors.New("refused by host")
	// ErrFenced means the host refused a write by the fencing rule (409,
	// 428): the write's epoch is not the dataset's current one, or its key
	// is not the epoch's writer, or it carried no epoch under an agreement.
	ErrFenced = errors.New("write fenced by host")
	// ErrQuota means the guest's quota on the host, or the host's disk, is full
	// (507).
	ErrQuota = errors.New("host storage full or quota exceeded")
	// ErrTooLarge means the object is larger than the host accepts (413).
	ErrTooLarge = errors.New("object too large for host")
)

// MaxObjectSize is the largest object a client sends or accepts.
const MaxObjectSize = 256 << 20

// MaxListSize bounds a listing response.
const MaxListSize = 1 << 30

// Client talks to one host as one guest. It implements shardstore.Store.
type Client struct {
	d     *Descriptor
	guest guest.ID
	hc    *http.Client
	dial  *confirmedDialer
	// Timeout bounds each phase of one attempt (sending the request, then
	// receiving the response); every MiB of body adds a second. A stalled or
	// stopped host fails the request instead of hanging it.
	Timeout time.Duration
	// Retries is how many times a request that failed transiently (network
	// error, 5xx other than 507, 429) is retried, with doubling backoff.
	Retries int
	// Backoff is the first retry delay.
	Backoff time.Duration
	// Retention, if positive, is sent with every Put: the host keeps the
	// object until RetainUntil(now, Retention) at least.
	Retention time.Duration
	// Cooldown is how long requests fail fast after one got no answer at all
	// (no connection, handshake or response in time): a stopped or
	// unreachable host costs one timeout, not one per request.
	Cooldown time.Duration
	// Dataset and Epoch, when Dataset is set, are sent with every Put (the
	// Embassy-Dataset and Embassy-Epoch headers): hosts under an agreement
	// refuse writes from any other epoch or writer (docs/spec/host-api.md).
	Dataset string
	Epoch   uint64

	downUntil atomic.Int64 // unix nanoseconds; 0 when the host is up
	downErr   atomic.Value // error that marked the host down
}

var _ shardstore.Store = (*Client)(nil)

// NewClient returns a client for host d acting as guest g with the client
// certificate cert (an agent or read-grant certificate from package access;
// the zero Certificate for the public log and witness paths only). The
// host's TLS key is pinned to d's fingerprint; no CA is consulted.
func NewClient(d *Descriptor, g guest.ID, cert tls.Certificate) *Client {
	var certs []tls.Certificate
	if len(cert.Certificate) > 0 {
		certs = []tls.Certificate{cert}
	}
	dial := &confirmedDialer{
		config: &tls.Config{
			MinVersion:         tls.VersionTLS13,
			Certificates:       certs,
			InsecureSkipVerify: true, // replaced by the pin check below
			VerifyConnection:   access.PinnedServer(d.TLS),
			// HTTP/1.1 only: one object per request and connection.
			NextProtos: []string{"http/1.1"},
		},
		dialer:  &net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second},
		timeout: 10 * time.Second,
	}
	tr := &http.Transport{
		// The dialer completes the handshake and waits until the host has
		// accepted the certificate, so a refused credential surfaces as the
		// host's TLS alert (confirmedDialer).
		DialTLSContext:      dial.DialTLSContext,
		IdleConnTimeout:     90 * time.Second,
		MaxIdleConnsPerHost: 16,
		TLSNextProto:        map[string]func(string, *tls.Conn) http.RoundTripper{},
	}
	return &Client{
		d: d, guest: g,
		hc:       &http.Client{Transport: tr},
		dial:     dial,
		Timeout:  20 * time.Second,
		Retries:  1,
		Backoff:  200 * time.Millisecond,
		Cooldown: 30 * time.Second,
	}
}

// Name returns the host's name.
func (c *Client) Name() string { return c.d.Name }

// Descriptor returns the host's descriptor.
func (c *Client) Descriptor() *Descriptor { return c.d }

// Close releases idle connections.
func (c *Client) Close() { c.hc.CloseIdleConnections() }

func (c *Client) objectURL(kind shardstore.Kind, id shardstore.ID) string {
	return fmt.Sprintf("%s/v1/guests/%s/%s/%s", c.d.BaseURL(), c.guest, kind, id)
}

// Put stores data under id on the host.
func (c *Client) Put(ctx context.Context, kind shardstore.Kind, id shardstore.ID, data []byte) error {
	if err := shardstore.CheckKind(kind); err != nil {
		return err
	}
	if shardstore.Sum(data) != id {
		return fmt.Errorf("put %s %s: %w", kind, id, shardstore.ErrMismatch)
	}
	return c.put(ctx, kind, id, data)
}

// PutSum stores data on the host under the address it computes
// (shardstore.Summer); the host checks the bytes against it.
func (c *Client) PutSum(ctx context.Context, kind shardstore.Kind, data []byte) (shardstore.ID, error) {
	if err := shardstore.CheckKind(kind); err != nil {
		return shardstore.ID{}, err
	}
	id := shardstore.Sum(data)
	return id, c.put(ctx, kind, id, data)
}

// put stores data, which hashes to id, under id.
func (c *Client) put(ctx context.Context, kind shardstore.Kind, id shardstore.ID, data []byte) error {
	if len(data) > MaxObjectSize {
		return fmt.Errorf("put %s %s: %d bytes: %w", kind, id, len(data), ErrTooLarge)
	}
	hdr := c.fenceHeader()
	if c.Retention > 0 {
		hdr.Set(RetainUntilHeader, RetainUntil(time.Now(), c.Retention).Format(time.RFC3339))
	}
	_, err := c.doHeader(ctx, http.MethodPut, c.objectURL(kind, id), data, 0, hdr)
	if err != nil {
		return fmt.Errorf("put %s %s on %s: %w", kind, id, c.d.Name, err)
	}
	return nil
}

// Get fetches an object and re-hashes it: bytes that do not hash to id are an
// error wrapping shardstore.ErrMismatch whatever the host claims.
func (c *Client) Get(ctx context.Context, kind shardstore.Kind, id shardstore.ID) ([]byte, error) {
	if err := shardstore.CheckKind(kind); err != nil {
		return nil, err
	}
	b, err := c.do(ctx, http.MethodGet, c.objectURL(kind, id), nil, MaxObjectSize)
	if err != nil {
		return nil, fmt.Errorf("get %s %s from %s: %w", kind, id, c.d.Name, err)
	}
	if shardstore.Sum(b) != id {
		return nil, fmt.Errorf("get %s %s from %s: %w", kind, id, c.d.Name, shardstore.ErrMismatch)
	}
	return b, nil
}

// Stat returns the size the host reports for an object.
func (c *Client) Stat(ctx context.Context, kind shardstore.Kind, id shardstore.ID) (int64, error) {
	if err := shardstore.CheckKind(kind); err != nil {
		return 0, err
	}
	resp, err := c.head(ctx, kind, id)
	if err == nil && resp.ContentLength < 0 {
		err = fmt.Errorf("%w: no content length", ErrUnavailable)
	}
	if err != nil {
		return 0, fmt.Errorf("stat %s %s on %s: %w", kind, id, c.d.Name, err)
	}
	return resp.ContentLength, nil
}

// head sends a HEAD for an object (with retries) and returns the answer
// (its body closed) if it is 200.
func (c *Client) head(ctx context.Context, kind shardstore.Kind, id shardstore.ID) (*http.Response, error) {
	var out *http.Response
	err := c.retry(ctx, func(ctx context.Context, _ *watchdog) (bool, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodHead, c.objectURL(kind, id), nil)
		if err != nil {
			return false, err
		}
		resp, err := c.send(req)
		if err != nil {
			return transportError(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return statusError(resp.StatusCode, nil)
		}
		out = resp
		return false, nil
	}, 0)
	return out, err
}

// List calls fn for every object of kind the host lists.
func (c *Client) List(ctx context.Context, kind shardstore.Kind, fn func(shardstore.ID, int64) error) error {
	if err := shardstore.CheckKind(kind); err != nil {
		return err
	}
	u := fmt.Sprintf("%s/v1/guests/%s/%s/", c.d.BaseURL(), c.guest, kind)
	b, err := c.do(ctx, http.MethodGet, u, nil, MaxListSize)
	if err != nil {
		return fmt.Errorf("list %s on %s: %w", kind, c.d.Name, err)
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		if err := ctx.Err(); err != nil {
			return err
		}
		ids, sizes, ok := strings.Cut(sc.Text(), " ")
		id, err := shardstore.ParseID(ids)
		size, serr := strconv.ParseInt(sizes, 10, 64)
		if !ok || err != nil || serr != nil || size < 0 {
			return fmt.Errorf("list %s on %s: malformed line %q", kind, c.d.Name, clip(sc.Text()))
		}
		if err := fn(id, size); err != nil {
			return err
		}
	}
	return sc.Err() // bufio.ErrTooLong: a line over 64 KiB must not end the listing silently
}

// Prove sends a marshalled storage-proof challenge and returns the host's
// marshalled, signed answer. The caller verifies it.
func (c *Client) Prove(ctx context.Context, challenge []byte) ([]byte, error) {
	u := fmt.Sprintf("%s/v1/guests/%s/proof", c.d.BaseURL(), c.guest)
	b, err := c.do(ctx, http.MethodPost, u, challenge, 64<<20)
	if err != nil {
		return nil, fmt.Errorf("storage proof from %s: %w", c.d.Name, err)
	}
	return b, nil
}

// Fetch reads a path of the host's public log (for example "checkpoint" or
// "tile/0/000"), bounded to 16 MiB.
func (c *Client) Fetch(ctx context.Context, path string) ([]byte, error) {
	u := fmt.Sprintf("%s/log/%s", c.d.BaseURL(), strings.TrimPrefix(path, "/"))
	b, err := c.do(ctx, http.MethodGet, u, nil, 16<<20)
	if err != nil {
		return nil, fmt.Errorf("log %s from %s: %w", path, c.d.Name, err)
	}
	return b, nil
}

// WitnessView asks the host's witness for its signed view of another log
// (witness.VerifyView checks it). A witness with no view gives an error
// wrapping shardstore.ErrNotFound.
func (c *Client) WitnessView(ctx context.Context, origin string) ([]byte, error) {
	u := fmt.Sprintf("%s/witness/view?origin=%s", c.d.BaseURL(), url.QueryEscape(origin))
	b, err := c.do(ctx, http.MethodGet, u, nil, 64<<10)
	if err != nil {
		return nil, fmt.Errorf("witness view of %s from %s: %w", origin, c.d.Name, err)
	}
	return b, nil
}

// do runs one request with retries and returns the response body (up to max
// bytes) of a 2xx answer.
func (c *Client) do(ctx context.Context, method, url string, body []byte, max int64) ([]byte, error) {
	return c.doHeader(ctx, method, url, body, max, nil)
}

func (c *Client) doHeader(ctx context.Context, method, url string, body []byte, max int64, hdr http.Header) ([]byte, error) {
	var out []byte
	err := c.retry(ctx, func(ctx context.Context, wd *watchdog) (bool, error) {
		req, err := http.NewRequestWithContext(ctx, method, url, nil)
		if err != nil {
			return false, err
		}
		if body != nil {
			// The transport may read and close a request body after Do
			// returns (RoundTripper's contract); waiting until every body
			// it was given is closed lets callers reuse body once Put
			// returns.
			var open sync.WaitGroup
			defer open.Wait()
			newBody := func() (io.ReadCloser, error) {
				if len(body) == 0 {
					return http.NoBody, nil
				}
				open.Add(1)
				return &requestBody{Reader: bytes.NewReader(body), close: open.Done}, nil
			}
			req.Body, _ = newBody()
			req.GetBody = newBody
			req.ContentLength = int64(len(body))
			req.Header.Set("Content-Type", "application/octet-stream")
		}
		for k, v := range hdr {
			req.Header[k] = v
		}
		resp, err := c.send(req)
		if err != nil {
			return transportError(err)
		}
		defer resp.Body.Close()
		wd.arm(resp.ContentLength)
		if resp.StatusCode/100 != 2 {
			msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
			return statusError(resp.StatusCode, msg)
		}
		if max == 0 {
			io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<16))
			return false, nil
		}
		if resp.ContentLength > max {
			return false, fmt.Errorf("response of %d bytes is larger than %d", resp.ContentLength, max)
		}
		b, err := io.ReadAll(io.LimitReader(resp.Body, max+1))
		if err != nil {
			return true, fmt.Errorf("%w: read response: %v", ErrUnavailable, err)
		}
		if int64(len(b)) > max {
			return false, fmt.Errorf("response larger than %d bytes", max)
		}
		if resp.ContentLength >= 0 && int64(len(b)) != resp.ContentLength {
			return true, fmt.Errorf("%w: truncated response", ErrUnavailable)
		}
		out = b
		return false, nil
	}, int64(len(body)))
	return out, err
}

// send sends req and returns the answer only if req's context was still
// live when it arrived. An HTTP/1.1 transport that abandons a request (the
// caller cancelled, or the watchdog fired) closes the connection, but it can
// still read an answer the host wrote on seeing the connection go: a host's
// handler that returns when its request is cancelled answers 200 with no
// body. That answer is to a request this client gave up on, not a result: a
// Put could pass for stored. So an attempt whose context ended before Do
// returned fails as the cancellation it was.
func (c *Client) send(req *http.Request) (*http.Response, error) {
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, err
	}
	if err := req.Context().Err(); err != nil {
		resp.Body.Close()
		return nil, fmt.Errorf("answer arrived after the request was abandoned: %w", err)
	}
	return resp, nil
}

// retry runs op until it succeeds, fails permanently, or the retries are
// spent. Each attempt gets a context the attempt's watchdog cancels: Timeout
// plus one second per MiB of the request body until the response headers
// arrive, then re-armed for the announced response body.
func (c *Client) retry(ctx context.Context, op func(context.Context, *watchdog) (retry bool, err error), reqSize int64) error {
	if until := c.downUntil.Load(); until != 0 && time.Now().UnixNano() < until {
		return fmt.Errorf("%w (not retried for %s after: %v)", ErrUnavailable, c.Cooldown, c.downErr.Load())
	}
	err := c.attempts(ctx, op, reqSize)
	var down *unreachable
	if errors.As(err, &down) && ctx.Err() == nil && c.Cooldown > 0 {
		c.downErr.Store(err)
		c.downUntil.Store(time.Now().Add(c.Cooldown).UnixNano())
	} else if err == nil {
		c.downUntil.Store(0)
	}
	return err
}

func (c *Client) attempts(ctx context.Context, op func(context.Context, *watchdog) (retry bool, err error), reqSize int64) error {
	delay := c.Backoff
	var err error
	for attempt := 0; ; attempt++ {
		actx, cancel := context.WithCancel(ctx)
		wd := &watchdog{base: c.Timeout, cancel: cancel}
		wd.arm(reqSize)
		var again bool
		again, err = op(actx, wd)
		wd.stop()
		cancel()
		if err == nil || !again || attempt >= c.Retries || ctx.Err() != nil {
			break
		}
		select {
		case <-ctx.Done():
			return errors.Join(err, ctx.Err())
		case <-time.After(delay):
		}
		delay *= 2
	}
	if ctx.Err() != nil && err != nil && !errors.Is(err, ctx.Err()) {
		return errors.Join(err, ctx.Err())
	}
	return err
}

// watchdog cancels an attempt that makes no progress in time.
type watchdog struct {
	base   time.Duration
	cancel context.CancelFunc
	t      *time.Timer
}

func (w *watchdog) arm(size int64) {
	if w.t != nil {
		w.t.Stop()
	}
	if size < 0 {
		size = 0
	}
	w.t = time.AfterFunc(w.base+time.Duration(size>>20)*time.Second, w.cancel)
}

func (w *watchdog) stop() {
	if w.t != nil {
		w.t.Stop()
	}
}

// unreachable is ErrUnavailable for a host that gave no answer at all (no
// connection, no TLS handshake, a timeout): the cases the cooldown covers.
// An HTTP 5xx answer is ErrUnavailable too but does not start a cooldown.
type unreachable struct{ msg string }

func (e *unreachable) Error() string { return e.msg }
func (e *unreachable) Unwrap() error { return ErrUnavailable }

// transportError classifies a failed round trip: a TLS alert from the host
// (it refused the client's credential) or a pin mismatch is permanent; any
// other failure may be transient.
func transportError(err error) (bool, error) {
	if errors.Is(err, access.ErrPinMismatch) {
		return false, fmt.Errorf("%w: %w (the host's TLS key is not the one its descriptor pins)", ErrRefused, access.ErrPinMismatch)
	}
	var alert tls.AlertError
	if errors.As(err, &alert) {
		return false, fmt.Errorf("%w: %v (is the guest served by this host, and the credential valid?)", ErrRefused, err)
	}
	if strings.Contains(err.Error(), "remote error: tls:") {
		return false, fmt.Errorf("%w: %v (is the guest served by this host, and the credential valid?)", ErrRefused, err)
	}
	// A host that timed out is stalled or stopped: retrying costs another
	// timeout; fail now (and fast afterwards, see Cooldown).
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return false, &unreachable{fmt.Sprintf("%v: %v", ErrUnavailable, err)}
	}
	return true, &unreachable{fmt.Sprintf("%v: %v", ErrUnavailable, err)}
}

// statusError maps a non-2xx status to an error and says whether to retry.
func statusError(code int, msg []byte) (bool, error) {
	detail := ""
	if m := clip(string(msg)); m != "" {
		detail = ": " + m
	}
	switch {
	case code == http.StatusNotFound:
		return false, fmt.Errorf("%w%s", shardstore.ErrNotFound, detail)
	case code == http.StatusUnprocessableEntity:
		return false, fmt.Errorf("%w%s", shardstore.ErrMismatch, detail)
	case code == http.StatusForbidden || code == http.StatusUnauthorized:
		return false, fmt.Errorf("%w (%d)%s", ErrRefused, code, detail)
	case code == http.StatusInsufficientStorage:
		return false, fmt.Errorf("%w%s", ErrQuota, detail)
	case code == http.StatusConflict || code == http.StatusPreconditionRequired:
		return false, fmt.Errorf("%w%s", ErrFenced, detail)
	case code == http.StatusRequestEntityTooLarge:
		return false, fmt.Errorf("%w%s", ErrTooLarge, detail)
	case code == http.StatusTooManyRequests || code >= 500:
		return true, fmt.Errorf("%w: HTTP %d%s", ErrUnavailable, code, detail)
	default:
		return false, fmt.Errorf("HTTP %d%s", code, detail)
	}
}

// clip makes host-supplied text safe to print: one line, printable, bounded.
func clip(s string) string {
	s = strings.TrimSpace(s)
	if len(s) > 200 {
		s = s[:200] + "…"
	}
	return strings.Map(func(r rune) rune {
		if !unicode.IsPrint(r) {
			return '?'
		}
		return r
	}, s)
}

// Fencing headers.
const (
	DatasetHeader = "Embassy-Dataset"
	EpochHeader   = "Embassy-Epoch"
)

func (c *Client) fenceHeader() http.Header {
	h := http.Header{}
	if c.Dataset != "" {
		h.Set(DatasetHeader, c.Dataset)
		h.Set(EpochHeader, strconv.FormatUint(c.Epoch, 10))
	}
	return h
}

// Heartbeat tells the host that home is alive (the agent credential
// authenticates it). A host with no agreement for the guest answers
// ErrNotFound.
func (c *Client) Heartbeat(ctx context.Context) error {
	_, err := c.doHeader(ctx, http.MethodPost, fmt.Sprintf("%s/v1/guests/%s/heartbeat", c.d.BaseURL(), c.guest), nil, 0, c.fenceHeader())
	if err != nil {
		return fmt.Errorf("heartbeat to %s: %w", c.d.Name, err)
	}
	return nil
}

// Governance returns the host's governance status for the guest (JSON:
// agreement version and hash, whether it has synced the orders it missed,
// the state; docs/spec/host-api.md). A host with no agreement for the guest
// answers ErrNotFound.
func (c *Client) Governance(ctx context.Context) ([]byte, error) {
	b, err := c.doHeader(ctx, http.MethodGet, fmt.Sprintf("%s/v1/guests/%s/governance", c.d.BaseURL(), c.guest), nil, 1<<20, nil)
	if err != nil {
		return nil, fmt.Errorf("governance of %s: %w", c.d.Name, err)
	}
	return b, nil
}

// SubmitOrder posts a signed order file to the host and returns its answer
// (JSON: what was carried out). A refusal is an error carrying the host's
// reason.
func (c *Client) SubmitOrder(ctx context.Context, order []byte) ([]byte, error) {
	b, err := c.doHeader(ctx, http.MethodPost, fmt.Sprintf("%s/v1/guests/%s/orders", c.d.BaseURL(), c.guest), order, 1<<20, nil)
	if errors.Is(err, ErrFenced) {
		// 409 here is a conflict with the host's state, not a fenced write.
		err = fmt.Errorf("%w%s", ErrRefused, strings.TrimPrefix(err.Error(), ErrFenced.Error()))
	}
	if err != nil {
		return nil, fmt.Errorf("submit order to %s: %w", c.d.Name, err)
	}
	return b, nil
}

// SubmitRelease posts a key-share release file (docs/spec/share-release.md)
// to the host the activation named.
func (c *Client) SubmitRelease(ctx context.Context, release []byte) ([]byte, error) {
	b, err := c.doHeader(ctx, http.MethodPost, fmt.Sprintf("%s/v1/guests/%s/releases", c.d.BaseURL(), c.guest), release, 1<<20, nil)
	if errors.Is(err, ErrFenced) {
		err = fmt.Errorf("%w%s", ErrRefused, strings.TrimPrefix(err.Error(), ErrFenced.Error()))
	}
	if err != nil {
		return nil, fmt.Errorf("submit key share release to %s: %w", c.d.Name, err)
	}
	return b, nil
}

// PushIdentity sends the guest's public identity to the host, which takes it
// only if every changed dataset carries the keys a rotate order named
// (docs/spec/host-api.md).
func (c *Client) PushIdentity(ctx context.Context, identity []byte) error {
	_, err := c.doHeader(ctx, http.MethodPost, fmt.Sprintf("%s/v1/guests/%s/identity", c.d.BaseURL(), c.guest), identity, 0, nil)
	if errors.Is(err, ErrFenced) {
		err = fmt.Errorf("%w%s", ErrRefused, strings.TrimPrefix(err.Error(), ErrFenced.Error()))
	}
	if err != nil {
		return fmt.Errorf("push identity to %s: %w", c.d.Name, err)
	}
	return nil
}

// requestBody is a request body that reports when the transport closed it.
type requestBody struct {
	*bytes.Reader
	once  sync.Once
	close func()
}

func (b *requestBody) Close() error {
	b.once.Do(b.close)
	return nil
}
