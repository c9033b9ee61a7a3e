// Package access decides who may talk to a host node: every client presents
// a self-signed TLS certificate whose one extension carries a credential that
// binds the certificate's Ed25519 key to a role, so a host refuses an unknown
// client during the TLS handshake, before any HTTP handler runs.
//
// There are two credentials, told apart by their magic:
//
//   - an agent credential, signed by the guest's agent key (domain
//     "host-access-agent"): the home agent of guest G, for at most
//     MaxAgentLifetime; made fresh by every agent process.
//   - a read grant, signed by at least the threshold of distinct custodians of
//     one of G's datasets (domain "host-access-read-grant"): a reader (a
//     restore or an audit) of G's store, for at most MaxGrantLifetime.
//
// Both are encoded with internal/wire; varints are unsigned LEB128 in their
// shortest form, times are Unix seconds:
//
//	agent credential                       read grant
//	magic       8   "EMBAGNT1"             magic       8   "EMBGRNT1"
//	guest id    16                         guest id    16
//	serial      16  random, not zero       dataset     uvarint len || name
//	tls key     32  Ed25519 public key     grant id    16  random, not zero
//	not-before  uvarint                    reader key  32  Ed25519 public key
//	not-after   uvarint                    not-before  uvarint
//	signature   3373  hybrid, over all     not-after   uvarint
//	                  bytes before it      reason      uvarint len || UTF-8 (1..256 printable)
//	                                       count       uvarint  0..MaxSignatures
//	                                       count times:
//	                                         name      uvarint len || custodian name
//	                                         kem key   1216  custodian KEM public key
//	                                         verifier  1984  custodian signing public key
//	                                         signature 3373  over magic..reason
//
// A grant's signatures carry the signer's whole public recipient, so a host
// that holds only the guest identity file can recompute the custodian
// fingerprint and find it among the dataset's custodians.
//
// The certificate profile, the extension (OID 1.3.6.1.4.1.59999.1.1,
// provisional) and the rules Verify applies are in docs/spec/access.md. The
// same package pins a host's own self-signed server certificate by the
// SHA-256 of its SubjectPublicKeyInfo (SPKIFingerprint, PinnedServer).
package access
