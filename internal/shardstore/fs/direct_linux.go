package fs

import (
	"errors"
	"os"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"
)

// directAlign is the alignment O_DIRECT needs of memory, file offsets and
// lengths: 4 KiB covers devices of 512- and 4096-byte logical blocks.
const directAlign = 4096

// directMin is the smallest object written with O_DIRECT: below it the
// copy into the page cache costs less than a synchronous device write.
const directMin = 1 << 20

// directWrites counts objects written with O_DIRECT (for tests).
var directWrites atomic.Int64

// writeDirect writes data to the empty file f, its 4 KiB-aligned prefix
// with O_DIRECT (straight from data to the device, no copy into the page
// cache: shards are written once and not read back soon) and the rest
// normally. It reports false, having written nothing, when O_DIRECT cannot
// be used: data not aligned in memory, too short, or a file system without
// O_DIRECT. The caller still fsyncs.
func writeDirect(f tempFile, data []byte) (bool, error) {
	of, ok := f.(*os.File)
	n := len(data) &^ (directAlign - 1)
	if !ok || len(data) < directMin || uintptr(unsafe.Pointer(unsafe.SliceData(data)))%directAlign != 0 {
		return false, nil
	}
	rc, err := of.SyscallConn()
	if err != nil {
		return false, nil
	}
	setDirect := func(on bool) (err error) {
		cerr := rc.Control(func(fd uintptr) {
			var fl int
			if fl, err = unix.FcntlInt(fd, unix.F_GETFL, 0); err != nil {
				return
			}
			if on {
				fl |= unix.O_DIRECT
			} else {
				fl &^= unix.O_DIRECT
			}
			_, err = unix.FcntlInt(fd, unix.F_SETFL, fl)
		})
		return errors.Join(cerr, err)
	}
	if setDirect(true) != nil {
		return false, nil // e.g. tmpfs before Linux 6.6
	}
	w, err := of.Write(data[:n])
	if err != nil {
		_ = setDirect(false)
		if w == 0 && errors.Is(err, unix.EINVAL) {
			return false, nil // O_DIRECT accepted by fcntl, refused by the file system
		}
		return true, err
	}
	if err := setDirect(false); err != nil {
		return true, err
	}
	directWrites.Add(1)
	if n < len(data) {
		if _, err := of.Write(data[n:]); err != nil {
			return true, err
		}
	}
	return true, nil
}
