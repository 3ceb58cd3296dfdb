#!/usr/bin/env bash
# Benchmark: `GET /api/threads` of `iso serve` with N (default 200) threads,
# against `GET /api/health` of the same server in the same run: requests
# per second, p99 latency and their ratio, measured with wrk on loopback
# only, for a bounded time. Goal: threads >= 0.1 x health.
#
# Makes a temporary repository, starts `iso serve --bind 127.0.0.1:0` with a
# random token, creates the N threads through the API (POST /api/threads,
# 50 names per request; real worktrees), then runs
#   wrk -t$THREADS -c$CONNS -d$DURATION --latency  GET /api/threads
# then the same for GET /api/health, and prints the response size,
# requests/s, the latency percentiles and threads/health.
#
# Env: N (threads), DURATION (default 10s, at most 60s), CONNS (default 8),
# THREADS (wrk threads, default 2), ISO_BIN (default: `cargo build --release
# --bin iso` and target/release/iso, the binary users install).
# Needs wrk (Debian: apt-get install -y wrk) and curl.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

N=${N:-200}
DURATION=${DURATION:-10s}
CONNS=${CONNS:-8}
THREADS=${THREADS:-2}
die() { printf 'api-threads: %s\n' "$*" >&2; exit 1; }
command -v wrk >/dev/null || die "wrk is not installed (Debian: apt-get install -y wrk)"
command -v curl >/dev/null || die "curl is not installed"
secs=${DURATION%s}
[[ $secs =~ ^[0-9]+$ && $secs -ge 1 && $secs -le 60 ]] || die "DURATION must be 1s..60s"

ISO=${ISO_BIN:-}
if [[ -z $ISO ]]; then
  cargo build --release --locked --bin iso --quiet
  ISO=$PWD/target/release/iso
fi
[[ -x $ISO ]] || die "no iso binary at $ISO"

tmp=$(mktemp -d)
pid=
cleanup() {
  [[ -n $pid ]] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null || true
  rm -rf "$tmp"
}
trap cleanup EXIT

repo=$tmp/app
mkdir -p "$repo" && cd "$repo"
git init -q -b main
printf '# bench\n' > README.md
printf '[ports]\nbase = 45000\nblock_size = 10\n[threads]\nmax = %d\n' "$((N + 20))" > iso.toml
git add . && git -c user.name=bench -c user.email=bench@example.invalid commit -q -m initial

token=bench-$RANDOM$RANDOM$RANDOM
ISO_API_TOKEN=$token ISO_USER_CONFIG= NO_COLOR=1 "$ISO" serve --bind 127.0.0.1:0 > "$tmp/serve.out" 2> "$tmp/serve.err" &
pid=$!
for _ in $(seq 100); do grep -q '^listening on ' "$tmp/serve.out" 2>/dev/null && break; sleep 0.05; done
url=$(sed -n 's/^listening on //p' "$tmp/serve.out")
[[ $url == http://127.0.0.1:* ]] || die "server did not start: $(cat "$tmp/serve.err")"

start=$(date +%s.%N)
i=0
while (( i < N )); do
  names=
  for (( j = 0; j < 50 && i < N; j++, i++ )); do names+="${names:+,}\"t$i\""; done
  code=$(curl -s -o "$tmp/create.json" -w '%{http_code}' -H "Authorization: Bearer $token" \
    -H 'content-type: application/json' -d "{\"names\": [$names], \"no_services\": true}" "$url/api/threads")
  [[ $code == 201 ]] || die "creating threads: HTTP $code $(head -c 300 "$tmp/create.json")"
done
created=$(awk "BEGIN { printf \"%.1f\", $(date +%s.%N) - $start }")
bytes=$(curl -s -H "Authorization: Bearer $token" "$url/api/threads" | wc -c)
count=$(curl -s -H "Authorization: Bearer $token" "$url/api/threads" | grep -o '"env_file"' | wc -l)
[[ $count == "$N" ]] || die "expected $N threads, the API lists $count"
echo "created $N threads through the API in ${created}s; GET /api/threads is $bytes bytes"

measure() { # measure NAME PATH: wrk against PATH, prints its lines, sets rps_NAME and p99_NAME
  wrk -t"$THREADS" -c"$CONNS" -d"$DURATION" --latency -H "Authorization: Bearer $token" "$url$2" | tee "$tmp/wrk-$1.out"
  non2xx=$(awk '/Non-2xx/ { print $NF }' "$tmp/wrk-$1.out")
  [[ -z $non2xx ]] || die "$2: $non2xx answers were not 2xx"
  printf -v "rps_$1" '%s' "$(awk '/^Requests\/sec/ { print $2 }' "$tmp/wrk-$1.out")"
  printf -v "p99_$1" '%s' "$(awk '$1 == "99%" { print $2 }' "$tmp/wrk-$1.out")"
}
measure threads /api/threads
measure health /api/health
ratio=$(awk "BEGIN { printf \"%.3f\", $rps_threads / $rps_health }")
echo "RESULT threads=$N conns=$CONNS duration=$DURATION bytes=$bytes threads_req/s=$rps_threads threads_p99=$p99_threads health_req/s=$rps_health health_p99=$p99_health ratio=$ratio"
