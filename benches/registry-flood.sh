#!/usr/bin/env bash
# Benchmark: what a hook that floods its output costs afterwards. A post-init
# Rhai hook prints 8 messages of 16 MiB; then the size of registry.toml and
# the time and peak memory of three `iso list --json`, for each binary given,
# side by side in one run (e.g. main's build against this one's).
#
#   bash benches/registry-flood.sh [ISO_BIN ...]     # default: target/debug/iso
#
# Each binary gets its own temporary repository and state directory (ports
# 31500-31509); everything is removed afterwards. Needs GNU time (/usr/bin/time).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
[ $# -gt 0 ] || set -- "$PWD/target/debug/iso"
[ -x /usr/bin/time ] || { echo "needs /usr/bin/time (Debian: apt-get install -y time)" >&2; exit 1; }

run() {
  local iso d
  iso=$(realpath "$1")
  d=$(mktemp -d)
  trap 'rm -rf "$d"' RETURN
  (
    cd "$d"
    git init -q -b main
    printf '[ports]\nbase = 31500\nblock_size = 5\n[threads]\nmax = 2\n[[hooks]]\nevent = "post-init"\nrhai = "hooks/flood.rhai"\n' >iso.toml
    mkdir hooks
    printf 'let s = "x"; while s.len() < 16777216 { s += s; }\nfor i in 0..8 { message(s); }\n' >hooks/flood.rhai
    git add . && git -c user.name=bench -c user.email=bench@example.invalid commit -qm init
    export ISO_STATE_DIR=$d/state ISO_USER_CONFIG=
    /usr/bin/time -f "  init:  %e s, %M KB peak RSS" "$iso" init f --no-services -q 2>&1 >/dev/null | tail -1
    echo "  registry.toml: $(stat -c %s .git/iso/registry.toml) bytes"
    for _ in 1 2 3; do /usr/bin/time -f "  list:  %e s, %M KB peak RSS" "$iso" list --json 2>&1 >/dev/null | tail -1; done
    "$iso" cleanup f --force --delete-branch -q >/dev/null 2>&1 || true
  )
}

for iso in "$@"; do
  echo "$iso"
  run "$iso"
done
