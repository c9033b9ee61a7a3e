package transport

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/embassy-project/embassy/internal/shardstore"
)

// Retention headers (docs/spec/host-api.md).
const (
	// RetainUntilHeader carries an RFC 3339 time: on a PUT or a retain
	// request, until when the guest asks the host to keep the object
	// (immutable in compliance mode where the store supports it); on a HEAD
	// answer, until when the store will keep it.
	RetainUntilHeader = "Embassy-Retain-Until"
	// RetentionHeader answers "enforced" when the host's store enforces
	// retention (S3 Object Lock in compliance mode) and "none" otherwise.
	RetentionHeader = "Embassy-Retention"
)

// ErrNoRetention means the host's store does not enforce retention.
var ErrNoRetention = errors.New("the host's store does not enforce retention")

// RetainUntil rounds now+d up to the next UTC midnight: the retain-until a
// guest sends with writes made at now for a retention of d. Rounding makes
// every write of one day ask for the same time, so extending reused objects
// costs at most one change per object per day.
func RetainUntil(now time.Time, d time.Duration) time.Time {
	t := now.Add(d).UTC()
	day := time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, time.UTC)
	if day.Before(t) {
		day = day.AddDate(0, 0, 1)
	}
	return day
}

// Object names one object on a host.
type Object struct {
	Kind shardstore.Kind
	ID   shardstore.ID
}

// Retain asks the host to keep objects until at least until (extending,
// never shortening). It returns ErrNoRetention (after checking the objects
// exist) when the host's store does not enforce retention, and an error
// wrapping shardstore.ErrNotFound naming the objects the host does not
// have.
func (c *Client) Retain(ctx context.Context, objs []Object, until time.Time) error {
	if len(objs) == 0 {
		return nil
	}
	var b strings.Builder
	for _, o := range objs {
		fmt.Fprintf(&b, "%s %s\n", o.Kind, o.ID)
	}
	u := fmt.Sprintf("%s/v1/guests/%s/retain", c.d.BaseURL(), c.guest)
	var enforced string
	err := c.retry(ctx, func(ctx context.Context, wd *watchdog) (bool, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, strings.NewReader(b.String()))
		if err != nil {
			return false, err
		}
		req.Header.Set(RetainUntilHeader, until.UTC().Format(time.RFC3339))
		resp, err := c.send(req)
		if err != nil {
			return transportError(err)
		}
		defer resp.Body.Close()
		enforced = resp.Header.Get(RetentionHeader)
		if resp.StatusCode != http.StatusOK {
			msg := make([]byte, 4096)
			n, _ := resp.Body.Read(msg)
			return statusError(resp.StatusCode, msg[:n])
		}
		return false, nil
	}, int64(b.Len()))
	if err != nil {
		return fmt.Errorf("extend retention of %d objects on %s: %w", len(objs), c.d.Name, err)
	}
	if enforced != "enforced" {
		return fmt.Errorf("%s: %w", c.d.Name, ErrNoRetention)
	}
	return nil
}

// RetainUntilOf returns until when the host's store keeps an object, or
// ErrNoRetention if it does not enforce retention.
func (c *Client) RetainUntilOf(ctx context.Context, kind shardstore.Kind, id shardstore.ID) (time.Time, error) {
	resp, err := c.head(ctx, kind, id)
	var until time.Time
	switch {
	case err != nil:
	case resp.Header.Get(RetentionHeader) != "enforced":
		err = ErrNoRetention
	default:
		if until, err = time.Parse(time.RFC3339, resp.Header.Get(RetainUntilHeader)); err != nil {
			err = fmt.Errorf("host sent a malformed %s", RetainUntilHeader)
		}
	}
	if err != nil {
		return time.Time{}, fmt.Errorf("retention of %s %s on %s: %w", kind, id, c.d.Name, err)
	}
	return until, nil
}
