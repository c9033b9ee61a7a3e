package ledger

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/embassy-project/embassy/internal/wire"
)

// goldenGovEntries are the governance entries in testdata/ledger (not part
// of the golden checkpoint's tree).
var goldenGovEntries = []struct {
	file  string
	entry Entry
}{
	{"entry-order-logged.bin", Entry{Time: 1763700100, Event: OrderLogged{Guest: h16(0x01), Order: []byte("embassy order v1\nkind: activate\n…\n\n— custodian:alice AAAA\n")}}},
	{"entry-order-refused.bin", Entry{Time: 1763700101, Event: OrderRefused{Guest: h16(0x01), Digest: h32(0xd0), Reason: "governance: quorum not met: 2 of 3 needed, signed by: alice, bob"}}},
	{"entry-order-carried-out.bin", Entry{Time: 1763700102, Event: OrderCarriedOut{Guest: h16(0x01), Order: h16(0x0d), Logged: 41, Epoch: 2}}},
	{"entry-agreement-adopted.bin", Entry{Time: 1763700103, Event: AgreementAdopted{Guest: h16(0x01), Version: 1, Hash: h32(0xa9)}}},
	{"entry-armed.bin", Entry{Time: 1763700104, Event: Armed{Guest: h16(0x01), Dataset: "population", Silent: 901}}},
	{"entry-disarmed.bin", Entry{Time: 1763700105, Event: Disarmed{Guest: h16(0x01), Dataset: "population"}}},
	{"entry-write-fenced.bin", Entry{Time: 1763700106, Event: WriteFenced{Guest: h16(0x01), Dataset: "population", Epoch: 1, Writer: "sha256:" + strings.Repeat("5e", 32)}}},
	{"entry-share-released.bin", Entry{Time: 1763700107, Event: ShareReleased{Guest: h16(0x01), Dataset: "population", Order: h16(0x0d), Custodian: strings.Repeat("ab", 16)}}},
}

func TestGovEntryGolden(t *testing.T) {
	for _, g := range goldenGovEntries {
		b := mustMarshal(t, g.entry)
		path := filepath.Join(goldenDir, g.file)
		if *update {
			if err := os.WriteFile(path, b, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		want, err := os.ReadFile(path)
		if err != nil {
			t.Fatalf("%v (run go test ./internal/ledger -run GovEntryGolden -update)", err)
		}
		if !bytes.Equal(b, want) {
			t.Fatalf("%s: encoding changed", g.file)
		}
		if _, err := ParseEntry(want); err != nil {
			t.Fatalf("%s: %v", g.file, err)
		}
	}
}

func TestGovEntryRejects(t *testing.T) {
	for name, e := range map[string]Entry{
		"empty order":       {Event: OrderLogged{}},
		"huge order":        {Event: OrderLogged{Order: make([]byte, MaxOrderSize+1)}},
		"empty reason":      {Event: OrderRefused{}},
		"control in reason": {Event: OrderRefused{Reason: "a\nb"}},
		"long reason":       {Event: OrderRefused{Reason: strings.Repeat("r", MaxReasonLen+1)}},
		"bad utf-8 reason":  {Event: OrderRefused{Reason: "\xff"}},
		"bad dataset":       {Event: Armed{Dataset: "Population"}},
		"empty dataset":     {Event: Disarmed{}},
		"bad writer":        {Event: WriteFenced{Dataset: "d", Writer: "a b"}},
		"bad custodian":     {Event: ShareReleased{Dataset: "d"}},
	} {
		if _, err := MarshalEntry(e); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	// A parser refuses the same things in bytes.
	good := mustMarshal(t, goldenGovEntries[4].entry) // armed "population"
	bad := bytes.Replace(bytes.Clone(good), []byte("population"), []byte("Population"), 1)
	if _, err := ParseEntry(bad); !errors.Is(err, wire.ErrCorrupt) {
		t.Fatalf("upper-case dataset: %v", err)
	}
}
