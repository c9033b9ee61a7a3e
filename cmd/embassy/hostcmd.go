package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"k8s.io/klog/v2"

	"github.com/embassy-project/embassy/internal/hostnode"
	"github.com/embassy-project/embassy/internal/shardstore"
	s3store "github.com/embassy-project/embassy/internal/shardstore/s3"
)

const hostUsage = `usage:
  embassy host init --dir DIR --name NAME --listen HOST:PORT [--url URL] [--store s3://BUCKET[/PREFIX]?endpoint=…]
  embassy host guest add --dir DIR --identity GUEST.pub --quota SIZE
  embassy host peer add --dir DIR [--witness-threshold W] DESCRIPTOR ...
  embassy host serve --dir DIR [--listen HOST:PORT] [--metrics-listen HOST:PORT]
  embassy host fsck --dir DIR
  embassy host agreement install --dir DIR AGREEMENT
  embassy host restore --dir DIR --guest ID --dataset NAME --writer-key FILE --target DIR [--snapshot S] [--json]`

func (e *env) host(args []string) error {
	if len(args) == 0 {
		return usageErr(hostUsage)
	}
	switch args[0] {
	case "init":
		return e.hostInit(args[1:])
	case "serve":
		return e.hostServe(args[1:])
	case "fsck":
		return e.hostFsck(args[1:])
	case "guest":
		if len(args) < 2 || args[1] != "add" {
			return usageErr(hostUsage)
		}
		return e.hostGuestAdd(args[2:])
	case "peer":
		if len(args) < 2 || args[1] != "add" {
			return usageErr(hostUsage)
		}
		return e.hostPeerAdd(args[2:])
	case "agreement":
		if len(args) < 2 || args[1] != "install" {
			return usageErr(hostUsage)
		}
		return e.hostAgreementInstall(args[2:])
	case "restore":
		return e.hostRestore(args[1:])
	}
	return usageErr(hostUsage)
}

func (e *env) hostInit(args []string) error {
	fs := newFlags("host init", e.stderr)
	dir := fs.String("dir", "", "host directory to create")
	name := fs.String("name", "", "host name (lower-case letters, digits, . _ -)")
	listen := fs.String("listen", "", "HOST:PORT to listen on")
	url := fs.String("url", "", "https URL guests use (default https://LISTEN)")
	store := fs.String("store", "", "s3://BUCKET[/PREFIX]?endpoint=…&region=… to keep shards in an S3 bucket with Object Lock (default: DIR/store)")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *dir == "" || *name == "" || *listen == "" {
		return usageErr("usage: embassy host init --dir DIR --name NAME --listen HOST:PORT [--url URL] [--store s3://…]")
	}
	if *store != "" {
		if _, err := s3store.ParseURL(*store); err != nil {
			return usageErr("--store: %v", err)
		}
	}
	d, err := hostnode.Init(*dir, hostnode.InitOptions{Name: *name, Listen: *listen, URL: *url, Store: *store, Now: time.Now()})
	if err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "host %s initialised in %s\n  url          %s\n  tls key      %s\n  log origin   %s\n  descriptor   %s (hand it to guests and peer hosts)\n",
		d.Name, *dir, d.URL, d.TLS, d.Log.Origin, filepath.Join(*dir, hostnode.DescriptorFile))
	return nil
}

// parseSize parses a byte count with an optional K, M, G or T suffix
// (powers of 1024).
func parseSize(s string) (int64, error) {
	mult := int64(1)
	u := strings.ToUpper(strings.TrimSuffix(strings.TrimSuffix(s, "B"), "i"))
	for i, suf := range []string{"K", "M", "G", "T"} {
		if strings.HasSuffix(u, suf) {
			mult = 1 << (10 * (i + 1))
			u = strings.TrimSuffix(u, suf)
			break
		}
	}
	n, err := strconv.ParseInt(u, 10, 64)
	if err != nil || n <= 0 || n > (1<<62)/mult {
		return 0, fmt.Errorf("size %q: want a positive number with an optional K, M, G or T suffix", s)
	}
	return n * mult, nil
}

func (e *env) hostGuestAdd(args []string) error {
	fs := newFlags("host guest add", e.stderr)
	dir := fs.String("dir", "", "host directory")
	identity := fs.String("identity", "", "the guest's public identity file")
	quota := fs.String("quota", "", "storage quota for the guest, e.g. 500G")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *dir == "" || *identity == "" || *quota == "" {
		return usageErr("usage: embassy host guest add --dir DIR --identity GUEST.pub --quota SIZE")
	}
	q, err := parseSize(*quota)
	if err != nil {
		return usageErr("%v", err)
	}
	b, err := os.ReadFile(*identity)
	if err != nil {
		return err
	}
	id, err := hostnode.AddGuest(*dir, b, q)
	if err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "host serves guest %s (%s), quota %s; restart `embassy host serve` to apply\n", id.Name, id.Guest, humanBytes(uint64(q)))
	return nil
}

func (e *env) hostPeerAdd(args []string) error {
	fs := newFlags("host peer add", e.stderr)
	dir := fs.String("dir", "", "host directory")
	threshold := fs.Int("witness-threshold", 0, "cosignatures each checkpoint should gather (default: unchanged)")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *dir == "" || fs.NArg() == 0 {
		return usageErr("usage: embassy host peer add --dir DIR [--witness-threshold W] DESCRIPTOR ...")
	}
	for i, f := range fs.Args() {
		b, err := os.ReadFile(f)
		if err != nil {
			return err
		}
		th := 0
		if i == fs.NArg()-1 {
			th = *threshold
		}
		d, err := hostnode.AddPeer(*dir, b, th)
		if err != nil {
			return fmt.Errorf("%s: %w", f, err)
		}
		fmt.Fprintf(e.stdout, "peer %s (%s) added\n", d.Name, d.BaseURL())
	}
	return nil
}

func (e *env) hostServe(args []string) error {
	fs := newFlags("host serve", e.stderr)
	dir := fs.String("dir", "", "host directory")
	listen := fs.String("listen", "", "override the listen address")
	metrics := fs.String("metrics-listen", "", "serve Prometheus /metrics over plain HTTP on HOST:PORT")
	level := fs.String("log-level", "info", "debug, info, warn or error")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *dir == "" {
		return usageErr("usage: embassy host serve --dir DIR [--listen HOST:PORT] [--metrics-listen HOST:PORT]")
	}
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(*level)); err != nil {
		return usageErr("--log-level %q: %v", *level, err)
	}
	logger := slog.New(slog.NewJSONHandler(e.stderr, &slog.HandlerOptions{Level: lvl}))
	// tessera logs through klog's process-wide logger; route it into the
	// host's structured log (once per process: klog's setter is global).
	klog.SetSlogLogger(logger.With("component", "tessera"))
	s, err := hostnode.Open(e.ctx, *dir, hostnode.Options{Logger: logger, MetricsListen: *metrics, OpenStore: openS3Store})
	if err != nil {
		return err
	}
	if err := s.Listen(*listen); err != nil {
		s.Close(e.ctx)
		return err
	}
	return s.Serve(e.ctx)
}

// S3DefaultRetention is how long a host node on S3 locks an object whose
// writer sent no retain-until (a guest with retention_days 0): Object Lock in
// compliance mode needs a date.
const S3DefaultRetention = 24 * time.Hour

// openS3Store opens one guest's part of an S3 bucket: PREFIX/GUEST-ID.
// Credentials come from AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or the file
// named by EMBASSY_S3_CREDENTIALS_FILE, never from flags or host.json.
func openS3Store(ctx context.Context, url, guest string) (shardstore.Store, error) {
	loc, err := s3store.ParseURL(url)
	if err != nil {
		return nil, err
	}
	if loc.Prefix != "" {
		loc.Prefix += "/"
	}
	loc.Prefix += guest
	creds, err := s3store.CredentialsFromEnv()
	if err != nil {
		return nil, err
	}
	return s3store.Open(ctx, s3store.Config{URL: loc.String(), Credentials: creds, DefaultRetention: S3DefaultRetention})
}

func (e *env) hostFsck(args []string) error {
	fs := newFlags("host fsck", e.stderr)
	dir := fs.String("dir", "", "host directory")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *dir == "" {
		return usageErr("usage: embassy host fsck --dir DIR")
	}
	rep, err := hostnode.Fsck(e.ctx, *dir)
	if err != nil {
		return err
	}
	for _, l := range rep.Lines() {
		fmt.Fprintln(e.stdout, l)
	}
	if !rep.Clean() {
		return &exitError{code: exitDamage, err: fmt.Errorf("host %s: fsck found problems", *dir)}
	}
	return nil
}
