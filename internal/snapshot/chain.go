package snapshot

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"slices"
)

// ErrFork reports two different signed envelopes with the same sequence
// number: the agent (or whoever holds its key) signed two histories.
var ErrFork = errors.New("snapshot history forks")

// ErrBrokenLink reports an envelope whose Prev is not the hash of the
// envelope with the previous sequence number.
var ErrBrokenLink = errors.New("snapshot chain link broken")

// ForkError names the sequence number at which a dataset's history forks and
// the two envelope hashes seen there. errors.Is(err, ErrFork) holds.
type ForkError struct {
	Seq  uint64
	A, B [32]byte
}

func (e *ForkError) Error() string {
	return fmt.Sprintf("snapshot history forks at seq %d: envelopes %x and %x", e.Seq, e.A[:8], e.B[:8])
}

// Is makes errors.Is(err, ErrFork) hold.
func (e *ForkError) Is(target error) bool { return target == ErrFork }

// LinkError names an envelope whose Prev does not match the hash of the
// present envelope one sequence number earlier. Since that predecessor is
// also validly signed, the envelope Prev does point at is a second,
// conflicting predecessor: a fork whose other branch is out of sight.
// errors.Is(err, ErrBrokenLink) holds.
type LinkError struct {
	Seq  uint64   // the envelope whose link is broken
	Prev [32]byte // what it names as its predecessor
	Want [32]byte // the hash of the predecessor that is present
}

func (e *LinkError) Error() string {
	return fmt.Sprintf("snapshot seq %d links to %x, but seq %d is %x", e.Seq, e.Prev[:8], e.Seq-1, e.Want[:8])
}

// Is makes errors.Is(err, ErrBrokenLink) hold.
func (e *LinkError) Is(target error) bool { return target == ErrBrokenLink }

// Signed is an envelope that already verified, with the Hash of its signed
// bytes.
type Signed struct {
	Env  *Envelope
	Hash [32]byte
}

// CheckChain checks that verified envelopes of one dataset form one linear
// history. envs may come in any order and may hold the same envelope more
// than once (as several hosts return it). It fails with a *ForkError when two
// envelopes with different hashes share a Seq, and with a *LinkError when an
// envelope's Prev is not the hash of the present envelope with Seq−1. Gaps are
// allowed — a host may have lost some envelopes, and the erasure code, not
// the chain, is what tolerates loss — but wherever both Seq and Seq+1 are
// present they must link. It reports the problem at the lowest Seq.
//
// CheckChain trusts each Hash and does not verify signatures; its input must
// come from Verify and Hash.
func CheckChain(envs []Signed) error {
	if len(envs) == 0 {
		return nil
	}
	s := slices.Clone(envs)
	for i, e := range s {
		if e.Env == nil {
			return fmt.Errorf("check chain: envelope %d is nil", i)
		}
		if e.Env.Guest != s[0].Env.Guest || e.Env.Dataset != s[0].Env.Dataset {
			return fmt.Errorf("check chain: envelope %x is of dataset %x/%x, not %x/%x",
				e.Hash[:8], e.Env.Guest, e.Env.Dataset, s[0].Env.Guest, s[0].Env.Dataset)
		}
	}
	slices.SortFunc(s, func(a, b Signed) int {
		if c := cmp.Compare(a.Env.Seq, b.Env.Seq); c != 0 {
			return c
		}
		return bytes.Compare(a.Hash[:], b.Hash[:])
	})
	s = slices.CompactFunc(s, func(a, b Signed) bool { return a.Hash == b.Hash })
	for i := 1; i < len(s); i++ {
		prev, cur := s[i-1], s[i]
		switch {
		case cur.Env.Seq == prev.Env.Seq:
			return &ForkError{Seq: cur.Env.Seq, A: prev.Hash, B: cur.Hash}
		case cur.Env.Seq == prev.Env.Seq+1 && cur.Env.Prev != prev.Hash:
			return &LinkError{Seq: cur.Env.Seq, Prev: cur.Env.Prev, Want: prev.Hash}
		}
	}
	return nil
}
