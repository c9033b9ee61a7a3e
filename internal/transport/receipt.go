package transport

import (
	"fmt"

	merkleproof "github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"
	"github.com/zeebo/blake3"

	"github.com/embassy-project/embassy/internal/ledger"
	"github.com/embassy-project/embassy/internal/proof"
	"github.com/embassy-project/embassy/internal/wire"
)

// ReceiptMagic starts a proof receipt.
const ReceiptMagic = "EMBPRCT1"

// Limits of a receipt.
const (
	MaxReceiptAnswer     = 64 << 20
	MaxReceiptEntry      = 64 << 10
	MaxReceiptCheckpoint = 64 << 10
	MaxReceiptProofLen   = 64
)

// Receipt is a host's response to a storage-proof challenge: the answer,
// and evidence the host committed to it — the log entry recording the
// challenge and answer digests, a signed checkpoint of the host's log, and
// the inclusion proof of the entry under that checkpoint. A guest keeps the
// challenge and the receipt: together they show what the host answered,
// signed by the host's log keys. Format: docs/spec/host-api.md.
//
//	magic "EMBPRCT1"
//	answer      uvarint length, bytes (proof.Answer encoding)
//	entry       uvarint length, bytes (ledger entry encoding)
//	index       uint64 big-endian: the entry's index in the log
//	checkpoint  uvarint length, bytes (signed note)
//	proof       uvarint count (≤ 64), then count × 32-byte hashes
type Receipt struct {
	Answer     []byte
	Entry      []byte
	Index      uint64
	Checkpoint []byte
	Inclusion  [][]byte
}

// Marshal encodes r.
func (r *Receipt) Marshal() []byte {
	w := wire.NewWriter(nil)
	w.Fixed([]byte(ReceiptMagic))
	w.LenBytes(r.Answer)
	w.LenBytes(r.Entry)
	w.Uint64(r.Index)
	w.LenBytes(r.Checkpoint)
	w.Uvarint(uint64(len(r.Inclusion)))
	for _, h := range r.Inclusion {
		w.Fixed(h)
	}
	return w.Bytes()
}

// ParseReceipt decodes a receipt. Errors wrap wire.ErrCorrupt.
func ParseReceipt(b []byte) (*Receipt, error) {
	rd := wire.NewReader(b, "proof receipt")
	rd.Magic(ReceiptMagic)
	r := &Receipt{}
	r.Answer = rd.LenBytes(MaxReceiptAnswer, "answer")
	r.Entry = rd.LenBytes(MaxReceiptEntry, "entry")
	r.Index = rd.Uint64()
	r.Checkpoint = rd.LenBytes(MaxReceiptCheckpoint, "checkpoint")
	n := rd.UvarintMax(MaxReceiptProofLen, "inclusion proof length")
	for i := uint64(0); i < n && rd.Err() == nil; i++ {
		r.Inclusion = append(r.Inclusion, rd.Fixed(32))
	}
	if err := rd.Done(); err != nil {
		return nil, err
	}
	return r, nil
}

// VerifyReceipt checks that a receipt is the host's signed commitment to an
// answer for challenge c: the checkpoint verifies under both of the host's
// log keys (from its descriptor), the entry is included under it, and the
// entry records this guest, c's digest and the digest of the answer carried.
// It does not judge the answer itself (proof.Verify does). Errors wrap
// wire.ErrCorrupt.
func VerifyReceipt(r *Receipt, c *proof.Challenge, d *Descriptor) error {
	v, err := ledger.NewVerifier(d.Log.Origin, d.Log.Keys)
	if err != nil {
		return fmt.Errorf("host %s log keys: %w", d.Name, err)
	}
	cp, err := v.ParseCheckpoint(r.Checkpoint)
	if err != nil {
		return fmt.Errorf("receipt checkpoint: %w", err)
	}
	if r.Index >= cp.Size {
		return wire.Corruptf("receipt: entry %d is not under a checkpoint of size %d", r.Index, cp.Size)
	}
	leaf := rfc6962.DefaultHasher.HashLeaf(r.Entry)
	if err := merkleproof.VerifyInclusion(rfc6962.DefaultHasher, r.Index, cp.Size, leaf, r.Inclusion, cp.Hash[:]); err != nil {
		return wire.Corruptf("receipt: entry %d not included in the checkpoint: %v", r.Index, err)
	}
	e, err := ledger.ParseEntry(r.Entry)
	if err != nil {
		return fmt.Errorf("receipt entry: %w", err)
	}
	pa, ok := e.Event.(ledger.ProofAnswered)
	if !ok {
		return wire.Corruptf("receipt: entry is a %s event, not proof-answered", e.Event.Type())
	}
	if pa.Guest != c.Guest || pa.Challenge != c.Digest() || pa.Answer != blake3.Sum256(r.Answer) || pa.Items != uint64(len(c.Items)) {
		return wire.Corruptf("receipt: the logged entry does not commit to this challenge and answer")
	}
	return nil
}
