package seal

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hpke"
	"crypto/rand"
	"crypto/subtle"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"

	"github.com/zeebo/blake3"

	"github.com/embassy-project/embassy/internal/wire"
)

// Kind says what a sealed object holds. It is part of the authenticated data,
// so a pack cannot be passed off as a record or the other way round.
type Kind byte

// Kinds of sealed object.
const (
	KindPack   Kind = 1 // a pack (blobs, index, trailer)
	KindRecord Kind = 2 // a sealed snapshot record
)

func (k Kind) valid() bool { return k == KindPack || k == KindRecord }

// AD is the associated data every sealed object is bound to: what it is, and
// whose (guest, dataset) object with which ID. Open refuses an object whose
// AD differs from the one the caller expects.
type AD struct {
	Kind    Kind
	Guest   [16]byte
	Dataset [16]byte
	Object  [16]byte // the pack or record ID
}

// Format constants; see docs/spec/seal.md.
const (
	Magic   = "EMBSEAL1"
	Version = 1
	// ADSize is the length of the encoded AD, which is also the sealed
	// object's header.
	ADSize = len(Magic) + 1 + 1 + 3*16
	// SegmentSize is the plaintext length of every body segment but the last.
	SegmentSize = 64 << 10
	// MaxPlaintextSize is the largest plaintext Seal accepts and Open
	// expects: 1 GiB, far above the ~16 MiB packs the pipeline makes.
	MaxPlaintextSize = 1 << 30

	tagSize         = 16
	encSize         = 1120              // MLKEM768-X25519 encapsulated key
	wrappedSize     = encSize + 32 + 16 // enc || AES-256-GCM(M) with tag
	cipherSegSize   = SegmentSize + tagSize
	maxSegments     = (MaxPlaintextSize + SegmentSize - 1) / SegmentSize
	maxBodySize     = MaxPlaintextSize + maxSegments*tagSize
	hpkeInfo        = "embassy v1 seal"
	aontKeyDomain   = "embassy v1 seal aont"
	authFailMessage = "wrong dataset key or corrupt data"
)

// KEM returns the KEM every dataset key uses: MLKEM768-X25519 (X-Wing), a
// hybrid that stays secret while either ML-KEM-768 or X25519 holds.
func KEM() hpke.KEM { return hpke.MLKEM768X25519() }

// errWrongKEM is returned for keys of another KEM: sealing to a classical key
// by mistake must fail, not silently lose post-quantum protection.
var errWrongKEM = errors.New("dataset key is not an MLKEM768-X25519 key")

// encode returns the encoded AD: magic, version, kind, guest, dataset, object.
func (ad AD) encode() []byte {
	w := wire.NewWriter(make([]byte, 0, ADSize))
	w.Fixed([]byte(Magic))
	w.Byte(Version)
	w.Byte(byte(ad.Kind))
	w.Fixed(ad.Guest[:])
	w.Fixed(ad.Dataset[:])
	w.Fixed(ad.Object[:])
	return w.Bytes()
}

// segments returns how many segments a body for n plaintext bytes has.
func segments(n int) int {
	if n == 0 {
		return 1
	}
	return (n + SegmentSize - 1) / SegmentSize
}

// Overhead returns how many bytes Seal adds to a plaintext of n bytes.
func Overhead(n int) int {
	body := n + segments(n)*tagSize
	return ADSize + uvarintLen(wrappedSize) + wrappedSize + uvarintLen(uint64(body)) + segments(n)*tagSize
}

func uvarintLen(v uint64) int {
	var b [binary.MaxVarintLen64]byte
	return binary.PutUvarint(b[:], v)
}

// aontHasher returns the keyed BLAKE3 that binds K to the body under ad.
func aontHasher(encodedAD []byte) *blake3.Hasher {
	var k [32]byte
	blake3.DeriveKey(aontKeyDomain, encodedAD, k[:])
	h, err := blake3.NewKeyed(k[:])
	if err != nil {
		panic("seal: blake3.NewKeyed rejected a 32-byte key: " + err.Error())
	}
	return h
}

func segmentNonce(nonce *[12]byte, i uint64, last bool) {
	*nonce = [12]byte{}
	binary.BigEndian.PutUint64(nonce[3:11], i) // 11-byte counter; the top 3 bytes stay 0
	if last {
		nonce[11] = 1
	}
}

func newGCM(key []byte) cipher.AEAD {
	block, err := aes.NewCipher(key)
	if err != nil {
		panic("seal: aes.NewCipher rejected a 32-byte key: " + err.Error())
	}
	gcm, err := cipher.NewGCM(block)
	if err != nil {
		panic("seal: cipher.NewGCM: " + err.Error())
	}
	return gcm
}

// Seal encrypts plaintext to the dataset public key pub, bound to ad. The
// result is len(plaintext)+Overhead(len(plaintext)) bytes. Encryption is
// randomised: sealing the same plaintext twice gives different bytes.
func Seal(pub hpke.PublicKey, ad AD, plaintext []byte) ([]byte, error) {
	return AppendSeal(nil, pub, ad, plaintext)
}

// AppendSeal is Seal appending the sealed object to dst (which must not
// overlap plaintext), so a caller sealing many objects can reuse one buffer.
func AppendSeal(dst []byte, pub hpke.PublicKey, ad AD, plaintext []byte) ([]byte, error) {
	if pub == nil || pub.KEM().ID() != KEM().ID() {
		return nil, fmt.Errorf("seal: %w", errWrongKEM)
	}
	if !ad.Kind.valid() {
		return nil, fmt.Errorf("seal: unknown kind %d", ad.Kind)
	}
	if len(plaintext) > MaxPlaintextSize {
		return nil, fmt.Errorf("seal: plaintext of %d bytes exceeds %d", len(plaintext), MaxPlaintextSize)
	}
	encodedAD := ad.encode()

	var k [32]byte
	if _, err := rand.Read(k[:]); err != nil {
		return nil, fmt.Errorf("seal: read random key: %w", err)
	}

	n := len(plaintext)
	bodyLen := n + segments(n)*tagSize
	out := slices.Grow(dst, n+Overhead(n))
	out = append(out, encodedAD...)
	out = binary.AppendUvarint(out, wrappedSize)
	slot := len(out)
	out = out[:slot+wrappedSize] // filled once the body is hashed
	out = binary.AppendUvarint(out, uint64(bodyLen))
	bodyStart := len(out)

	gcm := newGCM(k[:])
	h := aontHasher(encodedAD)
	var nonce [12]byte
	for i, off := uint64(0), 0; ; i++ {
		end := min(off+SegmentSize, n)
		last := end == n
		segmentNonce(&nonce, i, last)
		segStart := len(out)
		out = gcm.Seal(out, nonce[:], plaintext[off:end], encodedAD)
		_, _ = h.Write(out[segStart:])
		if last {
			break
		}
		off = end
	}
	if len(out)-bodyStart != bodyLen {
		panic("seal: body length mismatch")
	}

	var m [32]byte
	h.Sum(m[:0])
	subtle.XORBytes(m[:], m[:], k[:])

	enc, sender, err := hpke.NewSender(pub, hpke.HKDFSHA256(), hpke.AES256GCM(), []byte(hpkeInfo))
	if err != nil {
		return nil, fmt.Errorf("seal: wrap key: %w", err)
	}
	ct, err := sender.Seal(encodedAD, m[:])
	if err != nil {
		return nil, fmt.Errorf("seal: wrap key: %w", err)
	}
	if len(enc)+len(ct) != wrappedSize {
		return nil, fmt.Errorf("seal: wrapped key of %d bytes, want %d", len(enc)+len(ct), wrappedSize)
	}
	copy(out[slot:], enc)
	copy(out[slot+len(enc):], ct)
	return out, nil
}

// sealed is the parsed form of a sealed object. Its slices alias the input.
type sealed struct {
	ad      AD
	wrapped []byte
	body    []byte
}

// parse splits a sealed object into its fields, checking the structure
// (magic, version, kind, lengths, segment layout) but nothing cryptographic.
func parse(b []byte) (sealed, error) {
	var s sealed
	r := wire.NewReader(b, "sealed object")
	r.Magic(Magic)
	if v := r.Byte(); r.Err() == nil && v != Version {
		r.Failf("unknown version %d", v)
	}
	s.ad.Kind = Kind(r.Byte())
	if r.Err() == nil && !s.ad.Kind.valid() {
		r.Failf("unknown kind %d", s.ad.Kind)
	}
	r.FixedInto(s.ad.Guest[:])
	r.FixedInto(s.ad.Dataset[:])
	r.FixedInto(s.ad.Object[:])
	s.wrapped = r.LenBytes(wrappedSize, "wrapped key")
	if r.Err() == nil && len(s.wrapped) != wrappedSize {
		r.Failf("wrapped key of %d bytes, want %d", len(s.wrapped), wrappedSize)
	}
	bodyLen := r.UvarintMax(maxBodySize, "body length")
	if r.Err() == nil {
		if _, err := plaintextLen(int(bodyLen)); err != nil {
			r.Failf("%v", err)
		}
	}
	s.body = r.Fixed(int(bodyLen))
	if err := r.Done(); err != nil {
		return sealed{}, err
	}
	return s, nil
}

// marshal is the inverse of parse.
func (s sealed) marshal() []byte {
	out := s.ad.encode()
	out = binary.AppendUvarint(out, uint64(len(s.wrapped)))
	out = append(out, s.wrapped...)
	out = binary.AppendUvarint(out, uint64(len(s.body)))
	return append(out, s.body...)
}

// plaintextLen returns the plaintext length of a body of bodyLen bytes, or an
// error if no body has that length: every segment but the last is full, the
// last carries a tag, and it is empty only when it is the only one.
func plaintextLen(bodyLen int) (int, error) {
	full, rest := bodyLen/cipherSegSize, bodyLen%cipherSegSize
	switch {
	case rest == 0 && full > 0:
		return full * SegmentSize, nil
	case rest < tagSize:
		return 0, fmt.Errorf("body length %d leaves a %d-byte final segment", bodyLen, rest)
	case rest == tagSize && full > 0:
		return 0, fmt.Errorf("body length %d ends in an empty segment after full ones", bodyLen)
	}
	return full*SegmentSize + rest - tagSize, nil
}

// openBody decrypts a body under key k. It returns the whole plaintext or an
// error, never part of it.
func openBody(k, encodedAD, body []byte) ([]byte, error) {
	n, err := plaintextLen(len(body))
	if err != nil {
		return nil, wire.Corruptf("open: %v", err)
	}
	gcm := newGCM(k)
	out := make([]byte, 0, n)
	var nonce [12]byte
	for i, off := uint64(0), 0; ; i++ {
		end := min(off+cipherSegSize, len(body))
		last := end == len(body)
		segmentNonce(&nonce, i, last)
		out, err = gcm.Open(out, nonce[:], body[off:end], encodedAD)
		if err != nil {
			return nil, wire.Corruptf("open: segment %d: %s", i, authFailMessage)
		}
		if last {
			return out, nil
		}
		off = end
	}
}

// Open decrypts an object sealed by Seal with the dataset private key priv,
// checking that it was sealed for ad. Any failure to parse or authenticate —
// another dataset's key, an object moved from another guest, dataset or
// object ID, a changed, missing, reordered or extra byte anywhere — is an
// error wrapping wire.ErrCorrupt. Open returns the whole plaintext or nothing.
func Open(priv hpke.PrivateKey, ad AD, sealedObj []byte) ([]byte, error) {
	if priv == nil || priv.KEM().ID() != KEM().ID() {
		return nil, fmt.Errorf("open: %w", errWrongKEM)
	}
	s, err := parse(sealedObj)
	if err != nil {
		return nil, err
	}
	if s.ad != ad {
		return nil, wire.Corruptf("open: sealed for another %s (%s)", s.ad.mismatch(ad), authFailMessage)
	}
	encodedAD := ad.encode()

	h := aontHasher(encodedAD)
	_, _ = h.Write(s.body)
	var k [32]byte
	h.Sum(k[:0])

	r, err := hpke.NewRecipient(s.wrapped[:encSize], priv, hpke.HKDFSHA256(), hpke.AES256GCM(), []byte(hpkeInfo))
	if err != nil {
		return nil, wire.Corruptf("open: unwrap key: %s", authFailMessage)
	}
	m, err := r.Open(encodedAD, s.wrapped[encSize:])
	if err != nil || len(m) != len(k) {
		return nil, wire.Corruptf("open: unwrap key: %s", authFailMessage)
	}
	subtle.XORBytes(k[:], k[:], m)
	return openBody(k[:], encodedAD, s.body)
}

// mismatch names the first field in which ad differs from want.
func (ad AD) mismatch(want AD) string {
	switch {
	case ad.Kind != want.Kind:
		return "kind"
	case ad.Guest != want.Guest:
		return "guest"
	case ad.Dataset != want.Dataset:
		return "dataset"
	}
	return "object"
}
