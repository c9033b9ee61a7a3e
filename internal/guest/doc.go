// Package guest is the guest's public identity: for each dataset, the public
// key that packs are encrypted to, the commitment to its dedup MAC key, the
// home agent's signing key and the custodians who hold shares of its secret,
// so that restore can tell the right dataset secret from a wrong one without
// trusting any host.
//
// A dataset identity (Dataset) is binary, encoded with internal/wire; varints
// are unsigned LEB128 in their shortest form:
//
//	magic        8      "EMBDSID1"
//	guest id     16     random
//	guest name   uvarint len || bytes   [a-z0-9][a-z0-9._-]{0,63}
//	name         uvarint len || bytes   dataset name, same rule
//	dataset id   16     random
//	kem id       uvarint                0x647a (MLKEM768-X25519, X-Wing)
//	kem key      uvarint len || bytes   1216-byte public key
//	agent key    1984   hybrid Ed25519 + ML-DSA-65 public key (internal/sig)
//	mac commit   32     MACCommit(dedup MAC key)
//	threshold    uvarint                1 <= threshold <= n
//	n            uvarint                1 <= n <= 255
//	n times:
//	  name       uvarint len || bytes   custodian name, unique
//	  fingerprint 16    custodian key fingerprint, unique
//
// A guest identity (Identity) is the file handed to auditors:
//
//	magic        8      "EMBGSID1"
//	guest id     16
//	guest name   uvarint len || bytes
//	agent key    1984
//	count        uvarint                at most 1024
//	count times: uvarint len || dataset identity (at most 64 KiB), names unique
//
// Every dataset in an identity must carry the identity's guest id, guest name
// and agent key. Parsers are strict: Marshal(Parse(b)) == b, and every failure
// wraps wire.ErrCorrupt.
//
// The dataset secret (Secret) is 64 bytes: the 32-byte X-Wing private key seed
// followed by the 32-byte dedup MAC key. It exists only at init and at restore.
//
// See docs/spec/guest-identity.md.
package guest
