package hostnode

import (
	"crypto/x509"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/embassy-project/embassy/internal/access"
	"github.com/embassy-project/embassy/internal/atomicfile"
	"github.com/embassy-project/embassy/internal/guest"
	"github.com/embassy-project/embassy/internal/ledger"
	"github.com/embassy-project/embassy/internal/transport"
	"github.com/embassy-project/embassy/internal/wire"
	"github.com/embassy-project/embassy/internal/witness"
)

// InitOptions configures a new host directory.
type InitOptions struct {
	Name   string
	Listen string // host:port to bind
	URL    string // https URL guests use; default https://LISTEN
	Store  string // "" for DIR/store, or an s3:// URL (Config.Store)
	Now    time.Time
}

// LogOrigin is the origin line of a host's log checkpoints.
func LogOrigin(name string) string { return ledger.Origin(name) }

// WitnessName is the key name of a host's witness cosignatures.
func WitnessName(name string) string { return "embassy.witness/" + name }

// Init creates a host directory: keys, certificate, host.json and the
// descriptor to hand to guests and peers. dir must be missing or empty.
func Init(dir string, o InitOptions) (*transport.Descriptor, error) {
	if !wire.ValidName(o.Name) {
		return nil, fmt.Errorf("host name %q: 1 to 64 characters of a-z, 0-9 and (not first) . _ -", o.Name)
	}
	if _, _, err := net.SplitHostPort(o.Listen); err != nil {
		return nil, fmt.Errorf("--listen %q: want HOST:PORT", o.Listen)
	}
	if o.URL == "" {
		o.URL = "https://" + o.Listen
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	if len(ents) > 0 {
		return nil, fmt.Errorf("%s is not empty", dir)
	}
	for _, d := range []string{guestsDir, peersDir, storeDir, outboardDir, logDir, witnessDir} {
		if err := os.Mkdir(filepath.Join(dir, d), 0o700); err != nil {
			return nil, err
		}
	}
	cert, certPEM, keyPEM, err := access.NewServerCertificate(o.Name, o.Now)
	if err != nil {
		return nil, err
	}
	if err := atomicfile.WriteNew(filepath.Join(dir, tlsKeyFile), keyPEM, 0o600); err != nil {
		return nil, err
	}
	if err := atomicfile.WriteNew(filepath.Join(dir, tlsCertFile), certPEM, 0o644); err != nil {
		return nil, err
	}
	leaf, err := x509.ParseCertificate(cert.Certificate[0])
	if err != nil {
		return nil, err
	}
	fp := access.SPKIFingerprint(leaf)
	logPriv, logPub, err := ledger.GenerateKeys(LogOrigin(o.Name))
	if err != nil {
		return nil, err
	}
	if err := atomicfile.WriteNew(filepath.Join(dir, logKeyFile), logPriv, 0o600); err != nil {
		return nil, err
	}
	witPriv, witPub, err := witness.GenerateKeys(WitnessName(o.Name))
	if err != nil {
		return nil, err
	}
	if err := atomicfile.WriteNew(filepath.Join(dir, witnessKeyFile), witPriv.Marshal(), 0o600); err != nil {
		return nil, err
	}
	signPub, kemPub, err := generateHostKeys(dir)
	if err != nil {
		return nil, err
	}
	d := &transport.Descriptor{
		Version:    transport.DescriptorVersion,
		Name:       o.Name,
		URL:        o.URL,
		TLS:        fp,
		Log:        transport.KeySet{Origin: LogOrigin(o.Name), Keys: logPub},
		Witness:    transport.KeySet{Origin: WitnessName(o.Name), Keys: witPub.Verifiers()},
		SigningKey: signPub,
		KEMKey:     kemPub,
	}
	if err := d.Validate(); err != nil {
		return nil, fmt.Errorf("descriptor: %w", err)
	}
	cfg := &Config{Version: ConfigVersion, Name: o.Name, Listen: o.Listen, URL: o.URL, Store: o.Store,
		MaxObjectBytes: DefaultMaxObjectBytes, Guests: []Guest{}, Peers: []string{}, ClockSkewSeconds: 300}
	if err := SaveConfig(dir, cfg); err != nil {
		return nil, err
	}
	if err := atomicfile.WriteNew(filepath.Join(dir, DescriptorFile), d.Marshal(), 0o644); err != nil {
		return nil, err
	}
	return d, nil
}

// AddGuest lets the host serve the guest whose public identity file is given,
// with a quota. Adding a guest again updates its identity (new datasets) and
// quota; the guest ID must match.
func AddGuest(dir string, identity []byte, quota int64) (*guest.Identity, error) {
	cfg, err := LoadConfig(dir)
	if err != nil {
		return nil, err
	}
	id, err := guest.ParseIdentity(identity)
	if err != nil {
		return nil, fmt.Errorf("guest identity: %w", err)
	}
	if quota <= 0 {
		return nil, fmt.Errorf("quota must be positive")
	}
	if err := atomicfile.Write(filepath.Join(dir, guestsDir, id.Guest.String()+".pub"), identity, 0o644); err != nil {
		return nil, err
	}
	found := false
	for i := range cfg.Guests {
		if cfg.Guests[i].ID == id.Guest.String() {
			cfg.Guests[i].QuotaBytes, cfg.Guests[i].Name, found = quota, id.Name, true
		}
	}
	if !found {
		cfg.Guests = append(cfg.Guests, Guest{ID: id.Guest.String(), Name: id.Name, QuotaBytes: quota})
	}
	return id, SaveConfig(dir, cfg)
}

// AddPeer records another host: this host witnesses its log, and asks its
// witness to cosign this host's checkpoints. threshold, if positive, sets the
// witness threshold.
func AddPeer(dir string, descriptor []byte, threshold int) (*transport.Descriptor, error) {
	cfg, err := LoadConfig(dir)
	if err != nil {
		return nil, err
	}
	d, err := transport.ParseDescriptor(descriptor)
	if err != nil {
		return nil, err
	}
	if d.Name == cfg.Name {
		return nil, fmt.Errorf("a host cannot be its own peer")
	}
	if threshold < 0 || threshold > len(cfg.Peers)+1 {
		return nil, fmt.Errorf("witness threshold %d: want 1 to the number of peers", threshold)
	}
	if err := atomicfile.Write(filepath.Join(dir, peersDir, d.Name+".json"), d.Marshal(), 0o644); err != nil {
		return nil, err
	}
	has := false
	for _, p := range cfg.Peers {
		has = has || p == d.Name
	}
	if !has {
		cfg.Peers = append(cfg.Peers, d.Name)
	}
	if threshold > 0 {
		cfg.WitnessThreshold = threshold
	}
	return d, SaveConfig(dir, cfg)
}

func loadPeers(dir string, cfg *Config) ([]*transport.Descriptor, error) {
	var out []*transport.Descriptor
	for _, p := range cfg.Peers {
		b, err := os.ReadFile(filepath.Join(dir, peersDir, p+".json"))
		if err != nil {
			return nil, fmt.Errorf("peer %s: %w", p, err)
		}
		d, err := transport.ParseDescriptor(b)
		if err != nil {
			return nil, fmt.Errorf("peer %s: %w", p, err)
		}
		if d.Name != p {
			return nil, fmt.Errorf("peer %s: descriptor names %s", p, d.Name)
		}
		out = append(out, d)
	}
	return out, nil
}
