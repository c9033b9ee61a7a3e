// Package transport is the guest side of talking to a host node over HTTPS
// with mutual TLS: the host descriptor a host operator hands to the guest, the
// URL paths of the host API, and a client that implements shardstore.Store
// against a remote host while trusting nothing the host says — every object it
// fetches is re-hashed against the address the guest asked for.
//
// The HTTP API (docs/spec/host-api.md):
//
//	PUT  /v1/guests/{guest}/{kind}/{id}   store an object (agent only)      201 new, 200 already there
//	GET  /v1/guests/{guest}/{kind}/{id}   read an object (agent or grant)
//	HEAD /v1/guests/{guest}/{kind}/{id}   its size
//	GET  /v1/guests/{guest}/{kind}/       list: one "id size" line per object
//	POST /v1/guests/{guest}/proof         answer a storage-proof challenge
//	GET  /log/...                          the host's tamper-evident log (public, tlog-tiles)
//	POST /witness/add-checkpoint           C2SP tlog-witness (public)
package transport
