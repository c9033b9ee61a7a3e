// Command readfloor measures how fast this machine can read a directory
// tree's files at all: the floor under any backup of it. It walks the tree
// as the backup does (-walkers directories listed at once; every entry
// listed as a regular file opened relative to its open directory and stated
// through its descriptor, every other entry lstat-ed relative to it) and
// reads every regular file to its end with -readers goroutines through bare
// descriptors, without updating access times, then prints the time and
// throughput as JSON. Files under
// 256 KiB are read as the backup reads them: a directory's in batches of up
// to -batch files (and 1 MiB), each batch opened and advised to the kernel
// (posix_fadvise WILLNEED) before its files are read, each with one read of
// its size and a byte more. With -drop
// (root only) it first syncs and drops the page cache, as bench/run.sh
// does before every timed step. With -drop-behind the readers drop what
// they read from the page cache as a backup of a cold tree does
// (posix_fadvise DONTNEED every 8 MiB of a file and at its end): where
// fresh page-cache pages are dear (a VM whose freed memory goes back to its
// host) that is the cheaper way to read, and the peer runner measures both.
//
//	go run ./bench/readfloor [-readers 16] [-walkers 4] [-batch 64] [-drop] [-drop-behind] DIR
//
// It does nothing with the bytes: no chunking, hashing, compression or
// writing. A backup of the same tree can only be slower.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

type result struct {
	Dir       string  `json:"dir"`
	Readers   int     `json:"readers"`
	Walkers   int     `json:"walkers"`
	Batch     int     `json:"batch"`
	Dropped   bool    `json:"cache_dropped"`
	Files     int64   `json:"files"`
	Bytes     int64   `json:"bytes"`
	Seconds   float64 `json:"seconds"`
	MBps      float64 `json:"mb_per_s"`
	UserCPU   float64 `json:"user_cpu_s"`
	SystemCPU float64 `json:"system_cpu_s"`
}

func main() {
	readers := flag.Int("readers", 16, "files read at once")
	walkers := flag.Int("walkers", 4, "directories listed at once")
	batch := flag.Int("batch", 64, "most small files read as one batch")
	drop := flag.Bool("drop", false, "sync and drop the page cache first (needs root)")
	flag.BoolVar(&dropBehind, "drop-behind", false, "drop each file's pages from the page cache as they are read, as the backup does with a cold cache")
	flag.Parse()
	if flag.NArg() != 1 || *readers < 1 || *walkers < 1 || *batch < 1 {
		fmt.Fprintln(os.Stderr, "usage: readfloor [-readers N] [-walkers N] [-batch N] [-drop] [-drop-behind] DIR (each N at least 1)")
		os.Exit(2)
	}
	dir := flag.Arg(0)
	if *drop {
		if err := exec.Command("sync").Run(); err != nil {
			fail(err)
		}
		if err := os.WriteFile("/proc/sys/vm/drop_caches", []byte("3\n"), 0o200); err != nil {
			fail(fmt.Errorf("drop the page cache: %w", err))
		}
	}
	// Blocked reads hold their P: as many Ps as readers. The backup, which
	// also needs the CPUs for its stages, uses two per CPU; reading alone is
	// a little faster with one per reader (3.1–3.2 s against 3.2–3.4 s with
	// 4 on the benchmark machine), and a floor takes the faster.
	runtime.GOMAXPROCS(max(runtime.GOMAXPROCS(0), *readers))
	start := time.Now()
	batches := make(chan []file, *readers)
	var files, bytes atomic.Int64
	var wg sync.WaitGroup
	var firstErr error
	var errOnce sync.Once
	for i := 0; i < *readers; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, 1<<20)
			var fds []int
			for b := range batches {
				var read int
				var n int64
				var err error
				fds, read, n, err = readBatch(b, buf, fds)
				if err != nil {
					errOnce.Do(func() { firstErr = err })
				}
				files.Add(int64(read))
				bytes.Add(n)
			}
		}()
	}
	// As in the backup, a batch's files are open while a walker gathers
	// them, while the batch waits for a reader and while a reader reads it.
	w := &walker{batches: batches, batch: fitBatch(*batch, *walkers+cap(batches)+*readers), slots: make(chan struct{}, max(*walkers, 1)-1)}
	w.dir(dir)
	w.wg.Wait()
	close(batches)
	wg.Wait()
	err := w.err
	if err == nil {
		err = firstErr
	}
	if err != nil {
		fail(err)
	}
	secs := time.Since(start).Seconds()
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	r := result{Dir: dir, Readers: *readers, Walkers: *walkers, Batch: w.batch, Dropped: *drop, Files: files.Load(), Bytes: bytes.Load(), Seconds: secs,
		MBps:    float64(bytes.Load()) / 1e6 / secs,
		UserCPU: float64(ru.Utime.Sec) + float64(ru.Utime.Usec)/1e6, SystemCPU: float64(ru.Stime.Sec) + float64(ru.Stime.Usec)/1e6}
	out, _ := json.MarshalIndent(r, "", "  ")
	fmt.Println(string(out))
}

// file is a regular file to read, its listed size, and its descriptor if
// the walker opened it (else -1).
type file struct {
	path string
	size int64
	fd   int
}

// walker lists directories as the backup's walkers do: a subdirectory gets
// a goroutine of its own while a slot is free, else the lister descends
// into it itself; a directory's small files go to the readers in batches
// before its subdirectories are listed.
type walker struct {
	batches chan<- []file
	batch   int
	slots   chan struct{}
	wg      sync.WaitGroup
	errOnce sync.Once
	err     error
}

func (w *walker) dir(p string) {
	d, err := os.Open(p)
	if err != nil {
		w.errOnce.Do(func() { w.err = err })
		return
	}
	ents, err := d.ReadDir(-1)
	if err != nil {
		d.Close()
		w.errOnce.Do(func() { w.err = err })
		return
	}
	slices.SortFunc(ents, func(a, b os.DirEntry) int { return strings.Compare(a.Name(), b.Name()) })
	dfd := int(d.Fd())
	sts := make([]unix.Stat_t, len(ents))
	stop := func(err error) {
		d.Close()
		w.errOnce.Do(func() { w.err = err })
	}
	// Entries listed as regular files are stated below, as they are
	// opened; the others now: the lstat a backup makes, relative to the
	// open directory.
	for i, e := range ents {
		if e.Type().IsRegular() {
			continue
		}
		if err := unix.Fstatat(dfd, e.Name(), &sts[i], unix.AT_SYMLINK_NOFOLLOW); err != nil {
			stop(fmt.Errorf("lstat %s: %w", filepath.Join(p, e.Name()), err))
			return
		}
	}
	var small []file
	var smallBytes int64
	for i, e := range ents {
		if !e.Type().IsRegular() {
			continue
		}
		// Opened as the backup's walker opens a file it lists, and
		// stated through the descriptor; lstat-ed if it cannot be.
		f := file{path: filepath.Join(p, e.Name()), fd: -1}
		if fd, err := openAt(dfd, e.Name()); err == nil {
			if err := unix.Fstat(fd, &sts[i]); err != nil {
				unix.Close(fd)
				stop(fmt.Errorf("stat %s: %w", f.path, err))
				return
			}
			f.fd = fd
		} else if err := unix.Fstatat(dfd, e.Name(), &sts[i], unix.AT_SYMLINK_NOFOLLOW); err != nil {
			stop(fmt.Errorf("lstat %s: %w", f.path, err))
			return
		}
		if sts[i].Mode&unix.S_IFMT != unix.S_IFREG {
			if f.fd >= 0 {
				unix.Close(f.fd)
			}
			continue
		}
		f.size = sts[i].Size
		if f.size >= smallFile {
			w.batches <- []file{f}
			continue
		}
		small = append(small, f)
		smallBytes += f.size
		if len(small) >= w.batch || smallBytes >= batchBytes {
			w.batches <- small
			small, smallBytes = nil, 0
		}
	}
	if len(small) > 0 {
		w.batches <- small
	}
	d.Close()
	for i, e := range ents {
		if sts[i].Mode&unix.S_IFMT != unix.S_IFDIR {
			continue
		}
		sub := filepath.Join(p, e.Name())
		select {
		case w.slots <- struct{}{}:
			w.wg.Add(1)
			go func() {
				defer w.wg.Done()
				w.dir(sub)
				<-w.slots
			}()
		default:
			w.dir(sub)
		}
	}
}

// smallFile is the backup's chunk.MinSize: a file listed below it is read
// whole with one read of a byte more than its size, in a batch.
const smallFile = 256 << 10

// batchBytes is the backup's ReadBatchBytes.
const batchBytes = 1 << 20

// fitBatch lowers the batch size to the limit on open files as the backup
// does: readers share three quarters of it.
func fitBatch(batch, readers int) int {
	var lim unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
		return 1
	}
	limit := uint64(lim.Cur)
	spare := max(limit/4, 256)
	if limit <= spare {
		return 1
	}
	return int(min(max((limit-spare)/uint64(readers), 1), uint64(max(batch, 1))))
}

const openFlags = unix.O_RDONLY | unix.O_NONBLOCK | unix.O_NOFOLLOW | unix.O_CLOEXEC

// openAt opens the entry name of the open directory dirfd (or a path, with
// unix.AT_FDCWD) as the backup does: without blocking, following a final
// symlink or, where allowed, updating its access time.
func openAt(dirfd int, name string) (int, error) {
	fd, err := unix.Openat(dirfd, name, openFlags|oNoAtime, 0)
	if err == unix.EPERM {
		fd, err = unix.Openat(dirfd, name, openFlags, 0)
	}
	return fd, err
}

// readBatch reads one batch: a single file of any size, or small files of
// one directory, all opened and advised before the first is read. It
// returns fds (for reuse), how many files and bytes it read, and the first
// error.
func readBatch(b []file, buf []byte, fds []int) ([]int, int, int64, error) {
	fds = fds[:0]
	for i, f := range b {
		fd := f.fd
		if fd < 0 {
			var err error
			if fd, err = openAt(unix.AT_FDCWD, f.path); err != nil {
				err = fmt.Errorf("open %s: %w", f.path, err)
				for _, fd := range fds {
					unix.Close(fd)
				}
				for _, f := range b[i+1:] {
					if f.fd >= 0 {
						unix.Close(f.fd)
					}
				}
				return fds, 0, 0, err
			}
		}
		if f.size < smallFile {
			willNeed(fd, f.size+1)
		}
		fds = append(fds, fd)
	}
	var n int64
	var read int
	var first error
	for i, f := range b {
		m, err := readAll(fds[i], f, buf)
		if dropBehind {
			dontNeed(fds[i], 0, 0)
		}
		unix.Close(fds[i])
		n += m
		if err == nil {
			read++
		} else if first == nil {
			first = err
		}
	}
	return fds, read, n, first
}

func readAll(fd int, p file, buf []byte) (int64, error) {
	var n int64
	if p.size < smallFile && p.size < int64(len(buf)) {
		m, err := unix.Read(fd, buf[:p.size+1])
		for err == unix.EINTR {
			m, err = unix.Read(fd, buf[:p.size+1])
		}
		if err != nil {
			return 0, fmt.Errorf("read %s: %w", p.path, err)
		}
		n = int64(m)
		if m == 0 || n == p.size { // a regular file reads short only at its end
			return n, nil
		}
		// Short, or it grew: read on.
	}
	for {
		m, err := unix.Read(fd, buf)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return n, fmt.Errorf("read %s: %w", p.path, err)
		}
		if m == 0 {
			return n, nil
		}
		n += int64(m)
		if dropBehind && n%dropEvery < int64(m) {
			dontNeed(fd, 0, n-n%dropEvery)
		}
	}
}

// dropBehind has the readers drop pages behind them: every dropEvery bytes
// of a file and, at its end, the whole file (the backup's agent.DropBehind).
var dropBehind bool

const dropEvery = 8 << 20

func fail(err error) {
	fmt.Fprintln(os.Stderr, "readfloor:", err)
	os.Exit(1)
}
