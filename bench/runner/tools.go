package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// cmdSpec is one command to run: argv, extra environment (secrets go here,
// never in argv) and working directory.
type cmdSpec struct {
	argv []string
	env  []string
	dir  string
}

// tool is one backup program under test. Its functions build the command
// lines; setup (untimed) makes a fresh repository under dir.
type tool struct {
	name    string
	version string
	setup   func(ctx context.Context, dir string) error
	// serve, when set, starts the tool's server processes (embassy-mtls: the
	// three host nodes) after setup and before the first backup; tag names
	// their log files. runOnce stops them after verify.
	serve      func(ctx context.Context, tag string) (*hostProcs, error)
	backup     func(n int, src string) cmdSpec
	restore    func(target, src string) (cmdSpec, string) // and where the restored src appears
	verify     func() cmdSpec
	storedDirs func() []string
	localDirs  func() []string
	// hostDirs, when set, are the whole host directories (store, outboards,
	// transparency log, witness state), recorded as host_dir_bytes.
	hostDirs    func() []string
	afterBackup func(op opResult, out map[string]float64, key string)
	flags       func() []string // the exact command lines, with $W for the work dir
	extra       map[string]string
}

func newTools(ctx context.Context, c *config, m *measurer) ([]*tool, error) {
	secrets := filepath.Join(c.work, "secrets")
	if err := os.RemoveAll(secrets); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(secrets, 0o700); err != nil {
		return nil, err
	}
	var out []*tool
	for _, name := range c.tools {
		var t *tool
		var err error
		switch name {
		case "embassy":
			t, err = newEmbassy(ctx, c, secrets)
		case "embassy-mtls":
			t, err = newEmbassyMTLS(ctx, c, secrets, m.logs)
		case "restic":
			t, err = newRestic(ctx, c, secrets)
		case "borg":
			t, err = newBorg(ctx, c, secrets)
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		out = append(out, t)
	}
	return out, nil
}

func randomSecret() (string, error) {
	b := make([]byte, 24)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return hex.EncodeToString(b), nil
}

// shown renders a command for the record, with the work dir as $W.
func shown(work string, argv ...string) string {
	var parts []string
	for _, a := range argv {
		a = strings.ReplaceAll(a, work, "$W")
		if strings.ContainsAny(a, " \t") {
			a = "'" + a + "'"
		}
		parts = append(parts, a)
	}
	return strings.Join(parts, " ")
}

// embassyCustodians are the three custodians both embassy variants use
// (threshold 2); their keys are made once per runner invocation.
var embassyCustodians = []string{"alice", "bob", "carol"}

// custodianKeys makes the custodians' identities under secrets (once: keygen
// never overwrites) and returns their directory.
func custodianKeys(ctx context.Context, bin, secrets string) (string, error) {
	keys := filepath.Join(secrets, "custodians")
	for _, n := range embassyCustodians {
		f := filepath.Join(keys, n+".key")
		if _, err := os.Stat(f); err == nil {
			continue
		}
		if err := runQuiet(ctx, "", nil, bin, "custodian", "keygen", "--name", n, "--out", f); err != nil {
			return "", fmt.Errorf("custodian keygen: %w", err)
		}
	}
	return keys, nil
}

// embassyBackupStats reads `embassy backup --json` into out.
func embassyBackupStats(op opResult, out map[string]float64, key string) {
	var r struct {
		Bytes       float64 `json:"bytes"`
		NewBytes    float64 `json:"new_bytes"`
		StoredBytes float64 `json:"stored_bytes"`
		Uploaded    float64 `json:"uploaded_bytes"`
	}
	if json.Unmarshal(op.stdout, &r) == nil {
		out[key+"_new_bytes"] = r.NewBytes
		out[key+"_sealed_bytes"] = r.StoredBytes
		out[key+"_uploaded_bytes"] = r.Uploaded
		out[key+"_input_bytes"] = r.Bytes
	}
}

func newEmbassy(ctx context.Context, c *config, secrets string) (*tool, error) {
	bin := c.embassy
	keys, err := custodianKeys(ctx, bin, secrets)
	if err != nil {
		return nil, err
	}
	custodians := embassyCustodians
	var home, shares string
	var hostDirs []string
	hostNames := "abcdefghijklmnopqrstuvwxyz"[:c.hostsN]
	initArgs := func(dir string) []string {
		home, shares = filepath.Join(dir, "home"), filepath.Join(dir, "shares")
		hostDirs = hostDirs[:0]
		args := []string{bin, "init", "--home", home, "--data-shards", fmt.Sprint(c.dataShards), "--threshold", "2",
			"--dataset", "registry", "--shares", shares}
		for _, h := range hostNames {
			d := filepath.Join(dir, "hosts", string(h))
			hostDirs = append(hostDirs, d)
			args = append(args, "--host", string(h)+"="+d)
		}
		for _, n := range custodians {
			args = append(args, "--custodian", n+"="+filepath.Join(keys, n+".key.pub"))
		}
		return args
	}
	t := &tool{name: "embassy", version: "git " + gitCommit(ctx, c.repo)}
	t.setup = func(ctx context.Context, dir string) error {
		return runQuiet(ctx, "", nil, initArgs(dir)...)
	}
	t.backup = func(_ int, src string) cmdSpec {
		return cmdSpec{argv: []string{bin, "backup", "--home", home, "--dataset", "registry", "--json", src}}
	}
	restoreArgs := func(target string) []string {
		args := []string{bin, "restore"}
		for i := 0; i < c.dataShards; i++ { // exactly k hosts
			args = append(args, "--host", string(hostNames[i])+"="+hostDirs[i])
		}
		for _, n := range custodians[:2] { // exactly the threshold
			args = append(args, "--share", filepath.Join(shares, "registry."+n+".share"), "--identity", filepath.Join(keys, n+".key"))
		}
		return append(args, "--dataset", "registry", "--snapshot", "latest", "--target", target)
	}
	t.restore = func(target, src string) (cmdSpec, string) {
		return cmdSpec{argv: restoreArgs(target)}, filepath.Join(target, filepath.Base(src))
	}
	t.verify = func() cmdSpec {
		return cmdSpec{argv: []string{bin, "check", "--home", home, "--read-data"}}
	}
	t.storedDirs = func() []string { return hostDirs }
	t.localDirs = func() []string { return []string{home} }
	t.afterBackup = embassyBackupStats
	t.flags = func() []string {
		w := c.work
		d := filepath.Join(w, "tool")
		initArgs(d)
		shown := func(w string, argv ...string) string {
			if len(argv) > 0 && argv[0] == bin {
				argv = append([]string{"embassy"}, argv[1:]...)
			}
			return shown(w, argv...)
		}
		return []string{
			shown(w, "embassy", "custodian", "keygen", "--name", "alice", "--out", filepath.Join(keys, "alice.key")) + "   (also bob, carol; once)",
			shown(w, initArgs(d)...),
			shown(w, t.backup(1, filepath.Join(w, "src", "registry")).argv...) + "   (twice: before and after the edit)",
			shown(w, restoreArgs(filepath.Join(w, "restore"))...),
			shown(w, t.verify().argv...),
		}
	}
	return t, nil
}

func newRestic(ctx context.Context, c *config, secrets string) (*tool, error) {
	pw, err := randomSecret()
	if err != nil {
		return nil, err
	}
	pwFile := filepath.Join(secrets, "restic.password")
	if err := os.WriteFile(pwFile, []byte(pw+"\n"), 0o600); err != nil {
		return nil, err
	}
	ver, err := exec.CommandContext(ctx, "restic", "version").Output()
	if err != nil {
		return nil, fmt.Errorf("restic version: %w (is restic installed?)", err)
	}
	var repo, cache string
	env := func() []string {
		return []string{"RESTIC_REPOSITORY=" + repo, "RESTIC_PASSWORD_FILE=" + pwFile, "RESTIC_CACHE_DIR=" + cache}
	}
	t := &tool{name: "restic", version: strings.TrimSpace(string(ver))}
	// The repository format decides restic's default compression (format 2:
	// auto); a probe repository tells which format this version makes.
	probe := filepath.Join(c.work, "restic-probe")
	repo, cache = filepath.Join(probe, "repo"), filepath.Join(probe, "cache")
	if err := runQuiet(ctx, "", env(), "restic", "init"); err != nil {
		return nil, err
	}
	cmd := exec.CommandContext(ctx, "restic", "cat", "config")
	cmd.Env = toolEnv(env())
	if b, err := cmd.Output(); err == nil {
		var cfg struct {
			Version int `json:"version"`
		}
		if json.Unmarshal(b, &cfg) == nil {
			t.extra = map[string]string{"restic_repository_format": fmt.Sprint(cfg.Version)}
		}
	}
	if err := os.RemoveAll(probe); err != nil {
		return nil, err
	}
	t.setup = func(ctx context.Context, dir string) error {
		repo, cache = filepath.Join(dir, "repo"), filepath.Join(dir, "cache")
		return runQuiet(ctx, "", env(), "restic", "init")
	}
	t.backup = func(_ int, src string) cmdSpec {
		return cmdSpec{argv: []string{"restic", "backup", src}, env: env()}
	}
	t.restore = func(target, src string) (cmdSpec, string) {
		return cmdSpec{argv: []string{"restic", "restore", "latest", "--target", target}, env: env()}, filepath.Join(target, src)
	}
	t.verify = func() cmdSpec {
		return cmdSpec{argv: []string{"restic", "check", "--read-data"}, env: env()}
	}
	t.storedDirs = func() []string { return []string{repo} }
	t.localDirs = func() []string { return []string{cache} }
	t.flags = func() []string {
		w := c.work
		return []string{
			"env: RESTIC_REPOSITORY=$W/tool/repo RESTIC_PASSWORD_FILE=$W/secrets/restic.password RESTIC_CACHE_DIR=$W/tool/cache",
			"restic init   (defaults: repository format and compression of this version)",
			shown(w, "restic", "backup", filepath.Join(w, "src", "registry")) + "   (twice: before and after the edit)",
			shown(w, "restic", "restore", "latest", "--target", filepath.Join(w, "restore")),
			"restic check --read-data",
		}
	}
	return t, nil
}

func newBorg(ctx context.Context, c *config, secrets string) (*tool, error) {
	pw, err := randomSecret()
	if err != nil {
		return nil, err
	}
	ver, err := exec.CommandContext(ctx, "borg", "--version").Output()
	if err != nil {
		return nil, fmt.Errorf("borg --version: %w (is borgbackup installed?)", err)
	}
	var repo, base string
	env := func() []string {
		return []string{"BORG_REPO=" + repo, "BORG_PASSPHRASE=" + pw, "BORG_BASE_DIR=" + base}
	}
	t := &tool{name: "borg", version: strings.TrimSpace(string(ver))}
	t.setup = func(ctx context.Context, dir string) error {
		repo, base = filepath.Join(dir, "repo"), filepath.Join(dir, "base")
		if err := os.MkdirAll(base, 0o700); err != nil {
			return err
		}
		return runQuiet(ctx, "", env(), "borg", "init", "-e", "repokey")
	}
	t.backup = func(n int, src string) cmdSpec {
		return cmdSpec{argv: []string{"borg", "create", fmt.Sprintf("::snap%d", n), src}, env: env()}
	}
	t.restore = func(target, src string) (cmdSpec, string) {
		// borg extracts into the working directory, paths without the leading /.
		return cmdSpec{argv: []string{"borg", "extract", "::snap2"}, env: env(), dir: target},
			filepath.Join(target, strings.TrimPrefix(src, "/"))
	}
	t.verify = func() cmdSpec {
		return cmdSpec{argv: []string{"borg", "check", "--verify-data"}, env: env()}
	}
	t.storedDirs = func() []string { return []string{repo} }
	t.localDirs = func() []string { return []string{base} }
	t.flags = func() []string {
		w := c.work
		return []string{
			"env: BORG_REPO=$W/tool/repo BORG_PASSPHRASE=(random) BORG_BASE_DIR=$W/tool/base",
			"borg init -e repokey",
			shown(w, "borg", "create", "::snap1", filepath.Join(w, "src", "registry")) + "   (then ::snap2 after the edit; default compression lz4)",
			"cd $W/restore && borg extract ::snap2",
			"borg check --verify-data",
		}
	}
	return t, nil
}
