#!/usr/bin/env bash
# Benchmark: `iso threads` over 200 threads inside Nushell (goal: < 50 ms).
#
# Makes a temporary repository whose registry holds N (default 200) threads,
# written directly in the registry's TOML format (`.git/iso/registry.toml`,
# the shape `iso list --json` documents) and then rewritten once by
# `iso update`, adds the plugin to a throwaway
# plugin registry and times, with hyperfine when installed (else a loop):
#   baseline   nu -c '1'
#   plugin-use nu -c 'plugin use iso; 1'
#   threads    nu -c 'plugin use iso; iso threads | length'
#   cli        iso list --json          (for reference)
# and prints the medians, then the median of `timeit { iso threads | length }`
# inside one nu session (the plugin process already running, as in an
# interactive shell). Every nu runs with empty config files.
#
# Env: N (threads), RUNS (default 30), NU (nu binary; default ISO_TEST_NU,
# else nu on PATH, else the real binary under /opt/iso-ci/nu rather than
# npm's node wrapper node_modules/.bin/nu, which adds node's start-up),
# ISO_BIN_DIR (directory with iso and nu_plugin_iso; default:
# `cargo build --release` and target/release).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

N=${N:-200}
RUNS=${RUNS:-30}
die() { printf 'nu-threads: %s\n' "$*" >&2; exit 1; }

NU=${NU:-${ISO_TEST_NU:-}}
if [[ -z $NU ]]; then
  NU=$(command -v nu || true)
  [[ -n $NU ]] || for c in /opt/iso-ci/nu/bin/nu /opt/iso-ci/nu/node_modules/@nushell/linux-x64/bin/nu /opt/iso-ci/nu/node_modules/.bin/nu; do [[ -x $c ]] && NU=$c && break; done
fi
[[ -n $NU && -x $NU ]] || die "no nu found (set NU=..., or run .ci/install-deps)"

if [[ -z ${ISO_BIN_DIR:-} ]]; then
  cargo build --release -p iso --bins --quiet
  ISO_BIN_DIR=$PWD/target/release
fi
ISO_BIN_DIR=$(cd "$ISO_BIN_DIR" && pwd)
[[ -x $ISO_BIN_DIR/iso && -x $ISO_BIN_DIR/nu_plugin_iso ]] || die "no iso / nu_plugin_iso in $ISO_BIN_DIR"

work=$(mktemp -d /tmp/iso-bench-nu.XXXXXX)
trap 'rm -rf "$work"' EXIT
repo=$work/app
mkdir -p "$repo"
git -C "$repo" init -q -b main
printf '[threads]\nmax = 250\n[ports]\nbase = 20000\nblock_size = 100\n' >"$repo/iso.toml"
git -C "$repo" add iso.toml
git -C "$repo" -c user.name=bench -c user.email=bench@example.invalid commit -q -m init

# The registry: N active threads with the default slots and a two-entry
# history, as iso writes them.
reg_dir=$(cd "$repo" && cd "$(git rev-parse --git-common-dir)" && pwd)/iso
mkdir -p "$reg_dir"
{
  printf 'schema = 1\n'
  for ((i = 1; i <= N; i++)); do
    start=$((20000 + i * 100))
    at=$(printf '2026-01-01T%02d:%02d:%02dZ' $((i / 3600 % 24)) $((i / 60 % 60)) $((i % 60)))
    cat <<TOML

[[threads]]
id = $i
name = "thread-name-$i"
branch = "thread-$i-thread-name-$i"
base = "main"
status = "active"
worktree = "$repo/.worktrees/thread-$i"
env_file = "$repo/.worktrees/thread-$i/.env.thread"
task = "task number $i"
created = "$at"
updated = "$at"
created_branch = true

[threads.ports]
api = $((start + 2))
postgres = $start
redis = $((start + 1))
worker = $((start + 3))

[threads.port_block]
start = $start
end = $((start + 99))

[[threads.history]]
at = "$at"
event = "reserved"
detail = "id $i, ports $start-$((start + 99))"

[[threads.history]]
at = "$at"
event = "created"
detail = "branch thread-$i-thread-name-$i from main, 0 file(s) copied"
TOML
  done
} >"$reg_dir/registry.toml"
# Every real registry was last written by iso; let it rewrite this one once
# (so whatever iso keeps beside the TOML on a write is there too).
ISO_USER_CONFIG="" "$ISO_BIN_DIR/iso" -C "$repo" update 1 --task "task number 1" >/dev/null

: >"$work/empty.nu"
nu_args=(--plugin-config "$work/plugin.msgpackz" --config "$work/empty.nu" --env-config "$work/empty.nu" --no-history)
export ISO_USER_CONFIG=""
cd "$repo"
"$NU" "${nu_args[@]}" -c "plugin add '$ISO_BIN_DIR/nu_plugin_iso'"
got=$("$NU" "${nu_args[@]}" -c 'plugin use iso; iso threads | length')
[[ $got == "$N" ]] || die "iso threads | length gave '$got', expected $N"
cli=$("$ISO_BIN_DIR/iso" list --json | grep -c '"id":' || true)
[[ $cli == "$N" ]] || die "iso list --json gave $cli threads, expected $N"

echo "nu: $("$NU" --version) ($NU); plugin: $ISO_BIN_DIR/nu_plugin_iso; $N threads; $RUNS runs"
names=(baseline plugin-use threads cli)
cmds=(
  "$NU ${nu_args[*]} -c 1"
  "$NU ${nu_args[*]} -c 'plugin use iso; 1'"
  "$NU ${nu_args[*]} -c 'plugin use iso; iso threads | length'"
  "$ISO_BIN_DIR/iso list --json"
)

if command -v hyperfine >/dev/null; then
  args=()
  for k in "${!names[@]}"; do args+=(-n "${names[$k]}" "${cmds[$k]}"); done
  hyperfine -N --warmup 5 --runs "$RUNS" --export-json "$work/times.json" "${args[@]}" >&2
  "$NU" "${nu_args[@]}" -c "open '$work/times.json' | get results | each {|r| \$'(\$r.command | fill -w 12)median (\$r.median * 1000 | math round -p 1) ms   mean (\$r.mean * 1000 | math round -p 1) ms   min (\$r.min * 1000 | math round -p 1) ms' } | str join (char nl) | print \$in"
  median() { "$NU" "${nu_args[@]}" -c "open '$work/times.json' | get results | where command == '$1' | get 0.median | \$in * 1000 | math round -p 1"; }
else
  declare -A med
  for k in "${!names[@]}"; do
    times=()
    for ((r = 0; r < RUNS; r++)); do
      t0=$(date +%s%N)
      eval "${cmds[$k]}" >/dev/null
      t1=$(date +%s%N)
      times+=($(((t1 - t0) / 1000)))
    done
    m=$(printf '%s\n' "${times[@]}" | sort -n | sed -n "$((RUNS / 2 + 1))p")
    med[${names[$k]}]=$(awk "BEGIN { printf \"%.1f\", $m / 1000 }")
    printf '%-12smedian %s ms\n' "${names[$k]}" "${med[${names[$k]}]}"
  done
  median() { echo "${med[$1]}"; }
fi
b=$(median baseline)
t=$(median threads)
# Inside one nu session the plugin process stays up (as in an interactive
# shell), so a call costs only iso's own work and the transfer.
warm=$("$NU" "${nu_args[@]}" -c "plugin use iso; iso threads | length | ignore; let t = (1..$RUNS | each { timeit { iso threads | length } }); \$t | math median | into int | \$in / 1000000 | math round -p 2")
echo "iso threads over $N threads, new nu each time: ${t} ms in total, $(awk "BEGIN { printf \"%.1f\", $t - $b }") ms over a bare nu -c '1' (goal: total < 50 ms)"
echo "iso threads over $N threads, inside a running nu session (median of $RUNS timeit): ${warm} ms"
