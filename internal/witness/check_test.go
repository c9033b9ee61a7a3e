package witness

import (
	"bytes"
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/embassy-project/embassy/internal/wire"
)

func TestCheck(t *testing.T) {
	l := newTestLog(t, "example.com/log", 40, 1)
	// other has different entries; checkpoints from its tree under l's origin
	// are a fork of l.
	other := newTestLog(t, "example.com/other", 40, 1)
	forkCP := func(size uint64) Checkpoint {
		c := other.cp(size)
		c.Origin = l.origin
		return c
	}
	flip := func(p [][]byte, i int) [][]byte {
		q := make([][]byte, len(p))
		for j := range p {
			q[j] = bytes.Clone(p[j])
		}
		q[i][0] ^= 1
		return q
	}
	emptyCP := Checkpoint{Origin: l.origin, Size: 0, Root: emptyRoot}

	tests := []struct {
		name  string
		state State
		old   uint64
		proof [][]byte
		cp    Checkpoint
		want  error // nil, a sentinel, or &ConflictError{}
		size  uint64
	}{
		{"first contact", State{}, 0, nil, l.cp(10), nil, 0},
		{"first contact size 0", State{}, 0, nil, emptyCP, nil, 0},
		{"first contact size 0 wrong root", State{}, 0, nil, Checkpoint{Origin: l.origin}, ErrRootMismatch, 0},
		{"first contact with proof", State{}, 0, l.proof(t, 1, 10), l.cp(10), ErrBadProof, 0},
		{"first contact old not 0", State{}, 5, l.proof(t, 5, 10), l.cp(10), ErrConflict, 0},
		{"growth", l.state(10), 10, l.proof(t, 10, 33), l.cp(33), nil, 0},
		{"growth by one from 1", l.state(1), 1, l.proof(t, 1, 2), l.cp(2), nil, 0},
		{"growth power of two", l.state(16), 16, l.proof(t, 16, 40), l.cp(40), nil, 0},
		{"same checkpoint again", l.state(10), 10, nil, l.cp(10), nil, 0},
		{"same size with proof", l.state(10), 10, l.proof(t, 9, 10), l.cp(10), ErrBadProof, 0},
		{"stale old", l.state(20), 10, l.proof(t, 10, 30), l.cp(30), ErrConflict, 20},
		{"old ahead of state", l.state(10), 20, l.proof(t, 20, 30), l.cp(30), ErrConflict, 10},
		{"old larger than size", l.state(20), 20, nil, l.cp(10), ErrOldSize, 0},
		{"smaller checkpoint", l.state(20), 10, nil, l.cp(10), ErrConflict, 20},
		{"fork at same size", l.state(10), 10, nil, forkCP(10), ErrRootMismatch, 0},
		{"fork at larger size", l.state(10), 10, other.proof(t, 10, 30), forkCP(30), ErrBadProof, 0},
		{"proof for other sizes", l.state(10), 10, l.proof(t, 11, 30), l.cp(30), ErrBadProof, 0},
		{"flipped proof hash", l.state(10), 10, flip(l.proof(t, 10, 30), 1), l.cp(30), ErrBadProof, 0},
		{"truncated proof", l.state(10), 10, l.proof(t, 10, 30)[1:], l.cp(30), ErrBadProof, 0},
		{"missing proof", l.state(10), 10, nil, l.cp(30), ErrBadProof, 0},
		{"proof with extra hash", l.state(10), 10, append(l.proof(t, 10, 30), make([]byte, 32)), l.cp(30), ErrBadProof, 0},
		{"right proof wrong new root", l.state(10), 10, l.proof(t, 10, 30), forkCP(30), ErrBadProof, 0},
		{"right proof wrong stored root", other.state(10), 10, l.proof(t, 10, 30), l.cp(30), ErrBadProof, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := Check(tc.state, tc.old, tc.proof, tc.cp)
			if tc.want == nil {
				if err != nil {
					t.Fatalf("Check: %v, want success", err)
				}
				return
			}
			if !errors.Is(err, tc.want) {
				t.Fatalf("Check: %v, want %v", err, tc.want)
			}
			var ce *ConflictError
			if errors.As(err, &ce) != (tc.want == ErrConflict) {
				t.Fatalf("Check: %v: ConflictError iff ErrConflict", err)
			}
			if ce != nil && ce.Size != tc.size {
				t.Fatalf("conflict size %d, want %d", ce.Size, tc.size)
			}
		})
	}
}

func TestStatusOf(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want int
	}{
		{&ConflictError{Size: 3}, http.StatusConflict},
		{ErrRootMismatch, http.StatusConflict},
		{ErrUnknownLog, http.StatusNotFound},
		{ErrNotSigned, http.StatusForbidden},
		{ErrBadProof, http.StatusUnprocessableEntity},
		{ErrOldSize, http.StatusBadRequest},
		{wire.Corruptf("x"), http.StatusBadRequest},
		{ErrTooLarge, http.StatusRequestEntityTooLarge},
		{errors.New("disk on fire"), http.StatusInternalServerError},
	} {
		if got := statusOf(tc.err); got != tc.want {
			t.Errorf("statusOf(%v) = %d, want %d", tc.err, got, tc.want)
		}
	}
}

func TestParseRequest(t *testing.T) {
	l := newTestLog(t, "example.com/log", 20, 1)
	cp := l.checkpoint(t, 20)
	good := Request{Old: 7, Proof: l.proof(t, 7, 20), Checkpoint: cp}
	b := good.Marshal()
	r, err := ParseRequest(b)
	if err != nil {
		t.Fatal(err)
	}
	if r.Old != 7 || len(r.Proof) != len(good.Proof) || !bytes.Equal(r.Checkpoint, cp) || !bytes.Equal(r.Marshal(), b) {
		t.Fatal("round trip differs")
	}
	if r, err := ParseRequest(Request{Checkpoint: cp}.Marshal()); err != nil || r.Old != 0 || len(r.Proof) != 0 {
		t.Fatalf("old 0, no proof: %+v, %v", r, err)
	}

	h := b64.EncodeToString(make([]byte, 32)) + "\n"
	bad := map[string]string{
		"empty":               "",
		"no newline":          "old 5",
		"no old":              "5\n\n" + string(cp),
		"old without number":  "old \n\n" + string(cp),
		"leading zero":        "old 05\n\n" + string(cp),
		"plus sign":           "old +5\n\n" + string(cp),
		"negative":            "old -5\n\n" + string(cp),
		"two spaces":          "old  5\n\n" + string(cp),
		"overflow":            "old 18446744073709551616\n\n" + string(cp),
		"no empty line":       "old 5\n" + h,
		"short hash":          "old 5\n" + b64.EncodeToString(make([]byte, 31)) + "\n\n" + string(cp),
		"long hash":           "old 5\n" + b64.EncodeToString(make([]byte, 33)) + "\n\n" + string(cp),
		"unpadded hash":       "old 5\n" + strings.TrimRight(h, "=\n") + "\n\n" + string(cp),
		"not base64":          "old 5\n" + strings.Repeat("!", 44) + "\n\n" + string(cp),
		"non-canonical pad":   "old 5\n" + h[:42] + "B=\n\n" + string(cp),
		"64 proof lines":      "old 5\n" + strings.Repeat(h, 64) + "\n" + string(cp),
		"no checkpoint":       "old 5\n" + h + "\n",
		"checkpoint no final": "old 5\n\n" + strings.TrimSuffix(string(cp), "\n"),
		"crlf":                "old 5\r\n\r\n" + string(cp),
		"over cap":            "old 5\n\n" + strings.Repeat("x\n", MaxRequestSize/2),
	}
	for name, body := range bad {
		if _, err := ParseRequest([]byte(body)); !errors.Is(err, wire.ErrCorrupt) {
			t.Errorf("%s: err = %v, want ErrCorrupt", name, err)
		}
	}
	if _, err := ParseRequest([]byte("old 5\n" + strings.Repeat(h, 63) + "\n" + string(cp))); err != nil {
		t.Errorf("63 proof lines: %v", err)
	}
}

func TestParseCheckpointText(t *testing.T) {
	root := b64.EncodeToString(bytes.Repeat([]byte{7}, 32))
	good := []string{
		"example.com/log\n5\n" + root + "\n",
		"example.com/log\n0\n" + root + "\n",
		"example.com/log\n5\n" + root + "\nextension line\n",
	}
	for _, s := range good {
		cp, ext, err := parseCheckpointText([]byte(s))
		if err != nil {
			t.Fatalf("%q: %v", s, err)
		}
		if got := marshalCheckpointText(cp, ext); string(got) != s {
			t.Fatalf("round trip %q != %q", got, s)
		}
	}
	bad := []string{
		"",
		"example.com/log\n5\n" + root,
		"\n5\n" + root + "\n",
		"example.com/log\n05\n" + root + "\n",
		"example.com/log\n+5\n" + root + "\n",
		"example.com/log\n5\n" + b64.EncodeToString(make([]byte, 31)) + "\n",
		"example.com/log\n5\n" + root[:42] + "B=\n",
		"example.com/log\n5\n" + strings.TrimRight(root, "=") + "\n",
		"example\x01.com\n5\n" + root + "\n",
	}
	for _, s := range bad {
		if _, _, err := parseCheckpointText([]byte(s)); !errors.Is(err, wire.ErrCorrupt) {
			t.Errorf("%q: err = %v, want ErrCorrupt", s, err)
		}
	}
}
