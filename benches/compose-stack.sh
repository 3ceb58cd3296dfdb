#!/usr/bin/env bash
# Benchmark for a team's unchanged Compose project per thread (issue 13),
# side by side in one run, against the reference Compose v2:
#   1. `iso init` (the thread's worktree, ports, .env.thread and the stack,
#      every service healthy and its published ports accepting connections)
#      against `docker compose -p X up -d --wait` of the same project;
#   2. `iso cleanup` against `docker compose -p X down -v`.
# The project: compose.yml + compose.override.yml (published ports) + .env,
# Postgres + Redis (the local test image) and an HTTP API (busybox httpd)
# that depends on both being healthy; every healthcheck has a realistic
# `interval: 5s`. Compose (on Engine 20.10, no start_interval) sees the first
# result only after one interval; iso runs the same check itself every
# 100 ms while a service starts, so the interval does not delay it.
#
#   bash benches/compose-stack.sh [runs]      (default 5)
# Env: ISO_BIN (default: a release build of iso); KEEP=1 keeps the work
# directory and what is left in it (to look at a run afterwards).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source benches/lib.sh
RUNS=${1:-5}
docker info >/dev/null 2>&1 || { echo "no Docker engine: run bash .ci/install-deps" >&2; exit 1; }
docker compose version --short 2>/dev/null | grep -q '^2' || { echo "Compose v2 missing: run bash .ci/install-deps" >&2; exit 1; }
ISO=$(iso_bin)
WORK=$(mktemp -d /tmp/iso-bench-compose.XXXXXX)
cleanup() {
  docker_rm_labelled iso.bench=compose
  rm -rf "$WORK"
}
trap cleanup EXIT
[[ -n ${KEEP:-} ]] && trap - EXIT
export ISO_USER_CONFIG= NO_COLOR=1

REPO=$WORK/app
mkdir -p "$REPO" && cd "$REPO"
git init -q -b main
echo "# app" > README.md
cat > compose.yml <<'EOF'
services:
  db:
    image: iso-test/pg-redis:1
    command: ["iso-postgres"]
    environment:
      POSTGRES_DB: ${POSTGRES_DB:?Variable not set}
    volumes: ["pgdata:/var/lib/iso-pg"]
    init: true
    labels: { iso.bench: compose }
    healthcheck:
      test: ["CMD", "pg_isready", "-U", "postgres", "-h", "127.0.0.1", "-q"]
      interval: 5s
      retries: 30
  redis:
    image: iso-test/pg-redis:1
    command: ["iso-redis"]
    init: true
    labels: { iso.bench: compose }
    healthcheck:
      test: ["CMD", "redis-cli", "ping"]
      interval: 5s
      retries: 30
  api:
    image: iso-test/busybox:1
    command: ["busybox", "httpd", "-f", "-p", "8080", "-h", "/www"]
    init: true
    labels: { iso.bench: compose }
    environment:
      DATABASE_URL: postgresql://postgres@db:5432/${POSTGRES_DB}
      SECRET_KEY: ${SECRET_KEY:?Variable not set}
    depends_on:
      db: { condition: service_healthy }
      redis: { condition: service_healthy }
    healthcheck:
      test: ["CMD", "busybox", "wget", "-q", "-O", "/dev/null", "http://127.0.0.1:8080/"]
      interval: 5s
      retries: 30
volumes:
  pgdata:
    labels: { iso.bench: compose }
networks:
  default:
    labels: { iso.bench: compose }
EOF
# Published ports: Compose's own (one window per run); iso moves them into
# each thread's block.
override() { # override PORT_BASE
  cat <<EOF
services:
  db: { ports: ["127.0.0.1:$(($1 + 0)):5432"] }
  redis: { ports: ["127.0.0.1:$(($1 + 1)):6379"] }
  api: { ports: ["127.0.0.1:$(($1 + 2)):8080"] }
EOF
}
override 46500 > compose.override.yml
printf 'POSTGRES_DB=app\nSECRET_KEY=changethis\n' > .env
cat > iso.toml <<'EOF'
[ports]
base = 46000

[docker]
labels = { "iso.test" = "1", "iso.bench" = "compose" }
name = "isobenchc"

[compose]
slots = { db = "postgres", redis = "redis", api = "api" }
export = { DATABASE_URL = "postgresql://postgres@{{ host }}:{{ ports.postgres }}/app" }
EOF
printf '.env\n' > .gitignore
git add -A && git -c user.name=b -c user.email=b@b commit -qm init

iso_up=(); iso_down=(); c_up=(); c_down=()
for i in $(seq 1 "$RUNS"); do
  t0=$(now_ns); "$ISO" -q init "run$i" >/dev/null; t1=$(now_ns)
  iso_up+=("$(ms "$t0" "$t1")")
  id=$("$ISO" list --json | python3 -c 'import json,sys; print(max(t["id"] for t in json.load(sys.stdin)))')
  url=$(sed -n 's/^DATABASE_URL=//p' ".worktrees/thread-$id/.env.thread" | tr -d '"')
  psql "$url" -Atc 'select 1' >/dev/null || { echo "iso: the database does not answer right after init" >&2; exit 1; }
  t0=$(now_ns); "$ISO" -q cleanup "$id" --force >/dev/null; t1=$(now_ns)
  iso_down+=("$(ms "$t0" "$t1")")

  dir=$WORK/compose$i && mkdir -p "$dir"
  cp compose.yml .env "$dir/" && override $((47000 + i * 10)) > "$dir/compose.override.yml"
  t0=$(now_ns); docker compose --project-directory "$dir" -p "isobenchc$i" up -d --wait >/dev/null 2>&1; t1=$(now_ns)
  c_up+=("$(ms "$t0" "$t1")")
  t0=$(now_ns); docker compose --project-directory "$dir" -p "isobenchc$i" down -v >/dev/null 2>&1; t1=$(now_ns)
  c_down+=("$(ms "$t0" "$t1")")
  echo "run $i: iso init ${iso_up[-1]} ms, cleanup ${iso_down[-1]} ms | compose up -d --wait ${c_up[-1]} ms, down -v ${c_down[-1]} ms" >&2
done

up_iso=$(median "${iso_up[@]}"); up_c=$(median "${c_up[@]}")
down_iso=$(median "${iso_down[@]}"); down_c=$(median "${c_down[@]}")
echo
echo "Compose project (Postgres + Redis + API, healthcheck interval 5s), $RUNS runs, medians (ms), Compose $(docker compose version --short)"
printf '%-52s %8s %8s %8s\n' "operation" "iso" "compose" "iso/compose"
printf '%-52s %8s %8s %8s\n' "start (iso init vs docker compose up -d --wait)" "$up_iso" "$up_c" "$(ratio "$up_iso" "$up_c")"
printf '%-52s %8s %8s %8s\n' "remove (iso cleanup vs docker compose down -v)" "$down_iso" "$down_c" "$(ratio "$down_iso" "$down_c")"
echo "(iso init also creates the worktree, branch, port block and .env.thread)"
