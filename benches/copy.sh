#!/usr/bin/env bash
# Benchmark for fast copies of untracked folders (issue 15, item 4), side by
# side in one run: `iso init` of a repository whose `threads.copy` holds a
# generated node_modules-like tree of 50,000 files, against `cp -a` and
# `cp -a --reflink=always` of the same tree, on the default filesystem (under
# BENCH_DIR, default /tmp) and, as root with xfsprogs, on a loop-mounted XFS
# made with `mkfs.xfs -m reflink=1`. Prints milliseconds, MB/s of data
# copied and iso's ratio to each alternative.
#
#   bash benches/copy.sh                     (release build of iso)
#   ISO_BIN=target/debug/iso bash benches/copy.sh
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
FILES=${FILES:-50000}
if [ -z "${ISO_BIN:-}" ]; then
  cargo build --release -q -p iso --bin iso
  ISO=$PWD/target/release/iso
else
  ISO=$(realpath "$ISO_BIN")
fi
WORK=$(mktemp -d "${BENCH_DIR:-/tmp}/iso-bench-copy.XXXXXX")
MNT=$WORK/xfs
cleanup() {
  mountpoint -q "$MNT" 2>/dev/null && umount "$MNT"
  rm -rf "$WORK"
}
trap cleanup EXIT
export ISO_USER_CONFIG= NO_COLOR=1 ISO_STATE_DIR=$WORK/state

now_ns() { date +%s%N; }
ms() { echo $(( ($2 - $1) / 1000000 )); }
mbs() { python3 -c "import sys; b,ms=int(sys.argv[1]),int(sys.argv[2]); print(f'{b/1e6/(ms/1e3):.0f}' if ms else 'inf')" "$1" "$2"; }
ratio() { python3 -c "import sys; a,b=float(sys.argv[1]),float(sys.argv[2]); print(f'{a/b:.2f}x' if b else 'n/a')" "$1" "$2"; }

# A repository with a node_modules of $FILES files: packages of 20 files
# (js, json, a few executables and .bin links), 0.2-16 KB each.
make_repo() {
  local repo=$1
  mkdir -p "$repo" && cd "$repo"
  git init -q -b main
  printf '[ports]\nbase = 46000\nblock_size = 10\n[threads]\nmax = 3\ncopy = ["node_modules"]\n' > iso.toml
  printf 'node_modules/\n' > .gitignore
  echo '{"name": "app"}' > package.json
  git add -A && git -c user.name=b -c user.email=b@b commit -qm app
  FILES=$FILES python3 - <<'PY'
import os, random
random.seed(15)
n = int(os.environ["FILES"])
os.makedirs("node_modules/.bin")
for p in range(n // 20):
    d = f"node_modules/pkg{p:05d}"
    os.makedirs(f"{d}/lib")
    for f in range(19):
        path = f"{d}/package.json" if f == 0 else f"{d}/lib/m{f:02d}.js"
        with open(path, "wb") as fh:
            fh.write(random.randbytes(random.choice([200, 800, 2000, 4000, 16000])))
        if f == 1:
            os.chmod(path, 0o755)
            os.symlink(f"../pkg{p:05d}/lib/m01.js", f"node_modules/.bin/pkg{p:05d}")
PY
  cd - >/dev/null
}

bench() {
  local where=$1 dir=$2
  local repo=$dir/app
  make_repo "$repo"
  local bytes files
  bytes=$(du -sb --apparent-size "$repo/node_modules" | cut -f1)
  files=$(find "$repo/node_modules" | wc -l)
  sync
  local t0 t1 cp_ms rl_ms iso_ms
  t0=$(now_ns); cp -a "$repo/node_modules" "$dir/cp-a"; t1=$(now_ns); cp_ms=$(ms "$t0" "$t1")
  sync
  if t0=$(now_ns) && cp -a --reflink=always "$repo/node_modules" "$dir/cp-reflink" 2>/dev/null; then
    t1=$(now_ns); rl_ms=$(ms "$t0" "$t1")
  else
    rl_ms=
  fi
  sync
  t0=$(now_ns); (cd "$repo" && "$ISO" init -q bench --no-services >/dev/null); t1=$(now_ns); iso_ms=$(ms "$t0" "$t1")
  local copied
  copied=$(find "$repo/.worktrees/thread-1/node_modules" | wc -l)
  [ "$copied" = "$files" ] || { echo "iso copied $copied of $files entries" >&2; exit 1; }
  echo "$where: node_modules of $files entries, $((bytes / 1000000)) MB"
  printf '  %-28s %7s ms  %6s MB/s\n' "cp -a" "$cp_ms" "$(mbs "$bytes" "$cp_ms")"
  if [ -n "$rl_ms" ]; then
    printf '  %-28s %7s ms  %6s MB/s\n' "cp -a --reflink=always" "$rl_ms" "$(mbs "$bytes" "$rl_ms")"
  else
    printf '  %-28s %7s\n' "cp -a --reflink=always" "not supported here"
  fi
  printf '  %-28s %7s ms  %6s MB/s   %s of cp -a%s\n' "iso init (threads.copy)" "$iso_ms" "$(mbs "$bytes" "$iso_ms")" "$(ratio "$iso_ms" "$cp_ms")" \
    "${rl_ms:+, $(ratio "$iso_ms" "$rl_ms") of cp --reflink}"
  (cd "$repo" && "$ISO" cleanup -q --force bench >/dev/null)
}

echo "iso: $ISO; $(nproc) cores"
mkdir -p "$WORK/default"
bench "default filesystem ($(stat -f -c %T "$WORK"))" "$WORK/default"
if [ "$(id -u)" = 0 ] && command -v mkfs.xfs >/dev/null; then
  truncate -s 3G "$WORK/xfs.img"
  mkfs.xfs -q -m reflink=1 "$WORK/xfs.img"
  mkdir -p "$MNT" && mount -o loop "$WORK/xfs.img" "$MNT"
  bench "loop XFS (reflink=1)" "$MNT"
else
  echo "loop XFS: skipped (needs root and mkfs.xfs from xfsprogs)"
fi
