package agent

import "golang.org/x/sys/unix"

// oNoAtime opens a file without updating its access time.
const oNoAtime = unix.O_NOATIME
