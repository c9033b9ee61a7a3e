package share

import (
	"bytes"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"github.com/embassy-project/embassy/internal/testenv"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/embassy-project/embassy/internal/custodian"
	"github.com/embassy-project/embassy/internal/guest"
	"github.com/embassy-project/embassy/internal/sig"
	"github.com/embassy-project/embassy/internal/wire"
)

var update = flag.Bool("update", false, "regenerate the golden share files in testdata/share from testdata/custodian and testdata/guest")

const (
	goldenDir    = "../../testdata/share"
	guestDir     = "../../testdata/guest"
	custodianDir = "../../testdata/custodian"
)

// fixture is a guest with five custodians and datasets to split.
type fixture struct {
	ids   []*custodian.Identity // alice, bob, carol, dave, erin
	rcpts []*custodian.Recipient
	guest guest.ID
	agent sig.PublicKey
}

var (
	fixOnce sync.Once
	fix     fixture
	fixErr  error
)

func getFixture(t testing.TB) *fixture {
	t.Helper()
	fixOnce.Do(func() {
		for _, n := range []string{"alice", "bob", "carol", "dave", "erin"} {
			id, err := custodian.Generate(n)
			if err != nil {
				fixErr = err
				return
			}
			fix.ids = append(fix.ids, id)
			fix.rcpts = append(fix.rcpts, id.Recipient())
		}
		k, err := sig.Generate()
		if err != nil {
			fixErr = err
			return
		}
		fix.agent = k.Public()
		fix.guest, fixErr = guest.NewID()
	})
	if fixErr != nil {
		t.Fatal(fixErr)
	}
	return &fix
}

// dataset makes a dataset of f's guest shared among f's first n custodians.
func (f *fixture) dataset(t testing.TB, name string, threshold, n int) (*guest.Dataset, *guest.Secret) {
	t.Helper()
	ds, s, err := guest.NewDataset(f.guest, "testland", name, f.agent, threshold, f.rcpts[:n])
	if err != nil {
		t.Fatal(err)
	}
	return ds, s
}

func (f *fixture) split(t testing.TB, ds *guest.Dataset, s *guest.Secret) [][]byte {
	t.Helper()
	files, err := Split(ds, s, f.rcpts[:len(ds.Custodians)])
	if err != nil {
		t.Fatal(err)
	}
	return files
}

// open opens files[i] for each i in idx with all of f's identities.
func (f *fixture) open(t testing.TB, files [][]byte, idx ...int) []*Share {
	t.Helper()
	var out []*Share
	for _, i := range idx {
		s, err := Open(files[i], f.ids)
		if err != nil {
			t.Fatalf("open share %d: %v", i, err)
		}
		out = append(out, s)
	}
	return out
}

// subsets returns every k-subset of {0..n-1}.
func subsets(n, k int) [][]int {
	if k == 0 {
		return [][]int{nil}
	}
	var out [][]int
	for first := 0; first+k <= n; first++ {
		for _, rest := range subsets(n-first-1, k-1) {
			s := []int{first}
			for _, r := range rest {
				s = append(s, first+1+r)
			}
			out = append(out, s)
		}
	}
	return out
}

func checkSecret(t *testing.T, ds *guest.Dataset, s *guest.Secret, shares []*Share) {
	t.Helper()
	gotDS, got, err := Combine(shares)
	if err != nil {
		t.Fatal(err)
	}
	if !gotDS.Equal(ds) || !bytes.Equal(got.Bytes(), s.Bytes()) {
		t.Fatal("combined secret differs")
	}
}

func TestRoundTrip(t *testing.T) {
	f := getFixture(t)
	for _, tc := range []struct{ threshold, n int }{{3, 5}, {1, 1}, {1, 3}, {2, 2}, {5, 5}, {2, 3}} {
		t.Run(fmt.Sprintf("%d-of-%d", tc.threshold, tc.n), func(t *testing.T) {
			ds, s := f.dataset(t, "population", tc.threshold, tc.n)
			files := f.split(t, ds, s)
			for i, file := range files {
				h, err := Inspect(file)
				if err != nil {
					t.Fatal(err)
				}
				if h.Custodian != f.rcpts[i].Name || h.Fingerprint != f.rcpts[i].Fingerprint() || !h.Dataset.Equal(ds) {
					t.Fatalf("share %d header: %+v", i, h)
				}
			}
			for k := tc.threshold; k <= tc.n; k++ {
				for _, sub := range subsets(tc.n, k) {
					t.Run(fmt.Sprint(sub), func(t *testing.T) {
						checkSecret(t, ds, s, f.open(t, files, sub...))
					})
				}
			}
			// Order does not matter.
			rev := make([]int, tc.n)
			for i := range rev {
				rev[i] = tc.n - 1 - i
			}
			checkSecret(t, ds, s, f.open(t, files, rev...))
		})
	}
}

func TestCombineErrors(t *testing.T) {
	f := getFixture(t)
	ds, s := f.dataset(t, "population", 3, 5)
	files := f.split(t, ds, s)
	otherDS, otherS := f.dataset(t, "land", 3, 5)
	otherFiles := f.split(t, otherDS, otherS)

	otherGuestID, _ := guest.NewID()
	og, ogS, err := guest.NewDataset(otherGuestID, "otherland", "population", f.agent, 3, f.rcpts)
	if err != nil {
		t.Fatal(err)
	}
	ogFiles := f.split(t, og, ogS)

	// Forgery 1: the attacker knows the public identity and the custodians'
	// public keys, and seals shares of a secret of their own choosing.
	_, attackerS := f.dataset(t, "population", 3, 5)
	forged := forge(t, ds, attackerS, f.rcpts)
	// Forgery 2: the attacker makes a whole new identity with their own keys
	// under the same names and seals shares of it.
	fakeDS, fakeS := f.dataset(t, "population", 3, 5)
	fakeFiles := f.split(t, fakeDS, fakeS)

	open := func(fs ...[]byte) []*Share {
		var out []*Share
		for _, file := range fs {
			sh, err := Open(file, f.ids)
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, sh)
		}
		return out
	}
	wiped := open(files[2])[0]
	wiped.Wipe()

	for _, tc := range []struct {
		name   string
		shares []*Share
		want   error
		says   []string
	}{
		{"no shares", nil, ErrBelowThreshold, []string{"no shares"}},
		{"below threshold", open(files[0], files[1]), ErrBelowThreshold, []string{"have 2", "needs 3"}},
		{"duplicate", open(files[0], files[1], files[1]), ErrDuplicate, []string{"bob"}},
		{"duplicate enough", open(files[0], files[1], files[2], files[0]), ErrDuplicate, []string{"alice"}},
		{"another dataset", open(files[0], files[1], otherFiles[2]), ErrMixed, []string{"population", "land", "carol"}},
		{"another guest", open(files[0], files[1], ogFiles[2]), ErrMixed, []string{"testland", "otherland"}},
		{"forged shares, real identity", open(forged[0], forged[1], forged[2]), ErrWrongShares, []string{"population"}},
		{"one forged share", open(files[0], files[1], forged[2]), ErrWrongShares, nil},
		{"one forged share above threshold", open(files[0], files[1], files[2], forged[3]), ErrWrongShares, nil},
		{"forged identity mixed in", open(files[0], files[1], fakeFiles[2]), ErrMixed, nil},
		{"wiped share", []*Share{open(files[0])[0], open(files[1])[0], wiped}, nil, []string{"wiped"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, got, err := Combine(tc.shares)
			if err == nil || got != nil {
				t.Fatal("combined")
			}
			if tc.want != nil && !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
			for _, w := range tc.says {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}

	t.Run("below threshold fields", func(t *testing.T) {
		_, _, err := Combine(open(files[4]))
		var bt *BelowThresholdError
		if !errors.As(err, &bt) || bt.Have != 1 || bt.Need != 3 {
			t.Fatalf("got %v", err)
		}
	})

	// A complete forged identity restores the attacker's secret: only the
	// fingerprint published at init tells it apart, so it must differ.
	t.Run("forged identity alone", func(t *testing.T) {
		gotDS, _, err := Combine(open(fakeFiles[0], fakeFiles[1], fakeFiles[2]))
		if err != nil {
			t.Fatal(err)
		}
		if gotDS.Fingerprint() == ds.Fingerprint() || gotDS.Equal(ds) {
			t.Fatal("forged identity has the real fingerprint")
		}
	})
}

// forge seals shares of s for ds without Split's check that s belongs to ds,
// as an attacker holding only public keys can.
func forge(t *testing.T, ds *guest.Dataset, s *guest.Secret, rcpts []*custodian.Recipient) [][]byte {
	t.Helper()
	parts, err := splitSecret(s.Bytes(), len(rcpts), ds.Threshold)
	if err != nil {
		t.Fatal(err)
	}
	var out [][]byte
	for i, r := range rcpts {
		file, err := seal(r.Name, r.Fingerprint(), ds.Marshal(), parts[i], r.KEM)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, file)
	}
	return out
}

func TestSplitErrors(t *testing.T) {
	f := getFixture(t)
	ds, s := f.dataset(t, "population", 3, 5)
	_, otherS := f.dataset(t, "population", 3, 5)
	swapped := append([]*custodian.Recipient{f.rcpts[1], f.rcpts[0]}, f.rcpts[2:]...)
	imposter, _ := custodian.Generate("carol")
	replaced := append(append(f.rcpts[:2:2], imposter.Recipient()), f.rcpts[3:]...)
	for _, tc := range []struct {
		name  string
		s     *guest.Secret
		rcpts []*custodian.Recipient
	}{
		{"secret of another dataset", otherS, f.rcpts},
		{"too few custodians", s, f.rcpts[:4]},
		{"custodians out of order", s, swapped},
		{"another key under a listed name", s, replaced},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := Split(ds, tc.s, tc.rcpts); err == nil {
				t.Fatal("split")
			}
		})
	}
	if _, err := Split(ds, otherS, f.rcpts); !errors.Is(err, guest.ErrWrongSecret) {
		t.Fatalf("wrong secret: got %v", err)
	}
}

func TestOpenErrors(t *testing.T) {
	f := getFixture(t)
	ds, s := f.dataset(t, "population", 3, 5)
	files := f.split(t, ds, s)
	file := files[0] // alice's
	hdrLen := len(file) - EncSize - 1 - SealedSize

	t.Run("no identity", func(t *testing.T) {
		_, err := Open(file, []*custodian.Identity{f.ids[2], f.ids[3]})
		if !errors.Is(err, ErrNoIdentity) || !strings.Contains(err.Error(), "alice") {
			t.Fatalf("got %v", err)
		}
		if _, err := Open(file, nil); !errors.Is(err, ErrNoIdentity) {
			t.Fatalf("no identities: got %v", err)
		}
	})
	t.Run("same name, another key", func(t *testing.T) {
		other, _ := custodian.Generate("alice")
		_, err := Open(file, []*custodian.Identity{other})
		if !errors.Is(err, ErrNoIdentity) || !strings.Contains(err.Error(), other.Fingerprint()) {
			t.Fatalf("got %v", err)
		}
		if _, err := Open(file, []*custodian.Identity{other, f.ids[0]}); err != nil {
			t.Fatalf("right identity after a wrong one: %v", err)
		}
	})
	// The header is public and unauthenticated by a signature, but it is the
	// AEAD's additional data: editing it, even to something that parses,
	// makes decryption fail.
	t.Run("header edited", func(t *testing.T) {
		dsOff := bytes.Index(file, ds.ID[:])
		for _, off := range []int{dsOff, dsOff + 15, bytes.Index(file, ds.MACCommit[:])} {
			c := bytes.Clone(file)
			c[off] ^= 0x80
			if _, err := Inspect(c); err != nil {
				t.Fatalf("edited header does not parse: %v", err)
			}
			if _, err := Open(c, f.ids); !errors.Is(err, wire.ErrCorrupt) {
				t.Fatalf("offset %d: got %v, want ErrCorrupt", off, err)
			}
		}
	})
	t.Run("header swapped", func(t *testing.T) {
		// Alice's body under a header naming another dataset of the same
		// custodians.
		otherDS, otherS := f.dataset(t, "land", 3, 5)
		other := f.split(t, otherDS, otherS)[0]
		oHdr := len(other) - EncSize - 1 - SealedSize
		c := append(bytes.Clone(other[:oHdr]), file[hdrLen:]...)
		if _, err := Open(c, f.ids); !errors.Is(err, wire.ErrCorrupt) {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("payload corrupted", func(t *testing.T) {
		for _, off := range []int{hdrLen, hdrLen + EncSize/2, len(file) - SealedSize, len(file) - 1} {
			c := bytes.Clone(file)
			c[off] ^= 0x01
			if _, err := Open(c, f.ids); !errors.Is(err, wire.ErrCorrupt) {
				t.Fatalf("offset %d: got %v, want ErrCorrupt", off, err)
			}
		}
	})
	t.Run("every byte flipped", func(t *testing.T) {
		for off := range file {
			c := bytes.Clone(file)
			c[off] ^= 0x01
			if _, err := Open(c, f.ids); !errors.Is(err, wire.ErrCorrupt) {
				t.Fatalf("offset %d of %d: got %v, want ErrCorrupt", off, len(file), err)
			}
		}
	})
	t.Run("truncated and extended", func(t *testing.T) {
		for n := 0; n < len(file); n += 13 {
			if _, err := Open(file[:n], f.ids); !errors.Is(err, wire.ErrCorrupt) {
				t.Fatalf("%d bytes: got %v", n, err)
			}
		}
		if _, err := Open(append(bytes.Clone(file), 0), f.ids); !errors.Is(err, wire.ErrCorrupt) {
			t.Fatalf("trailing byte: got %v", err)
		}
	})
	t.Run("custodian not listed", func(t *testing.T) {
		small, smallS := f.dataset(t, "land", 2, 3) // alice, bob, carol
		dave := f.rcpts[3]
		parts, _ := splitSecret(smallS.Bytes(), 3, 2)
		c, err := seal(dave.Name, dave.Fingerprint(), small.Marshal(), parts[0], dave.KEM)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := Inspect(c); !errors.Is(err, wire.ErrCorrupt) || !strings.Contains(err.Error(), "dave") {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("bad x-coordinate", func(t *testing.T) {
		part := append(bytes.Clone(s.Bytes()), 0) // x = 0 under threshold 3
		r := f.rcpts[0]
		c, err := seal(r.Name, r.Fingerprint(), ds.Marshal(), part, r.KEM)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := Open(c, f.ids); !errors.Is(err, wire.ErrCorrupt) {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("no key material in errors", func(t *testing.T) {
		kem, _ := f.ids[0].KEM.Bytes()
		c := bytes.Clone(file)
		c[len(c)-1] ^= 1
		_, err := Open(c, f.ids)
		if strings.Contains(err.Error(), fmt.Sprintf("%x", kem[:8])) {
			t.Fatal("error quotes the key")
		}
	})
}

// Golden vectors: testdata/share/population-NAME.share for the five test
// custodians, sealed to testdata/custodian/NAME.pub for the dataset
// testdata/guest/population.dataset, whose secret is population.secret.
var goldenNames = []string{"alice", "bob", "carol", "dave", "erin"}

func TestGolden(t *testing.T) {
	var ids []*custodian.Identity
	var rcpts []*custodian.Recipient
	for _, n := range goldenNames {
		id, err := custodian.ParseIdentity(testenv.ReadFile(t, filepath.Join(custodianDir, n+".key")))
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
		rcpts = append(rcpts, id.Recipient())
	}
	ds, err := guest.ParseDataset(testenv.ReadFile(t, filepath.Join(guestDir, "population.dataset")))
	if err != nil {
		t.Fatal(err)
	}
	secret := testenv.ReadFile(t, filepath.Join(guestDir, "population.secret"))
	if *update {
		s, err := guest.ParseSecret(secret)
		if err != nil {
			t.Fatal(err)
		}
		files, err := Split(ds, s, rcpts)
		if err != nil {
			t.Fatal(err)
		}
		for i, n := range goldenNames {
			if err := os.WriteFile(filepath.Join(goldenDir, "population-"+n+".share"), files[i], 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	var shares []*Share
	for i, n := range goldenNames {
		file := testenv.ReadFile(t, filepath.Join(goldenDir, "population-"+n+".share"))
		h, err := Inspect(file)
		if err != nil {
			t.Fatal(err)
		}
		if h.Custodian != n || h.Fingerprint != rcpts[i].Fingerprint() || !h.Dataset.Equal(ds) {
			t.Fatalf("%s: header %+v", n, h)
		}
		sh, err := Open(file, ids)
		if err != nil {
			t.Fatal(err)
		}
		shares = append(shares, sh)
	}
	for _, sub := range subsets(len(shares), 3) {
		var picked []*Share
		for _, i := range sub {
			picked = append(picked, shares[i])
		}
		gotDS, s, err := Combine(picked)
		if err != nil {
			t.Fatalf("%v: %v", sub, err)
		}
		if !gotDS.Equal(ds) || !bytes.Equal(s.Bytes(), secret) {
			t.Fatalf("%v: wrong secret", sub)
		}
	}
	if _, _, err := Combine(shares[:2]); !errors.Is(err, ErrBelowThreshold) {
		t.Fatalf("two golden shares: %v", err)
	}
}

func FuzzInspect(f *testing.F) {
	for _, n := range goldenNames[:2] {
		b, err := os.ReadFile(filepath.Join(goldenDir, "population-"+n+".share"))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
		f.Add(b[:len(b)-SealedSize])
	}
	f.Add([]byte(Magic))
	f.Fuzz(func(t *testing.T, b []byte) {
		h, err := Inspect(b)
		if err != nil {
			if !errors.Is(err, wire.ErrCorrupt) {
				t.Fatalf("error does not wrap ErrCorrupt: %v", err)
			}
			return
		}
		// A parsed header re-encodes to the bytes it came from.
		w := wire.NewWriter(nil)
		w.Fixed([]byte(Magic))
		w.String(h.Custodian)
		fp, _ := hex.DecodeString(h.Fingerprint)
		w.Fixed(fp)
		w.LenBytes(h.Dataset.Marshal())
		if !bytes.HasPrefix(b, w.Bytes()) || len(b) != w.Len()+EncSize+1+SealedSize {
			t.Fatal("header does not re-encode to the input")
		}
	})
}

func BenchmarkSplitCombine(b *testing.B) {
	f := getFixture(b)
	for _, tc := range []struct{ threshold, n int }{{2, 3}, {3, 5}} {
		b.Run(fmt.Sprintf("%d-of-%d", tc.threshold, tc.n), func(b *testing.B) {
			ds, s := f.dataset(b, "population", tc.threshold, tc.n)
			b.SetBytes(guest.SecretSize)
			b.ReportAllocs()
			for b.Loop() {
				files, err := Split(ds, s, f.rcpts[:tc.n])
				if err != nil {
					b.Fatal(err)
				}
				var shares []*Share
				for _, file := range files[:tc.threshold] {
					sh, err := Open(file, f.ids)
					if err != nil {
						b.Fatal(err)
					}
					shares = append(shares, sh)
				}
				if _, _, err := Combine(shares); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
