// Command readfloor measures how fast this machine can read a directory
// tree's files at all: the floor under any backup of it. It walks the tree
// as the backup does (-walkers directories listed at once, lstat of every
// entry relative to its open directory) and reads every regular file to its
// end with -readers goroutines through bare descriptors, without updating
// access times (a file under 256 KiB with one read of its size and a byte
// more, as the backup does), then prints the time and throughput as JSON. With -drop
// (root only) it first syncs and drops the page cache, as bench/run.sh
// does before every timed step.
//
//	go run ./bench/readfloor [-readers 16] [-walkers 4] [-drop] DIR
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
	drop := flag.Bool("drop", false, "sync and drop the page cache first (needs root)")
	flag.Parse()
	if flag.NArg() != 1 {
		fmt.Fprintln(os.Stderr, "usage: readfloor [-readers N] [-walkers N] [-drop] DIR")
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
	// Blocked reads hold their P: as many Ps as readers, as the backup does.
	runtime.GOMAXPROCS(max(runtime.GOMAXPROCS(0), *readers))
	start := time.Now()
	paths := make(chan file, *readers)
	var files, bytes atomic.Int64
	var wg sync.WaitGroup
	var firstErr error
	var errOnce sync.Once
	for i := 0; i < *readers; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, 1<<20)
			for p := range paths {
				n, err := readAll(p, buf)
				if err != nil {
					errOnce.Do(func() { firstErr = err })
					continue
				}
				files.Add(1)
				bytes.Add(n)
			}
		}()
	}
	w := &walker{paths: paths, slots: make(chan struct{}, max(*walkers, 1)-1)}
	w.dir(dir)
	w.wg.Wait()
	close(paths)
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
	r := result{Dir: dir, Readers: *readers, Walkers: *walkers, Dropped: *drop, Files: files.Load(), Bytes: bytes.Load(), Seconds: secs,
		MBps:    float64(bytes.Load()) / 1e6 / secs,
		UserCPU: float64(ru.Utime.Sec) + float64(ru.Utime.Usec)/1e6, SystemCPU: float64(ru.Stime.Sec) + float64(ru.Stime.Usec)/1e6}
	out, _ := json.MarshalIndent(r, "", "  ")
	fmt.Println(string(out))
}

// file is a regular file to read and its listed size.
type file struct {
	path string
	size int64
}

// walker lists directories as the backup's walkers do: a subdirectory gets
// a goroutine of its own while a slot is free, else the lister descends
// into it itself.
type walker struct {
	paths   chan<- file
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
	fd := int(d.Fd())
	sts := make([]unix.Stat_t, len(ents))
	for i, e := range ents {
		// The lstat a backup makes, relative to the open directory.
		if err := unix.Fstatat(fd, e.Name(), &sts[i], unix.AT_SYMLINK_NOFOLLOW); err != nil {
			d.Close()
			w.errOnce.Do(func() { w.err = fmt.Errorf("lstat %s: %w", filepath.Join(p, e.Name()), err) })
			return
		}
	}
	d.Close()
	for i, e := range ents {
		sub := filepath.Join(p, e.Name())
		switch sts[i].Mode & unix.S_IFMT {
		case unix.S_IFREG:
			w.paths <- file{sub, sts[i].Size}
		case unix.S_IFDIR:
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
}

// smallFile is the backup's chunk.MinSize: a file listed below it is read
// whole with one read of a byte more than its size.
const smallFile = 256 << 10

func readAll(p file, buf []byte) (int64, error) {
	const flags = unix.O_RDONLY | unix.O_NONBLOCK | unix.O_NOFOLLOW | unix.O_CLOEXEC
	fd, err := unix.Open(p.path, flags|oNoAtime, 0)
	if err == unix.EPERM {
		fd, err = unix.Open(p.path, flags, 0)
	}
	if err != nil {
		return 0, fmt.Errorf("open %s: %w", p.path, err)
	}
	defer unix.Close(fd)
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
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "readfloor:", err)
	os.Exit(1)
}
