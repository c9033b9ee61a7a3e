#!/usr/bin/env bash
# The peer benchmark: embassy (local directories and host nodes over mTLS),
# restic and borg on the same registry-like corpus, interleaved and repeated.
# See bench/README.md.
#
#   bench/run.sh [--quick] [--scale N] [--out FILE] [--md FILE] [--rounds N]
#                [--tools embassy,embassy-mtls,restic,borg] [--work DIR] [--keep]
#                [--restore-fs fresh|dir|auto]
#
#   --quick     ~100 MB corpus (the CI smoke test); default ~1 GB
#   --scale N   N × the default corpus (--scale 10: ~10 GB, by hand only)
#   --out FILE  JSON results (default: WORK/results.json)
#   --md FILE   markdown whose peers section is replaced (default docs/benchmarks.md)
#   --rounds N  rounds, median reported (default 3)
#   --work DIR  scratch directory (default ${TMPDIR:-/tmp}/embassy-bench); the
#               generated corpus is kept there and reused by later runs
#   --tools T   which tools, comma-separated (default embassy,embassy-mtls,restic,borg;
#               embassy-mtls is embassy against three `embassy host serve` processes
#               on 127.0.0.1 over mutual TLS)
#   --keep      keep the last run's work copy and repository to look at
#   --restore-fs  restore into a new ext4 file system each time (fresh: needs root,
#               mkfs.ext4, losetup), into a directory on the work disk (dir), or
#               fresh when possible (auto, the default)
#
# Works non-interactively (CI=true, no stdin). Installs restic, borgbackup and
# GNU time from Debian packages when they are missing.
set -euo pipefail

cd "$(dirname "$0")/.."
repo=$(pwd)
argv="bench/run.sh $*"

quick=0
scale=1
out=""
md="docs/benchmarks.md"
rounds=3
tools="embassy,embassy-mtls,restic,borg"
work="${TMPDIR:-/tmp}/embassy-bench"
keep=0
seed=1
edit_seed=2
while [ $# -gt 0 ]; do
	case "$1" in
	--quick) quick=1 ;;
	--scale) scale="$2"; shift ;;
	--out) out="$2"; shift ;;
	--md) md="$2"; shift ;;
	--rounds) rounds="$2"; shift ;;
	--tools) tools="$2"; shift ;;
	--work) work="$2"; shift ;;
	--keep) keep=1 ;;
	--restore-fs) restorefs="$2"; shift ;;
	-h|--help) sed -n '2,26p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
	*) echo "run.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
	esac
	shift
done
case "$scale" in ''|*[!0-9]*) echo "run.sh: --scale wants a whole number" >&2; exit 2 ;; esac

if [ "$quick" = 1 ]; then
	size=$((100 * 1024 * 1024 * scale))
	label="quick (~$((100 * scale)) MB)"
else
	size=$((1024 * 1024 * 1024 * scale))
	if [ "$scale" = 1 ]; then label="default (~1 GB)"; else label="scale $scale (~${scale} GB)"; fi
fi

say() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

# --- tools ---------------------------------------------------------------
missing=()
command -v restic >/dev/null 2>&1 || missing+=(restic)
command -v borg >/dev/null 2>&1 || missing+=(borgbackup)
[ -x /usr/bin/time ] || missing+=(time)
if [ ${#missing[@]} -gt 0 ]; then
	say "installing ${missing[*]} from Debian packages"
	sudo=""
	if [ "$(id -u)" != 0 ]; then sudo="sudo -n"; fi
	export DEBIAN_FRONTEND=noninteractive
	$sudo apt-get update -qq
	$sudo apt-get install -y -qq restic borgbackup time </dev/null >/dev/null
fi
command -v go >/dev/null 2>&1 || { echo "run.sh: go is not on PATH" >&2; exit 1; }

mkdir -p "$work"
work=$(cd "$work" && pwd)
say "building embassy, the corpus generator and the runner into $work/bin"
go build -o "$work/bin/embassy" ./cmd/embassy
go build -o "$work/bin/corpus" ./bench/corpus
go build -o "$work/bin/runner" ./bench/runner
go build -o "$work/bin/readfloor" ./bench/readfloor

# --- corpus (kept and reused: it is deterministic from size and seed) -----
corpus="$work/corpus-$size-s$seed"
if [ ! -s "$corpus.json" ] || [ ! -d "$corpus" ]; then
	need=$((size * 6 / 1024))
	avail=$(df -Pk "$work" | awk 'NR==2 {print $4}')
	if [ "$avail" -lt "$need" ]; then
		echo "run.sh: $work has $((avail / 1024)) MiB free; this run needs about $((need / 1024)) MiB" >&2
		exit 1
	fi
	say "generating a $label corpus ($size bytes, seed $seed) in $corpus"
	rm -rf "$corpus" "$corpus.json"
	"$work/bin/corpus" -out "$corpus" -size "$size" -seed "$seed" >"$corpus.json.tmp"
	mv "$corpus.json.tmp" "$corpus.json"
else
	say "reusing the corpus in $corpus"
fi

[ -n "$out" ] || out="$work/results.json"
keepflag=()
[ "$keep" = 1 ] && keepflag=(--keep)
say "measuring: $tools, $rounds rounds"
"$work/bin/runner" \
	-repo "$repo" -embassy "$work/bin/embassy" -readfloor "$work/bin/readfloor" -corpus "$corpus" -summary "$corpus.json" \
	-work "$work/run" -rounds "$rounds" -tools "$tools" -edit-seed "$edit_seed" \
	-label "$label" -command "$argv" -out "$out" -md "$md" -restore-fs "${restorefs:-auto}" "${keepflag[@]}" </dev/null
say "done: JSON in $out, markdown in $md"
