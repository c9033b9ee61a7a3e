// Command readfloor measures how fast this machine can read a directory
// tree's files at all: the floor under any backup of it. It walks the tree
// (lstat of every entry, as a backup does), then reads every regular file
// to its end with -readers goroutines, and prints the time and throughput
// as JSON. With -drop (root only) it first syncs and drops the page cache,
// as bench/run.sh does before every timed step.
//
//	go run ./bench/readfloor [-readers 16] [-drop] DIR
//
// It does nothing with the bytes: no chunking, hashing, compression or
// writing. A backup of the same tree can only be slower.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

type result struct {
	Dir       string  `json:"dir"`
	Readers   int     `json:"readers"`
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
	drop := flag.Bool("drop", false, "sync and drop the page cache first (needs root)")
	flag.Parse()
	if flag.NArg() != 1 {
		fmt.Fprintln(os.Stderr, "usage: readfloor [-readers N] [-drop] DIR")
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
	paths := make(chan string, *readers)
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
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if _, err := d.Info(); err != nil { // the lstat a backup makes
			return err
		}
		if d.Type().IsRegular() {
			paths <- p
		}
		return nil
	})
	close(paths)
	wg.Wait()
	if err == nil {
		err = firstErr
	}
	if err != nil {
		fail(err)
	}
	secs := time.Since(start).Seconds()
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	r := result{Dir: dir, Readers: *readers, Dropped: *drop, Files: files.Load(), Bytes: bytes.Load(), Seconds: secs,
		MBps:    float64(bytes.Load()) / 1e6 / secs,
		UserCPU: float64(ru.Utime.Sec) + float64(ru.Utime.Usec)/1e6, SystemCPU: float64(ru.Stime.Sec) + float64(ru.Stime.Usec)/1e6}
	out, _ := json.MarshalIndent(r, "", "  ")
	fmt.Println(string(out))
}

func readAll(p string, buf []byte) (int64, error) {
	f, err := os.Open(p)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	var n int64
	for {
		m, err := f.Read(buf)
		n += int64(m)
		if err == io.EOF {
			return n, nil
		}
		if err != nil {
			return n, err
		}
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "readfloor:", err)
	os.Exit(1)
}
