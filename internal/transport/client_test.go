package transport

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/embassy-project/embassy/internal/access"
	"github.com/embassy-project/embassy/internal/guest"
	"github.com/embassy-project/embassy/internal/shardstore"
	"github.com/embassy-project/embassy/internal/sig"
)

// testAgent is one guest and its agent certificate, shared by the client
// tests (the ML-DSA agent key is the slow part).
var testAgent = sync.OnceValues(func() (agentCert, error) {
	agent, err := sig.Generate()
	if err != nil {
		return agentCert{}, err
	}
	g, err := guest.NewID()
	if err != nil {
		return agentCert{}, err
	}
	cert, err := access.NewAgentCertificate(agent, g, time.Now(), time.Hour)
	if err != nil {
		return agentCert{}, err
	}
	return agentCert{guest: g, cert: cert}, nil
})

type agentCert struct {
	guest guest.ID
	cert  tls.Certificate
}

func agentFor(t *testing.T) agentCert {
	t.Helper()
	a, err := testAgent()
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// hostServer is a TLS 1.3 server with a host certificate from package
// access that requests (and does not check) client certificates, and a
// descriptor that pins it. It counts the requests that reach its handler
// and the connections it accepts.
type hostServer struct {
	srv      *httptest.Server
	desc     *Descriptor
	requests atomic.Int64
	conns    atomic.Int64
	// release unblocks handlers that stall; closed before the server.
	release chan struct{}
}

func newHostServer(t *testing.T, h http.HandlerFunc, tweak func(*tls.Config)) *hostServer {
	t.Helper()
	cert, _, _, err := access.NewServerCertificate("lu-1", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(cert.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	s := &hostServer{release: make(chan struct{})}
	s.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.requests.Add(1)
		h(w, r)
	}))
	s.srv.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		if st == http.StateNew {
			s.conns.Add(1)
		}
	}
	s.srv.Config.ErrorLog = log.New(io.Discard, "", 0) // handshake refusals are expected
	s.srv.TLS = &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{cert},
		ClientAuth:   tls.RequestClientCert,
	}
	if tweak != nil {
		tweak(s.srv.TLS)
	}
	s.srv.StartTLS()
	t.Cleanup(s.srv.Close)
	t.Cleanup(func() { close(s.release) }) // runs before Close, which waits for handlers
	d := newDescriptor(t, "lu-1")
	d.URL = s.srv.URL
	d.TLS = access.SPKIFingerprint(leaf)
	if err := d.Validate(); err != nil {
		t.Fatal(err)
	}
	s.desc = d
	return s
}

// stall blocks a handler until the client goes away or the test ends.
func (s *hostServer) stall(r *http.Request) {
	select {
	case <-r.Context().Done():
	case <-s.release:
	}
}

// client returns a client of s with short timeouts and backoff, two
// retries, and no cooldown (TestClientCooldown tests it), so that each
// request reaches the host.
func (s *hostServer) client(t *testing.T) *Client {
	t.Helper()
	a := agentFor(t)
	c := NewClient(s.desc, a.guest, a.cert)
	c.Timeout = 5 * time.Second
	c.Retries = 2
	c.Backoff = time.Millisecond
	c.Cooldown = 0
	t.Cleanup(c.Close)
	return c
}

// testCtx bounds a test that could hang if the client did.
func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// TestClientRequests checks the client speaks the host API of doc.go: the
// method, path and body of each call, over TLS 1.3 with the agent's
// certificate presented.
func TestClientRequests(t *testing.T) {
	a := agentFor(t)
	obj := []byte("an object")
	id := shardstore.Sum(obj)
	other := []byte("another")
	var mu sync.Mutex
	var seen []string
	s := newHostServer(t, func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		mu.Lock()
		seen = append(seen, r.Method+" "+r.URL.RequestURI()+" "+string(body))
		mu.Unlock()
		if r.TLS == nil || r.TLS.Version != tls.VersionTLS13 || len(r.TLS.PeerCertificates) != 1 ||
			!bytes.Equal(r.TLS.PeerCertificates[0].Raw, a.cert.Certificate[0]) {
			http.Error(w, "no agent certificate", http.StatusTeapot)
			return
		}
		switch {
		case r.Method == http.MethodPut:
			if r.Header.Get("Content-Type") != "application/octet-stream" || r.ContentLength != int64(len(obj)) {
				http.Error(w, "bad put", http.StatusBadRequest)
				return
			}
			w.WriteHeader(http.StatusCreated)
		case r.Method == http.MethodHead:
			w.Header().Set("Content-Length", strconv.Itoa(len(obj)))
		case strings.HasSuffix(r.URL.Path, "/shards/"):
			fmt.Fprintf(w, "%s %d\n%s %d\n", id, len(obj), shardstore.Sum(other), len(other))
		case strings.HasSuffix(r.URL.Path, "/proof"):
			w.Write(append([]byte("receipt for "), body...))
		case strings.HasPrefix(r.URL.Path, "/log/"):
			w.Write([]byte("tile bytes"))
		default:
			w.Write(obj)
		}
	}, nil)
	c := s.client(t)
	ctx := testCtx(t)
	if c.Name() != "lu-1" || c.Descriptor() != s.desc {
		t.Fatalf("Name %q, Descriptor %p", c.Name(), c.Descriptor())
	}
	if err := c.Put(ctx, shardstore.KindEnvelope, id, obj); err != nil {
		t.Fatal(err)
	}
	if b, err := c.Get(ctx, shardstore.KindShard, id); err != nil || !bytes.Equal(b, obj) {
		t.Fatalf("Get = %q, %v", b, err)
	}
	if n, err := c.Stat(ctx, shardstore.KindShard, id); err != nil || n != int64(len(obj)) {
		t.Fatalf("Stat = %d, %v", n, err)
	}
	got := map[shardstore.ID]int64{}
	if err := c.List(ctx, shardstore.KindShard, func(id shardstore.ID, n int64) error { got[id] = n; return nil }); err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[id] != int64(len(obj)) || got[shardstore.Sum(other)] != int64(len(other)) {
		t.Fatalf("List gave %v", got)
	}
	if b, err := c.Prove(ctx, []byte("challenge")); err != nil || string(b) != "receipt for challenge" {
		t.Fatalf("Prove = %q, %v", b, err)
	}
	if b, err := c.Fetch(ctx, "/tile/0/000"); err != nil || string(b) != "tile bytes" {
		t.Fatalf("Fetch = %q, %v", b, err)
	}
	g := a.guest.String()
	want := []string{
		"PUT /v1/guests/" + g + "/envelopes/" + id.String() + " " + string(obj),
		"GET /v1/guests/" + g + "/shards/" + id.String() + " ",
		"HEAD /v1/guests/" + g + "/shards/" + id.String() + " ",
		"GET /v1/guests/" + g + "/shards/ ",
		"POST /v1/guests/" + g + "/proof challenge",
		"GET /log/tile/0/000 ",
	}
	if strings.Join(seen, "\n") != strings.Join(want, "\n") {
		t.Fatalf("requests:\n%s\nwant:\n%s", strings.Join(seen, "\n"), strings.Join(want, "\n"))
	}
	if n := s.conns.Load(); n != 1 {
		t.Errorf("%d connections for six requests; want one kept alive", n)
	}
}

// TestClientStatus maps every status the host API uses to its error, and
// checks which are retried by counting the requests the host saw.
func TestClientStatus(t *testing.T) {
	var code atomic.Int64
	s := newHostServer(t, func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.WriteHeader(int(code.Load()))
		w.Write([]byte("host says \x1b[31mno\x1b[0m\n" + strings.Repeat("x", 1000)))
	}, nil)
	c := s.client(t)
	ctx := testCtx(t)
	obj := []byte("object")
	id := shardstore.Sum(obj)
	ops := map[string]func() error{
		"get":  func() error { _, err := c.Get(ctx, shardstore.KindShard, id); return err },
		"put":  func() error { return c.Put(ctx, shardstore.KindShard, id, obj) },
		"stat": func() error { _, err := c.Stat(ctx, shardstore.KindShard, id); return err },
		"list": func() error {
			return c.List(ctx, shardstore.KindShard, func(shardstore.ID, int64) error { return nil })
		},
	}
	sentinels := []error{shardstore.ErrNotFound, shardstore.ErrMismatch, ErrRefused, ErrQuota, ErrTooLarge, ErrUnavailable}
	for _, tc := range []struct {
		code  int
		want  error // nil: an error that is none of the sentinels
		retry bool
	}{
		{http.StatusNotFound, shardstore.ErrNotFound, false},
		{http.StatusUnprocessableEntity, shardstore.ErrMismatch, false},
		{http.StatusForbidden, ErrRefused, false},
		{http.StatusUnauthorized, ErrRefused, false},
		{http.StatusInsufficientStorage, ErrQuota, false},
		{http.StatusRequestEntityTooLarge, ErrTooLarge, false},
		{http.StatusTooManyRequests, ErrUnavailable, true},
		{http.StatusInternalServerError, ErrUnavailable, true},
		{http.StatusBadGateway, ErrUnavailable, true},
		{http.StatusServiceUnavailable, ErrUnavailable, true},
		{http.StatusGatewayTimeout, ErrUnavailable, true},
		{http.StatusBadRequest, nil, false},
		{http.StatusConflict, ErrFenced, false},
		{http.StatusPreconditionRequired, ErrFenced, false},
		{http.StatusNotModified, nil, false},
	} {
		for name, op := range ops {
			t.Run(fmt.Sprintf("%d %s", tc.code, name), func(t *testing.T) {
				code.Store(int64(tc.code))
				s.requests.Store(0)
				err := op()
				if err == nil {
					t.Fatal("no error")
				}
				for _, e := range sentinels {
					if errors.Is(err, e) != (e == tc.want) {
						t.Errorf("errors.Is(%v, %v) = %v", err, e, !(e == tc.want))
					}
				}
				want := int64(1)
				if tc.retry {
					want = int64(c.Retries) + 1
				}
				if n := s.requests.Load(); n != want {
					t.Errorf("host saw %d requests, want %d", n, want)
				}
				// The host's text is shown clipped and without control
				// characters.
				msg := err.Error()
				if strings.ContainsAny(msg, "\x1b\n") || len(msg) > 600 {
					t.Errorf("error passes the host's text through unclipped: %q", msg)
				}
			})
		}
	}
	// With Retries 0 nothing is retried.
	c.Retries = 0
	code.Store(http.StatusServiceUnavailable)
	s.requests.Store(0)
	if err := ops["get"](); !errors.Is(err, ErrUnavailable) || s.requests.Load() != 1 {
		t.Fatalf("Retries 0: %v after %d requests", err, s.requests.Load())
	}
}

// A host that sends other bytes than the object's: Get re-hashes and
// refuses them, whatever the status says, and does not retry.
func TestClientGetRehashes(t *testing.T) {
	obj := []byte("the real object")
	id := shardstore.Sum(obj)
	var body atomic.Value
	s := newHostServer(t, func(w http.ResponseWriter, r *http.Request) {
		w.Write(body.Load().([]byte))
	}, nil)
	c := s.client(t)
	ctx := testCtx(t)
	for name, b := range map[string][]byte{
		"other bytes": []byte("a forged object"),
		"one bit off": append([]byte{obj[0] ^ 1}, obj[1:]...),
		"prefix":      obj[:len(obj)-1],
		"extended":    append(bytes.Clone(obj), '!'),
		"empty":       {},
	} {
		body.Store(b)
		s.requests.Store(0)
		got, err := c.Get(ctx, shardstore.KindShard, id)
		if !errors.Is(err, shardstore.ErrMismatch) || got != nil {
			t.Errorf("%s: Get = %q, %v; want ErrMismatch", name, got, err)
		}
		if n := s.requests.Load(); n != 1 {
			t.Errorf("%s: %d requests, want 1", name, n)
		}
	}
	body.Store(obj)
	if got, err := c.Get(ctx, shardstore.KindShard, id); err != nil || !bytes.Equal(got, obj) {
		t.Fatalf("Get = %q, %v", got, err)
	}
}

// hijack takes over the connection and writes raw as the whole response.
func hijack(t *testing.T, w http.ResponseWriter, raw string) {
	conn, buf, err := http.NewResponseController(w).Hijack()
	if err != nil {
		t.Error(err)
		return
	}
	defer conn.Close()
	buf.WriteString(raw)
	buf.Flush()
}

// A host that announces more bytes than it sends and hangs up: an error,
// never a short object.
func TestClientTruncatedResponse(t *testing.T) {
	obj := []byte("0123456789")
	id := shardstore.Sum(obj)
	var raw atomic.Value
	s := newHostServer(t, func(w http.ResponseWriter, r *http.Request) {
		hijack(t, w, raw.Load().(string))
	}, nil)
	c := s.client(t)
	ctx := testCtx(t)
	for name, resp := range map[string]string{
		"content length":   "HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n" + string(obj),
		"chunked":          "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\na\r\n" + string(obj) + "\r\n",
		"headers only":     "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n",
		"nothing":          "",
		"not http":         "SSH-2.0-OpenSSH_9.6\r\n",
		"bad status line":  "HTTP/1.1 2000 OK\r\n\r\n",
		"bad length":       "HTTP/1.1 200 OK\r\nContent-Length: -5\r\n\r\n",
		"two lengths":      "HTTP/1.1 200 OK\r\nContent-Length: 10\r\nContent-Length: 11\r\n\r\n" + string(obj),
		"unknown encoding": "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n" + string(obj),
	} {
		raw.Store(resp)
		s.requests.Store(0)
		got, err := c.Get(ctx, shardstore.KindShard, id)
		if err == nil || got != nil {
			t.Errorf("%s: Get = %q, %v; want an error", name, got, err)
			continue
		}
		if !errors.Is(err, ErrUnavailable) {
			t.Errorf("%s: %v, want ErrUnavailable", name, err)
		}
		if n := s.requests.Load(); n != int64(c.Retries)+1 {
			t.Errorf("%s: %d requests, want %d (a broken response is retried)", name, n, c.Retries+1)
		}
	}
	// The same bytes with an honest length are the object.
	raw.Store("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n" + string(obj))
	if got, err := c.Get(ctx, shardstore.KindShard, id); err != nil || !bytes.Equal(got, obj) {
		t.Fatalf("Get = %q, %v", got, err)
	}
	// A HEAD answer without a length is no size.
	raw.Store("HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n")
	if n, err := c.Stat(ctx, shardstore.KindShard, id); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Stat without a length = %d, %v", n, err)
	}
}

// A host that stops answering fails the request after about Timeout per
// attempt instead of hanging it, before or after the response headers, and
// the caller's context cuts any wait short.
func TestClientStalledHost(t *testing.T) {
	const timeout = 300 * time.Millisecond
	var mode atomic.Value
	var arrived = make(chan struct{}, 16)
	var s *hostServer
	s = newHostServer(t, func(w http.ResponseWriter, r *http.Request) {
		arrived <- struct{}{}
		switch mode.Load().(string) {
		case "headers":
			s.stall(r)
		case "body":
			w.Header().Set("Content-Length", "1000")
			w.WriteHeader(http.StatusOK)
			w.Write([]byte("0123456789"))
			http.NewResponseController(w).Flush()
			s.stall(r)
		case "unavailable":
			w.WriteHeader(http.StatusServiceUnavailable)
		}
	}, nil)
	c := s.client(t)
	c.Timeout = timeout
	obj := []byte("object")
	id := shardstore.Sum(obj)
	drain := func() {
		for len(arrived) > 0 {
			<-arrived
		}
	}
	for _, tc := range []struct {
		mode    string
		retries int
		op      func(ctx context.Context) error
	}{
		{"headers", 0, func(ctx context.Context) error { _, err := c.Get(ctx, shardstore.KindShard, id); return err }},
		{"body", 0, func(ctx context.Context) error { _, err := c.Get(ctx, shardstore.KindShard, id); return err }},
		{"headers", 2, func(ctx context.Context) error { return c.Put(ctx, shardstore.KindShard, id, obj) }},
		{"headers", 2, func(ctx context.Context) error { _, err := c.Stat(ctx, shardstore.KindShard, id); return err }},
		{"body", 1, func(ctx context.Context) error {
			return c.List(ctx, shardstore.KindShard, func(shardstore.ID, int64) error { return nil })
		}},
	} {
		t.Run(fmt.Sprintf("%s retries %d", tc.mode, tc.retries), func(t *testing.T) {
			mode.Store(tc.mode)
			c.Retries = tc.retries
			s.requests.Store(0)
			drain()
			start := time.Now()
			err := tc.op(testCtx(t))
			took := time.Since(start)
			if !errors.Is(err, ErrUnavailable) {
				t.Fatalf("%v, want ErrUnavailable", err)
			}
			// A host that timed out before answering is not retried: one
			// Timeout, not one per attempt. A stall in the body is (for
			// now) retried like a broken response.
			n := s.requests.Load()
			if tc.mode == "headers" && n != 1 {
				t.Errorf("%d requests after a timeout, want 1", n)
			}
			if n < 1 || n > int64(tc.retries)+1 {
				t.Errorf("%d requests, want 1..%d", n, tc.retries+1)
			}
			// Each attempt waits the full Timeout; a generous upper bound
			// only tells "timed out" from "hung" (the test context ends at
			// 20 s).
			if took < time.Duration(n)*timeout || took > time.Duration(n)*timeout+5*time.Second {
				t.Errorf("failed after %v and %d attempts; want about %v", took, n, time.Duration(n)*timeout)
			}
		})
	}

	// The caller's context ends the wait at once, whatever Timeout says.
	c.Timeout = time.Minute
	c.Retries = 2
	for _, m := range []string{"headers", "body"} {
		t.Run("cancel during "+m, func(t *testing.T) {
			mode.Store(m)
			s.requests.Store(0)
			drain()
			ctx, cancel := context.WithCancel(testCtx(t))
			go func() { <-arrived; time.Sleep(50 * time.Millisecond); cancel() }()
			start := time.Now()
			_, err := c.Get(ctx, shardstore.KindShard, id)
			if !errors.Is(err, context.Canceled) {
				t.Fatalf("%v, want context.Canceled", err)
			}
			if took := time.Since(start); took > 5*time.Second {
				t.Errorf("returned %v after the cancel", took)
			}
			if n := s.requests.Load(); n != 1 {
				t.Errorf("%d requests after a cancel, want 1", n)
			}
		})
	}
	t.Run("cancel during backoff", func(t *testing.T) {
		mode.Store("unavailable")
		c.Backoff = time.Hour
		s.requests.Store(0)
		drain()
		ctx, cancel := context.WithCancel(testCtx(t))
		go func() { <-arrived; time.Sleep(50 * time.Millisecond); cancel() }()
		_, err := c.Get(ctx, shardstore.KindShard, id)
		if !errors.Is(err, context.Canceled) || !errors.Is(err, ErrUnavailable) {
			t.Fatalf("%v, want the last failure and context.Canceled", err)
		}
		if n := s.requests.Load(); n != 1 {
			t.Errorf("%d requests, want 1", n)
		}
	})
	t.Run("cancelled before", func(t *testing.T) {
		s.requests.Store(0)
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if err := c.Put(ctx, shardstore.KindShard, id, obj); !errors.Is(err, context.Canceled) {
			t.Fatalf("%v, want context.Canceled", err)
		}
		if n := s.requests.Load(); n != 0 {
			t.Errorf("%d requests with a cancelled context", n)
		}
	})
}

func TestClientList(t *testing.T) {
	a, b := shardstore.Sum([]byte("a")), shardstore.Sum([]byte("b"))
	var body atomic.Value
	s := newHostServer(t, func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte(body.Load().(string)))
	}, nil)
	c := s.client(t)
	ctx := testCtx(t)
	list := func() (map[shardstore.ID]int64, error) {
		got := map[shardstore.ID]int64{}
		err := c.List(ctx, shardstore.KindEnvelope, func(id shardstore.ID, n int64) error {
			got[id] = n
			return nil
		})
		return got, err
	}

	for name, in := range map[string]string{
		"two lines":        fmt.Sprintf("%s 1\n%s 0\n", a, b),
		"no final newline": fmt.Sprintf("%s 1\n%s 0", a, b),
		"crlf":             fmt.Sprintf("%s 1\r\n%s 0\r\n", a, b),
	} {
		body.Store(in)
		got, err := list()
		if err != nil || len(got) != 2 || got[a] != 1 || got[b] != 0 {
			t.Errorf("%s: %v, %v", name, got, err)
		}
	}
	body.Store("")
	if got, err := list(); err != nil || len(got) != 0 {
		t.Errorf("empty listing: %v, %v", got, err)
	}

	good := fmt.Sprintf("%s 1\n", a)
	for name, line := range map[string]string{
		"no size":         a.String(),
		"empty size":      a.String() + " ",
		"two spaces":      a.String() + "  1",
		"tab":             a.String() + "\t1",
		"extra field":     a.String() + " 1 2",
		"negative size":   a.String() + " -1",
		"size not number": a.String() + " one",
		"size overflows":  a.String() + " 9223372036854775808",
		"hex size":        a.String() + " 0x10",
		"short id":        a.String()[:63] + " 1",
		"long id":         a.String() + "0 1",
		"upper-case id":   strings.ToUpper(a.String()) + " 1",
		"not an id":       strings.Repeat("z", 64) + " 1",
		"empty line":      "",
		"leading space":   " " + a.String() + " 1",
		"html":            "<html><body>sign in</body></html>",
	} {
		body.Store(good + line + "\n" + fmt.Sprintf("%s 2\n", b))
		got, err := list()
		if err == nil {
			t.Errorf("%s: accepted: %v", name, got)
			continue
		}
		if _, ok := got[b]; ok || got[a] != 1 {
			t.Errorf("%s: fn saw %v; want the lines before the bad one only", name, got)
		}
		if strings.Contains(err.Error(), "\n") {
			t.Errorf("%s: error has the host's newline: %q", name, err)
		}
	}

	// A line too long to be a listing line ends the listing with an error,
	// not silently.
	body.Store(good + strings.Repeat("a", 100<<10) + "\n" + fmt.Sprintf("%s 2\n", b))
	if got, err := list(); err == nil {
		t.Errorf("listing with a 100 KiB line: no error, saw %d of its objects", len(got))
	}

	// fn's error stops the walk and comes back as is.
	stop := errors.New("stop")
	body.Store(fmt.Sprintf("%s 1\n%s 2\n", a, b))
	calls := 0
	err := c.List(ctx, shardstore.KindShard, func(shardstore.ID, int64) error { calls++; return stop })
	if err != stop || calls != 1 {
		t.Fatalf("List = %v after %d calls, want fn's error after 1", err, calls)
	}
	// A cancelled context stops the walk between lines.
	cctx, cancel := context.WithCancel(ctx)
	calls = 0
	err = c.List(cctx, shardstore.KindShard, func(shardstore.ID, int64) error { calls++; cancel(); return nil })
	if !errors.Is(err, context.Canceled) || calls != 1 {
		t.Fatalf("List = %v after %d calls, want context.Canceled after 1", err, calls)
	}
}

// Requests the client can refuse by itself never reach the host.
func TestClientChecksBeforeSending(t *testing.T) {
	s := newHostServer(t, func(w http.ResponseWriter, r *http.Request) {}, nil)
	c := s.client(t)
	ctx := testCtx(t)
	obj := []byte("object")
	id := shardstore.Sum(obj)
	if err := c.Put(ctx, shardstore.KindShard, id, []byte("other bytes")); !errors.Is(err, shardstore.ErrMismatch) {
		t.Errorf("Put of bytes that are not id: %v, want ErrMismatch", err)
	}
	if err := c.Put(ctx, shardstore.KindShard, shardstore.ID{}, obj); !errors.Is(err, shardstore.ErrMismatch) {
		t.Errorf("Put under the zero id: %v, want ErrMismatch", err)
	}
	if err := c.Put(ctx, shardstore.KindShard, shardstore.Sum(nil), obj[:0]); err != nil {
		// The empty object is an object; the handler answers 200.
		t.Errorf("Put of the empty object: %v", err)
	}
	for _, k := range []shardstore.Kind{"", "tmp", "../shards", "shards/"} {
		if err := c.Put(ctx, k, id, obj); !errors.Is(err, shardstore.ErrInvalidKind) {
			t.Errorf("Put kind %q: %v", k, err)
		}
		if _, err := c.Get(ctx, k, id); !errors.Is(err, shardstore.ErrInvalidKind) {
			t.Errorf("Get kind %q: %v", k, err)
		}
		if _, err := c.Stat(ctx, k, id); !errors.Is(err, shardstore.ErrInvalidKind) {
			t.Errorf("Stat kind %q: %v", k, err)
		}
		if err := c.List(ctx, k, func(shardstore.ID, int64) error { return nil }); !errors.Is(err, shardstore.ErrInvalidKind) {
			t.Errorf("List kind %q: %v", k, err)
		}
	}
	if n := s.requests.Load(); n != 1 {
		t.Fatalf("host saw %d requests; want only the empty object's", n)
	}
}

// A server whose key is not the pinned one gets no request: the client
// refuses it in the handshake, and does not retry.
func TestClientPin(t *testing.T) {
	s := newHostServer(t, func(w http.ResponseWriter, r *http.Request) {}, nil)
	a := agentFor(t)
	for name, pin := range map[string]string{
		"another key":   "sha256:" + strings.Repeat("ab", 32),
		"malformed pin": "sha256:AB",
		"empty pin":     "",
	} {
		d := *s.desc
		d.TLS = pin
		c := NewClient(&d, a.guest, a.cert)
		c.Backoff = time.Millisecond
		s.conns.Store(0)
		_, err := c.Get(testCtx(t), shardstore.KindShard, shardstore.Sum(nil))
		c.Close()
		if err == nil {
			t.Errorf("%s: no error", name)
			continue
		}
		// A malformed pin cannot come from a validated descriptor; only a
		// well-formed wrong one is checked for the sentinel and retries.
		if name != "another key" {
			continue
		}
		if !errors.Is(err, ErrRefused) {
			t.Errorf("%s: %v, want ErrRefused", name, err)
		}
		if n := s.conns.Load(); n != 1 {
			t.Errorf("%s: %d connections, want 1 (a pin mismatch is not retried)", name, n)
		}
	}
	if n := s.requests.Load(); n != 0 {
		t.Fatalf("%d requests reached a host that did not match the pin", n)
	}
	// The right pin works.
	if _, err := s.client(t).Get(testCtx(t), shardstore.KindShard, shardstore.Sum(nil)); err != nil {
		t.Fatal(err)
	}
}

// A host that refuses the client's certificate in the handshake (an
// unserved guest, an expired credential) is ErrRefused, not retried.
func TestClientCredentialRefused(t *testing.T) {
	s := newHostServer(t, func(w http.ResponseWriter, r *http.Request) {}, func(c *tls.Config) {
		c.VerifyConnection = func(tls.ConnectionState) error { return errors.New("guest not served here") }
	})
	c := s.client(t)
	_, err := c.Get(testCtx(t), shardstore.KindShard, shardstore.Sum(nil))
	if !errors.Is(err, ErrRefused) {
		t.Fatalf("%v, want ErrRefused", err)
	}
	if n := s.requests.Load(); n != 0 {
		t.Errorf("%d requests reached the handler", n)
	}
	if n := s.conns.Load(); n != 1 {
		t.Errorf("%d connections, want 1 (a refusal is not retried)", n)
	}
	// A Put races its request body against the host's alert unless the
	// client waits for the host to accept the certificate: without
	// confirmedDialer, some of these failed as "broken pipe" or "use of
	// closed network connection", an unreachable host.
	data := bytes.Repeat([]byte("registry shard "), 4<<10)
	for i := range 100 {
		err := c.Put(testCtx(t), shardstore.KindShard, shardstore.Sum(data), data)
		if !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), "bad certificate") {
			t.Fatalf("put %d: %v, want the host's bad_certificate alert as ErrRefused", i, err)
		}
	}
}

// A host that completes the handshake but never confirms the certificate
// (it sends no session ticket) fails the request within the dialer's
// timeout, as a host that did not answer; one that sends data before any
// request is refused.
func TestClientUnconfirmedHost(t *testing.T) {
	s := newHostServer(t, func(w http.ResponseWriter, r *http.Request) {}, func(c *tls.Config) {
		c.SessionTicketsDisabled = true
	})
	c := s.client(t)
	c.dial.timeout = 200 * time.Millisecond
	start := time.Now()
	_, err := c.Get(testCtx(t), shardstore.KindShard, shardstore.Sum(nil))
	if !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), ErrNotConfirmed.Error()) {
		t.Fatalf("%v, want ErrUnavailable: %v", err, ErrNotConfirmed)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("took %v", d)
	}
	if n := s.requests.Load(); n != 0 {
		t.Errorf("%d requests reached the handler", n)
	}

	cert, _, _, err := access.NewServerCertificate("lu-1", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{
		MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{cert},
		ClientAuth: tls.RequestClientCert, SessionTicketsDisabled: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			conn.Write([]byte("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"))
			defer conn.Close()
		}
	}()
	leaf, _ := x509.ParseCertificate(cert.Certificate[0])
	d := *s.desc
	d.URL = "https://" + ln.Addr().String()
	d.TLS = access.SPKIFingerprint(leaf)
	a := agentFor(t)
	pc := NewClient(&d, a.guest, a.cert)
	pc.Cooldown = 0
	pc.Backoff = time.Millisecond
	defer pc.Close()
	if _, err := pc.Get(testCtx(t), shardstore.KindShard, shardstore.Sum(nil)); err == nil || !strings.Contains(err.Error(), "sent data before any request") {
		t.Fatalf("host speaking first: %v", err)
	}
}

// No host listening: ErrUnavailable after the retries.
func TestClientUnreachable(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var accepted atomic.Int64
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			accepted.Add(1)
			// Not TLS: hang up at once.
			bufio.NewReader(conn).Peek(1)
			conn.Close()
		}
	}()
	d := newDescriptor(t, "lu-1")
	d.URL = "https://" + ln.Addr().String()
	a := agentFor(t)
	c := NewClient(d, a.guest, a.cert)
	c.Backoff = time.Millisecond
	c.Cooldown = 0
	defer c.Close()
	if _, err := c.Get(testCtx(t), shardstore.KindShard, shardstore.Sum(nil)); !errors.Is(err, ErrUnavailable) {
		t.Errorf("host hanging up: %v, want ErrUnavailable", err)
	}
	if n := accepted.Load(); n != int64(c.Retries)+1 {
		t.Errorf("%d connections, want %d", n, c.Retries+1)
	}
	ln.Close()
	if _, err := c.Get(testCtx(t), shardstore.KindShard, shardstore.Sum(nil)); !errors.Is(err, ErrUnavailable) {
		t.Errorf("nothing listening: %v, want ErrUnavailable", err)
	}
}

// After a request fails for want of the host, requests fail fast for
// Cooldown without reaching it; other failures do not count.
func TestClientCooldown(t *testing.T) {
	var code atomic.Int64
	var stall atomic.Bool
	s := newHostServer(t, func(w http.ResponseWriter, r *http.Request) {
		if stall.Load() {
			time.Sleep(500 * time.Millisecond)
		}
		w.WriteHeader(int(code.Load()))
	}, nil)
	c := s.client(t)
	c.Retries = 1
	c.Timeout = 150 * time.Millisecond
	c.Cooldown = 200 * time.Millisecond
	ctx := testCtx(t)
	get := func() error { _, err := c.Get(ctx, shardstore.KindShard, shardstore.Sum(nil)); return err }

	code.Store(http.StatusNotFound)
	for range 3 {
		if err := get(); !errors.Is(err, shardstore.ErrNotFound) {
			t.Fatalf("%v, want ErrNotFound", err)
		}
	}
	if n := s.requests.Swap(0); n != 3 {
		t.Fatalf("%d requests for three 404s", n)
	}

	code.Store(http.StatusServiceUnavailable)
	if err := get(); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("%v, want ErrUnavailable", err)
	}
	if n := s.requests.Swap(0); n != 2 {
		t.Fatalf("%d requests, want 2", n)
	}
	// An HTTP answer, even a 5xx, starts no cooldown.
	code.Store(http.StatusOK)
	if err := get(); err != nil {
		t.Fatalf("after a 503: %v", err)
	}
	s.requests.Swap(0)
	// A host that does not answer in time does.
	stall.Store(true)
	if err := get(); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("stalled host: %v, want ErrUnavailable", err)
	}
	stall.Store(false)
	s.requests.Swap(0)
	if err := get(); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("during the cooldown: %v, want ErrUnavailable", err)
	}
	if n := s.requests.Load(); n != 0 {
		t.Fatalf("%d requests during the cooldown", n)
	}
	time.Sleep(c.Cooldown + 50*time.Millisecond)
	if err := get(); err != nil {
		t.Fatalf("after the cooldown: %v", err)
	}
	if n := s.requests.Swap(0); n != 1 {
		t.Fatalf("%d requests after the cooldown, want 1", n)
	}

	// A cancelled request says nothing about the host.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := c.Get(cctx, shardstore.KindShard, shardstore.Sum(nil)); !errors.Is(err, context.Canceled) {
		t.Fatalf("%v, want context.Canceled", err)
	}
	if err := get(); err != nil {
		t.Fatalf("after a cancelled request: %v", err)
	}
}

// lateAnswer delivers the host's answer only once the request's context has
// ended: what an HTTP/1.1 transport can hand back when a host writes an
// answer as the abandoned connection goes.
// answered, if set, hears of each answer as it is held back.
type lateAnswer struct {
	http.RoundTripper
	answered chan struct{}
}

func (l lateAnswer) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := l.RoundTripper.RoundTrip(req)
	if err == nil {
		select {
		case l.answered <- struct{}{}:
		default:
		}
		<-req.Context().Done()
	}
	return resp, err
}

// An answer that arrives after the client gave up on the request is not a
// result: a 200 to an abandoned Put must not read as "stored", nor an empty
// 200 to an abandoned Get as corrupt data.
func TestClientAnswerAfterAbandon(t *testing.T) {
	obj := []byte("object")
	id := shardstore.Sum(obj)
	s := newHostServer(t, func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet {
			w.Write(obj) // a good answer, but late
		}
		// PUT, HEAD: the implicit 200 of a handler that returned on cancel.
	}, nil)
	c := s.client(t)
	answered := make(chan struct{}, 1)
	c.hc.Transport = lateAnswer{c.hc.Transport, answered}
	c.Retries = 2
	ops := map[string]func(context.Context) error{
		"get":  func(ctx context.Context) error { _, err := c.Get(ctx, shardstore.KindShard, id); return err },
		"put":  func(ctx context.Context) error { return c.Put(ctx, shardstore.KindShard, id, obj) },
		"stat": func(ctx context.Context) error { _, err := c.Stat(ctx, shardstore.KindShard, id); return err },
	}
	for name, op := range ops {
		t.Run(name+" cancelled", func(t *testing.T) {
			s.requests.Store(0)
			for len(answered) > 0 {
				<-answered
			}
			ctx, cancel := context.WithCancel(testCtx(t))
			defer cancel()
			go func() { // cancel once the answer is in hand
				select {
				case <-answered:
					cancel()
				case <-ctx.Done():
				}
			}()
			err := op(ctx)
			if !errors.Is(err, context.Canceled) || !errors.Is(err, ErrUnavailable) {
				t.Fatalf("%v, want ErrUnavailable and context.Canceled", err)
			}
			if n := s.requests.Load(); n != 1 {
				t.Errorf("%d requests, want 1", n)
			}
		})
		t.Run(name+" timed out", func(t *testing.T) {
			s.requests.Store(0)
			c.Timeout = 300 * time.Millisecond
			defer func() { c.Timeout = 5 * time.Second }()
			for len(answered) > 0 {
				<-answered
			}
			err := op(testCtx(t))
			if !errors.Is(err, ErrUnavailable) {
				t.Fatalf("%v, want ErrUnavailable", err)
			}
			// A timeout is not retried (TestClientStalledHost). On a
			// loaded machine the watchdog may fire before the request
			// reaches the host; the answer must still not count.
			if n := s.requests.Load(); n > 1 {
				t.Errorf("%d requests, want at most 1", n)
			}
		})
	}
}
