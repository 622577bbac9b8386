#!/usr/bin/env bash
# Compose smoke test: docker-compose.yml, unchanged, run with podman-compose.
#   default   the `faceid` service on 127.0.0.1:8000 (named gallery volume, API keys from the
#             environment): the README walk-through (scripts/smoke.sh) against it.
#   scale     the `scale` profile: PostgreSQL, two `faceid-replica` containers, nginx on
#             127.0.0.1:8080 with deploy/nginx.conf. An enrolment through the proxy is identified
#             by each replica (asked directly on its own address), and an erasure through the
#             proxy reaches both, as in tests/app/test_scale_out_pg.py.
#
#   scripts/compose-smoke.sh [--make-base] [default] [scale]      (both when neither is named)
#
#   --make-base   (or FACEID_LOCAL_BASE=1) for machines without an image registry: make the base
#                 images the Dockerfile and the compose file name (python, postgres, nginx) locally
#                 from Debian's packages (deploy/local-images/make-images.sh).
#
# podman-compose: Debian bookworm's 1.0.3 ignores `profiles` and mis-quotes CMD healthchecks, so
# this uses podman-compose $PODMAN_COMPOSE_VERSION from PyPI in its own virtualenv (under
# $FACEID_TOOLS_DIR, default /var/tmp/faceid-tools), or $PODMAN_COMPOSE when set.
# What podman on this machine cannot do, and how the script stands in (README, "Containers"):
#   - no systemd, so nothing runs podman's healthcheck timers: the script runs
#     `podman healthcheck run` on every container every few seconds while the project is up;
#   - podman < 4.6 cannot wait for `condition: service_healthy` (podman-compose warns and keeps
#     only the start order): the replicas wait for PostgreSQL by restarting
#     (`restart: unless-stopped`), and the script waits for every healthcheck to pass.
# It needs the ports the compose file publishes (8000, 8080 on 127.0.0.1) to be free.
# Knobs: PODMAN, PODMAN_RUNTIME (runc), HEALTH_TIMEOUT (seconds, 300), FACEID_CONTAINER_REPORT.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

PODMAN="${PODMAN:-podman}"
PODMAN_RUNTIME="${PODMAN_RUNTIME:-runc}"
PODMAN_COMPOSE_VERSION=1.6.0
TOOLS="${FACEID_TOOLS_DIR:-/var/tmp/faceid-tools}"
HEALTH_TIMEOUT="${HEALTH_TIMEOUT:-300}"
REPORT="${FACEID_CONTAINER_REPORT:-}"
LOCAL_BASE="${FACEID_LOCAL_BASE:-0}"
RUN_DEFAULT=0
RUN_SCALE=0
for arg in "$@"; do
  case "$arg" in
    --make-base) LOCAL_BASE=1 ;;
    default) RUN_DEFAULT=1 ;;
    scale) RUN_SCALE=1 ;;
    -h | --help) awk 'NR > 1 && !/^#/ {exit} NR > 1' "${BASH_SOURCE[0]}"; exit 0 ;;
    *) echo "compose-smoke: unknown argument $arg" >&2; exit 2 ;;
  esac
done
if ((RUN_DEFAULT + RUN_SCALE == 0)); then RUN_DEFAULT=1; RUN_SCALE=1; fi

T0=$SECONDS
PROJECT="faceidsmoke$$"
API_KEY="cmp-$RANDOM$RANDOM"
TICKER=""
UP=()
WORK="$(mktemp -d)"
DATA="$(cd .. && pwd)/shared/data/lfw/train"

step() { echo; echo "=== compose-smoke [$((SECONDS - T0))s] $*"; }
die() { echo "compose-smoke FAILED: $*" >&2; exit 1; }
load() { cut -d' ' -f1-3 /proc/loadavg; }
record() {
  echo "measure: $1=$2"
  if [[ -n "$REPORT" ]]; then echo "$1=$2" >>"$REPORT"; fi
}
containers() { "$PODMAN" ps -a --filter "label=io.podman.compose.project=$PROJECT" --format '{{.Names}}'; }
show_logs() {
  local c
  for c in $(containers); do
    echo "----- $c (last 40 lines) -----" >&2
    "$PODMAN" logs --tail 40 "$c" >&2 || true
  done
}
stop_ticker() {
  if [[ -n "$TICKER" ]]; then kill "$TICKER" 2>/dev/null || true; wait "$TICKER" 2>/dev/null || true; fi
  TICKER=""
}
down() {
  local c vols=()
  stop_ticker
  # `down -v` removes the named volumes; the anonymous ones (the image's VOLUME /data in the
  # replicas) are collected first and removed after the containers.
  for c in $(containers); do
    # shellcheck disable=SC2207  # volume names have no spaces
    vols+=($("$PODMAN" inspect --format '{{range .Mounts}}{{if eq .Type "volume"}}{{.Name}} {{end}}{{end}}' "$c" 2>/dev/null || true))
  done
  if ((${#UP[@]})); then "${COMPOSE[@]}" "${UP[@]}" down -v -t 10 >/dev/null 2>&1 || true; fi
  if ((${#vols[@]})); then "$PODMAN" volume rm -f "${vols[@]}" >/dev/null 2>&1 || true; fi
  UP=()
}
cleanup() {
  local rc=$?
  ((rc == 0)) || show_logs
  down
  rm -rf "$WORK"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

command -v "$PODMAN" >/dev/null || die "$PODMAN is missing (apt-get install podman runc)"
[[ -d "$DATA" ]] || die "../shared/data is missing: the walk-through needs its photos"

# podman-compose drives podman; containers.conf is how its podman calls get this machine's
# runtime and the ulimits TensorFlow and uvicorn need (a file of our own, not the system's).
NOFILE="$(ulimit -Hn)"
[[ "$NOFILE" == unlimited ]] && NOFILE=1048576
cat >"$WORK/containers.conf" <<CONF
[containers]
default_ulimits = ["nofile=$NOFILE:$NOFILE", "nproc=32768:32768"]
[engine]
runtime = "$PODMAN_RUNTIME"
CONF
export CONTAINERS_CONF="$WORK/containers.conf"

if [[ -n "${PODMAN_COMPOSE:-}" ]]; then
  COMPOSE=("$PODMAN_COMPOSE")
else
  venv="$TOOLS/podman-compose-$PODMAN_COMPOSE_VERSION"
  if [[ ! -x "$venv/bin/podman-compose" ]]; then
    step "install podman-compose $PODMAN_COMPOSE_VERSION into $venv"
    python3 -m venv "$venv" || die "could not make a virtualenv for podman-compose"
    "$venv/bin/pip" install --quiet "podman-compose==$PODMAN_COMPOSE_VERSION" \
      || die "could not install podman-compose"
  fi
  COMPOSE=("$venv/bin/podman-compose")
fi
# Plain containers on the project's network, as Docker Compose does (in a pod the two replicas
# would share one network namespace and one port 8000).
COMPOSE+=(--in-pod false -p "$PROJECT" -f docker-compose.yml)
"${COMPOSE[@]}" version | head -n 2

# ---- images --------------------------------------------------------------------------------
PULL=--pull=missing
if [[ "$LOCAL_BASE" == 1 ]]; then
  step "make the base images locally (--make-base)"
  what=(python)
  ((RUN_SCALE)) && what=(all)
  deploy/local-images/make-images.sh "${what[@]}" || die "could not make the local images"
  PULL=--pull=never
fi
BUILD_ARGS="$PULL --format docker"
if [[ -f /etc/ssl/certs/ca-certificates.crt ]]; then
  BUILD_ARGS+=" -v /etc/ssl/certs/ca-certificates.crt:/etc/ssl/certs/ca-certificates.crt:ro"
fi
step "build the compose file's image (faceid:latest; cached layers after container-smoke.sh)"
t=$SECONDS
"${COMPOSE[@]}" --podman-build-args "$BUILD_ARGS" build faceid >"$WORK/build.log" 2>&1 \
  || { tail -n 40 "$WORK/build.log" >&2; die "podman-compose build failed"; }
echo "built in $((SECONDS - t))s"

# ---- helpers -------------------------------------------------------------------------------
tick_healthchecks() {  # what systemd's timers would do: run each container's healthcheck
  while sleep 5; do
    for c in $(containers); do
      "$PODMAN" healthcheck run "$c" >/dev/null 2>&1 || true
    done
  done
}
health_of() { "$PODMAN" inspect --format '{{.State.Health.Status}}' "$1" 2>/dev/null || echo none; }
http_code() { curl -s -o /dev/null -w '%{http_code}' --max-time 5 "$@" || true; }
answers_200() { [[ "$(http_code "$1")" == 200 ]]; }
wait_for() {  # DESCRIPTION COMMAND...: poll until COMMAND succeeds (run anew each time)
  local desc="$1" deadline=$((SECONDS + HEALTH_TIMEOUT))
  shift
  until "$@"; do
    ((SECONDS < deadline)) || die "$desc: not within ${HEALTH_TIMEOUT}s"
    sleep 2
  done
}
all_healthy() {  # every container of the project with a healthcheck says healthy
  local c h ok=0
  for c in $(containers); do
    h="$(health_of "$c")"
    [[ "$h" == healthy || -z "$h" || "$h" == none ]] || ok=1
  done
  return "$ok"
}
identify_as() {  # BASE PHOTO WANT: the first face of /identify is WANT ("null": unknown)
  local out
  out="$(curl -sS --max-time 30 -H "Authorization: Bearer $API_KEY" -X POST -F "image=@$2" "$1/identify")" || return 1
  python3 -c 'import json, sys; d = json.loads(sys.argv[1]); v = d["faces"][0]["identity"]; sys.exit(("null" if v is None else v) != sys.argv[2])' "$out" "$3" 2>/dev/null
}

# ---- default service -----------------------------------------------------------------------
if ((RUN_DEFAULT)); then
  step "default service: up -d faceid (127.0.0.1:8000)"
  [[ "$(http_code http://127.0.0.1:8000/health)" == 000 ]] || die "127.0.0.1:8000 is already in use"
  UP=()
  t=$SECONDS
  FACEID_API_KEYS="$API_KEY" "${COMPOSE[@]}" up -d faceid || die "podman-compose up failed"
  UP=(-p "$PROJECT")
  tick_healthchecks &
  TICKER=$!
  wait_for "/health on 127.0.0.1:8000" answers_200 http://127.0.0.1:8000/health
  wait_for "the compose healthcheck" all_healthy
  record compose_default_healthy_seconds "$((SECONDS - t))"
  vol="$("$PODMAN" inspect --format '{{range .Mounts}}{{.Name}}:{{.Destination}} {{end}}' "$(containers | head -n 1)")"
  [[ "$vol" == *"${PROJECT}_gallery:/data"* ]] || die "the gallery is not on the named volume: $vol"
  echo "ok: healthy; gallery volume $vol"
  FACEID_API_KEY="$API_KEY" scripts/smoke.sh http://127.0.0.1:8000 \
    || die "the walk-through failed against the compose service"
  step "down -v"
  down
fi

# ---- scale profile -------------------------------------------------------------------------
if ((RUN_SCALE)); then
  step "scale profile: --profile scale up -d nginx (PostgreSQL, 2 replicas, nginx on :8080)"
  [[ "$(http_code http://127.0.0.1:8080/health)" == 000 ]] || die "127.0.0.1:8080 is already in use"
  echo "load: $(load)"
  t=$SECONDS
  FACEID_API_KEYS="$API_KEY" FACEID_DB_PASSWORD="pw-$RANDOM$RANDOM" \
    "${COMPOSE[@]}" --profile scale up -d nginx || die "podman-compose up (scale) failed"
  UP=(-p "$PROJECT" --profile scale)
  tick_healthchecks &
  TICKER=$!
  containers
  mapfile -t REPLICAS < <(containers | grep -- '-replica' || true)
  ((${#REPLICAS[@]} == 2)) || die "expected 2 faceid-replica containers, got ${#REPLICAS[@]}"
  PROXY=http://127.0.0.1:8080
  wait_for "/health through nginx" answers_200 "$PROXY/health"
  wait_for "every healthcheck (postgres, both replicas)" all_healthy
  record scale_healthy_seconds "$((SECONDS - t))"
  record scale_load "$(load)"
  ADDR=()
  for r in "${REPLICAS[@]}"; do
    ip="$("$PODMAN" inspect --format '{{range .NetworkSettings.Networks}}{{.IPAddress}} {{end}}' "$r" | awk '{print $1}')"
    env="$("$PODMAN" inspect --format '{{range .Config.Env}}{{println .}}{{end}}' "$r" | grep '^FACEID_DATABASE_URL=' || true)"
    [[ "$env" == *"@postgres:5432/faceid" ]] || die "$r has no FACEID_DATABASE_URL at postgres: $env"
    wait_for "/health on $r ($ip)" answers_200 "http://$ip:8000/health"
    ADDR+=("http://$ip:8000")
    echo "ok: $r healthy at $ip, database postgres:5432/faceid"
  done
  restarts="$("$PODMAN" inspect --format '{{.Name}} restarts={{.RestartCount}}' "${REPLICAS[@]}")"
  echo "replica restarts while PostgreSQL started: $restarts"

  step "the walk-through through nginx"
  FACEID_API_KEY="$API_KEY" scripts/smoke.sh "$PROXY" || die "the walk-through failed through nginx"

  step "enrol through the proxy; each replica identifies; an erasure through the proxy reaches both"
  for n in 0001 0002; do
    code="$(http_code -H "Authorization: Bearer $API_KEY" -X POST \
      -F "image=@$DATA/George_W_Bush/George_W_Bush_$n.jpg" "$PROXY/identities/George_W_Bush/faces")"
    [[ "$code" == 201 ]] || die "enrolment through nginx answered HTTP $code"
  done
  PROBE="$DATA/George_W_Bush/George_W_Bush_0003.jpg"
  for a in "${ADDR[@]}"; do
    wait_for "$a identifies the person enrolled through nginx" identify_as "$a" "$PROBE" George_W_Bush
    echo "ok: $a identifies George_W_Bush"
  done
  code="$(http_code -H "Authorization: Bearer $API_KEY" -X DELETE "$PROXY/identities/George_W_Bush")"
  [[ "$code" == 204 ]] || die "erasure through nginx answered HTTP $code"
  for a in "${ADDR[@]}"; do
    wait_for "$a forgets the person erased through nginx" identify_as "$a" "$PROBE" null
    echo "ok: $a no longer knows George_W_Bush"
  done
  record scale_result passed
  step "down -v"
  down
fi

echo
echo "compose smoke test passed in $((SECONDS - T0))s"
