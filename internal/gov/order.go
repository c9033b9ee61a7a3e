package gov

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"golang.org/x/mod/sumdb/note"

	"github.com/embassy-project/embassy/internal/custodian"
	"github.com/embassy-project/embassy/internal/sig"
	"github.com/embassy-project/embassy/internal/wire"
)

// Limits of an order's text (docs/spec/order.md).
const (
	// MaxOrderText is the largest order text, header to final line feed.
	MaxOrderText = 16 << 10
	// MaxOrderValidity is the longest validity window (not-after − not-before).
	MaxOrderValidity = 30 * 24 * time.Hour
	// MaxReason is the longest reason, in bytes.
	MaxReason = 1024
	// maxOrderFile bounds a signed order file: the text and up to 100
	// signature lines (note.Open's own limit) of about 4.5 KB each.
	maxOrderFile = MaxOrderText + 100*5000
)

// orderTimeLayout is RFC 3339 in UTC with whole seconds.
const orderTimeLayout = "2006-01-02T15:04:05Z"

// Keys of an order's text, in the only order they may appear.
const (
	keyKind      = "kind"
	keyID        = "id"
	keyGuest     = "guest"
	keyAgreement = "agreement"
	keyIssued    = "issued"
	keyNotBefore = "not-before"
	keyNotAfter  = "not-after"
	keyDataset   = "dataset"
	keyEpoch     = "epoch"
	keyHost      = "host"
	keyWriter    = "writer"
	keySnapshot  = "snapshot"
	keyBefore    = "before"
	keyReader    = "reader"
	keyCustodian = "custodian"
	keyNewKeys   = "new-keys"
	keyText      = "text"
	keyReason    = "reason"
)

var orderKeys = []string{keyKind, keyID, keyGuest, keyAgreement, keyIssued, keyNotBefore, keyNotAfter,
	keyDataset, keyEpoch, keyHost, keyWriter, keySnapshot, keyBefore, keyReader, keyCustodian, keyNewKeys,
	keyText, keyReason}

// Whether a kind requires, allows or forbids a per-kind field.
type use int

const (
	forbidden use = iota
	required
	optional
)

// kindFields says, for each kind, how it uses each per-kind field. The
// common fields (kind … not-after, reason) are required for every kind.
// Rotate has three forms, checked by Validate: custodian and new-keys
// (a custodian's new keys), dataset and new-keys (the dataset's new key
// generation, by the fingerprint of its new identity), or dataset alone (a
// dataset key re-shared).
var kindFields = map[Action]map[string]use{
	Activate: {keyDataset: required, keyEpoch: required, keyHost: required, keyWriter: required, keySnapshot: required},
	Return:   {keyDataset: required, keyEpoch: required, keyWriter: required},
	Expire:   {keyDataset: required, keyBefore: required},
	Grant:    {keyDataset: required, keyReader: required},
	Rotate:   {keyDataset: optional, keyCustodian: optional, keyNewKeys: optional},
	Amend:    {keyText: required},
	Revoke:   {keyCustodian: required},
}

// NewOrderID returns a random order ID.
func NewOrderID() ([16]byte, error) {
	var id [16]byte
	if _, err := rand.Read(id[:]); err != nil {
		return id, fmt.Errorf("new order id: %w", err)
	}
	return id, nil
}

// IDString returns the order ID as 32 lowercase hex digits.
func (o *Order) IDString() string { return hex.EncodeToString(o.ID[:]) }

// fields returns the order's per-kind field values as text, by key; a
// field whose value is the zero value is absent.
func (o *Order) fields() map[string]string {
	f := make(map[string]string)
	set := func(k, v string) {
		if v != "" {
			f[k] = v
		}
	}
	set(keyDataset, o.Dataset)
	if o.Epoch != 0 {
		f[keyEpoch] = strconv.FormatUint(o.Epoch, 10)
	}
	set(keyHost, o.Host)
	set(keyWriter, o.Writer)
	set(keySnapshot, o.Snapshot)
	if !o.Before.IsZero() {
		f[keyBefore] = formatOrderTime(o.Before)
	}
	set(keyReader, o.Reader)
	set(keyCustodian, o.Custodian)
	set(keyNewKeys, o.NewKeys)
	set(keyText, o.Text)
	return f
}

func formatOrderTime(t time.Time) string { return t.UTC().Format(orderTimeLayout) }

// Marshal returns the order's canonical text: the header line, then one
// "key: value" line per field in the fixed order, each ending in a line
// feed. Per-kind fields appear when they are set. Marshal does not
// validate; ParseOrder(o.Marshal()) succeeds exactly when o.Validate does.
func (o *Order) Marshal() []byte {
	var b bytes.Buffer
	b.WriteString(OrderHeader + "\n")
	line := func(k, v string) { b.WriteString(k + ": " + v + "\n") }
	line(keyKind, string(o.Kind))
	line(keyID, o.IDString())
	line(keyGuest, o.Guest)
	line(keyAgreement, strconv.FormatUint(o.Agreement, 10))
	line(keyIssued, formatOrderTime(o.Issued))
	line(keyNotBefore, formatOrderTime(o.NotBefore))
	line(keyNotAfter, formatOrderTime(o.NotAfter))
	f := o.fields()
	for _, k := range orderKeys[7 : len(orderKeys)-1] {
		if v, ok := f[k]; ok {
			line(k, v)
		}
	}
	line(keyReason, o.Reason)
	return b.Bytes()
}

func malformed(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrMalformed, fmt.Sprintf(format, args...))
}

func lineErr(n int, format string, args ...any) error {
	return fmt.Errorf("%w: order line %d: %s", ErrMalformed, n, fmt.Sprintf(format, args...))
}

// ParseOrder parses an order's text (without signatures). It is strict: it
// accepts exactly what Marshal writes for a valid order. Every failure
// wraps ErrMalformed and, where a line is at fault, names its number.
func ParseOrder(text []byte) (*Order, error) {
	if len(text) > MaxOrderText {
		return nil, malformed("order text is %d bytes, more than %d", len(text), MaxOrderText)
	}
	if len(text) == 0 || text[len(text)-1] != '\n' {
		return nil, malformed("order text must end with a line feed")
	}
	lines := strings.Split(string(text[:len(text)-1]), "\n")
	for i, l := range lines {
		if !utf8.ValidString(l) {
			return nil, lineErr(i+1, "not UTF-8")
		}
		for _, r := range l {
			if r < 0x20 || r == 0x7f {
				return nil, lineErr(i+1, "control character %U", r)
			}
		}
	}
	if lines[0] != OrderHeader {
		return nil, lineErr(1, "want the header %q", OrderHeader)
	}
	vals := make(map[string]string)
	lineOf := make(map[string]int)
	next := 0 // index in orderKeys of the least key allowed next
	for i, l := range lines[1:] {
		n := i + 2
		k, v, ok := strings.Cut(l, ": ")
		if !ok {
			return nil, lineErr(n, "want \"key: value\"")
		}
		idx := keyIndex(k)
		switch {
		case idx < 0:
			return nil, lineErr(n, "unknown key %q", k)
		case lineOf[k] != 0:
			return nil, lineErr(n, "duplicate key %q (first on line %d)", k, lineOf[k])
		case idx < next:
			return nil, lineErr(n, "key %q out of order: it must come before %q", k, orderKeys[next-1])
		}
		if v == "" {
			return nil, lineErr(n, "%s is empty", k)
		}
		next = idx + 1
		vals[k] = v
		lineOf[k] = n
	}
	last := len(lines) + 1
	for _, k := range []string{keyKind, keyID, keyGuest, keyAgreement, keyIssued, keyNotBefore, keyNotAfter, keyReason} {
		if _, ok := vals[k]; !ok {
			return nil, lineErr(last, "missing key %q", k)
		}
	}
	o := &Order{Kind: Action(vals[keyKind])}
	uses, ok := kindFields[o.Kind]
	if !ok {
		return nil, lineErr(lineOf[keyKind], "unknown kind %q (want one of %s)", vals[keyKind], actionList())
	}
	for _, k := range orderKeys[7 : len(orderKeys)-1] {
		_, have := vals[k]
		switch u := uses[k]; {
		case have && u == forbidden:
			return nil, lineErr(lineOf[k], "key %q is not used by %s orders", k, o.Kind)
		case !have && u == required:
			return nil, lineErr(last, "missing key %q (%s orders need it)", k, o.Kind)
		}
	}
	var err error
	for _, k := range orderKeys[1:] {
		v, have := vals[k]
		if !have {
			continue
		}
		if err = o.setField(k, v); err != nil {
			return nil, lineErr(lineOf[k], "%s: %v", k, err)
		}
	}
	if err := o.Validate(); err != nil {
		return nil, err
	}
	if !bytes.Equal(o.Marshal(), text) {
		// Every field is canonical once parsed, so this is unreachable; it
		// keeps the promise that only canonical text is accepted.
		return nil, malformed("order text is not in canonical form")
	}
	return o, nil
}

func keyIndex(k string) int {
	for i, x := range orderKeys {
		if x == k {
			return i
		}
	}
	return -1
}

func actionList() string {
	s := make([]string, len(Actions))
	for i, a := range Actions {
		s[i] = string(a)
	}
	return strings.Join(s, ", ")
}

// setField parses one value into o. Values are checked for canonical form
// here; rules across fields are Validate's.
func (o *Order) setField(k, v string) error {
	var err error
	switch k {
	case keyID:
		var b []byte
		if b, err = parseHex(v, 16); err == nil {
			copy(o.ID[:], b)
		}
	case keyGuest:
		if _, err = parseHex(v, 16); err == nil {
			o.Guest = v
		}
	case keyAgreement:
		o.Agreement, err = parseUint(v)
	case keyIssued:
		o.Issued, err = parseOrderTime(v)
	case keyNotBefore:
		o.NotBefore, err = parseOrderTime(v)
	case keyNotAfter:
		o.NotAfter, err = parseOrderTime(v)
	case keyDataset:
		o.Dataset = v
	case keyEpoch:
		if o.Epoch, err = parseUint(v); err == nil && o.Epoch == 0 {
			err = errors.New("epochs start at 1")
		}
	case keyHost:
		o.Host = v
	case keyWriter:
		o.Writer = v
	case keySnapshot:
		o.Snapshot = v
	case keyBefore:
		o.Before, err = parseOrderTime(v)
	case keyReader:
		o.Reader = v
	case keyCustodian:
		o.Custodian = v
	case keyNewKeys:
		o.NewKeys = v
	case keyText:
		o.Text = v
	case keyReason:
		o.Reason = v
	default:
		err = fmt.Errorf("unknown key")
	}
	return err
}

// parseHex decodes exactly n bytes from lowercase hex.
func parseHex(s string, n int) ([]byte, error) {
	if len(s) != 2*n {
		return nil, fmt.Errorf("want %d lowercase hex digits, got %d characters", 2*n, len(s))
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return nil, fmt.Errorf("want %d lowercase hex digits", 2*n)
		}
	}
	return hex.DecodeString(s)
}

// parseUint parses a decimal without sign or leading zeros.
func parseUint(s string) (uint64, error) {
	u, err := strconv.ParseUint(s, 10, 64)
	if err != nil || strconv.FormatUint(u, 10) != s {
		return 0, errors.New("want a decimal number without sign or leading zeros")
	}
	return u, nil
}

func parseOrderTime(s string) (time.Time, error) {
	t, err := time.Parse(orderTimeLayout, s)
	if err != nil || t.Format(orderTimeLayout) != s || !validOrderTime(t) {
		return time.Time{}, errors.New("want an RFC 3339 UTC time with whole seconds, like 2030-01-02T15:04:05Z, between 1970 and 9999")
	}
	return t, nil
}

// validOrderTime reports whether t can be written and read back exactly.
func validOrderTime(t time.Time) bool {
	return t.Location() == time.UTC && t.Nanosecond() == 0 && t.Year() >= 1970 && t.Year() <= 9999
}

// Validate checks every rule of docs/spec/order.md that concerns the order
// alone: the kind, which fields it uses, each value's form, the validity
// window. Rules against an agreement or a state are Check's. Errors wrap
// ErrMalformed.
func (o *Order) Validate() error {
	uses, ok := kindFields[o.Kind]
	if !ok {
		return malformed("unknown order kind %q (want one of %s)", o.Kind, actionList())
	}
	if o.ID == [16]byte{} {
		return malformed("order id is zero")
	}
	if _, err := parseHex(o.Guest, 16); err != nil {
		return malformed("guest: %v", err)
	}
	if o.Agreement == 0 {
		return malformed("agreement version is 0; versions start at 1")
	}
	for _, t := range []struct {
		k string
		t time.Time
	}{{keyIssued, o.Issued}, {keyNotBefore, o.NotBefore}, {keyNotAfter, o.NotAfter}} {
		if !validOrderTime(t.t) {
			return malformed("%s must be a UTC time in whole seconds between 1970 and 9999", t.k)
		}
	}
	if o.NotAfter.Before(o.NotBefore) {
		return malformed("not-after %s is before not-before %s", formatOrderTime(o.NotAfter), formatOrderTime(o.NotBefore))
	}
	if d := o.NotAfter.Sub(o.NotBefore); d > MaxOrderValidity {
		return malformed("validity window is %s, longer than the %s allowed", d, MaxOrderValidity)
	}
	if o.NotAfter.Before(o.Issued) {
		return malformed("issued %s is after not-after %s", formatOrderTime(o.Issued), formatOrderTime(o.NotAfter))
	}
	if err := checkReason(o.Reason); err != nil {
		return malformed("reason: %v", err)
	}
	f := o.fields()
	for _, k := range orderKeys[7 : len(orderKeys)-1] {
		_, have := f[k]
		switch u := uses[k]; {
		case have && u == forbidden:
			return malformed("%s is not used by %s orders", k, o.Kind)
		case !have && u == required:
			return malformed("%s orders need %s", o.Kind, k)
		}
	}
	if o.Kind == Rotate {
		switch {
		case o.Custodian != "" && o.Dataset != "":
			return malformed("a rotate order names a custodian (new custodian keys) or a dataset (new dataset keys), not both")
		case o.Custodian != "" && o.NewKeys == "":
			return malformed("a rotate order for a custodian names their new-keys")
		case o.Custodian == "" && o.Dataset == "":
			return malformed("a rotate order needs custodian and new-keys (new custodian keys), or dataset with or without new-keys (new dataset keys, or a re-share)")
		}
	}
	for _, n := range []struct{ k, v string }{{keyDataset, o.Dataset}, {keyHost, o.Host}, {keyCustodian, o.Custodian}} {
		if n.v != "" && !wire.ValidName(n.v) {
			return malformed("%s %q is not a valid name (1 to %d characters of a-z, 0-9 and, not first, . _ -)", n.k, n.v, wire.MaxNameLen)
		}
	}
	if o.Custodian != "" && custodian.ValidName(o.Custodian) != nil {
		return malformed("custodian %q is not a valid custodian name", o.Custodian)
	}
	if o.Writer != "" {
		if _, err := parseWriter(o.Writer); err != nil {
			return malformed("writer: %v", err)
		}
	}
	if o.Snapshot != "" {
		if _, err := parseHex(o.Snapshot, 32); err != nil {
			return malformed("snapshot: %v", err)
		}
	}
	if !o.Before.IsZero() && !validOrderTime(o.Before) {
		return malformed("before must be a UTC time in whole seconds between 1970 and 9999")
	}
	if o.Reader != "" && !validSHA256Fingerprint(o.Reader) {
		return malformed("reader must be \"sha256:\" and 64 lowercase hex digits (the reader key's fingerprint)")
	}
	if o.NewKeys != "" {
		if _, err := parseHex(o.NewKeys, 16); err != nil {
			return malformed("new-keys: %v (a custodian fingerprint)", err)
		}
	}
	if o.Text != "" && !ValidTextHash(o.Text) {
		return malformed("text must be \"blake3:\" and 64 lowercase hex digits")
	}
	return nil
}

// ValidTextHash reports whether s is "blake3:" and 64 lowercase hex digits.
func ValidTextHash(s string) bool {
	h, ok := strings.CutPrefix(s, "blake3:")
	if !ok {
		return false
	}
	_, err := parseHex(h, 32)
	return err == nil
}

func validSHA256Fingerprint(s string) bool {
	h, ok := strings.CutPrefix(s, "sha256:")
	if !ok {
		return false
	}
	_, err := parseHex(h, 32)
	return err == nil
}

// parseWriter decodes a writer: canonical standard base64 of a
// sig.PublicKey.
func parseWriter(s string) (sig.PublicKey, error) {
	b, err := base64.StdEncoding.Strict().DecodeString(s)
	if err != nil || base64.StdEncoding.EncodeToString(b) != s {
		return sig.PublicKey{}, errors.New("not canonical standard base64")
	}
	pk, err := sig.ParsePublicKey(b)
	if err != nil {
		return sig.PublicKey{}, err
	}
	return pk, nil
}

func checkReason(s string) error {
	switch {
	case s == "":
		return errors.New("empty; say why the order is given")
	case len(s) > MaxReason:
		return fmt.Errorf("%d bytes, more than %d", len(s), MaxReason)
	case !utf8.ValidString(s):
		return errors.New("not UTF-8")
	case strings.TrimSpace(s) != s:
		return errors.New("starts or ends with white space")
	}
	for _, r := range s {
		if !unicode.IsPrint(r) {
			return fmt.Errorf("holds the non-printable character %U", r)
		}
	}
	return nil
}

// signerName is the signature line name of a custodian.
func signerName(custodianName string) string { return custodianPrefix + custodianName }

// noVerifiers knows no key: note.Open with it parses a note's signature
// lines without checking any.
type noVerifiers struct{}

func (noVerifiers) Verifier(name string, hash uint32) (note.Verifier, error) {
	return nil, &note.UnknownVerifierError{Name: name, KeyHash: hash}
}

// splitOrderFile returns the note of an order file: a bare order text (no
// signatures yet) or a signed note, whose signatures are not checked.
func splitOrderFile(file []byte) (*note.Note, error) {
	if len(file) > maxOrderFile {
		return nil, malformed("order file is %d bytes, more than %d", len(file), maxOrderFile)
	}
	if !bytes.Contains(file, []byte("\n\n")) {
		return &note.Note{Text: string(file)}, nil
	}
	_, err := note.Open(file, noVerifiers{})
	var u *note.UnverifiedNoteError
	if !errors.As(err, &u) {
		return nil, malformed("order file is not a signed note (text, blank line, signature lines \"— NAME BASE64\")")
	}
	return u.Note, nil
}

// SignOrder adds custodian c's signature (line "custodian:NAME", domain
// OrderDomain) to an order file: the bare order text or an already signed
// order. Other signatures are kept; an earlier signature by the same key is
// replaced. The text must parse.
func SignOrder(file []byte, c *custodian.Identity) ([]byte, error) {
	n, err := splitOrderFile(file)
	if err != nil {
		return nil, err
	}
	if _, err := ParseOrder([]byte(n.Text)); err != nil {
		return nil, fmt.Errorf("sign order: %w", err)
	}
	if c == nil || c.Signer == nil {
		return nil, errors.New("sign order: no custodian signing key")
	}
	out, err := note.Sign(n, noteSigner(signerName(c.Name), OrderDomain, c.Signer))
	if err != nil {
		return nil, fmt.Errorf("sign order as %s: %w", c.Name, err)
	}
	return out, nil
}
