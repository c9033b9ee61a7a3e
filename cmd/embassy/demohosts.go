package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"

	"k8s.io/klog/v2"

	"github.com/embassy-project/embassy/internal/hostnode"
)

// freeLoopback returns a free TCP address on 127.0.0.1.
func freeLoopback() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// demoHosts are host nodes the demo runs in its own process, each exactly
// as `embassy host serve` runs it, logging to DIR/NAME.log.
type demoHosts struct {
	mu    sync.Mutex
	nodes map[string]*demoNode
}

type demoNode struct {
	cancel context.CancelFunc
	done   chan error
	log    *os.File
}

func startDemoHosts(ctx context.Context, dir string, names []string) (*demoHosts, error) {
	d := &demoHosts{nodes: map[string]*demoNode{}}
	tl, err := os.OpenFile(filepath.Join(dir, "tessera.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, err
	}
	klog.SetSlogLogger(slog.New(slog.NewJSONHandler(tl, nil)))
	for _, n := range names {
		f, err := os.OpenFile(filepath.Join(dir, n+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
		if err != nil {
			d.stopAll()
			return nil, err
		}
		nctx, cancel := context.WithCancel(ctx)
		s, err := hostnode.Open(nctx, filepath.Join(dir, n), hostnode.Options{Logger: slog.New(slog.NewJSONHandler(f, nil))})
		if err == nil {
			if err = s.Listen(""); err != nil {
				s.Close(context.Background())
			}
		}
		if err != nil {
			cancel()
			f.Close()
			d.stopAll()
			return nil, fmt.Errorf("start host %s: %w", n, err)
		}
		node := &demoNode{cancel: cancel, done: make(chan error, 1), log: f}
		go func() { node.done <- s.Serve(nctx) }()
		d.nodes[n] = node
	}
	return d, nil
}

// stop shuts one node down gracefully.
func (d *demoHosts) stop(name string) error {
	d.mu.Lock()
	n := d.nodes[name]
	delete(d.nodes, name)
	d.mu.Unlock()
	if n == nil {
		return nil
	}
	n.cancel()
	err := <-n.done
	n.log.Close()
	return err
}

func (d *demoHosts) stopAll() error {
	var errs []error
	d.mu.Lock()
	var names []string
	for n := range d.nodes {
		names = append(names, n)
	}
	d.mu.Unlock()
	for _, n := range names {
		errs = append(errs, d.stop(n))
	}
	return errors.Join(errs...)
}
