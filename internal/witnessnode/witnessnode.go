// Package witnessnode runs a stand-alone witness: the guest's own cosigner of
// its hosts' logs (`embassy witness serve`). It serves C2SP tlog-witness
// add-checkpoint and embassy's view endpoint over HTTPS (server TLS only:
// witnessing is public; checkpoints are verified against the logs' keys),
// and keeps its per-log state on disk.
//
// The witness directory:
//
//	witness.json      configuration (name, listen address, logs witnessed)
//	descriptor.json   what hosts and the guest are given (no log section)
//	tls.crt, tls.key  the server's TLS certificate and key (key 0600)
//	witness.key       the cosigning keys (0600)
//	logs/NAME.json    descriptors of the hosts whose logs it witnesses
//	state/            per-log witness state
package witnessnode

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/embassy-project/embassy/internal/access"
	"github.com/embassy-project/embassy/internal/atomicfile"
	"github.com/embassy-project/embassy/internal/transport"
	"github.com/embassy-project/embassy/internal/wire"
	"github.com/embassy-project/embassy/internal/witness"
)

// Config is witness.json.
type Config struct {
	Version int      `json:"version"`
	Name    string   `json:"name"`
	Listen  string   `json:"listen"`
	URL     string   `json:"url"`
	Logs    []string `json:"logs"` // host names; descriptors in logs/NAME.json
}

const (
	configFile     = "witness.json"
	DescriptorFile = "descriptor.json"
)

// Name is the key name of a stand-alone witness's cosignatures.
func Name(name string) string { return "embassy.witness/" + name }

// Init creates a witness directory; dir must be missing or empty.
func Init(dir, name, listen, url string, now time.Time) (*transport.Descriptor, error) {
	if !wire.ValidName(name) {
		return nil, fmt.Errorf("witness name %q: 1 to 64 characters of a-z, 0-9 and (not first) . _ -", name)
	}
	if _, _, err := net.SplitHostPort(listen); err != nil {
		return nil, fmt.Errorf("--listen %q: want HOST:PORT", listen)
	}
	if url == "" {
		url = "https://" + listen
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	if ents, err := os.ReadDir(dir); err != nil || len(ents) > 0 {
		return nil, fmt.Errorf("%s is not an empty directory", dir)
	}
	for _, d := range []string{"logs", "state"} {
		if err := os.Mkdir(filepath.Join(dir, d), 0o700); err != nil {
			return nil, err
		}
	}
	cert, certPEM, keyPEM, err := access.NewServerCertificate(name, now)
	if err != nil {
		return nil, err
	}
	leaf, err := x509.ParseCertificate(cert.Certificate[0])
	if err != nil {
		return nil, err
	}
	priv, pub, err := witness.GenerateKeys(Name(name))
	if err != nil {
		return nil, err
	}
	for _, f := range []struct {
		name string
		data []byte
		perm os.FileMode
	}{{"tls.key", keyPEM, 0o600}, {"tls.crt", certPEM, 0o644}, {"witness.key", priv.Marshal(), 0o600}} {
		if err := atomicfile.WriteNew(filepath.Join(dir, f.name), f.data, f.perm); err != nil {
			return nil, err
		}
	}
	d := &transport.Descriptor{Version: transport.DescriptorVersion, Name: name, URL: url, TLS: access.SPKIFingerprint(leaf),
		Witness: transport.KeySet{Origin: Name(name), Keys: pub.Verifiers()}}
	if err := d.Validate(); err != nil {
		return nil, err
	}
	if err := save(dir, &Config{Version: 1, Name: name, Listen: listen, URL: url, Logs: []string{}}); err != nil {
		return nil, err
	}
	return d, atomicfile.WriteNew(filepath.Join(dir, DescriptorFile), d.Marshal(), 0o644)
}

func load(dir string) (*Config, error) {
	b, err := os.ReadFile(filepath.Join(dir, configFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("%s is not a witness directory (run embassy witness init)", dir)
	}
	if err != nil {
		return nil, err
	}
	dec := json.NewDecoder(strings.NewReader(string(b)))
	dec.DisallowUnknownFields()
	var c Config
	if err := dec.Decode(&c); err != nil || c.Version != 1 || !wire.ValidName(c.Name) {
		return nil, fmt.Errorf("%s: not a valid witness configuration", configFile)
	}
	return &c, nil
}

func save(dir string, c *Config) error {
	b, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.Write(filepath.Join(dir, configFile), append(b, '\n'), 0o600)
}

// AddLog makes the witness cosign the log of the host whose descriptor is given.
func AddLog(dir string, descriptor []byte) (*transport.Descriptor, error) {
	c, err := load(dir)
	if err != nil {
		return nil, err
	}
	d, err := transport.ParseDescriptor(descriptor)
	if err != nil {
		return nil, err
	}
	if !d.HasLog() {
		return nil, fmt.Errorf("%s runs no log to witness", d.Name)
	}
	if err := atomicfile.Write(filepath.Join(dir, "logs", d.Name+".json"), d.Marshal(), 0o644); err != nil {
		return nil, err
	}
	for _, l := range c.Logs {
		if l == d.Name {
			return d, nil
		}
	}
	c.Logs = append(c.Logs, d.Name)
	return d, save(dir, c)
}

// Serve runs the witness until ctx ends, then shuts down (draining
// requests for at most 10 s).
func Serve(ctx context.Context, dir, listen string, logger *slog.Logger) error {
	c, err := load(dir)
	if err != nil {
		return err
	}
	if len(c.Logs) == 0 {
		return errors.New("the witness witnesses no logs yet (embassy witness add-log)")
	}
	var logs []witness.Log
	for _, name := range c.Logs {
		b, err := os.ReadFile(filepath.Join(dir, "logs", name+".json"))
		if err != nil {
			return err
		}
		d, err := transport.ParseDescriptor(b)
		if err != nil {
			return fmt.Errorf("log %s: %w", name, err)
		}
		logs = append(logs, witness.Log{Origin: d.Log.Origin, Verifiers: d.Log.Keys})
	}
	kb, err := os.ReadFile(filepath.Join(dir, "witness.key"))
	if err != nil {
		return err
	}
	keys, err := witness.ParseKeys(kb)
	clear(kb)
	if err != nil {
		return fmt.Errorf("witness.key: %w", err)
	}
	w, err := witness.New(witness.Config{Dir: filepath.Join(dir, "state"), Keys: keys, Logs: logs, Logger: logger})
	if err != nil {
		return err
	}
	cert, err := tls.LoadX509KeyPair(filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key"))
	if err != nil {
		return err
	}
	if listen == "" {
		listen = c.Listen
	}
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return err
	}
	mux := http.NewServeMux()
	mux.Handle("/witness/", http.StripPrefix("/witness", w.Handler()))
	mux.HandleFunc("GET /healthz", func(rw http.ResponseWriter, _ *http.Request) { io.WriteString(rw, "ok\n") })
	srv := &http.Server{
		Handler:           mux,
		TLSConfig:         &tls.Config{MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{cert}},
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		IdleTimeout:       120 * time.Second,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelDebug),
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.ServeTLS(ln, "", "") }()
	logger.Info("witness serving", "name", c.Name, "addr", ln.Addr().String(), "logs", len(logs))
	select {
	case <-ctx.Done():
	case err := <-errc:
		return err
	}
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err = srv.Shutdown(sctx)
	logger.Info("witness stopped")
	return err
}
