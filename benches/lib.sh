# Shared by the benchmark scripts: `source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"`.
# Timing, medians, ratios, the iso binary under test and the removal of what
# a run left on the Docker engine, so every script measures the same way.

now_ns() { date +%s%N; }
# ms T0 T1: milliseconds between two now_ns readings.
ms() { echo $((($2 - $1) / 1000000)); }
# median V...: the median, with MEDIAN_DIGITS decimals (default 0).
median() { python3 -c 'import sys,statistics; v=[float(x) for x in sys.argv[2:]]; print(f"{statistics.median(v):.{int(sys.argv[1])}f}")' "${MEDIAN_DIGITS:-0}" "$@"; }
# ratio A B: A/B as "0.42x".
ratio() { python3 -c 'import sys; print(f"{float(sys.argv[1])/float(sys.argv[2]):.2f}x")' "$1" "$2"; }

# iso_bin: the iso under test, $ISO_BIN or a release build made now.
iso_bin() {
  if [[ -n ${ISO_BIN:-} ]]; then
    echo "$ISO_BIN"
  else
    cargo build --release -q -p iso --bin iso >&2
    echo "$PWD/target/release/iso"
  fi
}

# docker_rm_labelled LABEL=VALUE: removes the containers (with their
# anonymous volumes), volumes and networks that carry the label.
docker_rm_labelled() {
  docker ps -aq --filter "label=$1" | xargs -r docker rm -f -v >/dev/null 2>&1 || true
  docker volume ls -q --filter "label=$1" | xargs -r docker volume rm -f >/dev/null 2>&1 || true
  docker network ls -q --filter "label=$1" | xargs -r docker network rm >/dev/null 2>&1 || true
}
