package proof

import (
	"fmt"
	"testing"

	"github.com/embassy-project/embassy/internal/testenv"
)

func BenchmarkOutboard(b *testing.B) {
	for _, n := range []int{1 << 20, 16 << 20} {
		data := testenv.RandBytes(1, n)
		b.Run(fmt.Sprintf("%dMiB", n>>20), func(b *testing.B) {
			b.SetBytes(int64(n))
			b.ReportAllocs()
			for b.Loop() {
				Outboard(data)
			}
		})
	}
}

// auditFixture is a host with 8 shards of 16 MiB and a challenge of
// Required(0.01, 0.9999) = 917 items over them.
func auditFixture(b *testing.B) (*host, *Challenge, *Answer) {
	h := newHost()
	var shards []Shard
	for i := range 8 {
		shards = append(shards, h.put(testenv.RandBytes(byte(i), 16<<20)))
	}
	m, _ := Required(0.01, 0.9999)
	c := &Challenge{Nonce: [32]byte{1}, Items: Sample([32]byte{1}, shards, m)}
	a, err := Respond(c, h.open)
	if err != nil {
		b.Fatal(err)
	}
	return h, c, a
}

func BenchmarkRespond(b *testing.B) {
	h, c, _ := auditFixture(b)
	b.Run("items=917", func(b *testing.B) {
		b.SetBytes(int64(len(c.Items)) * GroupSize)
		b.ReportAllocs()
		for b.Loop() {
			if _, err := Respond(c, h.open); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func BenchmarkVerify(b *testing.B) {
	h, c, a := auditFixture(b)
	known := sizesOf()
	for id, d := range h.data {
		known[id] = int64(len(d))
	}
	enc, err := a.Marshal()
	if err != nil {
		b.Fatal(err)
	}
	b.Logf("answer for %d items: %d bytes (%.0f per item)", len(c.Items), len(enc), float64(len(enc))/float64(len(c.Items)))
	b.Run("items=917", func(b *testing.B) {
		b.SetBytes(int64(len(enc)))
		b.ReportAllocs()
		for b.Loop() {
			r, err := Verify(c, a, known)
			if err != nil || !r.Passed() {
				b.Fatal(err, r.OK)
			}
		}
	})
}
