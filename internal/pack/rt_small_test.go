package pack

import (
	"math/rand/v2"
	"testing"
)

// TestRoundTripSmallMixed compresses small inputs of every kind (text,
// random, half and half) and sizes, the way tree pieces and tiny files are.
func TestRoundTripSmallMixed(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for size := 1; size < 3000; size += 1 + size/50 {
		for kind := 0; kind < 3; kind++ {
			raw := make([]byte, size)
			for i := range raw {
				switch {
				case kind == 0, kind == 2 && i < size/2:
					raw[i] = "abcab "[r.IntN(6)]
				default:
					raw[i] = byte(r.Uint32())
				}
			}
			stored := Compress(nil, raw)
			got, err := Decompress(nil, stored, len(raw))
			if err != nil {
				t.Fatalf("size %d kind %d codec %d stored %d: %v", size, kind, stored[0], len(stored), err)
			}
			if string(got) != string(raw) {
				t.Fatalf("size %d kind %d: round trip differs", size, kind)
			}
		}
	}
}
