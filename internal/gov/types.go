package gov

import (
	"time"

	"github.com/embassy-project/embassy/internal/transport"
)

// Class is a dataset's classification. It decides which hosts may hold the
// dataset's shards.
type Class string

// The classes, from least to most restricted.
const (
	Public           Class = "public"
	Sensitive        Class = "sensitive"
	Confidential     Class = "confidential"
	HighlyRestricted Class = "highly-restricted"
)

// Action names what an order does; the agreement names the quorum each
// action needs.
type Action string

// The actions.
const (
	Activate Action = "activate" // a host takes over writing a dataset from a named snapshot
	Return   Action = "return"   // writing goes back to home (or another named writer)
	Expire   Action = "expire"   // hosts may delete a dataset's objects older than a time, after retention
	Grant    Action = "grant"    // read access to a dataset for a named reader key
	Rotate   Action = "rotate"   // a custodian's keys are replaced / a dataset key is re-shared
	Amend    Action = "amend"    // a new version of the agreement comes into force
	Revoke   Action = "revoke"   // a custodian's signatures stop counting
)

// Actions lists every action, in the order the spec lists them.
var Actions = []Action{Activate, Return, Expire, Grant, Rotate, Amend, Revoke}

// AgreementFormat is the value of the agreement's "format" field.
const AgreementFormat = "embassy-agreement-v1"

// Agreement is the bilateral (or multilateral) arrangement between a guest
// state and its host states, as the software enforces it. Its file is a
// signed note (docs/spec/agreement.md): the JSON text, then signatures by the
// guest's custodians (domain AgreementDomain) and acknowledgements by each
// host's signing key (domain AckDomain).
type Agreement struct {
	Format    string `json:"format"`
	Guest     string `json:"guest"`      // hex guest ID
	GuestName string `json:"guest_name"` // the guest's name (wire.ValidName)
	// GuestIdentity is the fingerprint of the guest identity
	// (guest.Identity.Fingerprint) the hosts serve.
	GuestIdentity string `json:"guest_identity"`
	// Version is 1 for the first agreement and one more for each amendment.
	Version uint64 `json:"version"`
	// Previous is "blake3:" + hex BLAKE3-256 of the previous version's text
	// (the JSON, without signatures); empty for version 1.
	Previous     string  `json:"previous,omitempty"`
	Parties      []Party `json:"parties"`
	GoverningLaw string  `json:"governing_law"`
	Hosts        []Host  `json:"hosts"`
	// Witnesses are witnesses other than the hosts (hosts always witness
	// each other): a guest's own witness, a third party's.
	Witnesses []Witness `json:"witnesses,omitempty"`
	// WitnessThreshold is w: how many cosignatures (of the W witnesses of a
	// host's log: the other hosts and every Witness) a checkpoint needs
	// before a host carries out an order logged under it.
	WitnessThreshold int `json:"witness_threshold"`
	// ToleratedFaultyWitnesses is f: how many witnesses may collude with a
	// lying host. Validation requires 2w − W > f for every host.
	ToleratedFaultyWitnesses int         `json:"tolerated_faulty_witnesses"`
	Custodians               []Custodian `json:"custodians"`
	Datasets                 []Dataset   `json:"datasets"`
	// Quorums names the quorum each action needs; every action must be
	// present.
	Quorums    map[Action]Quorum `json:"quorums"`
	Activation Activation        `json:"activation"`
	// ClockSkewSeconds bounds how far a host's clock may be from an
	// order's validity window (0 to 600).
	ClockSkewSeconds int `json:"clock_skew_seconds"`
}

// Party is a state (or its agency) that is party to the agreement.
type Party struct {
	Name         string `json:"name"`
	Role         string `json:"role"`         // "guest" or "host"
	Jurisdiction string `json:"jurisdiction"` // e.g. ISO 3166-1 alpha-2 "LU"
}

// Host is one host node in the agreement.
type Host struct {
	Name  string `json:"name"`  // = Descriptor.Name
	Party string `json:"party"` // the Party that operates it
	// Descriptor is the host's descriptor (transport.Descriptor): URL, TLS
	// pin, log, witness, signing and KEM keys.
	Descriptor transport.Descriptor `json:"descriptor"`
	// Classes are the classifications the host may hold.
	Classes    []Class `json:"classes"`
	QuotaBytes int64   `json:"quota_bytes"`
}

// Witness is a witness that is not one of the hosts.
type Witness struct {
	Descriptor transport.Descriptor `json:"descriptor"`
	// AtHome is true when the witness runs in the guest's home territory
	// (it is then counted as lost with home).
	AtHome bool `json:"at_home,omitempty"`
}

// Custodian is a named official who holds keys.
type Custodian struct {
	Name  string   `json:"name"`  // custodian.ValidName
	Roles []string `json:"roles"` // e.g. "minister", "cio"; wire.ValidName each
	// Fingerprint is custodian.Recipient.Fingerprint of the keys below.
	Fingerprint string `json:"fingerprint"`
	KEM         string `json:"kem_key"`     // base64 std of the ML-KEM-768+X25519 public key
	Signing     string `json:"signing_key"` // base64 std of the Ed25519+ML-DSA-65 public key (sig.PublicKey)
}

// Dataset is a dataset the agreement covers.
type Dataset struct {
	Name  string `json:"name"`
	Class Class  `json:"class"`
	// DataShards is the erasure k. The shard set is the hosts allowed for
	// the dataset's class (HOME's hosts must all be among them:
	// Agreement.CheckPlacement).
	DataShards    int `json:"data_shards"`
	RetentionDays int `json:"retention_days"`
	RPOSeconds    int `json:"rpo_seconds"`
	RTOSeconds    int `json:"rto_seconds"`
}

// Quorum is how many distinct custodians must sign, and which roles must be
// among them.
type Quorum struct {
	Threshold int               `json:"threshold"`
	Roles     []RoleRequirement `json:"roles,omitempty"`
}

// RoleRequirement asks for at least Count signers holding Role.
type RoleRequirement struct {
	Role  string `json:"role"`
	Count int    `json:"count"`
}

// Activation holds the conditions, agreed in advance, that arm the hosts.
// Arming alerts; it never activates.
type Activation struct {
	// HomeSilentSeconds arms a host when no heartbeat from home arrived
	// for that long.
	HomeSilentSeconds int `json:"home_silent_seconds"`
}

// HomeSilent returns Activation.HomeSilentSeconds as a duration.
func (a Activation) HomeSilent() time.Duration {
	return time.Duration(a.HomeSilentSeconds) * time.Second
}

// Signature domains (sig.PrivateKey.Sign).
const (
	AgreementDomain = "agreement"     // a custodian signs an agreement text
	AckDomain       = "agreement-ack" // a host acknowledges an agreement text
	OrderDomain     = "order"         // a custodian signs an order text
)

// OrderHeader is the first line of an order's text.
const OrderHeader = "embassy order v1"

// Order is a quorum-signed instruction from the guest's custodians. Its file
// is a signed note (docs/spec/order.md): the text below, one field per line,
// then one signature line per custodian (domain OrderDomain).
type Order struct {
	Kind      Action
	ID        [16]byte // random; an order is carried out at most once
	Guest     string   // hex guest ID
	Agreement uint64   // the agreement version it is issued under
	Issued    time.Time
	NotBefore time.Time
	NotAfter  time.Time
	Reason    string // free text, printable UTF-8, at most 1024 bytes

	// Per kind (docs/spec/order.md says which are required for which):
	Dataset   string    // activate, return, expire, grant, rotate (re-share)
	Epoch     uint64    // activate, return: the dataset's new epoch (current + 1)
	Host      string    // activate: the host that takes over
	Writer    string    // activate, return: base64 of the new writer's sig.PublicKey
	Snapshot  string    // activate: hex snapshot ID to continue from
	Before    time.Time // expire: objects written before this may go
	Reader    string    // grant: the reader key fingerprint
	Custodian string    // rotate, revoke: the custodian concerned
	NewKeys   string    // rotate: the custodian's new Custodian entry fingerprint
	Text      string    // amend: "blake3:" + hex of the new agreement's text
}

// Phase is where a dataset stands.
type Phase string

// The phases. Armed is entered from Normal or Returned when home falls
// silent and left when it speaks again or an activation arrives.
const (
	Normal   Phase = "normal"
	Armed    Phase = "armed"
	Active   Phase = "active"
	Returned Phase = "returned"
)

// DatasetState is one dataset's governance state at a host.
type DatasetState struct {
	Phase  Phase  `json:"phase"`
	Epoch  uint64 `json:"epoch"`  // 1 at the start; +1 per activate or return
	Writer string `json:"writer"` // base64 sig.PublicKey allowed to write in Epoch
	// Host and Snapshot are set while Active.
	Host     string `json:"host,omitempty"`
	Snapshot string `json:"snapshot,omitempty"`
	// Order is the hex ID of the order that set this epoch ("" at epoch 1).
	Order string `json:"order,omitempty"`
	// Keys is the fingerprint (guest.Dataset.Fingerprint) of the dataset
	// identity a rotate order put in force; "" while the identity the
	// agreement was adopted with holds.
	Keys string `json:"keys,omitempty"`
	// RotateDue is set by a return: the host that was active held the
	// dataset's key, so nobody writes the dataset again until a rotate
	// order gives it new keys.
	RotateDue bool `json:"rotate_due,omitempty"`
}

// State is a guest's governance state at a host: what the orders carried out
// so far have made of it. It is a value; Apply returns a new one.
type State struct {
	Agreement uint64                  `json:"agreement"` // version in force
	Datasets  map[string]DatasetState `json:"datasets"`
	// Orders are the hex IDs of every order carried out (replay protection).
	Orders []string `json:"orders"`
	// Revoked are fingerprints of custodians whose signatures no longer count.
	Revoked []string `json:"revoked,omitempty"`
	// LastHeartbeat is when home last proved it was alive.
	LastHeartbeat time.Time `json:"last_heartbeat"`
}
