package witness

import (
	"bytes"
	"context"
	"crypto/rand"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/transparency-dev/merkle/rfc6962"
	"github.com/transparency-dev/merkle/testonly"
	"golang.org/x/mod/sumdb/note"

	"github.com/embassy-project/embassy/internal/testenv"
)

var update = flag.Bool("update", false, "rewrite the golden vectors in testdata/witness")

const goldenDir = "../../testdata/witness"

// The golden log: origin example.com/log, entries "entry 0" … "entry 6";
// the witness last cosigned size 3 and is asked to cosign size 7.
const (
	goldenOrigin  = "example.com/log"
	goldenOld     = 3
	goldenSize    = 7
	goldenWitness = "witness.example/w1"
)

func goldenTree() *testonly.Tree {
	tr := testonly.New(rfc6962.DefaultHasher)
	for i := range goldenSize {
		tr.AppendData(fmt.Appendf(nil, "entry %d", i))
	}
	return tr
}

func goldenPath(name string) string { return filepath.Join(goldenDir, name) }

// writeGoldens regenerates every file in testdata/witness (new keys, so every
// signature changes).
func writeGoldens(t *testing.T) {
	tr := goldenTree()
	logSkey, logVkey, err := note.GenerateKey(rand.Reader, goldenOrigin)
	if err != nil {
		t.Fatal(err)
	}
	logSigner, err := note.NewSigner(logSkey)
	if err != nil {
		t.Fatal(err)
	}
	keys, _, err := GenerateKeys(goldenWitness)
	if err != nil {
		t.Fatal(err)
	}
	var root [HashSize]byte
	copy(root[:], tr.HashAt(goldenOld))
	state := savedState{Origin: goldenOrigin, State: State{Size: goldenOld, Root: root}, Time: 1763700000}
	cp := Checkpoint{Origin: goldenOrigin, Size: goldenSize}
	copy(cp.Root[:], tr.HashAt(goldenSize))
	signed := signText(t, string(marshalCheckpointText(cp, nil)), logSigner)
	p, err := tr.ConsistencyProof(goldenOld, goldenSize)
	if err != nil {
		t.Fatal(err)
	}
	req := Request{Old: goldenOld, Proof: p, Checkpoint: signed}.Marshal()

	// Cosign through a real witness whose state is the golden state.
	dir := t.TempDir()
	testenv.WriteFile(t, filepath.Join(dir, stateFileName(goldenOrigin)), state.marshal())
	w, err := New(Config{Dir: dir, Keys: keys, Logs: []Log{{Origin: goldenOrigin, Verifiers: []string{logVkey}}}, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	sigs, err := w.AddCheckpoint(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	cosigned, err := Merge(signed, sigs)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(goldenDir, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, b := range map[string][]byte{
		"log.key":            []byte(logSkey + "\n"),
		"log.pub":            []byte(logVkey + "\n"),
		"witness.key":        keys.Marshal(),
		"state-v1.txt":       state.marshal(),
		"add-checkpoint.txt": req,
		"cosigned.txt":       cosigned,
	} {
		testenv.WriteFile(t, goldenPath(name), b)
	}
}

func readGolden(t testing.TB, name string) []byte {
	t.Helper()
	return testenv.ReadFile(t, goldenPath(name))
}

func TestGolden(t *testing.T) {
	if *update {
		writeGoldens(t)
	}
	tr := goldenTree()
	logVkey := strings.TrimSpace(string(readGolden(t, "log.pub")))

	// Key file.
	kb := readGolden(t, "witness.key")
	keys, err := ParseKeys(kb)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(keys.Marshal(), kb) || keys.Name() != goldenWitness {
		t.Fatal("witness.key does not round-trip")
	}
	pub, err := keys.Public()
	if err != nil {
		t.Fatal(err)
	}

	// State file.
	sb := readGolden(t, "state-v1.txt")
	st, err := parseState(sb)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(st.marshal(), sb) || st.Origin != goldenOrigin || st.State.Size != goldenOld || !bytes.Equal(st.State.Root[:], tr.HashAt(goldenOld)) {
		t.Fatalf("state-v1.txt: %+v", st)
	}

	// Request: parses, round-trips, and passes Check against the state.
	rb := readGolden(t, "add-checkpoint.txt")
	req, err := ParseRequest(rb)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(req.Marshal(), rb) {
		t.Fatal("add-checkpoint.txt does not round-trip")
	}
	v, err := note.NewVerifier(logVkey)
	if err != nil {
		t.Fatal(err)
	}
	n, err := note.Open(req.Checkpoint, note.VerifierList(v))
	if err != nil {
		t.Fatal(err)
	}
	cp, _, err := parseCheckpointText([]byte(n.Text))
	if err != nil || cp.Size != goldenSize || !bytes.Equal(cp.Root[:], tr.HashAt(goldenSize)) {
		t.Fatalf("golden checkpoint: %+v, %v", cp, err)
	}
	if err := Check(st.State, req.Old, req.Proof, cp); err != nil {
		t.Fatal(err)
	}

	// A witness started on the golden state file cosigns the golden request.
	dir := t.TempDir()
	testenv.WriteFile(t, filepath.Join(dir, stateFileName(goldenOrigin)), sb)
	w, err := New(Config{Dir: dir, Keys: keys, Logs: []Log{{Origin: goldenOrigin, Verifiers: []string{logVkey}}}, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	sigs, err := w.AddCheckpoint(context.Background(), rb)
	if err != nil {
		t.Fatal(err)
	}
	p := Policy{Threshold: 1, Witnesses: []Named{{Name: "w1", Verifiers: pub.Verifiers()}}}
	m, err := Merge(req.Checkpoint, sigs)
	if err != nil {
		t.Fatal(err)
	}
	if ok, err := p.Count(m, []string{logVkey}); err != nil || len(ok) != 1 {
		t.Fatalf("fresh cosignature: %v, %v", ok, err)
	}

	// The committed cosigned checkpoint still verifies.
	if ok, err := p.Count(readGolden(t, "cosigned.txt"), []string{logVkey}); err != nil || len(ok) != 1 {
		t.Fatalf("cosigned.txt: %v, %v", ok, err)
	}
}
