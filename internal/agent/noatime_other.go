//go:build !linux

package agent

// oNoAtime is 0 where open has no O_NOATIME: reading then updates the
// access time, as the mount's atime options say.
const oNoAtime = 0
