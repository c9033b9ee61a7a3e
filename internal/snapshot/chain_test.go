package snapshot

import (
	"errors"
	"testing"
)

func TestCheckChain(t *testing.T) {
	k := testKey(t)
	sign := func(e *Envelope) Signed {
		b := mustSign(t, e, k)
		got, err := Verify(b, k.Public())
		if err != nil {
			t.Fatal(err)
		}
		return Signed{Env: got, Hash: Hash(b)}
	}
	// A linear history 1..4, a second seq 2 branching from 1, and a seq 3
	// following that branch.
	var lin []Signed
	var prev [32]byte
	for seq := uint64(1); seq <= 4; seq++ {
		s := sign(testEnvelope(seq, prev, 1, 1, 2))
		lin = append(lin, s)
		prev = s.Hash
	}
	fork2 := func() Signed {
		e := testEnvelope(2, lin[0].Hash, 1, 1, 2)
		e.Time++
		return sign(e)
	}()
	fork3 := sign(testEnvelope(3, fork2.Hash, 1, 1, 2))
	other := func() Signed {
		e := testEnvelope(5, lin[3].Hash, 1, 1, 2)
		e.Dataset[0] ^= 1
		return sign(e)
	}()

	cases := []struct {
		name string
		envs []Signed
		fork uint64 // seq of the expected *ForkError
		link uint64 // seq of the expected *LinkError
		fail bool   // some other error
	}{
		{name: "empty"},
		{name: "single", envs: lin[:1]},
		{name: "single later seq", envs: lin[2:3]},
		{name: "linear", envs: lin},
		{name: "shuffled", envs: []Signed{lin[3], lin[0], lin[2], lin[1]}},
		{name: "duplicates from several hosts", envs: []Signed{lin[0], lin[1], lin[1], lin[0], lin[2]}},
		{name: "gap", envs: []Signed{lin[0], lin[2], lin[3]}},
		{name: "gaps only", envs: []Signed{lin[0], lin[2]}},
		{name: "head lost at start", envs: lin[1:]},
		{name: "other branch alone", envs: []Signed{lin[0], fork2, fork3}},
		{name: "fork", envs: []Signed{lin[0], lin[1], fork2}, fork: 2},
		{name: "fork without predecessor", envs: []Signed{fork2, lin[1]}, fork: 2},
		{name: "fork at 3", envs: []Signed{lin[2], fork3, lin[3]}, fork: 3},
		{name: "broken link", envs: []Signed{lin[0], lin[1], fork3}, link: 3},
		{name: "broken link to the tip", envs: []Signed{fork2, lin[2], lin[3]}, link: 3},
		{name: "other dataset", envs: []Signed{lin[0], other}, fail: true},
		{name: "nil envelope", envs: []Signed{lin[0], {}}, fail: true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			in := append([]Signed(nil), c.envs...)
			err := CheckChain(c.envs)
			for i := range in {
				if in[i] != c.envs[i] {
					t.Fatal("CheckChain reordered its input")
				}
			}
			var fe *ForkError
			var le *LinkError
			switch {
			case c.fork != 0:
				if !errors.As(err, &fe) || fe.Seq != c.fork || !errors.Is(err, ErrFork) {
					t.Fatalf("got %v, want fork at seq %d", err, c.fork)
				}
				if fe.A == fe.B {
					t.Fatal("fork names one hash twice")
				}
			case c.link != 0:
				if !errors.As(err, &le) || le.Seq != c.link || !errors.Is(err, ErrBrokenLink) {
					t.Fatalf("got %v, want broken link at seq %d", err, c.link)
				}
			case c.fail:
				if err == nil || errors.Is(err, ErrFork) || errors.Is(err, ErrBrokenLink) {
					t.Fatalf("got %v, want a plain error", err)
				}
			default:
				if err != nil {
					t.Fatal(err)
				}
			}
		})
	}
}
