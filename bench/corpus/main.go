// Command corpus writes the peer benchmark's registry-like corpus,
// deterministic from a seed, or applies its one-percent edit:
//
//	go run ./bench/corpus -out DIR -size BYTES [-seed N]      generate
//	go run ./bench/corpus -edit DIR [-fraction 0.01] [-seed N] edit in place
//
// Both are internal/sample (Generate, Edit), which the demo uses too: a
// population register (one CSV), a land register of incompressible
// scanned-deed blobs, State Gazette texts and a business register of many
// small JSON files. Generate prints a JSON summary of what it wrote (bytes
// and files per register), which the runner keeps with its results.
package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/embassy-project/embassy/internal/sample"
)

// Summary describes a generated corpus.
type Summary struct {
	Dir        string              `json:"dir"`
	Seed       uint64              `json:"seed"`
	Bytes      int64               `json:"bytes"`
	Files      int                 `json:"files"`
	Dirs       int                 `json:"dirs"`
	Symlinks   int                 `json:"symlinks"`
	Registers  map[string]Register `json:"registers"`
	PersonRows int                 `json:"population_rows"`
}

// Register is one top-level register's share of the corpus.
type Register struct {
	Bytes int64 `json:"bytes"`
	Files int   `json:"files"`
}

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintf(os.Stderr, "corpus: %v\n", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	fl := flag.NewFlagSet("corpus", flag.ContinueOnError)
	out := fl.String("out", "", "directory to generate the corpus into (must not exist or be empty)")
	size := fl.Int64("size", 100<<20, "corpus size in bytes (about)")
	edit := fl.String("edit", "", "directory of an existing corpus to edit in place")
	fraction := fl.Float64("fraction", 0.01, "fraction of the corpus the edit changes")
	seed := fl.Uint64("seed", 1, "seed (generation and edit are deterministic from it)")
	if err := fl.Parse(args); err != nil {
		return err
	}
	switch {
	case *out != "" && *edit == "":
		if ents, err := os.ReadDir(*out); err == nil && len(ents) > 0 {
			return fmt.Errorf("%s is not empty", *out)
		}
		if err := sample.Generate(*out, *size, *seed); err != nil {
			return fmt.Errorf("generate: %w", err)
		}
		s, err := Summarize(*out)
		if err != nil {
			return err
		}
		s.Seed = *seed
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(s)
	case *edit != "" && *out == "":
		if err := sample.Edit(*edit, *fraction, *seed); err != nil {
			return fmt.Errorf("edit: %w", err)
		}
		return nil
	default:
		return errors.New("give either -out DIR (generate) or -edit DIR (edit)")
	}
}

// Summarize counts the bytes and files of the corpus under dir, per
// top-level register, and the population register's data rows.
func Summarize(dir string) (*Summary, error) {
	s := &Summary{Dir: dir, Registers: map[string]Register{}}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		top, _, _ := strings.Cut(rel, string(filepath.Separator))
		switch {
		case d.Type()&fs.ModeSymlink != 0:
			s.Symlinks++
		case d.IsDir():
			s.Dirs++
		case d.Type().IsRegular():
			fi, err := d.Info()
			if err != nil {
				return err
			}
			s.Files++
			s.Bytes += fi.Size()
			r := s.Registers[top]
			r.Files++
			r.Bytes += fi.Size()
			s.Registers[top] = r
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("summarize %s: %w", dir, err)
	}
	if b, err := os.ReadFile(filepath.Join(dir, "population", "persons.csv")); err == nil {
		s.PersonRows = strings.Count(string(b), "\n") - 1 // less the header
	}
	return s, nil
}
