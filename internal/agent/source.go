package agent

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"golang.org/x/sys/unix"
)

// This file is how a backup reads the source tree: one lstat per entry
// relative to the open directory, and regular files read through their bare
// descriptors. *os.File costs an allocation, a finalizer, a failed epoll
// registration and locking on every read; for a registry of many small files
// that was a third of the CPU the reading itself takes.

// fileStat is what the walker keeps of an lstat.
type fileStat struct {
	mode     fs.FileMode
	size     int64
	mtime    int64 // ns since the epoch
	ctime    int64 // ns since the epoch
	ino      uint64
	dev      uint64
	uid, gid uint32
}

func statOf(st *unix.Stat_t) fileStat {
	m := fs.FileMode(st.Mode & 0o777)
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFBLK:
		m |= fs.ModeDevice
	case unix.S_IFCHR:
		m |= fs.ModeDevice | fs.ModeCharDevice
	case unix.S_IFDIR:
		m |= fs.ModeDir
	case unix.S_IFIFO:
		m |= fs.ModeNamedPipe
	case unix.S_IFLNK:
		m |= fs.ModeSymlink
	case unix.S_IFSOCK:
		m |= fs.ModeSocket
	}
	if st.Mode&unix.S_ISUID != 0 {
		m |= fs.ModeSetuid
	}
	if st.Mode&unix.S_ISGID != 0 {
		m |= fs.ModeSetgid
	}
	if st.Mode&unix.S_ISVTX != 0 {
		m |= fs.ModeSticky
	}
	return fileStat{
		mode:  m,
		size:  st.Size,
		mtime: st.Mtim.Sec*1e9 + st.Mtim.Nsec,
		ctime: st.Ctim.Sec*1e9 + st.Ctim.Nsec,
		ino:   st.Ino,
		dev:   uint64(st.Dev),
		uid:   st.Uid,
		gid:   st.Gid,
	}
}

// lstat stats path without following a final symlink.
func lstat(path string) (fileStat, error) {
	var st unix.Stat_t
	err := unix.Lstat(path, &st)
	for err == unix.EINTR {
		err = unix.Lstat(path, &st)
	}
	if err != nil {
		return fileStat{}, &fs.PathError{Op: "lstat", Path: path, Err: err}
	}
	return statOf(&st), nil
}

// sourceDir is a directory being listed: its entries in name order, and the
// open directory to stat them relative to (one path component to look up
// instead of the whole path).
type sourceDir struct {
	path string
	f    *os.File
	fd   int
	ents []os.DirEntry
	// drop is whether the directory's file system keeps its files' pages
	// where cachestat sees them (dropOK); dev is its device.
	drop bool
	dev  uint64
}

// readDir lists an open directory (a variable for tests).
var readDir = func(d *os.File) ([]os.DirEntry, error) { return d.ReadDir(-1) }

func openDir(path string) (*sourceDir, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	ents, err := readDir(f)
	if err != nil {
		f.Close()
		return nil, err
	}
	slices.SortFunc(ents, func(a, b os.DirEntry) int { return strings.Compare(a.Name(), b.Name()) })
	d := &sourceDir{path: path, f: f, fd: int(f.Fd()), ents: ents}
	var st unix.Stat_t
	if err := unix.Fstat(d.fd, &st); err == nil {
		d.drop, d.dev = dropOK(d.fd), uint64(st.Dev)
	}
	return d, nil
}

// lstat stats one entry of the directory by name.
func (d *sourceDir) lstat(name string) (fileStat, error) {
	var st unix.Stat_t
	err := unix.Fstatat(d.fd, name, &st, unix.AT_SYMLINK_NOFOLLOW)
	for err == unix.EINTR {
		err = unix.Fstatat(d.fd, name, &st, unix.AT_SYMLINK_NOFOLLOW)
	}
	if err != nil {
		return fileStat{}, &fs.PathError{Op: "lstat", Path: filepath.Join(d.path, name), Err: err}
	}
	return statOf(&st), nil
}

// sourceEntry is a listed entry and its lstat. An entry listed as a regular
// file that the walker is to open (sourceDir.statAll's open) has no lstat yet:
// open is set and st says only that it is regular, until openEntry.
type sourceEntry struct {
	name string
	st   fileStat
	open bool
}

// statAll stats every entry, in name order, leaving out those removed since
// the listing. Those listed as regular files for which open(name) is true
// are not stated: the walker opens them (openEntry) and stats them through
// the descriptor, one system call fewer a file.
func (d *sourceDir) statAll(open func(name string) bool) ([]sourceEntry, error) {
	out := make([]sourceEntry, 0, len(d.ents))
	for _, e := range d.ents {
		if e.Type().IsRegular() && open(e.Name()) {
			out = append(out, sourceEntry{name: e.Name(), open: true})
			continue
		}
		st, err := d.lstat(e.Name())
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("stat %s: %w", joinPath(d.path, e.Name()), err)
		}
		out = append(out, sourceEntry{name: e.Name(), st: st})
	}
	return out, nil
}

// openEntry opens the entry name, listed as a regular file, for reading as
// openRegular does (without blocking, following a symlink or updating its
// access time), relative to the open directory, and stats it through the
// descriptor. An entry that is no longer a regular file by then is closed
// again and its stat returned with a nil file, so that the walker takes it
// for what it is now, as if it had changed before the listing. One that
// cannot be opened (gone, now a symlink, unreadable, or out of descriptors)
// is lstat-ed instead, also with a nil file: a reader opens a regular one
// later by its path, and fails on it as it would have; a gone one gives
// lstat's fs.ErrNotExist.
func (d *sourceDir) openEntry(name string) (*sourceFile, fileStat, error) {
	fd, err := openSource(d.fd, name)
	if err != nil {
		st, err := d.lstat(name)
		return nil, st, err
	}
	path := joinPath(d.path, name)
	s, err := fstatSource(fd, path)
	if err != nil {
		return nil, fileStat{}, err
	}
	st := statOf(&s)
	if !st.mode.IsRegular() {
		unix.Close(fd)
		return nil, st, nil
	}
	return &sourceFile{fd: fd, path: path, size: s.Size, uid: s.Uid}, st, nil
}

// joinPath is filepath.Join(dir, name) for a clean dir and a name from a
// directory listing (no separator, not "." or ".."), without Join's
// cleaning pass: the walker makes one per entry.
func joinPath(dir, name string) string {
	if strings.HasSuffix(dir, string(filepath.Separator)) {
		return dir + name
	}
	return dir + string(filepath.Separator) + name
}

func (d *sourceDir) Close() error { return d.f.Close() }

// openFile opens a regular file for reading; tests replace it to inject faults.
var openFile = openRegular

// openOnListing is whether the walker opens the regular files it lists
// (sourceDir.openEntry) instead of stating them for a reader to open
// through openFile; tests that replace openFile turn it off.
var openOnListing = true

// openRegular opens path for reading and makes sure it is still a regular
// file:
//   - without blocking, so that one replaced by a FIFO between the listing and
//     the open cannot hang the backup;
//   - without following a symlink, so that one replaced by a link is not read
//     through it (the backup would store another file's content under its
//     name);
//   - without updating its access time where the caller may ask that (the
//     file's owner, or root): a backup does not change what it backs up.
func openRegular(path string) (io.ReadCloser, error) {
	fd, err := openSource(unix.AT_FDCWD, path)
	if err == unix.ELOOP {
		return nil, fmt.Errorf("%s changed into a symlink while being backed up", path)
	}
	if err != nil {
		return nil, &fs.PathError{Op: "open", Path: path, Err: err}
	}
	st, err := fstatSource(fd, path)
	if err != nil {
		return nil, err
	}
	if t := statOf(&st).mode.Type(); t != 0 {
		unix.Close(fd)
		return nil, fmt.Errorf("%s changed into a %v while being backed up", path, t)
	}
	return &sourceFile{fd: fd, path: path, size: st.Size, uid: st.Uid}, nil
}

// sourceFile is an open regular file read through its descriptor.
type sourceFile struct {
	fd   int
	path string
	// With drop set (see dropBehind), the pages read are dropped from the
	// page cache: behind the reader every DropBehind bytes, and the rest
	// on Close; of a file that was partly cached at open, only the
	// DropBehind windows none of whose pages were (hot holds the others; nil
	// when the whole file was cold). read and dropped are byte offsets;
	// dropped is a multiple of DropBehind until Close.
	drop          bool
	hot           []uint64
	read, dropped int64
	size          int64  // at open
	uid           uint32 // the owner's, at open
}

// DropBehind is how far a backup reads into a file it brought into the
// page cache before it drops what it has read.
const DropBehind = 8 << 20

// Read rounds down to a multiple of DropBehind: a power of two, and at
// least 64 KiB, a multiple of any page size (compile-time checks).
var _ [DropBehind & (DropBehind - 1)]struct{} = [0]struct{}{}

const _ uint = DropBehind - 64<<10

// pageSize rounds the end of the range dropped at Close up to a page: the
// kernel keeps a partial last page unless the range ends at the file's end.
var pageSize = int64(os.Getpagesize())

// dropBehind makes f drop from the page cache, once read, the pages it
// brings in: a backup reads a file once, and its pages would otherwise push
// out what the machine's own work keeps cached. Of a file none of whose
// pages were cached when it was opened, all of them; of a partly cached
// one, those of the DropBehind windows that held none, so that backing up a
// large database file whose hot part is cached does not fill the cache with
// the rest of it. Pages past the size at open are someone else's (an
// appender's). Nothing is dropped where the kernel cannot say what was
// cached (see cachedPages). Call it before the first read or read-ahead
// hint, and only for a file on a file system where cachestat sees the pages
// it reads (see dropOK).
func (f *sourceFile) dropBehind() {
	n, ok := cachedPages(f.fd, 0, 0, f.uid)
	if !ok || f.size == 0 {
		return
	}
	if n == 0 {
		f.drop = true
		return
	}
	windows := (f.size + DropBehind - 1) / DropBehind
	if windows == 1 {
		return
	}
	hot := make([]uint64, (windows+63)/64)
	cold := false
	for w := range windows {
		n, ok := cachedPages(f.fd, w*DropBehind, DropBehind, f.uid)
		if !ok {
			return
		}
		if n > 0 {
			hot[w/64] |= 1 << (w % 64)
		} else {
			cold = true
		}
	}
	f.drop, f.hot = cold, hot
}

// isHot reports whether the DropBehind window w is to be left in the page
// cache: past the file's size at open, or partly cached then.
func (f *sourceFile) isHot(w int64) bool {
	if w*DropBehind >= f.size {
		return true
	}
	return f.hot != nil && f.hot[w/64]&(1<<(w%64)) != 0
}

// dropTo drops the cold windows' pages from f.dropped up to end, in one
// call for each run of cold windows.
func (f *sourceFile) dropTo(end int64) {
	from := int64(-1) // start of the run of cold windows being gathered
	for f.dropped < end {
		next := min((f.dropped/DropBehind+1)*DropBehind, end)
		switch hot := f.isHot(f.dropped / DropBehind); {
		case !hot && from < 0:
			from = f.dropped
		case hot && from >= 0:
			dropPages(f.fd, from, f.dropped-from)
			from = -1
		}
		f.dropped = next
	}
	if from >= 0 {
		dropPages(f.fd, from, f.dropped-from)
	}
}

func (f *sourceFile) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	for {
		n, err := unix.Read(f.fd, p)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return 0, &fs.PathError{Op: "read", Path: f.path, Err: err}
		}
		if n == 0 {
			return 0, io.EOF
		}
		f.read += int64(n)
		if f.drop && f.read-f.dropped >= DropBehind {
			f.dropTo(f.read &^ (DropBehind - 1))
		}
		return n, nil
	}
}

func (f *sourceFile) Close() error {
	if f.fd < 0 {
		return fs.ErrClosed
	}
	if f.drop {
		// What was read and what read-ahead brought in, up to the size
		// at open (rounded up to a page, so that the last partial one
		// goes too), not to the end of a file someone is appending to:
		// those pages are theirs, and the kernel would start writing
		// them back.
		f.dropTo((f.size + pageSize - 1) &^ (pageSize - 1))
	}
	err := unix.Close(f.fd)
	f.fd = -1
	if err != nil {
		return &fs.PathError{Op: "close", Path: f.path, Err: err}
	}
	return nil
}

// openSource opens name, relative to the directory dirfd (or to the
// working directory with unix.AT_FDCWD), for reading as the walker and the
// readers open the files they back up (see openRegular).
func openSource(dirfd int, name string) (int, error) {
	const flags = unix.O_RDONLY | unix.O_NONBLOCK | unix.O_NOFOLLOW | unix.O_CLOEXEC
	fd, err := openatRetrying(dirfd, name, flags|oNoAtime)
	if err == unix.EPERM {
		// O_NOATIME is refused on others' files to those without CAP_FOWNER.
		fd, err = openatRetrying(dirfd, name, flags)
	}
	return fd, err
}

func openatRetrying(dirfd int, name string, flags int) (int, error) {
	for {
		fd, err := unix.Openat(dirfd, name, flags, 0)
		if err != unix.EINTR {
			return fd, err
		}
	}
}

// fstatSource stats the open file fd of path, closing it on failure.
func fstatSource(fd int, path string) (unix.Stat_t, error) {
	var st unix.Stat_t
	err := unix.Fstat(fd, &st)
	for err == unix.EINTR {
		err = unix.Fstat(fd, &st)
	}
	if err != nil {
		unix.Close(fd)
		return st, &fs.PathError{Op: "stat", Path: path, Err: err}
	}
	return st, nil
}

// batchSize is how many files a batch may hold open when holders of that
// many batches at once share the limit on open files with the rest of the
// process: at most ReadBatch, at least one.
func batchSize(holders int) int {
	var lim unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
		return 1
	}
	// Keep a quarter of the limit, and at least 256 descriptors, for the
	// rest: directories being listed, hosts' files and connections, the
	// cache.
	limit := uint64(lim.Cur) // int64 on some systems
	spare := max(limit/4, 256)
	if limit <= spare {
		return 1
	}
	return int(min(max((limit-spare)/uint64(holders), 1), ReadBatch))
}
