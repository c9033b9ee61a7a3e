package main

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
)

// newEmbassyMTLS is embassy against three host nodes on loopback: the same
// guest, custodians, k and operations as the local-directory tool, but each
// host is an `embassy host serve` process (its own directory, TLS key,
// transparency log and witness; the other two as peers) and every shard
// travels over mutual TLS. Hosts re-hash and fsync every shard, as by
// default. Restore, which a guest's agent key may not do against remote
// hosts, presents a read grant signed by the two restoring custodians.
func newEmbassyMTLS(ctx context.Context, c *config, secrets, logs string) (*tool, error) {
	bin := c.embassy
	keys, err := custodianKeys(ctx, bin, secrets)
	if err != nil {
		return nil, err
	}
	custodians := embassyCustodians
	if c.hostsN > 26 {
		return nil, fmt.Errorf("at most 26 hosts")
	}
	hostNames := make([]string, c.hostsN)
	for i := range hostNames {
		hostNames[i] = string(rune('a' + i))
	}
	var home, shares, grant string
	var hostDirs, addrs []string
	// layout names the round's paths under dir.
	layout := func(dir string) {
		home, shares, grant = filepath.Join(dir, "home"), filepath.Join(dir, "shares"), filepath.Join(dir, "grant")
		hostDirs = hostDirs[:0]
		for _, h := range hostNames {
			hostDirs = append(hostDirs, filepath.Join(dir, "hosts", h))
		}
	}
	descriptor := func(i int) string { return filepath.Join(hostDirs[i], "descriptor.json") }
	hostInitArgs := func(i int) []string {
		return []string{bin, "host", "init", "--dir", hostDirs[i], "--name", hostNames[i], "--listen", addrs[i]}
	}
	initArgs := func() []string {
		args := []string{bin, "init", "--home", home, "--data-shards", fmt.Sprint(c.dataShards), "--threshold", "2",
			"--dataset", "registry", "--shares", shares}
		for i, h := range hostNames {
			args = append(args, "--host", h+"="+descriptor(i))
		}
		for _, n := range custodians {
			args = append(args, "--custodian", n+"="+filepath.Join(keys, n+".key.pub"))
		}
		return args
	}
	guestAddArgs := func(i int) []string {
		return []string{bin, "host", "guest", "add", "--dir", hostDirs[i], "--identity", filepath.Join(home, "identity.pub"), "--quota", "100G"}
	}
	peerAddArgs := func(i int) []string {
		args := []string{bin, "host", "peer", "add", "--dir", hostDirs[i], "--witness-threshold", "1"}
		for j := range hostNames {
			if j != i {
				args = append(args, descriptor(j))
			}
		}
		return args
	}
	grantArgs := func() [][]string {
		sign := []string{bin, "grant", "sign"}
		for _, n := range custodians[:2] {
			sign = append(sign, "--identity", filepath.Join(keys, n+".key"))
		}
		return [][]string{
			{bin, "grant", "request", "--identity", filepath.Join(home, "identity.pub"), "--dataset", "registry",
				"--reason", "peer benchmark restore", "--out", grant},
			append(sign, grant),
		}
	}

	t := &tool{name: "embassy-mtls", version: "git " + gitCommit(ctx, c.repo)}
	t.setup = func(ctx context.Context, dir string) error {
		layout(dir)
		if addrs, err = freeAddrs(len(hostNames)); err != nil {
			return fmt.Errorf("pick ports: %w", err)
		}
		steps := [][]string{}
		for i := range hostNames {
			steps = append(steps, hostInitArgs(i))
		}
		steps = append(steps, initArgs())
		for i := range hostNames {
			steps = append(steps, guestAddArgs(i))
		}
		if len(hostNames) > 1 {
			for i := range hostNames {
				steps = append(steps, peerAddArgs(i))
			}
		}
		steps = append(steps, grantArgs()...)
		for _, s := range steps {
			if err := runQuiet(ctx, "", nil, s...); err != nil {
				return fmt.Errorf("%s %s: %w", s[1], s[2], err)
			}
		}
		return nil
	}
	t.serve = func(ctx context.Context, tag string) (*hostProcs, error) {
		return startHosts(ctx, bin, hostNames, hostDirs, addrs, logs, tag)
	}
	t.backup = func(_ int, src string) cmdSpec {
		return cmdSpec{argv: []string{bin, "backup", "--home", home, "--dataset", "registry", "--json", src}}
	}
	restoreArgs := func(target string) []string {
		args := []string{bin, "restore"}
		for i := 0; i < c.dataShards; i++ { // exactly k hosts
			args = append(args, "--host", hostNames[i]+"="+descriptor(i))
		}
		for _, n := range custodians[:2] { // exactly the threshold
			args = append(args, "--share", filepath.Join(shares, "registry."+n+".share"), "--identity", filepath.Join(keys, n+".key"))
		}
		return append(args, "--dataset", "registry", "--snapshot", "latest", "--target", target, "--grant", grant)
	}
	t.restore = func(target, src string) (cmdSpec, string) {
		return cmdSpec{argv: restoreArgs(target)}, filepath.Join(target, filepath.Base(src))
	}
	t.verify = func() cmdSpec {
		return cmdSpec{argv: []string{bin, "check", "--home", home, "--read-data"}}
	}
	t.storedDirs = func() []string {
		var out []string
		for _, d := range hostDirs {
			out = append(out, filepath.Join(d, "store"))
		}
		return out
	}
	t.hostDirs = func() []string { return hostDirs }
	t.localDirs = func() []string { return []string{home} }
	t.afterBackup = embassyBackupStats
	t.flags = func() []string {
		w := c.work
		layout(filepath.Join(w, "tool"))
		addrs = make([]string, len(hostNames))
		for i := range addrs {
			addrs[i] = "127.0.0.1:PORT_" + strings.ToUpper(hostNames[i])
		}
		shown := func(argv ...string) string {
			if len(argv) > 0 && argv[0] == bin {
				argv = append([]string{"embassy"}, argv[1:]...)
			}
			return shown(w, argv...)
		}
		g := grantArgs()
		return []string{
			shown("embassy", "custodian", "keygen", "--name", "alice", "--out", filepath.Join(keys, "alice.key")) + "   (also bob, carol; once)",
			"# every round, untimed (free loopback ports picked each round):",
			shown(hostInitArgs(0)...) + "   (also b, c)",
			shown(initArgs()...),
			shown(guestAddArgs(0)...) + "   (also b, c)",
			shown(peerAddArgs(0)...) + "   (also b, c: each host has the other two as peers)",
			shown(g[0]...),
			shown(g[1]...),
			"# every round, before the first backup; SIGTERM and wait after verify:",
			shown("embassy", "host", "serve", "--dir", hostDirs[0]) + " 2>LOG &   (also b, c)",
			"# timed:",
			shown(t.backup(1, filepath.Join(w, "src", "registry")).argv...) + "   (twice: before and after the edit)",
			shown(restoreArgs(filepath.Join(w, "restore"))...),
			shown(t.verify().argv...),
		}
	}
	return t, nil
}
