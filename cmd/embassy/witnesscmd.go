package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/embassy-project/embassy/internal/check"
	"github.com/embassy-project/embassy/internal/guest"
	"github.com/embassy-project/embassy/internal/home"
	"github.com/embassy-project/embassy/internal/transport"
	"github.com/embassy-project/embassy/internal/witnessnode"
)

const witnessUsage = `usage:
  embassy witness init --dir DIR --name NAME --listen HOST:PORT [--url URL]
  embassy witness add-log --dir DIR HOST_DESCRIPTOR ...
  embassy witness serve --dir DIR [--listen HOST:PORT]
  embassy witness use --home HOME WITNESS_DESCRIPTOR   (the guest counts it in every check)`

func (e *env) witness(args []string) error {
	if len(args) == 0 {
		return usageErr(witnessUsage)
	}
	switch args[0] {
	case "init":
		fs := newFlags("witness init", e.stderr)
		dir := fs.String("dir", "", "witness directory to create")
		name := fs.String("name", "", "witness name")
		listen := fs.String("listen", "", "HOST:PORT to listen on")
		url := fs.String("url", "", "https URL hosts and auditors use (default https://LISTEN)")
		if err := parse(fs, args[1:]); err != nil {
			return err
		}
		if *dir == "" || *name == "" || *listen == "" {
			return usageErr(witnessUsage)
		}
		d, err := witnessnode.Init(*dir, *name, *listen, *url, time.Now())
		if err != nil {
			return err
		}
		fmt.Fprintf(e.stdout, "witness %s initialised in %s; descriptor %s (give it to the hosts: embassy host peer add; and to the guest: embassy witness use)\n",
			d.Name, *dir, filepath.Join(*dir, witnessnode.DescriptorFile))
		return nil
	case "add-log":
		fs := newFlags("witness add-log", e.stderr)
		dir := fs.String("dir", "", "witness directory")
		if err := parse(fs, args[1:]); err != nil {
			return err
		}
		if *dir == "" || fs.NArg() == 0 {
			return usageErr(witnessUsage)
		}
		for _, f := range fs.Args() {
			b, err := os.ReadFile(f)
			if err != nil {
				return err
			}
			d, err := witnessnode.AddLog(*dir, b)
			if err != nil {
				return fmt.Errorf("%s: %w", f, err)
			}
			fmt.Fprintf(e.stdout, "witnessing %s\n", d.Log.Origin)
		}
		return nil
	case "serve":
		fs := newFlags("witness serve", e.stderr)
		dir := fs.String("dir", "", "witness directory")
		listen := fs.String("listen", "", "override the listen address")
		if err := parse(fs, args[1:]); err != nil {
			return err
		}
		if *dir == "" {
			return usageErr(witnessUsage)
		}
		return witnessnode.Serve(e.ctx, *dir, *listen, slog.New(slog.NewJSONHandler(e.stderr, nil)))
	case "use":
		fs := newFlags("witness use", e.stderr)
		homeDir := fs.String("home", "", "HOME directory")
		if err := parse(fs, args[1:]); err != nil {
			return err
		}
		if *homeDir == "" || fs.NArg() != 1 {
			return usageErr(witnessUsage)
		}
		h, err := home.Open(*homeDir)
		if err != nil {
			return err
		}
		b, err := os.ReadFile(fs.Arg(0))
		if err != nil {
			return err
		}
		d, err := transport.ParseDescriptor(b)
		if err != nil {
			return err
		}
		if err := h.AddWitness(d); err != nil {
			return err
		}
		fmt.Fprintf(e.stdout, "the guest's checks now count witness %s (%s)\n", d.Name, d.BaseURL())
		return nil
	}
	return usageErr(witnessUsage)
}

// guestWitnesses turns witness descriptors into check.Witness entries that
// fetch views over the public witness path.
func guestWitnesses(g guest.ID, ds []*transport.Descriptor) []check.Witness {
	var out []check.Witness
	for _, d := range ds {
		c := transport.NewClient(d, g, tls.Certificate{})
		c.Timeout = 10 * time.Second
		out = append(out, check.Witness{Name: d.Witness.Origin, Verifiers: d.Witness.Keys,
			View: func(ctx context.Context, origin string) ([]byte, error) { return c.WitnessView(ctx, origin) }})
	}
	return out
}
