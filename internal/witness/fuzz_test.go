package witness

import (
	"bytes"
	"errors"
	"testing"

	"github.com/embassy-project/embassy/internal/testenv"
	"github.com/embassy-project/embassy/internal/wire"
)

func FuzzParseRequest(f *testing.F) {
	f.Add(readGolden(f, "add-checkpoint.txt"))
	f.Add([]byte("old 0\n\nexample.com/log\n0\n47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\n\n\u2014 k AAAAAAAA\n"))
	f.Add([]byte("old 5\n\n\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		testenv.RoundTrip(t, b, ParseRequest, func(r Request) ([]byte, error) { return r.Marshal(), nil })
	})
}

// FuzzAddCheckpoint drives a witness with arbitrary bodies: it must never
// panic, and whatever it cosigns must be consistent with what it held.
func FuzzAddCheckpoint(f *testing.F) {
	l := newTestLog(f, "example.com/log", 16, 1)
	f.Add(l.request(f, 0, 9))
	f.Add(l.request(f, 0, 0))
	f.Add(readGolden(f, "add-checkpoint.txt"))
	k, _ := keysFor(f, "witness.example/fuzz")
	w, err := New(Config{Dir: f.TempDir(), Keys: k, Logs: []Log{l.config()}, Logger: quietLogger()})
	if err != nil {
		f.Fatal(err)
	}
	// Durability is not under test here; fsync would make each run slow.
	w.write = func(string, []byte) error { return nil }
	f.Fuzz(func(t *testing.T, b []byte) {
		// Start every run from size 4, so that proofs matter.
		w.logs[l.origin].state = l.state(4)
		sigs, err := w.AddCheckpoint(t.Context(), b)
		if err != nil {
			return
		}
		if _, err := parseSigLines(sigs); err != nil {
			t.Fatalf("cosignature lines do not parse: %v", err)
		}
		s, _ := w.State(l.origin)
		if s.Size < 4 || s != l.state(s.Size) {
			t.Fatalf("witness accepted an inconsistent checkpoint: %+v", s)
		}
	})
}

func FuzzParseState(f *testing.F) {
	f.Add(readGolden(f, "state-v1.txt"))
	f.Add(savedState{Origin: "o", State: State{Size: 0}, Time: 0}.marshal())
	f.Fuzz(func(t *testing.T, b []byte) {
		testenv.RoundTrip(t, b, parseState, func(s savedState) ([]byte, error) { return s.marshal(), nil })
	})
}

func FuzzParseCheckpointText(f *testing.F) {
	f.Add([]byte("example.com/log\n7\nmMl/C6MXXNCLAx3QhLncTmSbZNGijm6mlGRlAxc6tYc=\n"))
	f.Add([]byte("example.com/log\n7\nmMl/C6MXXNCLAx3QhLncTmSbZNGijm6mlGRlAxc6tYc=\next\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		type parsed struct {
			cp  Checkpoint
			ext []byte
		}
		parse := func(b []byte) (parsed, error) {
			cp, ext, err := parseCheckpointText(b)
			return parsed{cp, ext}, err
		}
		testenv.RoundTrip(t, b, parse, func(p parsed) ([]byte, error) { return marshalCheckpointText(p.cp, p.ext), nil })
	})
}

func FuzzParseKeys(f *testing.F) {
	f.Add(readGolden(f, "witness.key"))
	f.Fuzz(func(t *testing.T, b []byte) {
		testenv.RoundTrip(t, b, ParseKeys, func(k Keys) ([]byte, error) { return k.Marshal(), nil })
	})
}

// FuzzMerge: Merge either fails with ErrCorrupt or returns a note whose text
// is the checkpoint's and whose signature lines are unique per key.
func FuzzMerge(f *testing.F) {
	cosigned := readGolden(f, "cosigned.txt")
	text, sigs, _ := splitNote(cosigned)
	f.Add(append(append(bytes.Clone(text), '\n'), sigs[:bytes.IndexByte(sigs, '\n')+1]...), sigs)
	f.Add(cosigned, sigs)
	f.Fuzz(func(t *testing.T, cp, extra []byte) {
		m, err := Merge(cp, extra)
		if err != nil {
			if !errors.Is(err, wire.ErrCorrupt) {
				t.Fatalf("error does not wrap ErrCorrupt: %v", err)
			}
			return
		}
		mt, ms, err := splitNote(m)
		if err != nil {
			t.Fatal(err)
		}
		ct, _, _ := splitNote(cp)
		if !bytes.Equal(mt, ct) {
			t.Fatal("Merge changed the checkpoint text")
		}
		lines, err := parseSigLines(ms)
		if err != nil {
			t.Fatalf("merged signatures do not parse: %v", err)
		}
		type nameHash struct {
			name string
			hash uint32
		}
		seen := map[nameHash]bool{}
		for _, l := range lines {
			k := nameHash{l.name, l.hash}
			if seen[k] {
				t.Fatal("two signatures by one key")
			}
			seen[k] = true
		}
	})
}
