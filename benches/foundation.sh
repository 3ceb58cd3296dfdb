#!/usr/bin/env bash
# Benchmarks for the foundation (issue 2), side by side in one run:
#   1. `iso init` against plain `git worktree add -b` on a generated
#      repository of 5,000 files (goal: iso within 1.2x of git);
#   2. `iso list --json` with 200 threads in the registry (goal: < 20 ms).
# Prints medians in milliseconds. Uses a release build of iso.
#
#   bash benches/foundation.sh [runs]          (on disk, under /tmp)
#   BENCH_DIR=/dev/shm bash benches/foundation.sh [runs]   (in memory)
#   ISO_BIN=path/to/iso ISO_BEFORE=path/to/older/iso bash benches/foundation.sh
#       (use a given binary instead of building one, and time an older one's
#       init in the same runs: the cost of a change, e.g. the port ledger)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source benches/lib.sh
RUNS=${1:-15}
ISO=$(iso_bin)
BEFORE=${ISO_BEFORE:-}
# BENCH_DIR=/dev/shm takes disk writeback (the noisiest part) out of the
# comparison and leaves the work each tool does.
WORK=$(mktemp -d "${BENCH_DIR:-/tmp}/iso-bench.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
export ISO_USER_CONFIG= NO_COLOR=1
# iso's per-user state (the port ledger) of the benchmark's own.
export ISO_STATE_DIR=$WORK/state

MEDIAN_DIGITS=1

# ---- a repository of 5,000 files --------------------------------------------
REPO=$WORK/big
mkdir -p "$REPO" && cd "$REPO"
git init -q -b main
python3 - <<'PY'
import os
for i in range(5000):
    d = f"src/mod{i // 100:02d}"
    os.makedirs(d, exist_ok=True)
    with open(f"{d}/file{i:04d}.rs", "w") as f:
        f.write(f"// file {i}\npub fn f{i}() -> u32 {{ {i} }}\n" * 20)
PY
printf '[ports]\nbase = 45000\nblock_size = 10\n[threads]\nmax = 50\n' > iso.toml
git add -A && git -c user.name=b -c user.email=b@b commit -qm files
echo "repository: $(git ls-files | wc -l) files, $(du -sh --exclude=.git . | cut -f1)"

git_ms=(); iso_ms=(); before_ms=()
for i in $(seq 1 "$RUNS"); do
  # Alternate the two so neither gets a warmer cache.
  t0=$(now_ns); git worktree add -q -b "plain-$i" "$REPO/.plain/wt-$i" main; t1=$(now_ns)
  git_ms+=("$(( (t1 - t0) / 1000 ))e-3")
  t0=$(now_ns); "$ISO" init -q "bench-$i" >/dev/null; t1=$(now_ns)
  iso_ms+=("$(( (t1 - t0) / 1000 ))e-3")
  # Clean up outside the timed part.
  git worktree remove --force "$REPO/.plain/wt-$i"; git branch -q -D "plain-$i"
  "$ISO" cleanup -q --force --delete-branch "bench-$i" >/dev/null
  if [ -n "$BEFORE" ]; then
    t0=$(now_ns); "$BEFORE" init -q "before-$i" >/dev/null; t1=$(now_ns)
    before_ms+=("$(( (t1 - t0) / 1000 ))e-3")
    "$BEFORE" cleanup -q --force --delete-branch "before-$i" >/dev/null
  fi
done
g=$(median "${git_ms[@]}"); s=$(median "${iso_ms[@]}")
ratio=$(python3 -c "print(f'{$s/$g:.2f}')")

# ---- iso list --json with 200 threads ----------------------------------------
SMALL=$WORK/small
mkdir -p "$SMALL" && cd "$SMALL"
git init -q -b main && echo x > x && git add x && git -c user.name=b -c user.email=b@b commit -qm x
printf '[ports]\nbase = 46000\nblock_size = 10\n[threads]\nmax = 250\n' > iso.toml
names=(); for i in $(seq 1 200); do names+=("t$i"); done
"$ISO" init -q "${names[@]}" >/dev/null
count=$("$ISO" list --json | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))')
list_ms=()
for i in $(seq 1 50); do
  t0=$(now_ns); "$ISO" list --json >/dev/null; t1=$(now_ns)
  list_ms+=("$(( (t1 - t0) / 1000 ))e-3")
done
l=$(median "${list_ms[@]}")
reg=$(du -k "$SMALL/.git/iso/registry.toml" | cut -f1)

printf '\n%-44s %10s\n' "benchmark (median of runs)" "ms"
printf '%-44s %10s\n' "git worktree add -b (5,000 files, $RUNS runs)" "$g"
printf '%-44s %10s\n' "iso init (5,000 files, $RUNS runs)" "$s"
printf '%-44s %10s\n' "  ratio iso/git (goal <= 1.20)" "$ratio"
if [ -n "$BEFORE" ]; then
  b=$(median "${before_ms[@]}")
  printf '%-44s %10s\n' "older iso init ($ISO_BEFORE)" "$b"
  printf '%-44s %10s\n' "  ratio older/git" "$(python3 -c "print(f'{$b/$g:.2f}')")"
  printf '%-44s %10s\n' "  ratio iso/older (goal <= 1.10)" "$(python3 -c "print(f'{$s/$b:.2f}')")"
fi
printf '%-44s %10s\n' "iso list --json, $count threads (50 runs)" "$l"
printf '%-44s %10s\n' "  registry size (KiB)" "$reg"
