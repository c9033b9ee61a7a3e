package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// hostProcs are the `embassy host serve` processes of one embassy-mtls run:
// started before the first backup, stopped (SIGTERM, wait) after verify.
type hostProcs struct {
	procs []*hostProc
}

type hostProc struct {
	name, addr, log string
	cmd             *exec.Cmd
	done            chan struct{} // closed when Wait returns
	err             error         // Wait's result
}

// hostUsage is what the host processes used over their lifetime.
type hostUsage struct {
	peakRSSKB []float64 // each process's peak RSS (VmHWM before the stop)
	cpu       float64   // user + system seconds, summed
}

// startHosts runs `bin host serve --dir DIR` for each host directory, its
// JSON log on stderr going to logs/TAG-host-NAME.log, and waits until every
// one accepts TCP connections on its address.
func startHosts(ctx context.Context, bin string, names, dirs, addrs []string, logs, tag string) (*hostProcs, error) {
	hp := &hostProcs{}
	for i, dir := range dirs {
		logPath := filepath.Join(logs, fmt.Sprintf("%s-host-%s.log", tag, names[i]))
		lf, err := os.Create(logPath)
		if err != nil {
			hp.kill()
			return nil, err
		}
		cmd := exec.CommandContext(ctx, bin, "host", "serve", "--dir", dir)
		cmd.Env = toolEnv(nil)
		cmd.Stdout, cmd.Stderr = lf, lf
		// If the runner is interrupted, ask for a graceful stop first; if the
		// runner dies, the kernel sends SIGTERM where it can (Linux).
		cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
		cmd.WaitDelay = 30 * time.Second
		cmd.SysProcAttr = dieWithParent()
		if err := cmd.Start(); err != nil {
			lf.Close()
			hp.kill()
			return nil, fmt.Errorf("start host %s: %w", names[i], err)
		}
		p := &hostProc{name: names[i], addr: addrs[i], log: logPath, cmd: cmd, done: make(chan struct{})}
		go func() {
			p.err = cmd.Wait()
			lf.Close()
			close(p.done)
		}()
		hp.procs = append(hp.procs, p)
	}
	deadline := time.Now().Add(20 * time.Second)
	for _, p := range hp.procs {
		for {
			select {
			case <-p.done:
				hp.kill()
				return nil, fmt.Errorf("host %s exited at start-up (%v)\n%s", p.name, p.err, tail(p.log, 20))
			default:
			}
			c, err := net.DialTimeout("tcp", p.addr, time.Second)
			if err == nil {
				c.Close()
				break
			}
			if time.Now().After(deadline) {
				hp.kill()
				return nil, fmt.Errorf("host %s does not listen on %s after 20 s: %v\n%s", p.name, p.addr, err, tail(p.log, 20))
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	return hp, nil
}

// cpu is the user + system time the running host processes have used so far,
// in seconds (from /proc/PID/stat; 0 for a process that has exited).
func (hp *hostProcs) cpu() float64 {
	if hp == nil {
		return 0
	}
	var sum float64
	for _, p := range hp.procs {
		sum += procCPU(p.cmd.Process.Pid)
	}
	return sum
}

// procCPU reads utime + stime of pid in seconds. /proc reports them in
// USER_HZ ticks, which Linux fixes at 100 per second for user space.
func procCPU(pid int) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	v, _ := parseProcStat(string(b))
	return v
}

// parseProcStat returns utime + stime of a /proc/PID/stat line in seconds.
func parseProcStat(s string) (float64, bool) {
	// The command name (field 2) is in parentheses and may hold spaces.
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, false
	}
	f := strings.Fields(s[i+1:])
	// After the name: state is field 3, utime field 14, stime field 15.
	if len(f) < 13 {
		return 0, false
	}
	u, err1 := strconv.ParseFloat(f[11], 64)
	st, err2 := strconv.ParseFloat(f[12], 64)
	if err1 != nil || err2 != nil {
		return 0, false
	}
	return (u + st) / 100, true
}

// stop sends SIGTERM to every host, waits for each to exit (SIGKILL after
// 30 s) and returns what they used. A host that does not exit cleanly is an
// error: graceful shutdown is part of what is measured.
func (hp *hostProcs) stop() (hostUsage, error) {
	var u hostUsage
	if hp == nil {
		return u, nil
	}
	// Peak RSS from /proc (VmHWM), read before the stop: getrusage's
	// ru_maxrss of a child also counts the runner's own RSS at the fork,
	// because Go starts children with vfork and Linux records the shared
	// address space's high-water mark at exec.
	hwm := make([]float64, len(hp.procs))
	for i, p := range hp.procs {
		hwm[i] = vmHWM(p.cmd.Process.Pid)
	}
	for _, p := range hp.procs {
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
	}
	var errs []error
	for i, p := range hp.procs {
		select {
		case <-p.done:
		case <-time.After(30 * time.Second):
			_ = p.cmd.Process.Kill()
			<-p.done
			errs = append(errs, fmt.Errorf("host %s did not stop within 30 s of SIGTERM", p.name))
		}
		if p.err != nil {
			errs = append(errs, fmt.Errorf("host %s: %v\n%s", p.name, p.err, tail(p.log, 20)))
		}
		if hwm[i] > 0 {
			u.peakRSSKB = append(u.peakRSSKB, hwm[i])
		}
		if st := p.cmd.ProcessState; st != nil {
			u.cpu += (st.UserTime() + st.SystemTime()).Seconds()
		}
	}
	hp.procs = nil
	return u, errors.Join(errs...)
}

// kill ends any host still running (error paths).
func (hp *hostProcs) kill() {
	if hp == nil {
		return
	}
	for _, p := range hp.procs {
		_ = p.cmd.Process.Kill()
	}
	for _, p := range hp.procs {
		<-p.done
	}
	hp.procs = nil
}

// freeAddrs picks n free TCP ports on 127.0.0.1. They are free when this
// returns; the hosts bind them moments later.
func freeAddrs(n int) ([]string, error) {
	var out []string
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		ls = append(ls, l)
		out = append(out, l.Addr().String())
	}
	return out, nil
}

// vmHWM returns a running process's peak resident set size in KiB
// (/proc/PID/status VmHWM), or 0 if it cannot be read.
func vmHWM(pid int) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			f := strings.Fields(rest)
			if len(f) > 0 {
				if v, err := strconv.ParseFloat(f[0], 64); err == nil {
					return v
				}
			}
		}
	}
	return 0
}
