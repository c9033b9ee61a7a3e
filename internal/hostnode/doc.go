// Package hostnode is the host node a foreign data centre runs: an HTTPS
// server with mutual TLS that keeps guests' shards and envelopes in a
// write-once, content-addressed store, records every event in a
// tamper-evident log, answers storage-proof challenges, and witnesses other
// hosts' logs.
//
// The host directory (docs/operator-guide.md):
//
//	host.json          configuration (name, listen address, guests and quotas, peers)
//	descriptor.json    what the guest and other hosts are given (public)
//	tls.crt, tls.key   the server's TLS certificate and key (key 0600)
//	log.key            the log's checkpoint signing keys (0600)
//	witness.key        the witness cosigning keys (0600)
//	guests/ID.pub      the public identity of each guest served
//	peers/NAME.json    descriptors of hosts whose logs this host witnesses
//	store/ID/          one shard store per guest (package shardstore/fs)
//	outboard/ID/       Bao outboards of stored shards, for storage proofs
//	log/               the tlog-tiles log (tessera POSIX layout)
//	witness/           the witness's per-log state
//
// Shutdown order on context cancellation: stop accepting connections and
// drain requests (http.Server.Shutdown, bounded), stop the cosigning loop,
// then close the log (tessera flushes and publishes what it sequenced).
package hostnode
