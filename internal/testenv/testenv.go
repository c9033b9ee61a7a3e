// Package testenv holds helpers for tests that depend on the machine: a skip
// that becomes a failure in CI, so an expected skip never hides a missing
// install step (restic's RESTIC_TEST_DISALLOW_SKIP).
package testenv

import (
	"os"
	"testing"
)

// SkipOrFail skips the test with the reason, or fails it when
// EMBASSY_DISALLOW_SKIP or CI is set.
func SkipOrFail(t testing.TB, format string, args ...any) {
	t.Helper()
	if os.Getenv("EMBASSY_DISALLOW_SKIP") != "" || os.Getenv("CI") != "" {
		t.Fatalf("skip disallowed in CI: "+format, args...)
	}
	t.Skipf(format, args...)
}
