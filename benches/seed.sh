#!/usr/bin/env bash
# Benchmark for seeding a thread's volumes (issue 14), side by side in one run,
# with a Postgres database of about 1 GB (pgbench -i -s 70) in thread 1:
#   1. `iso init seeded --seed-from 1` to healthy (the copy of the volume and
#      the start of the new thread's Postgres, source paused meanwhile, threads.seed_hold);
#   2. a fresh thread (`iso init fresh --no-seed`, to healthy) and then
#      `pg_dump -Fc | pg_restore` of the database into it: what teams do by hand;
#   3. `CREATE DATABASE copy TEMPLATE app` inside thread 1's server (one
#      server only, Postgres only; no new thread).
# On the default engine, and, when run as root with mkfs.xfs, again on a
# second dockerd whose data root is a loop-mounted XFS with reflinks (its own
# socket, exec root, pid file, address pool; no iptables), where the copy is
# a clone. Goals: seed at most 0.2x dump/restore; at most 3 s for 1 GB with
# reflinks. Uses the local test image iso-test/pg-redis:1 and a release build.
#
#   bash benches/seed.sh [scale] [runs]   (pgbench scale, default 70 = ~1 GB; runs of each, default 3)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
SCALE=${1:-70}
RUNS=${2:-3}
docker info >/dev/null 2>&1 || { echo "no Docker engine: run bash .ci/install-deps" >&2; exit 1; }
for c in pgbench pg_dump pg_restore psql; do command -v $c >/dev/null || { echo "$c missing (apt-get install postgresql-client)" >&2; exit 1; }; done
source benches/lib.sh
ISO=$(iso_bin)
WORK=$(mktemp -d /tmp/iso-bench-seed.XXXXXX)
DOCKERD_PID=
cleanup() {
  for h in "" ${XFS_HOST:+"$XFS_HOST"}; do DOCKER_HOST=$h docker_rm_labelled iso.bench=1; done
  if [ -n "$DOCKERD_PID" ]; then kill "$DOCKERD_PID" 2>/dev/null || true; for _ in $(seq 300); do kill -0 "$DOCKERD_PID" 2>/dev/null || break; sleep 0.1; done; kill -9 "$DOCKERD_PID" 2>/dev/null || true; fi
  mountpoint -q "$WORK/mnt" 2>/dev/null && { umount "$WORK/mnt" || umount -l "$WORK/mnt"; }
  rm -rf "$WORK"
}
trap cleanup EXIT
export ISO_USER_CONFIG= NO_COLOR=1

secs() { python3 -c "print(f'{($2 - $1) / 1e9:.2f}')"; }
mbps() { python3 -c "print(f'{$1 / 1e6 / $2:.0f}')"; }

mkrepo() { # mkrepo DIR PORT_BASE: a repository with a Postgres stack
  REPO=$1
  mkdir -p "$REPO" && cd "$REPO"
  git init -q -b main
  echo "# app" > README.md
  cat > iso.toml <<EOF
[threads]
max = 4

[ports]
base = $2
block_size = 10

[docker]
labels = { "iso.test" = "1", "iso.bench" = "1" }
name = "isoseed"
stop_timeout = 30
health_timeout = 300

[services.postgres]
image = "iso-test/pg-redis:1"
command = ["iso-postgres"]
port = 5432
environment = { POSTGRES_DB = "app" }
volumes = ["pgdata:/var/lib/iso-pg"]
healthcheck = { command = ["pg_isready", "-U", "postgres", "-h", "127.0.0.1", "-q"] }
export = { DATABASE_URL = "postgresql://postgres@{{ host }}:{{ port }}/app" }
EOF
  git add -A && git -c user.name=b -c user.email=b@b commit -qm init
}

url() { sed -n 's/^DATABASE_URL=//p' "$REPO/.worktrees/thread-$1/.env.thread" | tr -d "'\""; }

run() { # run LABEL: the three ways on the engine DOCKER_HOST points at
  local label=$1
  "$ISO" -q init source >/dev/null
  local src; src=$(url 1)
  pgbench -q -i -s "$SCALE" "$src" >"$WORK/pgbench.log" 2>&1 || { cat "$WORK/pgbench.log" >&2; exit 1; }
  psql "$src" -qAtc "checkpoint" >/dev/null
  # The test image runs Postgres with fsync=off: without this the load's 2 GB
  # would still be dirty in the page cache, and whichever way copies first
  # would pay for its writeback. A database that has been running has
  # written its pages back.
  sync
  local bytes; bytes=$(psql "$src" -Atc "select pg_database_size('app')")
  local rows; rows=$(psql "$src" -Atc "select count(*) from pgbench_accounts")

  # RUNS of each way, the median reported: the first allocations of page
  # cache on a fresh VM are slower than later ones, whichever way runs.
  local i t0 t1 hw held_how seeds=() dumps=() tmpls=() helds=() path how=wal_log
  for i in $(seq "$RUNS"); do
    t0=$(now_ns); "$ISO" init seeded --seed-from 1 >/dev/null 2>"$WORK/seed.err"; t1=$(now_ns)
    [ "$(psql "$(url 2)" -Atc 'select count(*) from pgbench_accounts')" = "$rows" ] || { echo "seeded thread lacks the rows" >&2; exit 1; }
    path=$(grep -o 'MB, [a-z ]*,' "$WORK/seed.err" | head -1 | sed 's/MB, //; s/,$//')
    hw=$(grep -oE '(paused|stopped) for [0-9]+ ms' "$WORK/seed.err" || echo "? for ? ms")
    held_how=${hw%% *}; helds+=("$(echo "$hw" | cut -d' ' -f3)")
    seeds+=("$(secs "$t0" "$t1")")
    "$ISO" -q cleanup seeded --force >/dev/null

    t0=$(now_ns); "$ISO" -q init fresh --no-seed >/dev/null
    pg_dump -Fc "$src" | pg_restore -d "$(url 2)" --no-owner; t1=$(now_ns)
    [ "$(psql "$(url 2)" -Atc 'select count(*) from pgbench_accounts')" = "$rows" ] || { echo "restored thread lacks the rows" >&2; exit 1; }
    dumps+=("$(secs "$t0" "$t1")")
    "$ISO" -q cleanup fresh --force >/dev/null

    # Postgres 15's default strategy (WAL_LOG) failed once here with "buffer is
    # pinned in InvalidateBuffer"; FILE_COPY (a checkpoint and a file copy) then.
    t0=$(now_ns)
    if ! psql "${src%/app}/postgres" -qc "create database copy template app" >/dev/null; then
      how=file_copy; t0=$(now_ns); psql "${src%/app}/postgres" -qc "create database copy template app strategy file_copy" >/dev/null
    fi
    t1=$(now_ns)
    tmpls+=("$(secs "$t0" "$t1")")
    psql "${src%/app}/postgres" -qc "drop database copy" >/dev/null
  done

  local seed dump tmpl
  MEDIAN_DIGITS=2
  seed=$(median "${seeds[@]}"); dump=$(median "${dumps[@]}"); tmpl=$(median "${tmpls[@]}")
  echo "$label: database $((bytes / 1000000)) MB ($rows rows), median of $RUNS runs (each: ${seeds[*]} / ${dumps[*]} / ${tmpls[*]} s)"
  echo "  iso init --seed-from 1 (to healthy): ${seed} s  ($(mbps "$bytes" "$seed") MB/s, copy path: $path, source $held_how ${helds[*]} ms)"
  echo "  fresh thread + pg_dump | pg_restore: ${dump} s  ($(mbps "$bytes" "$dump") MB/s)"
  echo "  CREATE DATABASE ... TEMPLATE:        ${tmpl} s  ($(mbps "$bytes" "$tmpl") MB/s, same server only, strategy $how)"
  echo "  seed / dump-restore: $(ratio "$seed" "$dump") (goal <= 0.2x); seed / template: $(ratio "$seed" "$tmpl")"
  "$ISO" -q cleanup 1 --force >/dev/null
}

# SEED_BENCH_WARM=1: first touch (and free) most of the free memory. In a VM
# whose RAM the host backs on first touch (Firecracker here: 390 MB/s, 36 s
# for 14 GiB), every new page of page cache costs a host fault, so on a fresh
# VM a 2 GB copy runs at that speed rather than memcpy's; on a machine that
# has been up for a while (or bare metal) there is no such cost.
if [ "${SEED_BENCH_WARM:-0}" = 1 ]; then
  python3 -c '
import mmap
n = int(open("/proc/meminfo").read().split("MemFree:")[1].split()[0]) * 1024 * 8 // 10 // 4096 * 4096
m = mmap.mmap(-1, n)
for off in range(0, n, 4096): m[off] = 1
print(f"warmed {n >> 30} GiB of free memory")'
fi

ENGINES=${SEED_BENCH_ENGINES:-default xfs}   # which runs to make
if [[ $ENGINES == *default* ]]; then
mkrepo "$WORK/app" 47000
run "default engine ($(docker info --format '{{.Driver}}') on $(stat -f -c %T "$(docker info --format '{{.DockerRootDir}}')"))"

fi
if [[ $ENGINES != *xfs* ]]; then
  :
elif [ "$(id -u)" = 0 ] && command -v mkfs.xfs >/dev/null; then
  truncate -s 16G "$WORK/xfs.img"
  mkfs.xfs -q -m reflink=1 "$WORK/xfs.img"
  mkdir -p "$WORK/mnt" && mount -o loop "$WORK/xfs.img" "$WORK/mnt"
  XFS_HOST=unix://$WORK/d.sock
  dockerd --data-root "$WORK/mnt/docker" --exec-root "$WORK/exec" --pidfile "$WORK/dockerd.pid" -H "$XFS_HOST" \
    --bridge=none --iptables=false --ip-masq=false --default-address-pool base=10.213.0.0/16,size=24 >"$WORK/dockerd.log" 2>&1 &
  DOCKERD_PID=$!
  until DOCKER_HOST=$XFS_HOST docker info >/dev/null 2>&1; do sleep 0.2; done
  docker save iso-test/pg-redis:1 | DOCKER_HOST=$XFS_HOST docker load -q >/dev/null
  export DOCKER_HOST=$XFS_HOST
  mkrepo "$WORK/app2" 47100
  run "second dockerd on loop XFS (reflink=1)"
else
  echo "reflink run skipped: needs root and mkfs.xfs (xfsprogs)"
fi
