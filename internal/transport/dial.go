package transport

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"
)

// ErrNotConfirmed means a host completed the TLS handshake but neither
// accepted nor refused the client's certificate in time.
var ErrNotConfirmed = errors.New("host did not confirm the TLS credential")

// confirmedDialer opens connections to a host on which the host has already
// accepted the client's certificate.
//
// In TLS 1.3 the client finishes its side of the handshake before the server
// has judged the client's certificate: a host that refuses it sends a
// bad_certificate alert and closes, and a client that already writes its
// request then sees "broken pipe" or "use of closed network connection"
// instead of the refusal, depending on which goroutine of net/http meets the
// closed connection first. The host sends its NewSessionTicket only after it
// has accepted the certificate (crypto/tls sends tickets after the client's
// Certificate and Finished when it requests one), so the dialer waits for that
// ticket, or for the alert, before it hands the connection to net/http. The
// ticket is only a signal: it is never stored, and no session is resumed.
type confirmedDialer struct {
	config  *tls.Config // Clone'd per connection
	dialer  *net.Dialer
	timeout time.Duration // bounds the handshake and the confirmation
}

// DialTLSContext is http.Transport's DialTLSContext.
func (d *confirmedDialer) DialTLSContext(ctx context.Context, network, addr string) (net.Conn, error) {
	raw, err := d.dialer.DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	conn, err := d.confirm(ctx, raw, addr)
	if err != nil {
		raw.Close()
		return nil, err
	}
	return conn, nil
}

func (d *confirmedDialer) confirm(ctx context.Context, raw net.Conn, addr string) (*tls.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, d.timeout)
	defer cancel()
	cfg := d.config.Clone()
	if cfg.ServerName == "" {
		if host, _, err := net.SplitHostPort(addr); err == nil {
			cfg.ServerName = host
		}
	}
	sig := &ticketSignal{raw: raw, got: make(chan struct{})}
	cfg.ClientSessionCache = sig
	tc := tls.Client(raw, cfg)
	if err := tc.HandshakeContext(ctx); err != nil {
		return nil, err
	}
	// Read until the ticket arrives (ticketSignal.Put then ends the read by
	// moving the deadline to now), the host's alert or close arrives, or
	// ctx ends.
	deadline, _ := ctx.Deadline()
	if err := raw.SetReadDeadline(deadline); err != nil {
		return nil, err
	}
	stop := context.AfterFunc(ctx, func() { raw.SetReadDeadline(time.Now()) })
	var b [1]byte
	n, err := tc.Read(b[:])
	if !stop() {
		// ctx ended, and its deadline may still be set after the reset
		// below: the connection is not handed on.
		return nil, fmt.Errorf("%w within %v: %w", ErrNotConfirmed, d.timeout, context.Cause(ctx))
	}
	if n > 0 {
		return nil, fmt.Errorf("tls: host sent data before any request")
	}
	select {
	case <-sig.got:
	default:
		if err != nil && ctx.Err() == nil && !isTimeout(err) {
			return nil, err // the host's alert, or its close
		}
		return nil, fmt.Errorf("%w within %v: %w", ErrNotConfirmed, d.timeout, context.Cause(ctx))
	}
	if err := raw.SetReadDeadline(time.Time{}); err != nil {
		return nil, err
	}
	return tc, nil
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// ticketSignal is a tls.ClientSessionCache that keeps nothing: the first
// ticket it is given marks the connection confirmed and ends the pending
// read.
type ticketSignal struct {
	raw  net.Conn
	once sync.Once
	got  chan struct{}
}

func (s *ticketSignal) Get(string) (*tls.ClientSessionState, bool) { return nil, false }

func (s *ticketSignal) Put(_ string, cs *tls.ClientSessionState) {
	if cs == nil {
		return
	}
	s.once.Do(func() {
		close(s.got)
		s.raw.SetReadDeadline(time.Now())
	})
}
