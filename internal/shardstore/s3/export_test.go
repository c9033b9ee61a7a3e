package s3store

import "time"

// SetMaxBackoff shortens the retry delay of stores opened afterwards, so
// tests can exhaust the retries quickly; it returns the restore function.
func SetMaxBackoff(d time.Duration) (restore func()) {
	old := maxBackoff
	maxBackoff = d
	return func() { maxBackoff = old }
}
