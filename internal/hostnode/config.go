package hostnode

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/embassy-project/embassy/internal/access"
	"github.com/embassy-project/embassy/internal/atomicfile"
	"github.com/embassy-project/embassy/internal/guest"
	"github.com/embassy-project/embassy/internal/transport"
	"github.com/embassy-project/embassy/internal/wire"
)

// ConfigVersion is the host.json version this code reads and writes.
const ConfigVersion = 1

// File names in the host directory.
const (
	ConfigFile     = "host.json"
	DescriptorFile = "descriptor.json"
	tlsCertFile    = "tls.crt"
	tlsKeyFile     = "tls.key"
	logKeyFile     = "log.key"
	witnessKeyFile = "witness.key"
	signingKeyFile = "sign.key"
	kemKeyFile     = "kem.key"
	guestsDir      = "guests"
	peersDir       = "peers"
	storeDir       = "store"
	outboardDir    = "outboard"
	logDir         = "log"
	witnessDir     = "witness"
)

// Config is host.json.
type Config struct {
	Version int    `json:"version"`
	Name    string `json:"name"`
	Listen  string `json:"listen"` // host:port the server binds
	URL     string `json:"url"`    // https URL guests use
	// MetricsListen, when set, serves Prometheus /metrics over plain HTTP
	// there (keep it on loopback or a management network).
	MetricsListen string `json:"metrics_listen,omitempty"`
	// Store is where shards live: empty for the host directory's store/,
	// or an S3 URL (s3://BUCKET[/PREFIX]?endpoint=…&region=…) of a bucket
	// with versioning and Object Lock; each guest gets PREFIX/GUEST-ID.
	// Credentials come from the environment, never from this file.
	Store string `json:"store,omitempty"`
	// MaxObjectBytes bounds one stored object.
	MaxObjectBytes int64   `json:"max_object_bytes"`
	Guests         []Guest `json:"guests"`
	// Peers are hosts whose logs this host witnesses and whose witnesses
	// cosign this host's checkpoints.
	Peers []string `json:"peers"` // names; descriptors in peers/NAME.json
	// WitnessThreshold is how many of the peers' cosignatures a checkpoint
	// must gather before the host publishes it as cosigned; 0 means
	// min(2, peers). It never blocks the log: checkpoints that do not reach
	// it stay uncosigned and auditors report them as unwitnessed.
	WitnessThreshold int `json:"witness_threshold"`
	// NotifyURL, when set, receives a JSON POST for every governance event
	// (armed, disarmed, …) besides the log entry.
	NotifyURL string `json:"notify_url,omitempty"`
	// ClockSkewSeconds is the tolerance for credential validity windows.
	ClockSkewSeconds int `json:"clock_skew_seconds"`
}

// Guest is one guest the host serves.
type Guest struct {
	ID         string `json:"id"` // hex guest ID; identity in guests/ID.pub
	Name       string `json:"name"`
	QuotaBytes int64  `json:"quota_bytes"`
}

// DefaultMaxObjectBytes is the default bound on one object.
const DefaultMaxObjectBytes = 256 << 20

func (c *Config) validate() error {
	if c.Version != ConfigVersion {
		return fmt.Errorf("version %d, want %d", c.Version, ConfigVersion)
	}
	if !wire.ValidName(c.Name) {
		return fmt.Errorf("name %q: 1 to 64 characters of a-z, 0-9 and (not first) . _ -", c.Name)
	}
	if _, _, err := net.SplitHostPort(c.Listen); err != nil {
		return fmt.Errorf("listen %q: %v", c.Listen, err)
	}
	if c.Store != "" && !strings.HasPrefix(c.Store, "s3://") {
		return fmt.Errorf("store %q: want empty (the host directory) or s3://BUCKET…", c.Store)
	}
	if c.MaxObjectBytes <= 0 || c.MaxObjectBytes > 1<<30 {
		return fmt.Errorf("max_object_bytes %d: want 1 to 1 GiB", c.MaxObjectBytes)
	}
	seen := map[string]bool{}
	for _, g := range c.Guests {
		if _, err := guest.ParseID(g.ID); err != nil {
			return fmt.Errorf("guest %q: %v", g.ID, err)
		}
		if seen[g.ID] {
			return fmt.Errorf("guest %s listed twice", g.ID)
		}
		seen[g.ID] = true
		if g.QuotaBytes <= 0 {
			return fmt.Errorf("guest %s: quota must be positive", g.ID)
		}
	}
	for _, p := range c.Peers {
		if !wire.ValidName(p) || p == c.Name {
			return fmt.Errorf("peer %q: not a valid other host name", p)
		}
	}
	if c.WitnessThreshold < 0 || c.WitnessThreshold > len(c.Peers) {
		return fmt.Errorf("witness_threshold %d with %d peers", c.WitnessThreshold, len(c.Peers))
	}
	if max := int(access.MaxSkew / time.Second); c.ClockSkewSeconds < 0 || c.ClockSkewSeconds > max {
		return fmt.Errorf("clock_skew_seconds %d: want 0 to %d", c.ClockSkewSeconds, max)
	}
	return nil
}

// LoadConfig reads DIR/host.json.
func LoadConfig(dir string) (*Config, error) {
	b, err := os.ReadFile(filepath.Join(dir, ConfigFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("%s is not a host directory (run embassy host init)", dir)
	}
	if err != nil {
		return nil, err
	}
	dec := json.NewDecoder(strings.NewReader(string(b)))
	dec.DisallowUnknownFields()
	var c Config
	if err := dec.Decode(&c); err != nil {
		return nil, fmt.Errorf("%s: %w", ConfigFile, err)
	}
	if err := c.validate(); err != nil {
		return nil, fmt.Errorf("%s: %w", ConfigFile, err)
	}
	return &c, nil
}

// SaveConfig writes DIR/host.json atomically.
func SaveConfig(dir string, c *Config) error {
	if err := c.validate(); err != nil {
		return fmt.Errorf("%s: %w", ConfigFile, err)
	}
	b, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.Write(filepath.Join(dir, ConfigFile), append(b, '\n'), 0o600)
}

// LoadDescriptor reads the host's own descriptor.
func LoadDescriptor(dir string) (*transport.Descriptor, error) {
	b, err := os.ReadFile(filepath.Join(dir, DescriptorFile))
	if err != nil {
		return nil, err
	}
	return transport.ParseDescriptor(b)
}
