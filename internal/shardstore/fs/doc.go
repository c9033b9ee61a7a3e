// Package fs is the local-directory shardstore.Store: one read-only file per
// object under its hex address, written with a crash-safe
// write-fsync-link-fsync protocol.
//
// Layout (docs/spec/store-layout.md):
//
//	dir/
//	  embassy-store              marker: "embassy-store 1\n"
//	  shards/ab/ab12…(64 hex)    one file per object, mode 0444
//	  envelopes/cd/cd34…
//	  tmp/put-*                  temp files; stale ones are removed by Open
//
// Put writes the bytes to a temp file in tmp/, fsyncs it, hard-links it to
// its final name (link fails if the name exists, so two writers never race to
// overwrite and there is no check-then-write window), removes the temp name
// and fsyncs the fan-out directory. A crash leaves at most temp files, which
// nothing but Open looks at, or a complete object whose directory entry may
// not have reached the disk; it never leaves a partial object under a final
// name.
package fs
