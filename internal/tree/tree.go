package tree

import (
	"errors"
	"fmt"
	"math"
	"math/bits"
	"sort"
	"strings"

	"github.com/embassy-project/embassy/internal/wire"
)

// Magic opens every encoded tree.
const Magic = "EMBTREE1"

// Limits enforced by Validate and Parse.
const (
	MaxNodes  = 1 << 24 // entries in one directory
	MaxRefs   = 1 << 24 // chunks in one file
	MaxName   = 255     // bytes in one name (NAME_MAX)
	MaxTarget = 4096    // bytes in one symlink target (PATH_MAX)
	ModeMask  = 0o7777  // permission bits incl. setuid, setgid, sticky
)

// Type is the kind of a directory entry.
type Type uint8

// The entry types a tree can hold. Devices, FIFOs and sockets are not backed up.
const (
	File    Type = 1
	Dir     Type = 2
	Symlink Type = 3
)

func (t Type) String() string {
	switch t {
	case File:
		return "file"
	case Dir:
		return "dir"
	case Symlink:
		return "symlink"
	}
	return fmt.Sprintf("type(%d)", uint8(t))
}

// Ref says where a blob lives: its keyed chunk ID, the pack holding it, and the
// stored (compressed) form's position in the pack's plaintext. RawLength is the
// blob's length once decompressed.
type Ref struct {
	ID                        [32]byte
	Pack                      [16]byte
	Offset, Length, RawLength uint64
}

// IsZero reports whether r is the zero Ref, which stands for "no blob".
func (r Ref) IsZero() bool { return r == Ref{} }

// Validate checks that r can point at a blob: both lengths are at least one
// byte and Offset+Length does not overflow.
func (r Ref) Validate() error {
	switch {
	case r.Length == 0:
		return errors.New("ref: zero length")
	case r.RawLength == 0:
		return errors.New("ref: zero raw length")
	case r.Offset > math.MaxUint64-r.Length:
		return errors.New("ref: offset+length overflows")
	}
	return nil
}

// WriteRef appends r's encoding: id (32) | pack (16) | uvarint offset |
// uvarint length | uvarint rawlength. Other formats that point at blobs (the
// snapshot record) share it.
func WriteRef(w *wire.Writer, r Ref) {
	w.Fixed(r.ID[:])
	w.Fixed(r.Pack[:])
	w.Uvarint(r.Offset)
	w.Uvarint(r.Length)
	w.Uvarint(r.RawLength)
}

// RefLen is the length of r as WriteRef writes it.
func RefLen(r Ref) int {
	return len(r.ID) + len(r.Pack) + wire.UvarintLen(r.Offset) + wire.UvarintLen(r.Length) + wire.UvarintLen(r.RawLength)
}

// ReadRef reads a Ref written by WriteRef and fails the reader unless it is
// valid.
func ReadRef(r *wire.Reader) Ref {
	var ref Ref
	r.FixedInto(ref.ID[:])
	r.FixedInto(ref.Pack[:])
	ref.Offset = r.Uvarint()
	ref.Length = r.Uvarint()
	ref.RawLength = r.Uvarint()
	if r.Err() != nil {
		return Ref{}
	}
	if err := ref.Validate(); err != nil {
		r.Failf("%v", err)
		return Ref{}
	}
	return ref
}

// refMinSize is the smallest encoded Ref, used to bound allocations by the
// input length.
const refMinSize = 32 + 16 + 3

// nodeMinSize is the smallest encoded node (1-byte name, one-byte fields, a
// 1-byte body), used to bound allocations by the input length.
const nodeMinSize = 8

// Node is one directory entry. Only the fields of its Type are set: Size and
// Content for a file, Subtree for a directory, Target for a symlink.
type Node struct {
	Name    string // raw bytes of the file name (may be non-UTF-8)
	Type    Type
	Mode    uint32 // permission bits incl. setuid/setgid/sticky (ModeMask)
	UID     uint32
	GID     uint32
	MTime   int64  // unix nanoseconds
	Size    uint64 // file size (files), 0 otherwise
	Content []Ref  // File: the chunks in order; nil when empty
	Subtree []Ref  // Dir: the subdirectory's tree encoding, as pieces (tree blobs) to concatenate
	Target  string // Symlink: raw target bytes
}

// Tree is one directory's listing, its nodes sorted by name bytes.
type Tree struct {
	Nodes []Node
}

// Validate checks every rule of the format (see the package comment). It
// returns the first violation found.
func (t *Tree) Validate() error {
	if len(t.Nodes) > MaxNodes {
		return fmt.Errorf("tree: %d nodes exceeds limit %d", len(t.Nodes), MaxNodes)
	}
	for i := range t.Nodes {
		n := &t.Nodes[i]
		if err := n.validate(); err != nil {
			return fmt.Errorf("tree: node %d %q: %w", i, n.Name, err)
		}
		if i > 0 && t.Nodes[i-1].Name >= n.Name {
			return fmt.Errorf("tree: node %d %q: not after %q (names must be strictly increasing)", i, n.Name, t.Nodes[i-1].Name)
		}
	}
	return nil
}

// ValidName reports whether name may name a directory entry: 1–MaxName bytes,
// no '/', no NUL, not "." or "..".
func ValidName(name string) error {
	switch {
	case name == "":
		return errors.New("empty name")
	case len(name) > MaxName:
		return fmt.Errorf("name is %d bytes, limit %d", len(name), MaxName)
	case name == "." || name == "..":
		return errors.New("name is a dot entry")
	case strings.IndexByte(name, '/') >= 0:
		return errors.New("name contains '/'")
	case strings.IndexByte(name, 0) >= 0:
		return errors.New("name contains NUL")
	}
	return nil
}

func (n *Node) validate() error {
	if err := ValidName(n.Name); err != nil {
		return err
	}
	if n.Mode&^ModeMask != 0 {
		return fmt.Errorf("mode %#o has bits outside %#o", n.Mode, ModeMask)
	}
	switch n.Type {
	case File:
		if n.Target != "" {
			return errors.New("file has a target")
		}
		if len(n.Subtree) != 0 {
			return errors.New("file has a subtree")
		}
		if len(n.Content) > MaxRefs {
			return fmt.Errorf("%d chunks exceeds limit %d", len(n.Content), MaxRefs)
		}
		var sum uint64
		for j, r := range n.Content {
			if err := r.Validate(); err != nil {
				return fmt.Errorf("chunk %d: %w", j, err)
			}
			var carry uint64
			sum, carry = bits.Add64(sum, r.RawLength, 0)
			if carry != 0 {
				return errors.New("chunk lengths overflow")
			}
		}
		if sum != n.Size {
			return fmt.Errorf("size %d != sum of chunk lengths %d", n.Size, sum)
		}
	case Dir:
		if len(n.Content) != 0 || n.Size != 0 || n.Target != "" {
			return errors.New("directory has file or symlink fields")
		}
		if err := ValidatePieces(n.Subtree); err != nil {
			return fmt.Errorf("subtree: %w", err)
		}
	case Symlink:
		if len(n.Content) != 0 || n.Size != 0 || len(n.Subtree) != 0 {
			return errors.New("symlink has file or directory fields")
		}
		switch {
		case n.Target == "":
			return errors.New("empty symlink target")
		case len(n.Target) > MaxTarget:
			return fmt.Errorf("symlink target is %d bytes, limit %d", len(n.Target), MaxTarget)
		case strings.IndexByte(n.Target, 0) >= 0:
			return errors.New("symlink target contains NUL")
		}
	default:
		return fmt.Errorf("unknown type %d", uint8(n.Type))
	}
	return nil
}

// Marshal validates t and returns its canonical encoding.
func (t *Tree) Marshal() ([]byte, error) {
	if err := t.Validate(); err != nil {
		return nil, err
	}
	return t.encode(), nil
}

// encode writes t without validating it.
func (t *Tree) encode() []byte {
	w := wire.NewWriter(make([]byte, 0, t.encodedLen()))
	w.Fixed([]byte(Magic))
	w.Uvarint(uint64(len(t.Nodes)))
	for i := range t.Nodes {
		n := &t.Nodes[i]
		w.String(n.Name)
		w.Byte(byte(n.Type))
		w.Uvarint(uint64(n.Mode))
		w.Uvarint(uint64(n.UID))
		w.Uvarint(uint64(n.GID))
		w.Varint(n.MTime)
		switch n.Type {
		case File:
			w.Uvarint(n.Size)
			w.Uvarint(uint64(len(n.Content)))
			for _, r := range n.Content {
				WriteRef(w, r)
			}
		case Dir:
			WritePieces(w, n.Subtree)
		case Symlink:
			w.String(n.Target)
		}
	}
	return w.Bytes()
}

// encodedLen is the exact length of encode's output, so that the encoding
// is allocated once and at its size (an estimate of 4 bytes a varint and 3
// for each of a ref's made a directory's encoding twice as large as it was).
func (t *Tree) encodedLen() int {
	size := len(Magic) + wire.UvarintLen(uint64(len(t.Nodes)))
	for i := range t.Nodes {
		n := &t.Nodes[i]
		size += wire.StringLen(n.Name) + 1 + wire.UvarintLen(uint64(n.Mode)) + wire.UvarintLen(uint64(n.UID)) +
			wire.UvarintLen(uint64(n.GID)) + wire.VarintLen(n.MTime)
		switch n.Type {
		case File:
			size += wire.UvarintLen(n.Size) + refsLen(n.Content)
		case Dir:
			size += refsLen(n.Subtree)
		case Symlink:
			size += wire.StringLen(n.Target)
		}
	}
	return size
}

// refsLen is the length of a count and refs as WritePieces writes them.
func refsLen(rs []Ref) int {
	size := wire.UvarintLen(uint64(len(rs)))
	for _, r := range rs {
		size += RefLen(r)
	}
	return size
}

// Parse decodes and validates an encoded tree. It accepts only the canonical
// encoding, so Marshal(Parse(b)) == b. Every error wraps wire.ErrCorrupt.
// Empty Content is nil in the result.
func Parse(b []byte) (*Tree, error) {
	// One string for the whole input: names and targets are substrings of
	// it, one allocation instead of one per entry.
	s := string(b)
	r := wire.NewReader(b, "tree")
	r.Magic(Magic)
	count := r.UvarintMax(MaxNodes, "node count")
	if err := r.Err(); err != nil {
		return nil, err
	}
	nodes := make([]Node, 0, min(int(count), r.Remaining()/nodeMinSize))
	type span struct{ node, lo, hi int }
	var spans []span // where each non-empty file's chunks sit in refs
	var refs []Ref
	for i := uint64(0); i < count && r.Err() == nil; i++ {
		var n Node
		// UvarintMax+Fixed rather than LenBytes: same bytes, no per-call
		// allocation for the field label.
		name := r.Fixed(int(r.UvarintMax(MaxName, "name length")))
		end := r.Offset()
		n.Name = s[end-len(name) : end]
		n.Type = Type(r.Byte())
		n.Mode = uint32(r.UvarintMax(ModeMask, "mode"))
		n.UID = uint32(r.UvarintMax(math.MaxUint32, "uid"))
		n.GID = uint32(r.UvarintMax(math.MaxUint32, "gid"))
		n.MTime = r.Varint()
		switch n.Type {
		case File:
			n.Size = r.Uvarint()
			nrefs := r.UvarintMax(MaxRefs, "chunk count")
			if r.Err() != nil {
				break
			}
			if nrefs > uint64(r.Remaining()/refMinSize) {
				r.Failf("node %d: %d chunks cannot fit in %d bytes", i, nrefs, r.Remaining())
				break
			}
			lo := len(refs)
			for j := uint64(0); j < nrefs; j++ {
				refs = append(refs, ReadRef(r))
			}
			if nrefs > 0 {
				spans = append(spans, span{len(nodes), lo, len(refs)})
			}
		case Dir:
			n.Subtree = ReadPieces(r)
		case Symlink:
			target := r.Fixed(int(r.UvarintMax(MaxTarget, "target length")))
			end := r.Offset()
			n.Target = s[end-len(target) : end]
		default:
			r.Failf("node %d: unknown type %d", i, uint8(n.Type))
		}
		nodes = append(nodes, n)
	}
	if err := r.Done(); err != nil {
		return nil, err
	}
	for _, sp := range spans {
		nodes[sp.node].Content = refs[sp.lo:sp.hi:sp.hi]
	}
	if len(nodes) == 0 {
		nodes = nil
	}
	t := &Tree{Nodes: nodes}
	if err := t.Validate(); err != nil {
		return nil, wire.Corruptf("%v", err)
	}
	return t, nil
}

// Find returns the node named name, or nil. t must be sorted (valid).
func (t *Tree) Find(name string) *Node {
	i := sort.Search(len(t.Nodes), func(i int) bool { return t.Nodes[i].Name >= name })
	if i < len(t.Nodes) && t.Nodes[i].Name == name {
		return &t.Nodes[i]
	}
	return nil
}

// MaxPieces is the most pieces one tree encoding may be cut into.
const MaxPieces = 1 << 20

// ValidatePieces checks a list of tree pieces: 1..MaxPieces valid refs. A
// tree's encoding may exceed the largest blob, so a subtree (and a snapshot's
// root) is the concatenation of the raw bytes of its pieces, in order.
func ValidatePieces(ps []Ref) error {
	if len(ps) == 0 {
		return errors.New("no pieces")
	}
	if len(ps) > MaxPieces {
		return fmt.Errorf("%d pieces exceeds limit %d", len(ps), MaxPieces)
	}
	for i, p := range ps {
		if err := p.Validate(); err != nil {
			return fmt.Errorf("piece %d: %w", i, err)
		}
	}
	return nil
}

// WritePieces writes uvarint(count) then each ref.
func WritePieces(w *wire.Writer, ps []Ref) {
	w.Uvarint(uint64(len(ps)))
	for _, p := range ps {
		WriteRef(w, p)
	}
}

// ReadPieces reads what WritePieces wrote; the reader fails on an empty or
// over-long list or an invalid ref.
func ReadPieces(r *wire.Reader) []Ref {
	n := r.UvarintMax(MaxPieces, "piece count")
	if r.Err() != nil {
		return nil
	}
	if n == 0 {
		r.Failf("empty piece list")
		return nil
	}
	if n > uint64(r.Remaining()/refMinSize) {
		r.Failf("%d pieces cannot fit in %d bytes", n, r.Remaining())
		return nil
	}
	ps := make([]Ref, 0, n)
	for i := uint64(0); i < n && r.Err() == nil; i++ {
		ps = append(ps, ReadRef(r))
	}
	return ps
}
