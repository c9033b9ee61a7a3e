// Package home is the guest's write-only HOME directory: its configuration,
// the agent's signing key, each dataset's public identity and dedup MAC key,
// and the local cache. Nothing in HOME can decrypt a stored snapshot: the
// datasets' private keys exist only as custodians' encrypted shares.
//
// Layout (docs/spec/home.md):
//
//	HOME/config.json                 hosts, erasure k, custodians, datasets
//	HOME/agent.key                   the agent's hybrid signing key (0600)
//	HOME/identity.pub                the guest public identity (for auditors)
//	HOME/custodians/NAME.pub         the custodians' public keys
//	HOME/datasets/NAME/mac.key       the dataset's dedup MAC key (0600)
//	HOME/datasets/NAME/cache.db      the local cache (bbolt)
//	HOME/datasets/NAME/chunkindex/   the cache's chunk index (sorted runs)
package home

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/embassy-project/embassy/internal/atomicfile"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/embassy-project/embassy/internal/custodian"
	"github.com/embassy-project/embassy/internal/erasure"
	"github.com/embassy-project/embassy/internal/guest"
	"github.com/embassy-project/embassy/internal/hosts"
	"github.com/embassy-project/embassy/internal/share"
	"github.com/embassy-project/embassy/internal/sig"
	"github.com/embassy-project/embassy/internal/transport"
)

// ConfigVersion is the version of config.json this code writes and reads.
const ConfigVersion = 1

// Config is HOME/config.json.
type Config struct {
	Version    int          `json:"version"`
	Guest      string       `json:"guest"` // hex guest ID
	GuestName  string       `json:"guest_name"`
	Hosts      []hosts.Spec `json:"hosts"` // shard i goes to Hosts[i]
	DataShards int          `json:"data_shards"`
	Threshold  int          `json:"threshold"`
	Custodians []string     `json:"custodians"`
	Datasets   []string     `json:"datasets"`
	// RetentionDays is how long hosts must keep what the guest writes: sent
	// as a retain-until with every write to a host node (S3 Object Lock in
	// compliance mode enforces it) and extended for reused packs at each
	// backup. 0 asks for none.
	RetentionDays int `json:"retention_days,omitempty"`
	// Witnesses are the guest's own witnesses of its hosts' logs.
	Witnesses []*transport.Descriptor `json:"witnesses,omitempty"`
}

// Retention returns RetentionDays as a duration.
func (c *Config) Retention() time.Duration { return time.Duration(c.RetentionDays) * 24 * time.Hour }

// Params returns the erasure parameters.
func (c *Config) Params() erasure.Params {
	return erasure.Params{K: c.DataShards, N: len(c.Hosts)}
}

// Home is an opened HOME directory.
type Home struct {
	Dir      string
	Config   Config
	Agent    *sig.PrivateKey
	Identity *guest.Identity

	cert  agentCert // made on first use by Connect
	fence fence     // set by PrepareWrite
}

// ErrNotHome is returned when a directory holds no embassy HOME.
var ErrNotHome = errors.New("not an embassy HOME (run embassy init)")

// InitOptions configures a new HOME.
type InitOptions struct {
	GuestName  string
	Hosts      []hosts.Spec
	DataShards int
	Custodians []*custodian.Recipient
	Threshold  int
	Datasets   []string
	SharesDir  string // where the custodians' share files are written
	// RetentionDays: see Config.RetentionDays.
	RetentionDays int
}

// ShareFile is one written share file.
type ShareFile struct {
	Dataset, Custodian, Path string
}

// Init creates a new HOME in dir (which must not exist or be empty),
// initialises the hosts, creates each dataset's keys and writes one encrypted
// share file per custodian and dataset into SharesDir.
func Init(dir string, o InitOptions) (*Home, []ShareFile, error) {
	if err := validateInit(&o); err != nil {
		return nil, nil, err
	}
	if err := ensureEmptyDir(dir); err != nil {
		return nil, nil, err
	}
	// Local hosts are initialised now; remote hosts are not contacted (they
	// can serve the guest only once they have its identity file).
	hs, err := hosts.Open(o.Hosts, hosts.Options{Create: true})
	if err != nil {
		return nil, nil, err
	}
	for _, h := range hs {
		if h.Remote == nil && !h.Available() {
			return nil, nil, fmt.Errorf("initialise host: %w", h.Err)
		}
	}
	agent, err := sig.Generate()
	if err != nil {
		return nil, nil, err
	}
	var gid guest.ID
	if _, err := rand.Read(gid[:]); err != nil {
		return nil, nil, err
	}
	names := make([]string, len(o.Custodians))
	for i, c := range o.Custodians {
		names[i] = c.Name
	}
	h := &Home{
		Dir: dir,
		Config: Config{
			Version: ConfigVersion, Guest: hex.EncodeToString(gid[:]), GuestName: o.GuestName,
			Hosts: o.Hosts, DataShards: o.DataShards, Threshold: o.Threshold, Custodians: names, RetentionDays: o.RetentionDays,
		},
		Agent:    agent,
		Identity: &guest.Identity{Guest: gid, Name: o.GuestName, Agent: agent.Public()},
	}
	for _, d := range []string{"custodians", "datasets"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o700); err != nil {
			return nil, nil, err
		}
	}
	if err := writeFileAtomic(filepath.Join(dir, "agent.key"), []byte(hex.EncodeToString(agent.Bytes())+"\n"), 0o600); err != nil {
		return nil, nil, err
	}
	for _, c := range o.Custodians {
		if err := writeFileAtomic(filepath.Join(dir, "custodians", c.Name+".pub"), c.Marshal(), 0o644); err != nil {
			return nil, nil, err
		}
	}
	var files []ShareFile
	for _, ds := range o.Datasets {
		f, err := h.addDataset(ds, o.Custodians, o.SharesDir)
		if err != nil {
			return nil, nil, err
		}
		files = append(files, f...)
	}
	if err := h.save(); err != nil {
		return nil, nil, err
	}
	return h, files, nil
}

func validateInit(o *InitOptions) error {
	if o.RetentionDays < 0 || o.RetentionDays > 36500 {
		return fmt.Errorf("--retention-days %d: want 0 to 36500", o.RetentionDays)
	}
	if o.GuestName == "" {
		o.GuestName = "guest"
	}
	if len(o.Hosts) == 0 {
		return errors.New("at least one --host is needed")
	}
	p := erasure.Params{K: o.DataShards, N: len(o.Hosts)}
	if err := p.Validate(); err != nil {
		return fmt.Errorf("--data-shards %d with %d hosts: %w", o.DataShards, len(o.Hosts), err)
	}
	seenHost := map[string]bool{}
	for _, h := range o.Hosts {
		if seenHost[h.Name] {
			return fmt.Errorf("host %q given twice", h.Name)
		}
		seenHost[h.Name] = true
	}
	if len(o.Custodians) == 0 {
		return errors.New("at least one --custodian is needed")
	}
	seen := map[string]bool{}
	for _, c := range o.Custodians {
		if seen[c.Name] {
			return fmt.Errorf("custodian %q given twice", c.Name)
		}
		seen[c.Name] = true
	}
	if o.Threshold < 1 || o.Threshold > len(o.Custodians) {
		return fmt.Errorf("--threshold %d must be between 1 and the number of custodians (%d)", o.Threshold, len(o.Custodians))
	}
	if len(o.Custodians) > 1 && o.Threshold < 2 {
		return errors.New("--threshold 1 with several custodians lets any single custodian decrypt; use at least 2")
	}
	if o.SharesDir == "" {
		return errors.New("--shares DIR is needed: the custodians' share files are written there")
	}
	seenDS := map[string]bool{}
	for _, d := range o.Datasets {
		if seenDS[d] {
			return fmt.Errorf("dataset %q given twice", d)
		}
		seenDS[d] = true
	}
	return nil
}

func ensureEmptyDir(dir string) error {
	ents, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return os.MkdirAll(dir, 0o700)
	}
	if err != nil {
		return err
	}
	if len(ents) > 0 {
		return fmt.Errorf("%s is not empty: refusing to initialise a HOME over existing files", dir)
	}
	return nil
}

// Open opens an existing HOME.
func Open(dir string) (*Home, error) {
	b, err := os.ReadFile(filepath.Join(dir, "config.json"))
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("%s: %w", dir, ErrNotHome)
	}
	if err != nil {
		return nil, err
	}
	h := &Home{Dir: dir}
	if err := json.Unmarshal(b, &h.Config); err != nil {
		return nil, fmt.Errorf("read %s/config.json: %w", dir, err)
	}
	if h.Config.Version != ConfigVersion {
		return nil, fmt.Errorf("%s/config.json: version %d, this embassy reads %d", dir, h.Config.Version, ConfigVersion)
	}
	kb, err := os.ReadFile(filepath.Join(dir, "agent.key"))
	if err != nil {
		return nil, fmt.Errorf("read agent key: %w", err)
	}
	raw, err := hex.DecodeString(strings.TrimSpace(string(kb)))
	if err != nil {
		return nil, fmt.Errorf("read agent key: not hex")
	}
	if h.Agent, err = sig.NewPrivateKey(raw); err != nil {
		return nil, fmt.Errorf("read agent key: %w", err)
	}
	ib, err := os.ReadFile(filepath.Join(dir, "identity.pub"))
	if err != nil {
		return nil, fmt.Errorf("read identity: %w", err)
	}
	if h.Identity, err = guest.ParseIdentity(ib); err != nil {
		return nil, fmt.Errorf("read identity: %w", err)
	}
	if !h.Identity.Agent.Equal(h.Agent.Public()) {
		return nil, errors.New("HOME's agent key does not match its identity.pub")
	}
	if h.Config.Guest != h.Identity.Guest.String() {
		return nil, fmt.Errorf("HOME's config.json names guest %s but identity.pub is guest %s", h.Config.Guest, h.Identity.Guest)
	}
	for _, d := range h.Config.Datasets {
		if h.Identity.Dataset(d) == nil {
			return nil, fmt.Errorf("HOME's config.json lists dataset %q, which identity.pub lacks", d)
		}
	}
	if len(h.Config.Datasets) != len(h.Identity.Datasets) {
		return nil, fmt.Errorf("HOME's config.json lists %d datasets, identity.pub %d", len(h.Config.Datasets), len(h.Identity.Datasets))
	}
	return h, nil
}

// AddWitness records one of the guest's own witnesses (replacing one of
// the same name).
func (h *Home) AddWitness(d *transport.Descriptor) error {
	out := []*transport.Descriptor{}
	for _, w := range h.Config.Witnesses {
		if w.Name != d.Name {
			out = append(out, w)
		}
	}
	h.Config.Witnesses = append(out, d)
	return h.save()
}

// Dataset returns the named dataset's public identity.
func (h *Home) Dataset(name string) (*guest.Dataset, error) {
	d := h.Identity.Dataset(name)
	if d == nil {
		return nil, fmt.Errorf("no dataset %q in this HOME (have %s)", name, strings.Join(h.Config.Datasets, ", "))
	}
	return d, nil
}

// MACKey reads the dataset's dedup MAC key.
func (h *Home) MACKey(name string) ([32]byte, error) {
	var k [32]byte
	b, err := os.ReadFile(filepath.Join(h.Dir, "datasets", name, "mac.key"))
	if err != nil {
		return k, fmt.Errorf("read MAC key of %s: %w", name, err)
	}
	raw, err := hex.DecodeString(strings.TrimSpace(string(b)))
	if err != nil || len(raw) != 32 {
		return k, fmt.Errorf("read MAC key of %s: malformed", name)
	}
	copy(k[:], raw)
	d, err := h.Dataset(name)
	if err != nil {
		return k, err
	}
	if guest.MACCommit(k) != d.MACCommit {
		return k, fmt.Errorf("MAC key of %s does not match the dataset's commitment", name)
	}
	return k, nil
}

// CachePath is the dataset's local cache database.
func (h *Home) CachePath(name string) string {
	return filepath.Join(h.Dir, "datasets", name, "cache.db")
}

// Custodians reads the custodians' public keys kept in HOME.
func (h *Home) Custodians() ([]*custodian.Recipient, error) {
	var out []*custodian.Recipient
	for _, n := range h.Config.Custodians {
		b, err := os.ReadFile(filepath.Join(h.Dir, "custodians", n+".pub"))
		if err != nil {
			return nil, fmt.Errorf("read custodian %s: %w", n, err)
		}
		r, err := custodian.ParseRecipient(b)
		if err != nil {
			return nil, fmt.Errorf("read custodian %s: %w", n, err)
		}
		out = append(out, r)
	}
	return out, nil
}

// AddDataset creates a new dataset with its own keys and writes the
// custodians' share files for it into sharesDir. It needs no custodian secret.
func (h *Home) AddDataset(name, sharesDir string) ([]ShareFile, error) {
	if slices.Contains(h.Config.Datasets, name) {
		return nil, fmt.Errorf("dataset %q exists already", name)
	}
	cs, err := h.Custodians()
	if err != nil {
		return nil, err
	}
	files, err := h.addDataset(name, cs, sharesDir)
	if err != nil {
		return nil, err
	}
	return files, h.save()
}

func (h *Home) addDataset(name string, cs []*custodian.Recipient, sharesDir string) ([]ShareFile, error) {
	ds, secret, err := guest.NewDataset(h.Identity.Guest, h.Identity.Name, name, h.Agent.Public(), h.Config.Threshold, cs)
	if err != nil {
		return nil, fmt.Errorf("create dataset %s: %w", name, err)
	}
	files, err := share.Split(ds, secret, cs)
	if err != nil {
		return nil, fmt.Errorf("split key of %s: %w", name, err)
	}
	if err := os.MkdirAll(sharesDir, 0o700); err != nil {
		return nil, err
	}
	var out []ShareFile
	for i, c := range cs {
		p := filepath.Join(sharesDir, fmt.Sprintf("%s.%s.share", name, c.Name))
		if err := writeFileNew(p, files[i], 0o600); err != nil {
			return nil, fmt.Errorf("write share file: %w", err)
		}
		out = append(out, ShareFile{Dataset: name, Custodian: c.Name, Path: p})
	}
	dsDir := filepath.Join(h.Dir, "datasets", name)
	if err := os.MkdirAll(dsDir, 0o700); err != nil {
		return nil, err
	}
	if err := writeFileAtomic(filepath.Join(dsDir, "mac.key"), []byte(hex.EncodeToString(secret.MACKey[:])+"\n"), 0o600); err != nil {
		return nil, err
	}
	// The private half is dropped here: only the custodians' shares can rebuild it.
	h.Identity.Datasets = append(h.Identity.Datasets, ds)
	h.Config.Datasets = append(h.Config.Datasets, name)
	return out, nil
}

func (h *Home) save() error {
	b, err := json.MarshalIndent(h.Config, "", "  ")
	if err != nil {
		return err
	}
	if err := writeFileAtomic(filepath.Join(h.Dir, "identity.pub"), h.Identity.Marshal(), 0o644); err != nil {
		return err
	}
	return writeFileAtomic(filepath.Join(h.Dir, "config.json"), append(b, '\n'), 0o600)
}

func writeFileAtomic(path string, data []byte, perm os.FileMode) error {
	return atomicfile.Write(path, data, perm)
}

func writeFileNew(path string, data []byte, perm os.FileMode) error {
	return atomicfile.WriteNew(path, data, perm)
}

// WriteFileNew is atomicfile.WriteNew (share files are never overwritten:
// losing one would lose a custodian's share).
func WriteFileNew(path string, data []byte, perm os.FileMode) error {
	return atomicfile.WriteNew(path, data, perm)
}
