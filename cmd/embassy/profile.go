//go:build profile

package main

import (
	"io"
	"os"
	"runtime"
	"runtime/metrics"
	"runtime/pprof"
	"runtime/trace"
	"time"
)

// Built with -tags profile, the CLI writes a CPU profile of the whole command
// to $EMBASSY_CPUPROFILE, and to $EMBASSY_HEAPPROFILE a heap profile taken
// when the live heap (as of the last collection) was largest: for measuring,
// never in a release build. $EMBASSY_ALLOCPROFILE gets the allocations of
// the whole command, written as it ends, and $EMBASSY_TRACE an execution
// trace of it (go tool trace).
func init() {
	recordTo("EMBASSY_CPUPROFILE", pprof.StartCPUProfile, pprof.StopCPUProfile)
	recordTo("EMBASSY_TRACE", trace.Start, trace.Stop)
	if path := os.Getenv("EMBASSY_HEAPPROFILE"); path != "" {
		go watchHeap(path)
	}
	if path := os.Getenv("EMBASSY_ALLOCPROFILE"); path != "" {
		prev := stopProfile
		stopProfile = func() {
			if f, err := os.Create(path); err == nil {
				pprof.Lookup("allocs").WriteTo(f, 0)
				f.Close()
			}
			prev()
		}
	}
}

// recordTo starts a recording into the file the environment variable env
// names, if any, and has stopProfile end it.
func recordTo(env string, start func(io.Writer) error, stop func()) {
	path := os.Getenv(env)
	if path == "" {
		return
	}
	f, err := os.Create(path)
	if err != nil {
		panic(err)
	}
	if err := start(f); err != nil {
		panic(err)
	}
	prev := stopProfile
	stopProfile = func() { stop(); f.Close(); prev() }
}

func watchHeap(path string) {
	s := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	var max uint64
	for range time.Tick(50 * time.Millisecond) {
		metrics.Read(s)
		if v := s[0].Value.Uint64(); v > max {
			max = v
			f, err := os.Create(path)
			if err != nil {
				panic(err)
			}
			pprof.Lookup("heap").WriteTo(f, 0)
			f.Close()
			os.WriteFile(path+".live", []byte(time.Now().String()+" "+itoa(v)+"\n"), 0o644)
		}
	}
}

func itoa(v uint64) string {
	var b [20]byte
	i := len(b)
	for {
		i--
		b[i] = byte('0' + v%10)
		v /= 10
		if v == 0 {
			return string(b[i:])
		}
	}
}

var _ = runtime.GC
