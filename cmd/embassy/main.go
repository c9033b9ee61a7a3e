// Command embassy is the data embassy: one binary whose subcommands serve the
// guest's agent, its custodians, its auditors and (later) its hosts.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"syscall"

	"github.com/embassy-project/embassy/internal/agent"
)

// Exit codes (documented in usage and README).
const (
	exitOK      = 0
	exitFailure = 1 // the command could not do what was asked
	exitUsage   = 2 // bad flags or arguments
	exitDamage  = 3 // check found damage; every snapshot is still restorable
	exitLoss    = 4 // check found data that can no longer be restored
)

// exitError carries an exit code out of run.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

func usageErr(format string, args ...any) error {
	return &exitError{code: exitUsage, err: fmt.Errorf(format, args...)}
}

// memoryLimit is the default soft limit on the Go heap. The backup and
// restore pipelines keep a bounded working set (docs/architecture.md); the
// limit keeps garbage from doubling it between collections. GOMEMLIMIT
// overrides it. On the benchmark machine a cold 1 GB first backup, whose
// live heap is about 150 MiB while small and large files are read at once,
// took 12.2–12.6 s and peaked at 227–228 MiB RSS with 224 MiB, 12.4–12.7 s
// and 258 MiB with 256 MiB, and 12.5–13.4 s and 195–197 MiB with 192 MiB
// (alternated; below 224 the collector runs almost continuously).
const memoryLimit = 224 << 20

// backupProcs is the least GOMAXPROCS a backup runs with: two per CPU the
// runtime would use (at most one per reader, agent.Readers). A goroutine
// blocked in a read of a regular file holds its P until the scheduler hands
// it off, so with one P per CPU the CPU work waits behind blocked readers;
// readers block about once per batch of small files (agent.ReadBatch), so
// a P per reader, as before batches, only adds scheduling. On the benchmark
// machine (2 CPUs) a cold 1 GB first backup took 7.9–8.2 s with
// GOMAXPROCS=2, 7.2–7.3 s with 3, 7.0–7.2 s with 4, 7.0–7.1 s with 6,
// 7.1–7.3 s with 8 and 7.1–7.6 s with 16 (0.6 s more CPU than with 4);
// incremental and mTLS backups took the same time with 4 as with 16.
// CPU-bound pools stay sized to the CPUs. Restore does not raise it;
// GOMAXPROCS in the environment overrides it.
func backupProcs() int { return min(agent.Readers, 2*runtime.GOMAXPROCS(0)) }

// raiseProcs raises GOMAXPROCS to at least n unless the environment sets it,
// and returns a function that puts it back.
func raiseProcs(n int) func() {
	prev := runtime.GOMAXPROCS(0)
	if os.Getenv("GOMAXPROCS") != "" || prev >= n {
		return func() {}
	}
	runtime.GOMAXPROCS(n)
	return func() { runtime.GOMAXPROCS(prev) }
}

func main() {
	if os.Getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(memoryLimit)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	stopProfile()
	os.Exit(exitCode(err, os.Stderr))
}

// stopProfile ends a profile started by a build with -tags profile.
var stopProfile = func() {}

func exitCode(err error, stderr io.Writer) int {
	if err == nil {
		return exitOK
	}
	var ee *exitError
	if errors.As(err, &ee) {
		if ee.err != nil && ee.err.Error() != "" {
			fmt.Fprintf(stderr, "embassy: %v\n", ee.err)
		}
		return ee.code
	}
	fmt.Fprintf(stderr, "embassy: %v\n", err)
	return exitFailure
}

const usage = `embassy — a data embassy: encrypted, erasure-coded snapshots of a state's
registries on hosts in allied countries, restorable by a quorum of custodians.

Usage:
  embassy custodian keygen --name NAME --out FILE     make a custodian key pair (FILE, FILE.pub)
  embassy init --home HOME --host NAME=DIR ... --data-shards K
               --custodian NAME=FILE.pub ... --threshold T
               --dataset NAME ... --shares DIR          set up a guest and its datasets
  embassy dataset add --home HOME --shares DIR NAME   add a dataset (new key, new shares)
  embassy backup --home HOME --dataset NAME [--name N] [--keep-cache] PATH|-
  embassy snapshots --home HOME [--dataset NAME] [--json]
  embassy check --home HOME [--read-data] [--json]
  embassy check --host NAME=DIR ... --identity GUEST.pub [--read-data] [--json]
  embassy restore --host NAME=DIR ... --share FILE ... --identity CUSTODIAN.key ...
                  --dataset NAME [--snapshot latest|SEQ|HASH] --target DIR [--json]
  embassy share inspect FILE ...                      show whom a share file is for
  embassy demo [--dir DIR] [--size MB]                the whole journey on local hosts

Host nodes (a host state's data centre) and witnesses:
  embassy host init --dir DIR --name NAME --listen HOST:PORT
  embassy host guest add --dir DIR --identity GUEST.pub --quota SIZE
  embassy host peer add --dir DIR [--witness-threshold W] DESCRIPTOR ...
  embassy host serve --dir DIR [--metrics-listen HOST:PORT]
  embassy host fsck --dir DIR
  embassy witness init|add-log|serve|use ...          the guest's own witness
  embassy grant request|sign|show ...                 custodian-signed read grants
  embassy host agreement install --dir DIR AGREEMENT  put an agreement in force at a host
  embassy host restore --dir DIR --guest ID --dataset NAME --writer-key FILE --target DIR
                                                      an activated host restores the named snapshot

Governance (docs/operator-guide.md, "Governance"):
  embassy agreement init|validate|sign|ack|verify|show ...   the agreement as code
  embassy agreement use --home HOME AGREEMENT         HOME follows the agreement
  embassy order draft|sign|show|verify|submit ...     quorum-signed orders
  embassy share release ...                           re-wrap a key share to an activated host
  embassy share submit --agreement A RELEASE ...      send released shares to that host
  embassy writer keygen --out FILE                    a writer key an activation names
  embassy heartbeat --home HOME                       tell the hosts home is alive
  embassy dataset rotate --home HOME --shares DIR NAME  new keys for a dataset (after a return)
  embassy identity push --home HOME                   hosts learn keys a rotate order named
  (check and restore take --grant GRANT to read remote hosts without HOME)

Keys are always read from files, never from arguments. --json prints one JSON
document on stdout; --quiet prints nothing but errors.

Exit codes:
  0  success (check: healthy)
  1  failure: the command could not do what was asked; the message says why
  2  usage: bad flags or arguments
  3  check found damage (missing or corrupt shards or envelopes, a stale or
     unavailable host) but every snapshot is still restorable
  4  check found loss: some pack has fewer than k good shards, or a dataset has
     no verifiable snapshot
`

func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return &exitError{code: exitUsage, err: errors.New("")}
	}
	e := &env{ctx: ctx, stdin: stdin, stdout: stdout, stderr: stderr}
	switch args[0] {
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	case "custodian":
		if len(args) < 2 || args[1] != "keygen" {
			return usageErr("usage: embassy custodian keygen --name NAME --out FILE")
		}
		return e.custodianKeygen(args[2:])
	case "init":
		return e.init(args[1:])
	case "dataset":
		if len(args) >= 2 && args[1] == "rotate" {
			return e.datasetRotate(args[2:])
		}
		if len(args) < 2 || args[1] != "add" {
			return usageErr("usage: embassy dataset add|rotate --home HOME --shares DIR NAME")
		}
		return e.datasetAdd(args[2:])
	case "identity":
		if len(args) < 2 || args[1] != "push" {
			return usageErr("usage: embassy identity push --home HOME")
		}
		return e.identityPush(args[2:])
	case "backup":
		return e.backup(args[1:])
	case "snapshots":
		return e.snapshots(args[1:])
	case "check":
		return e.check(args[1:])
	case "restore":
		return e.restore(args[1:])
	case "share":
		if len(args) >= 2 && args[1] == "release" {
			return e.shareRelease(args[2:])
		}
		if len(args) >= 2 && args[1] == "submit" {
			return e.shareSubmit(args[2:])
		}
		if len(args) < 2 || args[1] != "inspect" {
			return usageErr("usage: embassy share inspect|release ...")
		}
		return e.shareInspect(args[2:])
	case "agreement":
		if len(args) >= 2 && args[1] == "use" {
			return e.agreementUse(args[2:])
		}
		return e.agreement(args[1:])
	case "order":
		return e.order(args[1:])
	case "heartbeat":
		return e.heartbeat(args[1:])
	case "writer":
		if len(args) < 2 || args[1] != "keygen" {
			return usageErr("usage: embassy writer keygen --out FILE")
		}
		return e.writerKeygen(args[2:])
	case "demo":
		return e.demo(args[1:])
	case "host":
		return e.host(args[1:])
	case "grant":
		return e.grant(args[1:])
	case "witness":
		return e.witness(args[1:])
	default:
		return usageErr("unknown command %q (embassy --help lists them)", args[0])
	}
}

type env struct {
	ctx            context.Context
	stdin          io.Reader
	stdout, stderr io.Writer
}
