#!/usr/bin/env bash
# Benchmark for threads across repositories (issue 15, item 3), side by side
# in one run: `iso init` + `iso cleanup` of one thread in a repository with a
# linked second repository ([repos]) against the same in a repository
# without one, and against two plain `git worktree add -b` + `git worktree
# remove` (one per repository). Both repositories have FILES tracked files
# (default 2,000). Median of RUNS rounds (default 5), milliseconds.
#
#   bash benches/repos.sh                    (release build of iso)
#   ISO_BIN=target/debug/iso bash benches/repos.sh
#   BENCH_DIR=/dev/shm RUNS=9 bash benches/repos.sh
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source benches/lib.sh
ISO=$(realpath "$(iso_bin)")
FILES=${FILES:-2000}
RUNS=${RUNS:-5}
WORK=$(mktemp -d "${BENCH_DIR:-/tmp}/iso-bench-repos.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
export ISO_USER_CONFIG= NO_COLOR=1 ISO_STATE_DIR=$WORK/state

# make_repo DIR TOML: a repository of $FILES files in 100 directories.
make_repo() {
  mkdir -p "$1" && cd "$1"
  git init -q -b main
  python3 -c '
import os, sys
for i in range(int(sys.argv[1])):
    d = f"src/d{i % 100:03d}"
    os.makedirs(d, exist_ok=True)
    open(f"{d}/f{i:05d}.txt", "w").write(f"file {i}\n" * 20)
' "$FILES"
  printf '%b' "$2" > iso.toml
  git add -A && git -c user.name=b -c user.email=b@b commit -qm init
  cd - >/dev/null
}

make_repo "$WORK/linked/app" '[ports]\nbase = 47000\nblock_size = 10\n[threads]\nmax = 3\n[repos]\nfrontend = "../frontend"\n'
make_repo "$WORK/linked/frontend" ''
make_repo "$WORK/single/app" '[ports]\nbase = 47100\nblock_size = 10\n[threads]\nmax = 3\n'
make_repo "$WORK/git/app" ''
make_repo "$WORK/git/frontend" ''

iso_round() {
  local t0 t1
  t0=$(now_ns)
  (cd "$1" && "$ISO" init bench >/dev/null && "$ISO" cleanup bench --delete-branch >/dev/null)
  t1=$(now_ns)
  ms "$t0" "$t1"
}

git_round() {
  local t0 t1
  t0=$(now_ns)
  for r in app frontend; do
    git -C "$WORK/git/$r" worktree add -q -b bench "$WORK/git/$r/.worktrees/thread-1"
  done
  for r in app frontend; do
    git -C "$WORK/git/$r" worktree remove "$WORK/git/$r/.worktrees/thread-1"
    git -C "$WORK/git/$r" branch -q -D bench
  done
  t1=$(now_ns)
  ms "$t0" "$t1"
}

two=() one=() plain=()
for _ in $(seq "$RUNS"); do
  two+=("$(iso_round "$WORK/linked/app")")
  one+=("$(iso_round "$WORK/single/app")")
  plain+=("$(git_round)")
done
m2=$(median "${two[@]}") m1=$(median "${one[@]}") mg=$(median "${plain[@]}")
echo "files per repository: $FILES, runs: $RUNS, in ${BENCH_DIR:-/tmp}"
echo "iso init + cleanup, 2 repositories ([repos]): ${m2} ms"
echo "iso init + cleanup, 1 repository:             ${m1} ms   (2 vs 1: $(ratio "$m2" "$m1"))"
echo "2x git worktree add -b + remove + branch -D:  ${mg} ms   (iso 2 repos vs git: $(ratio "$m2" "$mg"))"
