#!/usr/bin/env bash
# Benchmark for per-thread Docker stacks (issue 3), side by side in one run:
#   1. `iso init` of a Postgres + Redis + API stack against
#      `docker-compose -p X up -d` of the same stack (same images, commands,
#      ports, volume, network; the API depends on Postgres and Redis being
#      healthy in both, checked every 100 ms by iso and every 1 s, Docker's
#      smallest sensible interval, by compose);
#   2. `iso cleanup` against `docker-compose -p X down -v`.
# Goal: iso at most 0.7x compose's time for both. Uses the local test images
# (.ci/install-deps) and a release build of iso (or ISO_BIN). Prints medians
# in ms.
#
#   bash benches/docker-stack.sh [runs]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source benches/lib.sh
RUNS=${1:-7}
docker info >/dev/null 2>&1 || { echo "no Docker engine: run bash .ci/install-deps" >&2; exit 1; }
command -v docker-compose >/dev/null || { echo "docker-compose missing: run bash .ci/install-deps" >&2; exit 1; }
ISO=$(iso_bin)
WORK=$(mktemp -d /tmp/iso-bench-docker.XXXXXX)
LABEL=iso.test=1
cleanup() {
  docker_rm_labelled iso.bench=1
  rm -rf "$WORK"
}
trap cleanup EXIT
export ISO_USER_CONFIG= NO_COLOR=1

REPO=$WORK/app
mkdir -p "$REPO" && cd "$REPO"
git init -q -b main
echo "# app" > README.md
cat > iso.toml <<'EOF'
[ports]
base = 46000

[docker]
labels = { "iso.test" = "1", "iso.bench" = "1" }
name = "isobench"
stop_timeout = 10

[services.postgres]
image = "iso-test/pg-redis:1"
command = ["iso-postgres"]
port = 5432
environment = { POSTGRES_DB = "app" }
volumes = ["pgdata:/var/lib/iso-pg"]
healthcheck = { command = ["pg_isready", "-U", "postgres", "-h", "127.0.0.1", "-q"] }
export = { DATABASE_URL = "postgresql://postgres@{{ host }}:{{ port }}/app" }

[services.redis]
image = "iso-test/pg-redis:1"
command = ["iso-redis"]
port = 6379
healthcheck = { command = ["redis-cli", "ping"] }
export = { REDIS_URL = "redis://{{ host }}:{{ port }}" }

[services.api]
image = "iso-test/busybox:1"
command = ["busybox", "httpd", "-f", "-p", "8080", "-h", "/www"]
port = 8080
depends_on = ["postgres", "redis"]
healthcheck = { http = "/" }
export = { API_URL = "http://{{ host }}:{{ port }}" }
EOF
git add -A && git -c user.name=b -c user.email=b@b commit -qm init

# The same stack for docker-compose 1.29 (own ports, own project per run).
compose_file() { # compose_file PORT_BASE
  local b=$1
  cat <<EOF
version: "2.4"
services:
  postgres:
    image: iso-test/pg-redis:1
    command: ["iso-postgres"]
    environment: { POSTGRES_DB: app }
    ports: ["127.0.0.1:$((b + 0)):5432"]
    volumes: ["pgdata:/var/lib/iso-pg"]
    init: true
    labels: { iso.test: "1", iso.bench: "1" }
    healthcheck: { test: ["CMD", "pg_isready", "-U", "postgres", "-h", "127.0.0.1", "-q"], interval: 1s, retries: 120 }
  redis:
    image: iso-test/pg-redis:1
    command: ["iso-redis"]
    ports: ["127.0.0.1:$((b + 1)):6379"]
    init: true
    labels: { iso.test: "1", iso.bench: "1" }
    healthcheck: { test: ["CMD", "redis-cli", "ping"], interval: 1s, retries: 120 }
  api:
    image: iso-test/busybox:1
    command: ["busybox", "httpd", "-f", "-p", "8080", "-h", "/www"]
    ports: ["127.0.0.1:$((b + 2)):8080"]
    init: true
    labels: { iso.test: "1", iso.bench: "1" }
    depends_on:
      postgres: { condition: service_healthy }
      redis: { condition: service_healthy }
volumes:
  pgdata: { labels: { iso.test: "1", iso.bench: "1" } }
networks:
  default: { labels: { iso.test: "1", iso.bench: "1" } }
EOF
}

wait_http() { # compose's `up -d` returns when api is started; iso's init when healthy
  local port=$1 t=$SECONDS
  until curl -fs -o /dev/null "http://127.0.0.1:$port/"; do ((SECONDS - t < 60)) || return 1; sleep 0.05; done
}

iso_up=(); iso_down=(); c_up=(); c_down=(); c_up_ready=()
for i in $(seq 1 "$RUNS"); do
  # iso (alternating order would not change much: both are cold for Postgres's initdb each run)
  t0=$(now_ns); "$ISO" -q init "run$i" >/dev/null; t1=$(now_ns)
  iso_up+=("$(ms "$t0" "$t1")")
  id=$("$ISO" list --json | python3 -c 'import json,sys; print(max(t["id"] for t in json.load(sys.stdin)))')
  t0=$(now_ns); "$ISO" -q cleanup "$id" --force >/dev/null; t1=$(now_ns)
  iso_down+=("$(ms "$t0" "$t1")")

  dir=$WORK/compose$i && mkdir -p "$dir"
  compose_file $((47000 + i * 10)) > "$dir/docker-compose.yml"
  t0=$(now_ns); docker-compose -p "isobench$i" -f "$dir/docker-compose.yml" up -d >/dev/null 2>&1; t1=$(now_ns)
  wait_http $((47000 + i * 10 + 2)); t2=$(now_ns)
  c_up+=("$(ms "$t0" "$t1")"); c_up_ready+=("$(ms "$t0" "$t2")")
  t0=$(now_ns); docker-compose -p "isobench$i" -f "$dir/docker-compose.yml" down -v >/dev/null 2>&1; t1=$(now_ns)
  c_down+=("$(ms "$t0" "$t1")")
  echo "run $i: iso init ${iso_up[-1]} ms, cleanup ${iso_down[-1]} ms | compose up -d ${c_up[-1]} ms, down -v ${c_down[-1]} ms" >&2
done

up_iso=$(median "${iso_up[@]}"); up_c=$(median "${c_up[@]}"); up_cr=$(median "${c_up_ready[@]}")
down_iso=$(median "${iso_down[@]}"); down_c=$(median "${c_down[@]}")
echo
echo "Postgres + Redis + API stack, $RUNS runs, medians (ms)"
printf '%-46s %8s %8s %8s\n' "operation" "iso" "compose" "iso/compose"
printf '%-46s %8s %8s %8s\n' "start (iso init vs docker-compose up -d)" "$up_iso" "$up_c" "$(ratio "$up_iso" "$up_c")"
printf '%-46s %8s %8s %8s\n' "  compose up -d until the API answers" "" "$up_cr" "$(ratio "$up_iso" "$up_cr")"
printf '%-46s %8s %8s %8s\n' "remove (iso cleanup vs docker-compose down -v)" "$down_iso" "$down_c" "$(ratio "$down_iso" "$down_c")"
echo "(iso init also creates the worktree, branch, port block and .env.thread; goal: <= 0.70x)"
