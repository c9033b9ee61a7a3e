package gov

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/embassy-project/embassy/internal/sig"
)

// SignedOrder is an order file opened against an agreement (OpenOrder).
type SignedOrder struct {
	Order *Order
	// Text is the exact signed text.
	Text []byte
	// File is the whole note: text, blank line, signature lines.
	File []byte
	// Signers are the names of the custodians whose signatures verified,
	// each once, in the order of the file.
	Signers []string
	// Unknown are the signature line names (as written, e.g.
	// "custodian:mallory") that match no custodian key of the agreement.
	Unknown []string
}

// orderVerifiers finds a custodian's verifier in an agreement.
type orderVerifiers struct {
	a    *Agreement
	keys map[string]sig.PublicKey
}

func (v *orderVerifiers) Verifier(name string, hash uint32) (note.Verifier, error) {
	unknown := &note.UnknownVerifierError{Name: name, KeyHash: hash}
	cname, ok := strings.CutPrefix(name, custodianPrefix)
	if !ok {
		return nil, unknown
	}
	pk, ok := v.keys[cname]
	if !ok {
		c := v.a.Custodian(cname)
		if c == nil {
			return nil, unknown
		}
		r, err := c.Recipient()
		if err != nil {
			return nil, &agreementKeyError{fmt.Errorf("agreement v%d, custodian %s: %w", v.a.Version, cname, err)}
		}
		pk = r.Verifier
		v.keys[cname] = pk
	}
	if keyHash(name, pk) != hash {
		return nil, unknown
	}
	return noteVerifier(name, OrderDomain, pk), nil
}

// agreementKeyError is a custodian key of the agreement that does not
// parse: the agreement's fault, not the order's.
type agreementKeyError struct{ err error }

func (e *agreementKeyError) Error() string { return e.err.Error() }
func (e *agreementKeyError) Unwrap() error { return e.err }

// OpenOrder parses a signed order file and verifies each "custodian:NAME"
// signature line against that custodian's signing key in a. Signature lines
// of keys a does not list are returned in Unknown (Check refuses them); a
// file with no verifying signature is not an error here (Signers is empty).
// A line naming a known key whose signature does not verify is
// ErrBadSignature; bytes that are not a signed order are ErrMalformed.
func OpenOrder(file []byte, a *Agreement) (*SignedOrder, error) {
	if a == nil {
		return nil, errors.New("open order: no agreement")
	}
	if len(file) > maxOrderFile {
		return nil, malformed("order file is %d bytes, more than %d", len(file), maxOrderFile)
	}
	n, err := note.Open(file, &orderVerifiers{a: a, keys: make(map[string]sig.PublicKey)})
	var unverified *note.UnverifiedNoteError
	var invalid *note.InvalidSignatureError
	var badKey *agreementKeyError
	switch {
	case err == nil:
	case errors.As(err, &unverified):
		n = unverified.Note
	case errors.As(err, &invalid):
		return nil, fmt.Errorf("%w: the signature of %s does not verify against its key in agreement v%d (a forged or damaged signature line)",
			ErrBadSignature, invalid.Name, a.Version)
	case errors.As(err, &badKey):
		return nil, fmt.Errorf("open order: %w", badKey.err)
	default:
		return nil, malformed("order file is not a signed note (text, blank line, signature lines \"— NAME BASE64\"): %v", err)
	}
	o, err := ParseOrder([]byte(n.Text))
	if err != nil {
		return nil, err
	}
	so := &SignedOrder{Order: o, Text: []byte(n.Text), File: append([]byte(nil), file...)}
	for _, s := range n.Sigs {
		name := strings.TrimPrefix(s.Name, custodianPrefix)
		if !slices.Contains(so.Signers, name) {
			so.Signers = append(so.Signers, name)
		}
	}
	for _, s := range n.UnverifiedSigs {
		if !slices.Contains(so.Unknown, s.Name) {
			so.Unknown = append(so.Unknown, s.Name)
		}
	}
	return so, nil
}

// refuse returns a refusal of order o wrapping sentinel.
func refuse(o *Order, sentinel error, format string, args ...any) error {
	return fmt.Errorf("order %s (%s): %w: %s", o.IDString(), o.Kind, sentinel, fmt.Sprintf(format, args...))
}

func listOrNobody(names []string) string {
	if len(names) == 0 {
		return "nobody"
	}
	return strings.Join(names, ", ")
}

// CheckSignatures checks an opened order's signatures against agreement a
// and the revoked fingerprints: no signature by a key a does not list
// (ErrUnknownSigner), none by a revoked custodian (ErrRevoked), at least the
// quorum's threshold of distinct custodians (ErrQuorum) holding its roles
// (ErrRole). It is the part of Check that needs no state; Check calls it.
func CheckSignatures(so *SignedOrder, a *Agreement, revoked []string) error {
	o := so.Order
	if len(so.Unknown) > 0 {
		return refuse(o, ErrUnknownSigner, "signature by a key not in agreement v%d: %s (remove the line or have that custodian sign with the key the agreement lists)",
			a.Version, strings.Join(so.Unknown, ", "))
	}
	var signers []*Custodian
	var names []string
	for _, name := range so.Signers {
		if slices.Contains(names, name) {
			continue // the same custodian twice counts once
		}
		c := a.Custodian(name)
		if c == nil {
			return refuse(o, ErrUnknownSigner, "signature by a key not in agreement v%d: %s", a.Version, signerName(name))
		}
		if slices.Contains(revoked, c.Fingerprint) {
			return refuse(o, ErrRevoked, "custodian %s (keys %s) was revoked; that signature no longer counts (remove it and have another custodian sign)",
				name, c.Fingerprint)
		}
		signers = append(signers, c)
		names = append(names, name)
	}
	q := a.Quorum(o.Kind)
	if len(signers) < q.Threshold {
		return refuse(o, ErrQuorum, "%d of %d custodians needed, signed by: %s", q.Threshold, len(a.Custodians), listOrNobody(names))
	}
	for _, r := range q.Roles {
		var holders []string
		for _, c := range signers {
			if slices.Contains(c.Roles, r.Role) {
				holders = append(holders, c.Name)
			}
		}
		if len(holders) < r.Count {
			return refuse(o, ErrRole, "%s orders need %d signer(s) with role %q, signed by %s of them (signers: %s)",
				o.Kind, r.Count, r.Role, listOrNobody(holders), listOrNobody(names))
		}
	}
	return nil
}

// quorumReachable reports whether the custodians cs can together meet q.
func quorumReachable(cs []*Custodian, q Quorum) bool {
	if len(cs) < q.Threshold {
		return false
	}
	for _, r := range q.Roles {
		n := 0
		for _, c := range cs {
			if slices.Contains(c.Roles, r.Role) {
				n++
			}
		}
		if n < r.Count {
			return false
		}
	}
	return true
}

// Check decides whether the opened order so may be carried out under
// agreement a in state s at time now. It is pure: so must come from
// OpenOrder with the same agreement (Check trusts its Signers), now is the
// host's clock. The rules, in the order they are checked, and their
// errors are listed in docs/spec/order.md.
func Check(so *SignedOrder, a *Agreement, s State, now time.Time) error {
	if so == nil || so.Order == nil {
		return malformed("no order")
	}
	if a == nil {
		return errors.New("check order: no agreement")
	}
	o := so.Order
	if err := o.Validate(); err != nil {
		return fmt.Errorf("order %s: %w", o.IDString(), err)
	}
	if o.Guest != a.Guest {
		return refuse(o, ErrWrongGuest, "the order is for guest %s; this agreement is for guest %s (%s)", o.Guest, a.Guest, a.GuestName)
	}
	if o.Agreement != a.Version || o.Agreement != s.Agreement {
		return refuse(o, ErrWrongAgreement, "the order is issued under agreement v%d; the agreement given is v%d and v%d is in force here",
			o.Agreement, a.Version, s.Agreement)
	}
	if err := CheckSignatures(so, a, s.Revoked); err != nil {
		return err
	}
	skew := time.Duration(a.ClockSkewSeconds) * time.Second
	if now.Add(skew).Before(o.NotBefore) {
		return refuse(o, ErrNotYetValid, "valid from %s; it is %s here (clock skew allowed: %s)",
			formatOrderTime(o.NotBefore), now.UTC().Format(time.RFC3339), skew)
	}
	if now.Add(-skew).After(o.NotAfter) {
		return refuse(o, ErrExpired, "valid until %s; it is %s here (clock skew allowed: %s); draft and sign a new order",
			formatOrderTime(o.NotAfter), now.UTC().Format(time.RFC3339), skew)
	}
	if slices.Contains(s.Orders, o.IDString()) {
		return refuse(o, ErrReplay, "order %s was already carried out here", o.IDString())
	}
	return checkKind(o, a, s, now)
}

// checkKind checks the kind-specific rules.
func checkKind(o *Order, a *Agreement, s State, now time.Time) error {
	var d *Dataset
	var ds DatasetState
	if o.Dataset != "" {
		if d = a.Dataset(o.Dataset); d == nil {
			return refuse(o, ErrNotAllowed, "dataset %q is not in agreement v%d", o.Dataset, a.Version)
		}
		var ok bool
		if ds, ok = s.Datasets[o.Dataset]; !ok {
			return refuse(o, ErrTransition, "dataset %q has no governance state here (has this host adopted agreement v%d?)", o.Dataset, a.Version)
		}
	}
	switch o.Kind {
	case Activate:
		h := a.Host(o.Host)
		if h == nil {
			return refuse(o, ErrNotAllowed, "host %q is not in agreement v%d", o.Host, a.Version)
		}
		if !h.Allows(d.Class) {
			return refuse(o, ErrNotAllowed, "host %s may not hold %s datasets, and dataset %s is %s", h.Name, d.Class, d.Name, d.Class)
		}
		if err := checkEpoch(o, ds); err != nil {
			return err
		}
	case Return:
		if ds.Phase != Active {
			return refuse(o, ErrTransition, "only an active dataset can be returned; dataset %s is %s at epoch %d", o.Dataset, ds.Phase, ds.Epoch)
		}
		if err := checkEpoch(o, ds); err != nil {
			return err
		}
	case Expire:
		retention := time.Duration(d.RetentionDays) * 24 * time.Hour
		if until := o.Before.Add(retention); until.After(now) {
			return refuse(o, ErrTransition, "retention not over: dataset %s keeps objects %d days, so objects written up to %s may go only from %s",
				o.Dataset, d.RetentionDays, formatOrderTime(o.Before), formatOrderTime(until))
		}
	case Grant:
		// The dataset exists (above); the reader key is the grant's business.
	case Rotate:
		if o.Dataset != "" && o.NewKeys != "" && s.Datasets[o.Dataset].Keys == o.NewKeys {
			return refuse(o, ErrTransition, "dataset %s already has the keys %s", o.Dataset, o.NewKeys)
		}
		if o.Custodian != "" {
			c := a.Custodian(o.Custodian)
			if c == nil {
				return refuse(o, ErrNotAllowed, "custodian %q is not in agreement v%d", o.Custodian, a.Version)
			}
			if slices.Contains(s.Revoked, c.Fingerprint) {
				return refuse(o, ErrRevoked, "custodian %s was revoked; rotating cannot restore a revoked custodian (amend the agreement instead)", c.Name)
			}
			if o.NewKeys == c.Fingerprint {
				return refuse(o, ErrTransition, "new-keys %s are custodian %s's current keys", o.NewKeys, c.Name)
			}
			if slices.Contains(s.Revoked, o.NewKeys) {
				return refuse(o, ErrRevoked, "new-keys %s were revoked", o.NewKeys)
			}
		}
	case Revoke:
		c := a.Custodian(o.Custodian)
		if c == nil {
			return refuse(o, ErrNotAllowed, "custodian %q is not in agreement v%d", o.Custodian, a.Version)
		}
		if slices.Contains(s.Revoked, c.Fingerprint) {
			return refuse(o, ErrTransition, "custodian %s (keys %s) is already revoked", c.Name, c.Fingerprint)
		}
		var rest []*Custodian
		for i := range a.Custodians {
			r := &a.Custodians[i]
			if r.Name != c.Name && !slices.Contains(s.Revoked, r.Fingerprint) {
				rest = append(rest, r)
			}
		}
		if q := a.Quorum(Amend); !quorumReachable(rest, q) {
			return refuse(o, ErrUnsafe, "revoking %s would leave custodians who cannot meet the amend quorum (%d signers); amend the agreement to replace the custodian instead",
				c.Name, q.Threshold)
		}
	case Amend:
		// Validate checked the text hash; the host checks the new agreement
		// against it when it adopts it.
	}
	return nil
}

// checkEpoch checks that o moves the dataset's epoch forward by exactly one.
func checkEpoch(o *Order, ds DatasetState) error {
	switch {
	case o.Epoch <= ds.Epoch:
		return refuse(o, ErrStaleEpoch, "epoch %d is not after dataset %s's epoch %d; the order must name epoch %d",
			o.Epoch, o.Dataset, ds.Epoch, ds.Epoch+1)
	case o.Epoch > ds.Epoch+1:
		return refuse(o, ErrEpochGap, "epoch %d skips ahead of dataset %s's epoch %d (orders this host has not carried out? fetch them from the other hosts' logs); the order must name epoch %d",
			o.Epoch, o.Dataset, ds.Epoch, ds.Epoch+1)
	}
	return nil
}
