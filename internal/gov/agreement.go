package gov

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/zeebo/blake3"
	"golang.org/x/mod/sumdb/note"

	"github.com/embassy-project/embassy/internal/custodian"
	"github.com/embassy-project/embassy/internal/guest"
	"github.com/embassy-project/embassy/internal/sig"
	"github.com/embassy-project/embassy/internal/wire"
)

// Limits of the agreement format (docs/spec/agreement.md).
const (
	// MaxAgreementSize bounds the agreement's JSON text.
	MaxAgreementSize = 1 << 20
	// MaxSignedAgreementSize bounds a signed agreement file: the text and
	// at most 100 signature lines (the signed-note limit) of about 4.5 KiB.
	MaxSignedAgreementSize = MaxAgreementSize + 1<<20

	maxClockSkewSeconds  = 600
	minHomeSilentSeconds = 60
	maxHomeSilentSeconds = 365 * 24 * 3600
	maxRetentionDays     = 36525            // 100 years
	maxTargetSeconds     = 10 * 365 * 86400 // RPO and RTO: 10 years
	maxDataShards        = 255
	maxTextLen           = 256 // governing law, jurisdiction
)

// HashPrefix starts Agreement.Hash and the Previous field.
const HashPrefix = "blake3:"

// Marshal returns the agreement's canonical text: encoding/json's
// MarshalIndent with two spaces, then a newline. The text is what
// custodians sign and what Hash covers; ParseAgreement accepts nothing else.
func (a *Agreement) Marshal() []byte {
	b, err := json.MarshalIndent(a, "", "  ")
	if err != nil {
		panic("gov: agreement does not marshal: " + err.Error()) // strings, ints, bools, maps with string keys
	}
	return append(b, '\n')
}

// Hash returns "blake3:" + hex BLAKE3-256 of the canonical text: the value
// an amendment's Previous field and an amend order's Text carry.
func (a *Agreement) Hash() string {
	sum := blake3.Sum256(a.Marshal())
	return HashPrefix + hex.EncodeToString(sum[:])
}

// ParseAgreement parses an agreement's JSON text (no signatures; see
// OpenAgreement for the signed file) and validates it, safety rules
// included. The text must be in canonical form (b == Marshal()) so that its
// hash is well defined. Errors wrap ErrMalformed or ErrUnsafe.
func ParseAgreement(b []byte) (*Agreement, error) {
	if len(b) > MaxAgreementSize {
		return nil, badAgreement("%d bytes, more than %d", len(b), MaxAgreementSize)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var a Agreement
	if err := dec.Decode(&a); err != nil {
		return nil, badAgreement("%v", err)
	}
	if len(bytes.TrimLeft(b[dec.InputOffset():], " \t\r\n")) != 0 {
		return nil, badAgreement("trailing data after the JSON object")
	}
	if err := a.Validate(); err != nil {
		return nil, err
	}
	if !bytes.Equal(b, a.Marshal()) {
		return nil, badAgreement("not in canonical form (two-space indented JSON as embassy writes it, fields in order, one final newline); " +
			"re-create it with embassy agreement init, or re-save it with a tool that keeps embassy's layout")
	}
	return &a, nil
}

func badAgreement(format string, args ...any) error {
	return fmt.Errorf("%w: agreement: %s", ErrMalformed, fmt.Sprintf(format, args...))
}

func unsafeSetup(format string, args ...any) error {
	return fmt.Errorf("%w: agreement: %s", ErrUnsafe, fmt.Sprintf(format, args...))
}

// Validate checks the structural rules (ErrMalformed) and then the safety
// rules (ErrUnsafe) of docs/spec/agreement.md.
func (a *Agreement) Validate() error {
	if err := a.validateStructure(); err != nil {
		return err
	}
	return a.checkSafety()
}

func (a *Agreement) validateStructure() error {
	if a.Format != AgreementFormat {
		return badAgreement("format %q, want %q", a.Format, AgreementFormat)
	}
	if _, err := guest.ParseID(a.Guest); err != nil {
		return badAgreement("guest: %v", err)
	}
	if err := guest.ValidName(a.GuestName); err != nil {
		return badAgreement("guest_name: %v", err)
	}
	if !isLowerHex(a.GuestIdentity, 32) {
		return badAgreement("guest_identity: want the guest identity fingerprint, 32 lowercase hex characters")
	}
	if a.Version < 1 {
		return badAgreement("version must be at least 1")
	}
	if a.Version == 1 && a.Previous != "" {
		return badAgreement("version 1 has no previous version; previous must be empty")
	}
	if a.Version > 1 && !validAgreementHash(a.Previous) {
		return badAgreement("version %d is an amendment: previous must be %s + 64 lowercase hex characters (the hash of version %d)", a.Version, HashPrefix, a.Version-1)
	}
	if err := a.validateParties(); err != nil {
		return err
	}
	if err := validAgreementText("governing_law", a.GoverningLaw); err != nil {
		return err
	}
	if err := a.validateHosts(); err != nil {
		return err
	}
	if a.WitnessThreshold < 1 {
		return badAgreement("witness_threshold must be at least 1")
	}
	if a.ToleratedFaultyWitnesses < 0 {
		return badAgreement("tolerated_faulty_witnesses must not be negative")
	}
	if err := a.validateCustodians(); err != nil {
		return err
	}
	if err := a.validateDatasets(); err != nil {
		return err
	}
	if err := a.validateQuorums(); err != nil {
		return err
	}
	if s := a.Activation.HomeSilentSeconds; s < minHomeSilentSeconds || s > maxHomeSilentSeconds {
		return badAgreement("activation.home_silent_seconds %d: want %d to %d", s, minHomeSilentSeconds, maxHomeSilentSeconds)
	}
	if s := a.ClockSkewSeconds; s < 0 || s > maxClockSkewSeconds {
		return badAgreement("clock_skew_seconds %d: want 0 to %d", s, maxClockSkewSeconds)
	}
	return nil
}

func (a *Agreement) validateParties() error {
	if len(a.Parties) == 0 {
		return badAgreement("no parties")
	}
	seen := map[string]bool{}
	guests := 0
	for i, p := range a.Parties {
		if !wire.ValidName(p.Name) {
			return badAgreement("parties[%d]: name must be 1 to 64 characters of a-z, 0-9 and (not first) . _ -", i)
		}
		if seen[p.Name] {
			return badAgreement("party %s is listed twice", p.Name)
		}
		seen[p.Name] = true
		switch p.Role {
		case "guest":
			guests++
		case "host":
		default:
			return badAgreement("party %s: role %q, want \"guest\" or \"host\"", p.Name, p.Role)
		}
		if !validJurisdiction(p.Jurisdiction) {
			return badAgreement("party %s: jurisdiction %q: want an ISO 3166 code such as \"LU\" or \"BE-BRU\"", p.Name, p.Jurisdiction)
		}
	}
	if guests != 1 {
		return badAgreement("%d parties with role guest, want exactly one", guests)
	}
	return nil
}

func (a *Agreement) party(name string) *Party {
	for i := range a.Parties {
		if a.Parties[i].Name == name {
			return &a.Parties[i]
		}
	}
	return nil
}

func (a *Agreement) validateHosts() error {
	if len(a.Hosts) == 0 {
		return badAgreement("no hosts")
	}
	names := map[string]bool{}
	witnessOrigins := map[string]bool{}
	witnessKeys := map[string]bool{}
	checkWitness := func(who string, origin string, keys []string) error {
		if witnessOrigins[origin] {
			return badAgreement("%s: witness name %q is used twice; every witness must be counted once", who, origin)
		}
		witnessOrigins[origin] = true
		for _, k := range keys {
			if witnessKeys[k] {
				return badAgreement("%s: a witness key is used twice; every witness must be counted once", who)
			}
			witnessKeys[k] = true
		}
		return nil
	}
	for i := range a.Hosts {
		h := &a.Hosts[i]
		if !wire.ValidName(h.Name) {
			return badAgreement("hosts[%d]: name must be 1 to 64 characters of a-z, 0-9 and (not first) . _ -", i)
		}
		if names[h.Name] {
			return badAgreement("host %s is listed twice", h.Name)
		}
		names[h.Name] = true
		if p := a.party(h.Party); p == nil || p.Role != "host" {
			return badAgreement("host %s: party %q is not a party with role host", h.Name, h.Party)
		}
		d := &h.Descriptor
		if err := d.Validate(); err != nil {
			return badAgreement("host %s: descriptor: %v", h.Name, err)
		}
		if d.Name != h.Name {
			return badAgreement("host %s: descriptor is for host %q", h.Name, d.Name)
		}
		if !d.HasLog() {
			return badAgreement("host %s: descriptor has no log; a host runs a log", h.Name)
		}
		if d.SigningKey == "" || d.KEMKey == "" {
			return badAgreement("host %s: descriptor has no signing or KEM key; re-run embassy host init with this version and use its new descriptor", h.Name)
		}
		if err := checkWitness("host "+h.Name, d.Witness.Origin, d.Witness.Keys); err != nil {
			return err
		}
		if len(h.Classes) == 0 {
			return badAgreement("host %s: no classes; list the classes it may hold", h.Name)
		}
		for j, c := range h.Classes {
			if !c.known() {
				return badAgreement("host %s: class %q, want one of %s", h.Name, c, agreementClassList)
			}
			if slices.Contains(h.Classes[:j], c) {
				return badAgreement("host %s: class %s is listed twice", h.Name, c)
			}
		}
		if h.QuotaBytes < 0 {
			return badAgreement("host %s: quota_bytes must not be negative (0: no quota)", h.Name)
		}
	}
	for i := range a.Witnesses {
		d := &a.Witnesses[i].Descriptor
		if err := d.Validate(); err != nil {
			return badAgreement("witnesses[%d]: descriptor: %v", i, err)
		}
		if names[d.Name] {
			return badAgreement("witness %s: the name is already used by a host or another witness", d.Name)
		}
		names[d.Name] = true
		if err := checkWitness("witness "+d.Name, d.Witness.Origin, d.Witness.Keys); err != nil {
			return err
		}
	}
	return nil
}

func (a *Agreement) validateCustodians() error {
	if len(a.Custodians) == 0 {
		return badAgreement("no custodians")
	}
	names := map[string]bool{}
	fps := map[string]bool{}
	for i := range a.Custodians {
		c := &a.Custodians[i]
		if err := custodian.ValidName(c.Name); err != nil {
			return badAgreement("custodians[%d]: %v", i, err)
		}
		if names[c.Name] {
			return badAgreement("custodian %s is listed twice", c.Name)
		}
		names[c.Name] = true
		for j, r := range c.Roles {
			if !wire.ValidName(r) {
				return badAgreement("custodian %s: role must be 1 to 64 characters of a-z, 0-9 and (not first) . _ -", c.Name)
			}
			if slices.Contains(c.Roles[:j], r) {
				return badAgreement("custodian %s: role %s is listed twice", c.Name, r)
			}
		}
		r, err := c.Recipient()
		if err != nil {
			return badAgreement("custodian %s: %v", c.Name, err)
		}
		if r.Fingerprint() != c.Fingerprint {
			return badAgreement("custodian %s: fingerprint %q does not match the keys (they have %s)", c.Name, c.Fingerprint, r.Fingerprint())
		}
		if fps[c.Fingerprint] {
			return badAgreement("custodian %s: the same keys are listed for another custodian; each custodian needs keys of their own", c.Name)
		}
		fps[c.Fingerprint] = true
	}
	return nil
}

func (a *Agreement) validateDatasets() error {
	if len(a.Datasets) == 0 {
		return badAgreement("no datasets")
	}
	names := map[string]bool{}
	for i, d := range a.Datasets {
		if err := guest.ValidName(d.Name); err != nil {
			return badAgreement("datasets[%d]: %v", i, err)
		}
		if names[d.Name] {
			return badAgreement("dataset %s is listed twice", d.Name)
		}
		names[d.Name] = true
		if !d.Class.known() {
			return badAgreement("dataset %s: class %q, want one of %s", d.Name, d.Class, agreementClassList)
		}
		if d.DataShards < 1 || d.DataShards > maxDataShards {
			return badAgreement("dataset %s: data_shards (erasure k) %d: want 1 to %d", d.Name, d.DataShards, maxDataShards)
		}
		if d.RetentionDays < 1 || d.RetentionDays > maxRetentionDays {
			return badAgreement("dataset %s: retention_days %d: want 1 to %d", d.Name, d.RetentionDays, maxRetentionDays)
		}
		if d.RPOSeconds < 0 || d.RPOSeconds > maxTargetSeconds || d.RTOSeconds < 0 || d.RTOSeconds > maxTargetSeconds {
			return badAgreement("dataset %s: rpo_seconds and rto_seconds: want 0 to %d", d.Name, maxTargetSeconds)
		}
	}
	return nil
}

func (a *Agreement) validateQuorums() error {
	for act := range a.Quorums {
		if !slices.Contains(Actions, act) {
			return badAgreement("quorums: unknown action %q", act)
		}
	}
	n := len(a.Custodians)
	for _, act := range Actions {
		q, ok := a.Quorums[act]
		if !ok {
			return badAgreement("quorums: no quorum for action %s; every action needs one", act)
		}
		if q.Threshold < 1 || q.Threshold > n {
			return badAgreement("quorum %s: threshold %d: want 1 to %d (the number of custodians)", act, q.Threshold, n)
		}
		for j, r := range q.Roles {
			if !wire.ValidName(r.Role) {
				return badAgreement("quorum %s: role must be 1 to 64 characters of a-z, 0-9 and (not first) . _ -", act)
			}
			if slices.ContainsFunc(q.Roles[:j], func(o RoleRequirement) bool { return o.Role == r.Role }) {
				return badAgreement("quorum %s: role %s is listed twice", act, r.Role)
			}
			holders := a.roleHolders(r.Role)
			if holders == 0 {
				return badAgreement("quorum %s: no custodian has role %s", act, r.Role)
			}
			if r.Count < 1 || r.Count > holders || r.Count > q.Threshold {
				return badAgreement("quorum %s: role %s count %d: want 1 to %d (custodians with the role, at most the threshold %d)",
					act, r.Role, r.Count, min(holders, q.Threshold), q.Threshold)
			}
		}
	}
	return nil
}

func (a *Agreement) roleHolders(role string) int {
	n := 0
	for _, c := range a.Custodians {
		if slices.Contains(c.Roles, role) {
			n++
		}
	}
	return n
}

// WitnessCount returns W, the number of witnesses of each host's log: the
// other hosts and every Witness.
func (a *Agreement) WitnessCount() int { return len(a.Hosts) - 1 + len(a.Witnesses) }

// AllowedHosts returns the hosts that may hold class c, in agreement order:
// a dataset of class c is erasure-coded over exactly these (n = their
// number).
func (a *Agreement) AllowedHosts(c Class) []string {
	var out []string
	for _, h := range a.Hosts {
		if h.Allows(c) {
			out = append(out, h.Name)
		}
	}
	return out
}

// checkSafety enforces the safety rules of docs/spec/agreement.md on a
// structurally valid agreement.
func (a *Agreement) checkSafety() error {
	w, f, W := a.WitnessThreshold, a.ToleratedFaultyWitnesses, a.WitnessCount()
	// Rule 1: witness quorums intersect in more than f honest witnesses.
	if w > W {
		return unsafeSetup("witness threshold w=%d is more than the W=%d witnesses of each host's log (%d other hosts + %d witnesses); no checkpoint could be cosigned",
			w, W, len(a.Hosts)-1, len(a.Witnesses))
	}
	if 2*w-W <= f {
		return unsafeSetup("witness quorums do not intersect safely: 2w − W = 2×%d − %d = %d must exceed f=%d tolerated faulty witnesses "+
			"(w is the witness threshold and W the witness count of each host's log, not the erasure k); raise witness_threshold to at least %d",
			w, W, 2*w-W, f, (W+f)/2+1)
	}
	// Rules 2 and 3a: every dataset fits on, and survives the loss of one
	// of, the hosts allowed for its class.
	for _, d := range a.Datasets {
		allowed := len(a.AllowedHosts(d.Class))
		if d.DataShards > allowed {
			return unsafeSetup("dataset %s: erasure k=%d larger than the %d hosts allowed for class %s; lower data_shards or allow %s on more hosts",
				d.Name, d.DataShards, allowed, d.Class, d.Class)
		}
		if allowed-1 < d.DataShards {
			return unsafeSetup("dataset %s: with home and one of the %d hosts allowed for class %s down, %d hosts remain, fewer than erasure k=%d needed to restore; "+
				"lower data_shards or allow %s on more hosts", d.Name, allowed, d.Class, allowed-1, d.DataShards, d.Class)
		}
	}
	// Rule 3b: with home (and every witness at home) and one other host
	// down, a host's log still reaches w witnesses, so the activation
	// order can be logged and carried out.
	atHome := 0
	for _, wt := range a.Witnesses {
		if wt.AtHome {
			atHome++
		}
	}
	down := min(1, len(a.Hosts)-1)
	if reach := W - down - atHome; reach < w {
		return unsafeSetup("home plus one host down blocks activation: a host's log then reaches W − 1 − at_home = %d − %d − %d = %d witnesses, fewer than the witness threshold w=%d; "+
			"add a witness outside home or another host (keeping 2w − W > f)", W, down, atHome, reach, w)
	}
	return nil
}

// Custodian returns the custodian called name, or nil.
func (a *Agreement) Custodian(name string) *Custodian {
	return byName(a.Custodians, name, func(c *Custodian) string { return c.Name })
}

// Host returns the host called name, or nil.
func (a *Agreement) Host(name string) *Host {
	return byName(a.Hosts, name, func(h *Host) string { return h.Name })
}

// Dataset returns the dataset called name, or nil.
func (a *Agreement) Dataset(name string) *Dataset {
	return byName(a.Datasets, name, func(d *Dataset) string { return d.Name })
}

// byName returns the element of xs whose name is name, or nil.
func byName[T any](xs []T, name string, nameOf func(*T) string) *T {
	for i := range xs {
		if nameOf(&xs[i]) == name {
			return &xs[i]
		}
	}
	return nil
}

// Quorum returns the quorum act needs (the zero Quorum for an unknown
// action; a validated agreement has one for every action).
func (a *Agreement) Quorum(act Action) Quorum { return a.Quorums[act] }

// Recipient returns the custodian's public keys.
func (c *Custodian) Recipient() (*custodian.Recipient, error) {
	kb, err := base64.StdEncoding.DecodeString(c.KEM)
	if err != nil {
		return nil, errors.New("kem_key: not base64")
	}
	kem, err := custodian.KEM().NewPublicKey(kb)
	if err != nil {
		return nil, fmt.Errorf("kem_key: %v", err)
	}
	sb, err := base64.StdEncoding.DecodeString(c.Signing)
	if err != nil {
		return nil, errors.New("signing_key: not base64")
	}
	pk, err := sig.ParsePublicKey(sb)
	if err != nil {
		return nil, fmt.Errorf("signing_key: %v", err)
	}
	return &custodian.Recipient{Name: c.Name, KEM: kem, Verifier: pk}, nil
}

// NewCustodian returns the agreement entry for a custodian's public keys.
func NewCustodian(r *custodian.Recipient, roles ...string) Custodian {
	return Custodian{
		Name:        r.Name,
		Roles:       roles,
		Fingerprint: r.Fingerprint(),
		KEM:         base64.StdEncoding.EncodeToString(r.KEM.Bytes()),
		Signing:     base64.StdEncoding.EncodeToString(r.Verifier.Bytes()),
	}
}

// SigningKey returns the host's signing public key (from its descriptor).
func (h *Host) SigningKey() (sig.PublicKey, error) { return h.Descriptor.Signing() }

// Allows reports whether the host may hold datasets of class c.
func (h *Host) Allows(c Class) bool { return slices.Contains(h.Classes, c) }

// CheckPlacement is what the home agent calls before any byte of dataset
// leaves home: hosts are the names of the hosts its shards go to. It refuses
// (ErrNotAllowed, naming the rule) an unknown dataset, a host that is not in
// the agreement, a host named twice, and a host the agreement does not allow
// to hold the dataset's class.
func (a *Agreement) CheckPlacement(dataset string, hosts []string) error {
	d := a.Dataset(dataset)
	if d == nil {
		return fmt.Errorf("%w: dataset %q is not in agreement v%d; add it by amendment before backing it up", ErrNotAllowed, dataset, a.Version)
	}
	if len(hosts) == 0 {
		return fmt.Errorf("%w: dataset %s: no hosts to place it on", ErrNotAllowed, d.Name)
	}
	for i, name := range hosts {
		h := a.Host(name)
		if h == nil {
			return fmt.Errorf("%w: dataset %s: host %q is not a host of agreement v%d; remove it from the home's hosts or amend the agreement", ErrNotAllowed, d.Name, name, a.Version)
		}
		if slices.Contains(hosts[:i], name) {
			return fmt.Errorf("%w: dataset %s: host %s is named twice", ErrNotAllowed, d.Name, name)
		}
		if !h.Allows(d.Class) {
			return fmt.Errorf("%w: dataset %s is %s; agreement v%d allows host %s to hold only %s", ErrNotAllowed, d.Name, d.Class, a.Version, h.Name, joinClasses(h.Classes))
		}
	}
	return nil
}

// --- the signed file ---

// SignedAgreement is an opened agreement file whose signature lines all
// verified.
type SignedAgreement struct {
	Agreement *Agreement
	Text      []byte // the canonical text the signatures cover
	// Custodians are the names of the custodians whose signatures verified,
	// sorted, each once.
	Custodians []string
	// Acks are the names of the hosts whose acknowledgements verified,
	// sorted, each once.
	Acks []string

	signed map[string][]string // custodian name → fingerprints of the keys that signed
}

// ParseAgreementFile parses the agreement in a bare or signed file without
// checking signatures, and returns the signer names on its signature lines
// ("custodian:NAME", "host:NAME"), unverified. For display only: anything
// that acts on an agreement uses OpenAgreement.
func ParseAgreementFile(file []byte) (*Agreement, []string, error) {
	text, sigs, err := splitAgreementFile(file)
	if err != nil {
		return nil, nil, err
	}
	a, err := ParseAgreement(text)
	if err != nil {
		return nil, nil, err
	}
	var names []string
	for _, s := range sigs {
		names = append(names, s.Name)
	}
	return a, names, nil
}

// splitAgreementFile returns the text and the (unverified) signatures of a
// bare or signed agreement file. A canonical text has no blank line, so a
// file without one is bare text.
func splitAgreementFile(file []byte) ([]byte, []note.Signature, error) {
	if len(file) > MaxSignedAgreementSize {
		return nil, nil, badAgreement("file is %d bytes, more than %d", len(file), MaxSignedAgreementSize)
	}
	if !bytes.Contains(file, []byte("\n\n")) {
		return file, nil, nil
	}
	_, err := note.Open(file, rejectAllVerifiers{})
	var unverified *note.UnverifiedNoteError
	if !errors.As(err, &unverified) {
		return nil, nil, badAgreement("signed file: not a signed note (the text, a blank line, then lines \"— NAME SIGNATURE\")")
	}
	return []byte(unverified.Note.Text), unverified.Note.UnverifiedSigs, nil
}

// rejectAllVerifiers knows no verifier, so note.Open only parses.
type rejectAllVerifiers struct{}

func (rejectAllVerifiers) Verifier(name string, hash uint32) (note.Verifier, error) {
	return nil, &note.UnknownVerifierError{Name: name, KeyHash: hash}
}

// SignAgreement adds custodian c's signature (signer name "custodian:NAME",
// domain AgreementDomain) to file, a bare agreement text or a signed one,
// replacing an earlier signature line of the same name. For version 1, c
// must be a custodian of the agreement; an amendment is checked at
// OpenAgreement time against the previous version's custodians.
func SignAgreement(file []byte, c *custodian.Identity) ([]byte, error) {
	text, sigs, err := splitAgreementFile(file)
	if err != nil {
		return nil, err
	}
	a, err := ParseAgreement(text)
	if err != nil {
		return nil, err
	}
	if a.Version == 1 {
		e := a.Custodian(c.Name)
		if e == nil || e.Fingerprint != c.Fingerprint() {
			return nil, fmt.Errorf("%w: %s (key %s) is not a custodian of this agreement", ErrUnknownSigner, c.Name, c.Fingerprint())
		}
	}
	return signAgreementNote(text, sigs, noteSigner(custodianPrefix+c.Name, AgreementDomain, c.Signer))
}

// AckAgreement adds host's acknowledgement (signer name "host:NAME", domain
// AckDomain) to file, a bare or signed agreement. k must be the signing key
// in the host's descriptor in the agreement.
func AckAgreement(file []byte, host string, k *sig.PrivateKey) ([]byte, error) {
	text, sigs, err := splitAgreementFile(file)
	if err != nil {
		return nil, err
	}
	a, err := ParseAgreement(text)
	if err != nil {
		return nil, err
	}
	h := a.Host(host)
	if h == nil {
		return nil, fmt.Errorf("%w: %q is not a host of this agreement", ErrUnknownSigner, host)
	}
	pk, err := h.SigningKey()
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	if !pk.Equal(k.Public()) {
		return nil, fmt.Errorf("%w: this key is not host %s's signing key in the agreement (descriptor key %s, this key %s)",
			ErrUnknownSigner, host, pk.Fingerprint(), k.Public().Fingerprint())
	}
	return signAgreementNote(text, sigs, noteSigner(hostPrefix+host, AckDomain, k))
}

func signAgreementNote(text []byte, sigs []note.Signature, s note.Signer) ([]byte, error) {
	keep := slices.DeleteFunc(slices.Clone(sigs), func(o note.Signature) bool { return o.Name == s.Name() })
	out, err := note.Sign(&note.Note{Text: string(text), UnverifiedSigs: keep}, s)
	if err != nil {
		return nil, fmt.Errorf("sign agreement: %w", err)
	}
	return out, nil
}

// agreementSigner is what a signature line's name and key hash stand for.
type agreementSigner struct {
	host        bool
	name        string
	fingerprint string // custodian entry fingerprint
	v           note.Verifier
}

type agreementSignerKey struct {
	name string
	hash uint32
}

type agreementVerifiers map[agreementSignerKey]agreementSigner

func (m agreementVerifiers) Verifier(name string, hash uint32) (note.Verifier, error) {
	if s, ok := m[agreementSignerKey{name, hash}]; ok {
		return s.v, nil
	}
	return nil, &note.UnknownVerifierError{Name: name, KeyHash: hash}
}

func (m agreementVerifiers) addCustodians(cs []Custodian) error {
	for i := range cs {
		c := &cs[i]
		r, err := c.Recipient()
		if err != nil {
			return badAgreement("custodian %s: %v", c.Name, err)
		}
		name := custodianPrefix + c.Name
		k := agreementSignerKey{name, keyHash(name, r.Verifier)}
		if _, ok := m[k]; !ok { // the rules' keys come first and are never replaced
			m[k] = agreementSigner{name: c.Name, fingerprint: c.Fingerprint, v: noteVerifier(name, AgreementDomain, r.Verifier)}
		}
	}
	return nil
}

// OpenAgreement parses a bare or signed agreement file and verifies every
// signature line. prev is nil for version 1; for an amendment it is the
// version in force, and the file's version must be prev.Version+1, its
// previous field prev.Hash() and its guest prev's. Custodian lines verify
// against the custodians of prev and of the agreement itself (only prev's
// count for InForce); host lines against the agreement's hosts' signing
// keys. A line that does not verify is ErrBadSignature, a line by a name or
// key not in the agreement ErrUnknownSigner; both name the signer.
// Revocations are not known here. A bare text opens with no signers.
func OpenAgreement(file []byte, prev *Agreement) (*SignedAgreement, error) {
	text, sigs, err := splitAgreementFile(file)
	if err != nil {
		return nil, err
	}
	a, err := ParseAgreement(text)
	if err != nil {
		return nil, err
	}
	if prev == nil && a.Version != 1 {
		return nil, fmt.Errorf("%w: agreement version %d is an amendment; open it with version %d, the one in force", ErrWrongAgreement, a.Version, a.Version-1)
	}
	if prev != nil {
		if a.Guest != prev.Guest {
			return nil, fmt.Errorf("%w: the amendment is for guest %s, the agreement in force for guest %s", ErrWrongGuest, a.Guest, prev.Guest)
		}
		if a.Version != prev.Version+1 {
			return nil, fmt.Errorf("%w: the amendment is version %d; after version %d comes %d", ErrWrongAgreement, a.Version, prev.Version, prev.Version+1)
		}
		if h := prev.Hash(); a.Previous != h {
			return nil, fmt.Errorf("%w: the amendment's previous is %s, but version %d hashes to %s; it amends another text", ErrWrongAgreement, a.Previous, prev.Version, h)
		}
	}
	s := &SignedAgreement{Agreement: a, Text: text, signed: map[string][]string{}}
	if len(sigs) == 0 {
		return s, nil
	}
	vs := agreementVerifiers{}
	if prev != nil {
		if err := vs.addCustodians(prev.Custodians); err != nil {
			return nil, err
		}
	}
	if err := vs.addCustodians(a.Custodians); err != nil {
		return nil, err
	}
	for i := range a.Hosts {
		h := &a.Hosts[i]
		pk, err := h.SigningKey()
		if err != nil {
			return nil, badAgreement("%v", err)
		}
		name := hostPrefix + h.Name
		vs[agreementSignerKey{name, keyHash(name, pk)}] = agreementSigner{host: true, name: h.Name, v: noteVerifier(name, AckDomain, pk)}
	}
	n, err := note.Open(file, vs)
	var invalid *note.InvalidSignatureError
	var unverified *note.UnverifiedNoteError
	switch {
	case errors.As(err, &invalid):
		return nil, fmt.Errorf("%w: the signature by %s does not verify over this text (changed after signing, or forged); ask %s to sign again",
			ErrBadSignature, invalid.Name, invalid.Name)
	case errors.As(err, &unverified):
		n = unverified.Note
	case err != nil:
		return nil, badAgreement("signed file: %v", err)
	}
	if len(n.UnverifiedSigs) > 0 {
		u := n.UnverifiedSigs[0]
		return nil, fmt.Errorf("%w: signature by %s (key hash %08x) is not by a custodian or host key of agreement v%d; remove the line or fix the agreement",
			ErrUnknownSigner, u.Name, u.Hash, a.Version)
	}
	acks := map[string]bool{}
	for _, g := range n.Sigs {
		info := vs[agreementSignerKey{g.Name, g.Hash}]
		if info.host {
			acks[info.name] = true
			continue
		}
		if !slices.Contains(s.signed[info.name], info.fingerprint) {
			s.signed[info.name] = append(s.signed[info.name], info.fingerprint)
		}
	}
	for name := range s.signed {
		s.Custodians = append(s.Custodians, name)
	}
	for name := range acks {
		s.Acks = append(s.Acks, name)
	}
	sort.Strings(s.Custodians)
	sort.Strings(s.Acks)
	return s, nil
}

// SignedBy reports whether custodian c (this name with these keys) signed.
func (s *SignedAgreement) SignedBy(c *Custodian) bool {
	return slices.Contains(s.signed[c.Name], c.Fingerprint)
}

// Acked reports whether host acknowledged the agreement.
func (s *SignedAgreement) Acked(host string) bool {
	_, ok := slices.BinarySearch(s.Acks, host)
	return ok
}

// InForce reports whether the agreement is in force under rules: the
// agreement itself for version 1, the previous version for an amendment.
// The distinct custodians of rules who signed must meet rules' amend
// quorum (ErrQuorum, ErrRole), and every host of the agreement must have
// acknowledged it (ErrNotAcknowledged). Revoked custodians are the
// caller's to exclude (see SignedBy).
func (s *SignedAgreement) InForce(rules *Agreement) error {
	a := s.Agreement
	switch {
	case a.Version > 1 && rules.Version == a.Version:
		return fmt.Errorf("%w: agreement v%d is an amendment; an amendment is in force only under the version it amends (v%d)", ErrWrongAgreement, a.Version, a.Version-1)
	case rules.Version == a.Version && rules.Hash() != a.Hash():
		return fmt.Errorf("%w: the rules given are another text of version %d", ErrWrongAgreement, a.Version)
	case rules.Version != a.Version && (rules.Version+1 != a.Version || rules.Hash() != a.Previous):
		return fmt.Errorf("%w: version %d is not the version agreement v%d amends", ErrWrongAgreement, rules.Version, a.Version)
	}
	var signers []*Custodian
	var names []string
	for i := range rules.Custodians {
		if c := &rules.Custodians[i]; s.SignedBy(c) {
			signers = append(signers, c)
			names = append(names, c.Name)
		}
	}
	q := rules.Quorum(Amend)
	if len(signers) < q.Threshold {
		return fmt.Errorf("%w: agreement v%d is signed by %d of the %d custodians of v%d (%s); the amend quorum needs %d",
			ErrQuorum, a.Version, len(signers), len(rules.Custodians), rules.Version, listOrNone(names), q.Threshold)
	}
	for _, r := range q.Roles {
		have := 0
		for _, c := range signers {
			if slices.Contains(c.Roles, r.Role) {
				have++
			}
		}
		if have < r.Count {
			return fmt.Errorf("%w: agreement v%d: the amend quorum needs %d signer(s) with role %s, it has %d", ErrRole, a.Version, r.Count, r.Role, have)
		}
	}
	var missing []string
	for _, h := range a.Hosts {
		if !s.Acked(h.Name) {
			missing = append(missing, h.Name)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("%w: agreement v%d is not acknowledged by host(s) %s; each runs embassy agreement ack", ErrNotAcknowledged, a.Version, strings.Join(missing, ", "))
	}
	return nil
}

// --- small helpers ---

var agreementClassList = "public, sensitive, confidential, highly-restricted"

func (c Class) known() bool {
	switch c {
	case Public, Sensitive, Confidential, HighlyRestricted:
		return true
	}
	return false
}

func joinClasses(cs []Class) string {
	s := make([]string, len(cs))
	for i, c := range cs {
		s[i] = string(c)
	}
	return strings.Join(s, ", ")
}

func listOrNone(s []string) string {
	if len(s) == 0 {
		return "none"
	}
	return strings.Join(s, ", ")
}

func isLowerHex(s string, n int) bool {
	if len(s) != n {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

func validAgreementHash(s string) bool {
	h, ok := strings.CutPrefix(s, HashPrefix)
	return ok && isLowerHex(h, 64)
}

// validJurisdiction accepts an ISO 3166-1 alpha-2 code, optionally with an
// ISO 3166-2 subdivision: [A-Z]{2}(-[A-Z0-9]{1,3})?.
func validJurisdiction(s string) bool {
	country, sub, hasSub := strings.Cut(s, "-")
	if len(country) != 2 || !isUpperASCII(country) {
		return false
	}
	if !hasSub {
		return true
	}
	if len(sub) < 1 || len(sub) > 3 {
		return false
	}
	for i := 0; i < len(sub); i++ {
		if c := sub[i]; !('A' <= c && c <= 'Z' || '0' <= c && c <= '9') {
			return false
		}
	}
	return true
}

func isUpperASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 'A' || s[i] > 'Z' {
			return false
		}
	}
	return true
}

// validText accepts printable UTF-8 of 1 to maxTextLen bytes.
func validAgreementText(field, s string) error {
	if s == "" || len(s) > maxTextLen || !utf8.ValidString(s) {
		return badAgreement("%s: want 1 to %d bytes of printable text", field, maxTextLen)
	}
	for _, r := range s {
		if !unicode.IsPrint(r) {
			return badAgreement("%s: want 1 to %d bytes of printable text", field, maxTextLen)
		}
	}
	return nil
}
