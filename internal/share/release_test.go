package share

import (
	"bytes"
	"crypto/hpke"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/embassy-project/embassy/internal/custodian"
	"github.com/embassy-project/embassy/internal/guest"
	"github.com/embassy-project/embassy/internal/sig"
	"github.com/embassy-project/embassy/internal/testenv"
	"github.com/embassy-project/embassy/internal/wire"
)

var updateRelease = flag.Bool("update-release", false, "regenerate the golden release files testdata/share/release-v1.*.rel from the population shares (the host KEM key is made only if missing)")

// hosts are two host KEM key pairs, made once.
var (
	hostOnce   sync.Once
	hostB      hpke.PrivateKey
	hostC      hpke.PrivateKey
	hostKeyErr error
)

func hostKeys(t testing.TB) (b, c hpke.PrivateKey) {
	t.Helper()
	hostOnce.Do(func() {
		if hostB, hostKeyErr = hpke.MLKEM768X25519().GenerateKey(); hostKeyErr != nil {
			return
		}
		hostC, hostKeyErr = hpke.MLKEM768X25519().GenerateKey()
	})
	if hostKeyErr != nil {
		t.Fatal(hostKeyErr)
	}
	return hostB, hostC
}

var testOrder = [16]byte{0x0a, 0xc7, 0x1e, 0x00, 0x5e, 0xed, 0x42, 0x17, 0x99, 0x03, 0xb2, 0x6d, 0x11, 0x8f, 0x20, 0x01}

func targetB(t testing.TB, ds *guest.Dataset) ReleaseTarget {
	b, _ := hostKeys(t)
	return ReleaseTarget{Dataset: ds, Order: testOrder, Host: "host-b", HostKEM: b.PublicKey()}
}

// release releases files[i] for each i in idx (custodian i of f) to t.
func (f *fixture) release(t testing.TB, files [][]byte, tg ReleaseTarget, idx ...int) [][]byte {
	t.Helper()
	var out [][]byte
	for _, i := range idx {
		rel, err := Release(files[i], f.ids[i], tg)
		if err != nil {
			t.Fatalf("release share %d: %v", i, err)
		}
		out = append(out, rel)
	}
	return out
}

func TestReleaseRoundTrip(t *testing.T) {
	f := getFixture(t)
	priv, _ := hostKeys(t)
	for _, tc := range []struct{ threshold, n int }{{2, 3}, {1, 1}, {1, 2}, {3, 5}} {
		t.Run(fmt.Sprintf("%d-of-%d", tc.threshold, tc.n), func(t *testing.T) {
			ds, s := f.dataset(t, "population", tc.threshold, tc.n)
			files := f.split(t, ds, s)
			tg := targetB(t, ds)
			idx := make([]int, tc.n)
			for i := range idx {
				idx[i] = i
			}
			rels := f.release(t, files, tg, idx...)
			var shares []*Share
			for i, rel := range rels {
				h, err := InspectRelease(rel)
				if err != nil {
					t.Fatal(err)
				}
				want := ReleaseHeader{Custodian: f.ids[i].Name, Fingerprint: f.ids[i].Fingerprint(), Dataset: h.Dataset, Order: testOrder, Host: "host-b"}
				if *h != want || !h.Dataset.Equal(ds) {
					t.Fatalf("release %d header: %+v", i, h)
				}
				sh, err := OpenRelease(rel, priv, tg)
				if err != nil {
					t.Fatal(err)
				}
				if sh.Custodian != f.ids[i].Name || sh.Fingerprint != f.ids[i].Fingerprint() || !sh.Dataset.Equal(ds) {
					t.Fatalf("release %d share header: %+v", i, sh.Header)
				}
				shares = append(shares, sh)
			}
			for _, sub := range subsets(tc.n, tc.threshold) {
				var picked []*Share
				for _, i := range sub {
					picked = append(picked, shares[i])
				}
				checkSecret(t, ds, s, picked)
			}
			if tc.threshold > 1 {
				if _, _, err := Combine(shares[:tc.threshold-1]); !errors.Is(err, ErrBelowThreshold) {
					t.Fatalf("below threshold: %v", err)
				}
			}
			// Released and custodian-opened shares of the same split mix.
			if tc.n > 1 {
				mixed := []*Share{shares[0]}
				for i := 1; i < max(tc.threshold, 2); i++ {
					mixed = append(mixed, f.open(t, files, i)[0])
				}
				checkSecret(t, ds, s, mixed)
			}
			// The released share is the share the custodian holds.
			opened := f.open(t, files, 0)[0]
			if !bytes.Equal(opened.data, shares[0].data) {
				t.Fatal("released share differs from the opened share")
			}
		})
	}
}

func TestReleaseErrors(t *testing.T) {
	f := getFixture(t)
	privB, privC := hostKeys(t)
	ds, s := f.dataset(t, "population", 2, 3) // alice, bob, carol
	files := f.split(t, ds, s)
	tg := targetB(t, ds)
	rel := f.release(t, files, tg, 0)[0] // alice's, to host-b

	otherDS, otherS := f.dataset(t, "land", 2, 3) // same custodians
	otherFiles := f.split(t, otherDS, otherS)

	t.Run("release", func(t *testing.T) {
		bad := func(mod func(*ReleaseTarget)) ReleaseTarget {
			c := tg
			mod(&c)
			return c
		}
		dsa, _ := custodian.Generate("alice")
		for _, tc := range []struct {
			name string
			file []byte
			id   *custodian.Identity
			tg   ReleaseTarget
			want error
			says []string
		}{
			{"share of another dataset", otherFiles[0], f.ids[0], tg, ErrWrongTarget, []string{"land", "population"}},
			{"identity of another custodian", files[0], f.ids[1], tg, ErrNoIdentity, []string{"alice"}},
			{"another key under the name", files[0], dsa, tg, ErrNoIdentity, nil},
			{"damaged share", files[0][:len(files[0])-1], f.ids[0], tg, wire.ErrCorrupt, nil},
			{"no dataset", files[0], f.ids[0], bad(func(t *ReleaseTarget) { t.Dataset = nil }), nil, []string{"dataset"}},
			{"zero order", files[0], f.ids[0], bad(func(t *ReleaseTarget) { t.Order = [16]byte{} }), nil, []string{"order"}},
			{"bad host name", files[0], f.ids[0], bad(func(t *ReleaseTarget) { t.Host = "Host B" }), nil, []string{"host"}},
			{"no host key", files[0], f.ids[0], bad(func(t *ReleaseTarget) { t.HostKEM = nil }), nil, []string{"KEM"}},
			{"no identity", files[0], nil, tg, nil, []string{"identity"}},
		} {
			t.Run(tc.name, func(t *testing.T) {
				out, err := Release(tc.file, tc.id, tc.tg)
				if err == nil || out != nil {
					t.Fatal("released")
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
		t.Run("host key of another KEM", func(t *testing.T) {
			k, err := hpke.MLKEM768().GenerateKey()
			if err != nil {
				t.Fatal(err)
			}
			if _, err := Release(files[0], f.ids[0], bad(func(t *ReleaseTarget) { t.HostKEM = k.PublicKey() })); err == nil {
				t.Fatal("released to an ML-KEM-768-only key")
			}
		})
	})

	// dave is not a custodian of ds; he seals a share of it anyway (the
	// share is a real one, stolen from alice).
	alicePart := f.open(t, files, 0)[0].data
	daveRel, err := sealRelease(f.ids[3], ds.Marshal(), testOrder, "host-b", alicePart, privB.PublicKey())
	if err != nil {
		t.Fatal(err)
	}
	// An imposter with their own keys under alice's name.
	imp, _ := custodian.Generate("alice")
	impRel, err := sealRelease(imp, ds.Marshal(), testOrder, "host-b", alicePart, privB.PublicKey())
	if err != nil {
		t.Fatal(err)
	}
	// bob signs a release naming alice (his keys, her name).
	bobAsAlice := *f.ids[1]
	bobAsAlice.Name = "alice"
	bobRel, err := sealRelease(&bobAsAlice, ds.Marshal(), testOrder, "host-b", alicePart, privB.PublicKey())
	if err != nil {
		t.Fatal(err)
	}
	// A forged identity listing the imposter as alice, and a release of it.
	fakeDS := *ds
	fakeDS.Custodians = []guest.CustodianRef{{Name: "alice", Fingerprint: imp.Fingerprint()}, ds.Custodians[1], ds.Custodians[2]}
	fakeRel, err := sealRelease(imp, fakeDS.Marshal(), testOrder, "host-b", alicePart, privB.PublicKey())
	if err != nil {
		t.Fatal(err)
	}

	t.Run("open", func(t *testing.T) {
		otherOrder := testOrder
		otherOrder[15] ^= 1
		for _, tc := range []struct {
			name  string
			file  []byte
			key   hpke.PrivateKey
			tg    ReleaseTarget
			want  error
			field string
			says  []string
		}{
			{"wrong host key", rel, privC, ReleaseTarget{Dataset: ds, Order: testOrder, Host: "host-b"}, ErrHostKey, "", []string{"host-b", "another key"}},
			{"opened as host c", rel, privC, ReleaseTarget{Dataset: ds, Order: testOrder, Host: "host-c", HostKEM: privC.PublicKey()}, ErrWrongTarget, "host", []string{"host-b", "host-c"}},
			{"another order", rel, privB, ReleaseTarget{Dataset: ds, Order: otherOrder, Host: "host-b"}, ErrWrongTarget, "order", []string{hex.EncodeToString(otherOrder[:])}},
			{"another dataset", rel, privB, ReleaseTarget{Dataset: otherDS, Order: testOrder, Host: "host-b"}, ErrWrongTarget, "dataset", []string{"land", "population"}},
			{"custodian not of the dataset", daveRel, privB, tg, ErrNotCustodian, "", []string{"dave"}},
			{"imposter under a custodian's name", impRel, privB, tg, ErrNotCustodian, "", []string{imp.Fingerprint(), f.ids[0].Fingerprint()}},
			{"another custodian's key under the name", bobRel, privB, tg, ErrNotCustodian, "", []string{f.ids[1].Fingerprint()}},
			{"forged identity", fakeRel, privB, tg, ErrNotCustodian, "", nil},
			{"target key mismatch", rel, privB, ReleaseTarget{Dataset: ds, Order: testOrder, Host: "host-b", HostKEM: privC.PublicKey()}, nil, "", []string{"public half"}},
			{"no key", rel, nil, tg, nil, "", nil},
			{"no target dataset", rel, privB, ReleaseTarget{Order: testOrder, Host: "host-b"}, nil, "", nil},
		} {
			t.Run(tc.name, func(t *testing.T) {
				sh, err := OpenRelease(tc.file, tc.key, tc.tg)
				if err == nil || sh != nil {
					t.Fatal("opened")
				}
				if tc.want != nil && !errors.Is(err, tc.want) {
					t.Fatalf("got %v, want %v", err, tc.want)
				}
				if tc.field != "" {
					var te *TargetError
					if !errors.As(err, &te) || te.Field != tc.field {
						t.Fatalf("got %v, want a TargetError for %s", err, tc.field)
					}
				}
				for _, w := range tc.says {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("error %q does not mention %q", err, w)
					}
				}
				if errors.Is(err, wire.ErrCorrupt) {
					t.Errorf("policy refusal reported as corruption: %v", err)
				}
			})
		}
	})

	t.Run("inspect", func(t *testing.T) {
		for _, file := range [][]byte{daveRel, impRel, bobRel} {
			if _, err := InspectRelease(file); !errors.Is(err, ErrNotCustodian) {
				t.Fatalf("got %v, want ErrNotCustodian", err)
			}
		}
		// A self-consistent forgery inspects: only the target check catches it.
		if _, err := InspectRelease(fakeRel); err != nil {
			t.Fatalf("forged identity: %v", err)
		}
	})

	// A quorum's worth of releases mixing in one for another order, host or
	// dataset never reaches Combine.
	t.Run("mixed releases refused", func(t *testing.T) {
		otherOrder := testOrder
		otherOrder[0] ^= 0xff
		forOrder := f.release(t, files, ReleaseTarget{Dataset: ds, Order: otherOrder, Host: "host-b", HostKEM: privB.PublicKey()}, 1)[0]
		forHost := f.release(t, files, ReleaseTarget{Dataset: ds, Order: testOrder, Host: "host-c", HostKEM: privB.PublicKey()}, 1)[0]
		forDS := f.release(t, otherFiles, ReleaseTarget{Dataset: otherDS, Order: testOrder, Host: "host-b", HostKEM: privB.PublicKey()}, 1)[0]
		for _, file := range [][]byte{forOrder, forHost, forDS} {
			if _, err := OpenRelease(file, privB, tg); !errors.Is(err, ErrWrongTarget) {
				t.Fatalf("got %v, want ErrWrongTarget", err)
			}
		}
	})
}

// releaseOffsets names the fields of a release file: where each starts.
func releaseOffsets(t *testing.T, file []byte, name string, dsLen int) map[string]int {
	t.Helper()
	off := map[string]int{"magic": 0}
	o := len(ReleaseMagic)
	off["custodian"] = o
	o += 1 + len(name)
	off["kem key"] = o
	o += custodian.KEMPublicKeySize
	off["verifier"] = o
	off["verifier ml-dsa"] = o + 32
	o += sig.PublicKeySize
	off["dataset"] = o
	o += 2 + dsLen // dsLen < 16384
	off["dataset end"] = o - 1
	off["order"] = o
	o += 16
	off["host"] = o
	o += 1 + len("host-b")
	off["host end"] = o - 1
	off["enc"] = o
	o += EncSize
	off["sealed"] = o
	o += 1 + SealedSize
	off["signature"] = o
	off["signature ml-dsa"] = o + 64
	o += sig.SignatureSize
	off["last"] = o - 1
	if o != len(file) {
		t.Fatalf("layout: %d bytes, file has %d", o, len(file))
	}
	return off
}

func TestReleaseForgery(t *testing.T) {
	f := getFixture(t)
	priv, _ := hostKeys(t)
	ds, s := f.dataset(t, "population", 2, 3)
	files := f.split(t, ds, s)
	tg := targetB(t, ds)
	rels := f.release(t, files, tg, 0, 1)
	rel := rels[0]
	off := releaseOffsets(t, rel, "alice", len(ds.Marshal()))

	for name, o := range off {
		for _, bit := range []byte{0x01, 0x80} {
			t.Run(fmt.Sprintf("%s^%02x", name, bit), func(t *testing.T) {
				c := bytes.Clone(rel)
				c[o] ^= bit
				if _, err := InspectRelease(c); !errors.Is(err, wire.ErrCorrupt) {
					t.Fatalf("inspect: got %v, want ErrCorrupt", err)
				}
				if _, err := OpenRelease(c, priv, tg); !errors.Is(err, wire.ErrCorrupt) {
					t.Fatalf("open: got %v, want ErrCorrupt", err)
				}
			})
		}
	}
	t.Run("every byte", func(t *testing.T) {
		step := 1
		if testing.Short() {
			step = 97
		}
		for o := 0; o < len(rel); o += step {
			c := bytes.Clone(rel)
			c[o] ^= 0x04
			if _, err := InspectRelease(c); !errors.Is(err, wire.ErrCorrupt) {
				t.Fatalf("offset %d of %d: got %v, want ErrCorrupt", o, len(rel), err)
			}
		}
	})
	t.Run("signature of another release", func(t *testing.T) {
		c := append(bytes.Clone(rel[:len(rel)-sig.SignatureSize]), rels[1][len(rels[1])-sig.SignatureSize:]...)
		_, err := InspectRelease(c)
		if !errors.Is(err, wire.ErrCorrupt) || !errors.Is(err, sig.ErrBadSignature) {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("body of another release", func(t *testing.T) {
		// bob's encrypted share under alice's header and signature.
		bobHdr := off["enc"] - len("alice") + len("bob")
		c := append(append(bytes.Clone(rel[:off["enc"]]), rels[1][bobHdr:len(rels[1])-sig.SignatureSize]...), rel[off["signature"]:]...)
		if _, err := OpenRelease(c, priv, tg); !errors.Is(err, wire.ErrCorrupt) {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("re-signed with an edited header", func(t *testing.T) {
		// alice herself signs a release whose header (order) was changed
		// after sealing: the signature is good, the AEAD refuses.
		c := bytes.Clone(rel[:off["signature"]])
		c[off["order"]] ^= 1
		sg, err := f.ids[0].Signer.Sign(ReleaseDomain, c)
		if err != nil {
			t.Fatal(err)
		}
		c = append(c, sg...)
		h, err := InspectRelease(c)
		if err != nil {
			t.Fatal(err)
		}
		tg2 := tg
		tg2.Order = h.Order
		if _, err := OpenRelease(c, priv, tg2); !errors.Is(err, ErrHostKey) {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("signed under another domain", func(t *testing.T) {
		c := bytes.Clone(rel[:off["signature"]])
		sg, err := f.ids[0].Signer.Sign("share", c)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := InspectRelease(append(c, sg...)); !errors.Is(err, wire.ErrCorrupt) {
			t.Fatalf("got %v", err)
		}
	})
}

func TestReleaseTruncated(t *testing.T) {
	f := getFixture(t)
	priv, _ := hostKeys(t)
	ds, s := f.dataset(t, "population", 2, 3)
	tg := targetB(t, ds)
	rel := f.release(t, f.split(t, ds, s), tg, 0)[0]
	for n := range len(rel) {
		if _, err := InspectRelease(rel[:n]); !errors.Is(err, wire.ErrCorrupt) {
			t.Fatalf("%d bytes: got %v", n, err)
		}
		if n%101 == 0 || n > len(rel)-sig.SignatureSize-2 {
			if _, err := OpenRelease(rel[:n], priv, tg); !errors.Is(err, wire.ErrCorrupt) {
				t.Fatalf("open %d bytes: got %v", n, err)
			}
		}
	}
	for _, extra := range [][]byte{{0}, rel[:10]} {
		if _, err := InspectRelease(append(bytes.Clone(rel), extra...)); !errors.Is(err, wire.ErrCorrupt) {
			t.Fatalf("trailing bytes: got %v", err)
		}
	}
	if _, err := InspectRelease(make([]byte, MaxReleaseSize+1)); !errors.Is(err, wire.ErrCorrupt) {
		t.Fatalf("oversized: got %v", err)
	}
}

// TestReleaseNoPlaintext checks that no run of 16 bytes of the plaintext
// share or the dataset secret appears in a release file.
func TestReleaseNoPlaintext(t *testing.T) {
	f := getFixture(t)
	ds, s := f.dataset(t, "population", 2, 3)
	files := f.split(t, ds, s)
	tg := targetB(t, ds)
	for i := range files {
		plain := bytes.Clone(f.open(t, files, i)[0].data)
		rel := f.release(t, files, tg, i)[0]
		for _, secret := range [][]byte{plain, s.Bytes()} {
			for o := 0; o+16 <= len(secret); o++ {
				if bytes.Contains(rel, secret[o:o+16]) {
					t.Fatalf("release %d contains plaintext bytes %d..%d", i, o, o+16)
				}
			}
		}
	}
}

// TestReleaseNoFiles runs Release with the working directory and TMPDIR
// pointing at empty directories and checks they stay empty: Release writes
// nothing anywhere a careless implementation would.
func TestReleaseNoFiles(t *testing.T) {
	f := getFixture(t)
	ds, s := f.dataset(t, "population", 2, 3)
	files := f.split(t, ds, s)
	tg := targetB(t, ds)
	wd, tmp := t.TempDir(), t.TempDir()
	t.Chdir(wd)
	t.Setenv("TMPDIR", tmp)
	a := f.release(t, files, tg, 0)[0]
	b := f.release(t, files, tg, 0)[0]
	if bytes.Equal(a, b) {
		t.Fatal("two releases of one share are equal: encryption is not randomized")
	}
	for _, d := range []string{wd, tmp} {
		ents, err := os.ReadDir(d)
		if err != nil {
			t.Fatal(err)
		}
		if len(ents) != 0 {
			t.Fatalf("Release left %d entries in %s", len(ents), d)
		}
	}
}

// Golden vectors: testdata/share/release-v1.NAME.rel are the population
// shares of alice, bob and carol (testdata/share/population-NAME.share)
// released for goldenOrder to host "host-b", whose KEM key is
// testdata/share/release-v1.host-kem.key (the host node's kem.key format).
var goldenOrder = [16]byte{0x6f, 0x72, 0x64, 0x65, 0x72, 0x2d, 0x76, 0x31, 0x2d, 0x67, 0x6f, 0x6c, 0x64, 0x65, 0x6e, 0x01}

const (
	goldenHost       = "host-b"
	goldenHostKEMKey = "release-v1.host-kem.key"
	hostKEMHeader    = "embassy-host-kem-key-v1" // internal/hostnode's kem.key header
)

var goldenReleasers = []string{"alice", "bob", "carol"}

func loadGoldenHostKey(t *testing.T) hpke.PrivateKey {
	t.Helper()
	path := filepath.Join(goldenDir, goldenHostKEMKey)
	if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) && *updateRelease {
		k, err := hpke.MLKEM768X25519().GenerateKey()
		if err != nil {
			t.Fatal(err)
		}
		seed, err := k.Bytes()
		if err != nil {
			t.Fatal(err)
		}
		testenv.WriteFile(t, path, []byte(hostKEMHeader+"\n"+base64.StdEncoding.EncodeToString(seed)+"\n"))
	}
	b := testenv.ReadFile(t, path)
	first, rest, ok := strings.Cut(string(b), "\n")
	if !ok || first != hostKEMHeader {
		t.Fatalf("%s: not a host KEM key file", path)
	}
	seed, err := base64.StdEncoding.DecodeString(strings.TrimSuffix(rest, "\n"))
	if err != nil {
		t.Fatal(err)
	}
	k, err := hpke.MLKEM768X25519().NewPrivateKey(seed)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestReleaseGolden(t *testing.T) {
	host := loadGoldenHostKey(t)
	ds, err := guest.ParseDataset(testenv.ReadFile(t, filepath.Join(guestDir, "population.dataset")))
	if err != nil {
		t.Fatal(err)
	}
	secret := testenv.ReadFile(t, filepath.Join(guestDir, "population.secret"))
	tg := ReleaseTarget{Dataset: ds, Order: goldenOrder, Host: goldenHost, HostKEM: host.PublicKey()}
	if *updateRelease {
		for _, n := range goldenReleasers {
			id, err := custodian.ParseIdentity(testenv.ReadFile(t, filepath.Join(custodianDir, n+".key")))
			if err != nil {
				t.Fatal(err)
			}
			rel, err := Release(testenv.ReadFile(t, filepath.Join(goldenDir, "population-"+n+".share")), id, tg)
			if err != nil {
				t.Fatal(err)
			}
			testenv.WriteFile(t, filepath.Join(goldenDir, "release-v1."+n+".rel"), rel)
		}
	}
	var shares []*Share
	for _, n := range goldenReleasers {
		rel := testenv.ReadFile(t, filepath.Join(goldenDir, "release-v1."+n+".rel"))
		rcpt, err := custodian.ParseRecipient(testenv.ReadFile(t, filepath.Join(custodianDir, n+".pub")))
		if err != nil {
			t.Fatal(err)
		}
		h, err := InspectRelease(rel)
		if err != nil {
			t.Fatalf("%s: %v", n, err)
		}
		if h.Custodian != n || h.Fingerprint != rcpt.Fingerprint() || !h.Dataset.Equal(ds) || h.Order != goldenOrder || h.Host != goldenHost {
			t.Fatalf("%s: header %+v", n, h)
		}
		sh, err := OpenRelease(rel, host, tg)
		if err != nil {
			t.Fatalf("%s: %v", n, err)
		}
		shares = append(shares, sh)
		other := tg
		other.Host = "host-c"
		if _, err := OpenRelease(rel, host, other); !errors.Is(err, ErrWrongTarget) {
			t.Fatalf("%s as host-c: %v", n, err)
		}
	}
	gotDS, s, err := Combine(shares)
	if err != nil {
		t.Fatal(err)
	}
	if !gotDS.Equal(ds) || !bytes.Equal(s.Bytes(), secret) {
		t.Fatal("golden releases combine to the wrong secret")
	}
	if _, _, err := Combine(shares[:2]); !errors.Is(err, ErrBelowThreshold) {
		t.Fatalf("two golden releases: %v", err)
	}
}

func BenchmarkRelease(b *testing.B) {
	f := getFixture(b)
	priv, _ := hostKeys(b)
	ds, s := f.dataset(b, "population", 2, 3)
	files := f.split(b, ds, s)
	tg := targetB(b, ds)
	b.ReportAllocs()
	for b.Loop() {
		rel, err := Release(files[0], f.ids[0], tg)
		if err != nil {
			b.Fatal(err)
		}
		sh, err := OpenRelease(rel, priv, tg)
		if err != nil {
			b.Fatal(err)
		}
		sh.Wipe()
	}
}
