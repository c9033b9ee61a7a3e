package main

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"
)

// manifest maps each entry's path relative to the root to its type, mode
// bits and content: size and SHA-256 of a regular file, the target of a
// symlink. Built with hashes it is what a restore is checked against
// (modification times are left out: path, mode and content are the test);
// built without, it has each file's mtime instead, a cheap check that two
// copies of the corpus are the same tree.
type manifest map[string]string

func buildManifest(root string, hash bool) (manifest, error) {
	type job struct{ rel, path string }
	m := manifest{}
	var mu sync.Mutex
	jobs := make(chan job, 256)
	errs := make(chan error, runtime.NumCPU())
	var wg sync.WaitGroup
	for range runtime.NumCPU() {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range jobs {
				sum, err := hashFile(j.path)
				if err != nil {
					select {
					case errs <- err:
					default:
					}
					continue
				}
				mu.Lock()
				m[j.rel] += " sha256:" + sum
				mu.Unlock()
			}
		}()
	}
	walkErr := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		fi, err := d.Info()
		if err != nil {
			return err
		}
		mode := fi.Mode()
		entry := fmt.Sprintf("%s %o", typeName(mode), mode&(fs.ModePerm|fs.ModeSetuid|fs.ModeSetgid|fs.ModeSticky))
		switch {
		case mode&fs.ModeSymlink != 0:
			t, err := os.Readlink(p)
			if err != nil {
				return err
			}
			entry = "symlink -> " + t // symlink permission bits are not meaningful on Linux
		case mode.IsRegular():
			entry += fmt.Sprintf(" size:%d", fi.Size())
			if !hash {
				entry += " mtime:" + fi.ModTime().UTC().Format(time.RFC3339Nano)
			}
		}
		mu.Lock()
		m[rel] = entry
		mu.Unlock()
		if hash && mode.IsRegular() {
			jobs <- job{rel, p}
		}
		return nil
	})
	close(jobs)
	wg.Wait()
	if walkErr != nil {
		return nil, walkErr
	}
	select {
	case err := <-errs:
		return nil, err
	default:
	}
	return m, nil
}

func typeName(m fs.FileMode) string {
	switch {
	case m.IsDir():
		return "dir"
	case m.IsRegular():
		return "file"
	case m&fs.ModeSymlink != 0:
		return "symlink"
	default:
		return "other:" + m.Type().String()
	}
}

func hashFile(p string) (string, error) {
	f, err := os.Open(p)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// diff describes how got differs from m (the first few differences), or
// returns "" when they are equal.
func (m manifest) diff(got manifest) string {
	var out []string
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		g, ok := got[k]
		switch {
		case !ok:
			out = append(out, fmt.Sprintf("%s: missing from restore", k))
		case g != m[k]:
			out = append(out, fmt.Sprintf("%s: want %q, got %q", k, m[k], g))
		}
	}
	var extra []string
	for k := range got {
		if _, ok := m[k]; !ok {
			extra = append(extra, k)
		}
	}
	slices.Sort(extra)
	for _, k := range extra {
		out = append(out, fmt.Sprintf("%s: not in the source", k))
	}
	if len(out) == 0 {
		return ""
	}
	n := len(out)
	if n > 5 {
		out = append(out[:5], fmt.Sprintf("... %d differences in all", n))
	}
	return strings.Join(out, "; ")
}
