//go:build !unix

package testenv

// claimPort claims nothing where file locks are not available: the
// in-process registry and the listen check still apply.
func claimPort(int) bool { return true }
