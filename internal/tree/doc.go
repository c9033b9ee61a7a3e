// Package tree is the encoding of one directory's listing — the plaintext of a
// tree blob, before it is compressed and sealed into a pack — and the
// validation that makes it safe for restore to write what a tree names.
//
// A tree lists a directory's entries (files, subdirectories, symbolic links)
// sorted by name bytes, with their metadata and the blobs holding their
// content: a file points at its chunks in order, a directory at the tree blob
// of its subdirectory. The encoding is canonical: a valid tree has exactly one
// encoding, and Parse accepts only that one, so equal trees are equal blobs and
// deduplicate.
//
// Wire format (all varints unsigned LEB128 in their shortest form, svarint the
// zig-zag signed form; see docs/spec/tree.md):
//
//	tree    = "EMBTREE1" | uvarint count | node*count
//	node    = uvarint len | name | type (1 byte) | uvarint mode | uvarint uid |
//	          uvarint gid | svarint mtime | body
//	body    = file:    uvarint size | uvarint nrefs | ref*nrefs
//	          dir:     uvarint npieces | ref*npieces      (the subtree's encoding, in pieces)
//	          symlink: uvarint len | target
//	ref     = id (32) | pack (16) | uvarint offset | uvarint length | uvarint rawlength
//
//	+----------+-------+--------------------------------------------------+
//	| EMBTREE1 | count | name type mode uid gid mtime body | ... (count) |
//	+----------+-------+--------------------------------------------------+
//
// Validation is a security boundary: a corrupted or malicious tree must not
// make restore write outside its target directory or exhaust its memory.
// Names are 1–255 bytes with no '/' and no NUL and are never "." or "..";
// names are strictly increasing (so unique); a file's Size is the sum of its
// chunks' RawLength; only the fields of a node's type are present; counts are
// bounded (MaxNodes, MaxRefs, MaxTarget). Every Parse error wraps
// wire.ErrCorrupt.
package tree
