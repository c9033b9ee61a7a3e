package witness

import (
	"fmt"
	"testing"

	"github.com/transparency-dev/tessera"
)

// TestTesseraPolicy checks that cosignatures from this witness satisfy
// tessera's own witness policy code, with the two keys as an "all" group.
func TestTesseraPolicy(t *testing.T) {
	l := newTestLog(t, "example.com/log", 12, 1)
	w1 := startWitness(t, "w1.example/w", "", l)
	w2 := startWitness(t, "w2.example/w", "", l)
	merged, resps := cosignedBy(t, l, 12, w1, w2)
	policy := fmt.Sprintf(`witness w1ed %s %s
witness w1ml %s %s
group w1 all w1ed w1ml
witness w2ed %s %s
witness w2ml %s %s
group w2 all w2ed w2ml
group both all w1 w2
quorum both
`, w1.pub.Ed25519, w1.srv.URL, w1.pub.MLDSA, w1.srv.URL, w2.pub.Ed25519, w2.srv.URL, w2.pub.MLDSA, w2.srv.URL)
	g, err := tessera.NewWitnessGroupFromPolicy([]byte(policy))
	if err != nil {
		t.Fatal(err)
	}
	if !g.Satisfied(merged) {
		t.Fatal("tessera policy not satisfied by both witnesses' cosignatures")
	}
	one, err := Merge(l.checkpoint(t, 12), resps[0], onlyKey(t, resps[1], w2.pub.Ed25519))
	if err != nil {
		t.Fatal(err)
	}
	if g.Satisfied(one) {
		t.Fatal("tessera policy satisfied without w2's ML-DSA cosignature")
	}
}
