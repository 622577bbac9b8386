#!/usr/bin/env bash
# Container smoke test: builds the image exactly from the Dockerfile, runs it with podman and
# checks what `docker run` users rely on:
#   - the image runs as the non-root user and declares a HEALTHCHECK, and that check passes
#     once the model is loaded;
#   - the README's curl walk-through (scripts/smoke.sh) passes against the container;
#   - the gallery survives a container restart on its /data volume;
#   - the container stops cleanly (exit code 0) on SIGTERM within the grace period.
# It prints the measurements docs/BENCHMARKS.md records: build time, image size, cold start to
# healthy, RSS at idle, with the machine's load next to them.
#
#   scripts/container-smoke.sh [--make-base]
#
#   --make-base   (or FACEID_LOCAL_BASE=1) for machines without an image registry: make the
#                 Dockerfile's base image python:<version>-slim-bookworm locally from Debian's
#                 packages (deploy/local-images/make-images.sh), then build with --pull=never.
#                 Without it the base is pulled as usual. The Dockerfile is used unchanged.
# The image stays in podman's store (scripts/compose-smoke.sh then builds from its cache); the
# container and its volume are removed.
#
# Knobs: PODMAN (podman), PODMAN_RUNTIME (runc: crun fails on this machine's cgroup setup),
# IMAGE (faceid:latest), STOP_GRACE (seconds, 10: Docker's and podman's default),
# HEALTH_TIMEOUT (seconds to wait for /health, 240), FACEID_CONTAINER_REPORT (a file to append
# the measurements to, as KEY=VALUE lines).
# Runs as root (podman's rootful store); photos for the walk-through come from ../shared/data.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

PODMAN="${PODMAN:-podman}"
PODMAN_RUNTIME="${PODMAN_RUNTIME:-runc}"
IMAGE="${IMAGE:-faceid:latest}"
STOP_GRACE="${STOP_GRACE:-10}"
HEALTH_TIMEOUT="${HEALTH_TIMEOUT:-240}"
REPORT="${FACEID_CONTAINER_REPORT:-}"
LOCAL_BASE="${FACEID_LOCAL_BASE:-0}"
for arg in "$@"; do
  case "$arg" in
    --make-base) LOCAL_BASE=1 ;;
    -h | --help) awk 'NR > 1 && !/^#/ {exit} NR > 1' "${BASH_SOURCE[0]}"; exit 0 ;;
    *) echo "container-smoke: unknown argument $arg" >&2; exit 2 ;;
  esac
done

T0=$SECONDS
NAME="faceid-smoke-$$"
VOLUME="faceid-smoke-gallery-$$"
API_KEY="ctr-$RANDOM$RANDOM"
CID=""

step() { echo; echo "=== container-smoke [$((SECONDS - T0))s] $*"; }
die() { echo "container-smoke FAILED: $*" >&2; exit 1; }
load() { cut -d' ' -f1-3 /proc/loadavg; }
record() {  # KEY VALUE: print a measurement and append it to the report file
  echo "measure: $1=$2"
  if [[ -n "$REPORT" ]]; then echo "$1=$2" >>"$REPORT"; fi
}
show_logs() {
  if [[ -n "$CID" ]]; then
    echo "----- container log (last 80 lines) -----" >&2
    "$PODMAN" logs --tail 80 "$CID" >&2 || true
    echo "----- end of container log -----" >&2
  fi
}
cleanup() {
  local rc=$?
  ((rc == 0)) || show_logs
  if [[ -n "$CID" ]]; then "$PODMAN" rm -f -t 0 "$CID" >/dev/null 2>&1 || true; fi
  "$PODMAN" volume rm -f "$VOLUME" >/dev/null 2>&1 || true
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

command -v "$PODMAN" >/dev/null || die "$PODMAN is missing (apt-get install podman runc)"
[[ -d ../shared/data/lfw ]] || die "../shared/data is missing: the walk-through needs its photos"

# ---- build ---------------------------------------------------------------------------------
PULL=(--pull=missing)
if [[ "$LOCAL_BASE" == 1 ]]; then
  step "make the base image locally (--make-base)"
  deploy/local-images/make-images.sh python || die "could not make the local base image"
  PULL=(--pull=never)
fi

step "build $IMAGE from the Dockerfile"
# The host's CA bundle is mounted (read-only, build time only) so that pip trusts this machine's
# TLS setup; nothing of it stays in the image.
BUILD_VOLS=()
if [[ -f /etc/ssl/certs/ca-certificates.crt ]]; then
  BUILD_VOLS=(-v /etc/ssl/certs/ca-certificates.crt:/etc/ssl/certs/ca-certificates.crt:ro)
fi
echo "load before the build: $(load)"
t=$SECONDS
"$PODMAN" build --runtime "$PODMAN_RUNTIME" "${PULL[@]}" --format docker \
  "${BUILD_VOLS[@]}" -f Dockerfile -t "$IMAGE" . || die "the image did not build"
record build_seconds "$((SECONDS - t))"
record build_load "$(load)"
size="$("$PODMAN" image inspect --format '{{.Size}}' "$IMAGE")"
record image_bytes "$size"
record image_mb "$((size / 1000000))"

# ---- what the image declares ---------------------------------------------------------------
step "image metadata: user, healthcheck, volume, command"
user="$("$PODMAN" image inspect --format '{{.Config.User}}' "$IMAGE")"
[[ -n "$user" && "${user%%:*}" != root && "${user%%:*}" != 0 ]] \
  || die "the image runs as '$user', not a non-root user"
echo "ok: USER $user"
health="$("$PODMAN" image inspect --format '{{json .Config.Healthcheck}}' "$IMAGE")"
[[ "$health" == *"/health"* ]] || die "the image has no HEALTHCHECK on /health: $health"
echo "ok: HEALTHCHECK $health"
vols="$("$PODMAN" image inspect --format '{{json .Config.Volumes}}' "$IMAGE")"
[[ "$vols" == *'"/data"'* ]] || die "the image does not declare VOLUME /data: $vols"
echo "ok: VOLUME $vols"

# ---- run -----------------------------------------------------------------------------------
PORT="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
BASE="http://127.0.0.1:$PORT"
NOFILE="$(ulimit -Hn)"
[[ "$NOFILE" == unlimited ]] && NOFILE=1048576
"$PODMAN" volume create "$VOLUME" >/dev/null

wait_healthy() {  # seconds it took for /health to answer 200
  local start=$SECONDS deadline=$((SECONDS + HEALTH_TIMEOUT))
  until [[ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 "$BASE/health" || true)" == 200 ]]; do
    [[ "$("$PODMAN" inspect --format '{{.State.Running}}' "$CID")" == true ]] \
      || die "the container exited before /health said ok"
    ((SECONDS < deadline)) || die "/health did not answer 200 within ${HEALTH_TIMEOUT}s"
    sleep 1
  done
  echo "$((SECONDS - start))"
}

rss_mb() {  # the service's resident memory (PID 1 in the container), in MB
  "$PODMAN" exec "$CID" python -c \
    "print(round(int([l for l in open('/proc/1/status') if l.startswith('VmRSS')][0].split()[1]) / 1024))"
}

step "run it: port $PORT, gallery on volume $VOLUME, API key set"
CID="$("$PODMAN" run -d --runtime "$PODMAN_RUNTIME" --name "$NAME" \
  --ulimit "nofile=$NOFILE:$NOFILE" --ulimit nproc=32768:32768 \
  -p "127.0.0.1:$PORT:8000" -v "$VOLUME:/data" \
  -e FACEID_API_KEYS="$API_KEY" "$IMAGE")" || die "podman run failed"
echo "load at start: $(load)"
record cold_start_seconds "$(wait_healthy)"
record cold_start_load "$(load)"

step "inside: the service runs as a non-root user"
uid="$("$PODMAN" exec "$CID" python -c 'import os; print(os.getuid())')"
pid1_uid="$("$PODMAN" exec "$CID" sh -c "awk '/^Uid:/ {print \$2}' /proc/1/status")"
[[ "$uid" != 0 && "$pid1_uid" != 0 ]] || die "the service runs as root (uid $pid1_uid)"
echo "ok: the service (PID 1) runs as uid $pid1_uid"

step "the image's HEALTHCHECK, run by podman"
# No systemd here to tick podman's healthcheck timer, so run the check the way the timer would.
"$PODMAN" healthcheck run "$CID" || die "the HEALTHCHECK fails on a healthy service"
status="$("$PODMAN" inspect --format '{{.State.Health.Status}}' "$CID" 2>/dev/null \
  || "$PODMAN" inspect --format '{{.State.Healthcheck.Status}}' "$CID")"
[[ "$status" == healthy ]] || die "podman says the container is '$status', not healthy"
echo "ok: healthy"

sleep 5
record idle_rss_mb_after_start "$(rss_mb)"

step "the README walk-through (scripts/smoke.sh $BASE)"
FACEID_API_KEY="$API_KEY" scripts/smoke.sh "$BASE" || die "the walk-through failed against the container"
sleep 5
record idle_rss_mb_after_walkthrough "$(rss_mb)"
record idle_load "$(load)"

# ---- the gallery survives a restart; SIGTERM stops the service cleanly ----------------------
step "enrol a person to keep across the restart"
PHOTO="$(cd .. && pwd)/shared/data/lfw/train/Serena_Williams/Serena_Williams_0001.jpg"
code="$(curl -sS -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $API_KEY" \
  -X POST -F "image=@$PHOTO" "$BASE/identities/Serena_Williams/faces")"
[[ "$code" == 201 ]] || die "enrolment answered HTTP $code"

stop_cleanly() {
  local t=$SECONDS code
  "$PODMAN" stop -t "$STOP_GRACE" "$CID" >/dev/null || die "podman stop failed"
  record stop_seconds "$((SECONDS - t))"
  code="$("$PODMAN" inspect --format '{{.State.ExitCode}}' "$CID")"
  # 137 would be SIGKILL after the grace period ran out; 143 an unhandled SIGTERM.
  [[ "$code" == 0 ]] || die "after SIGTERM the service exited with $code, not 0 within ${STOP_GRACE}s"
  "$PODMAN" logs --tail 20 "$CID" 2>&1 | grep -q "Finished server process" \
    || die "the log does not show uvicorn's orderly shutdown"
  echo "ok: SIGTERM -> exit 0 in $((SECONDS - t))s (grace ${STOP_GRACE}s)"
}

step "SIGTERM (podman stop -t $STOP_GRACE)"
stop_cleanly

step "start the same container again on its volume"
"$PODMAN" start "$CID" >/dev/null || die "podman start failed"
record restart_seconds "$(wait_healthy)"
out="$(curl -sS -H "Authorization: Bearer $API_KEY" -X POST -F "image=@$PHOTO" "$BASE/identify")"
echo "identify after the restart: $out"
python3 -c 'import json, sys; d = json.loads(sys.argv[1]); sys.exit(d["faces"][0]["identity"] != "Serena_Williams")' "$out" \
  || die "the gallery did not survive the restart"
echo "ok: Serena_Williams is still identified after the restart"

step "SIGTERM again, after the restart"
stop_cleanly

echo
echo "container smoke test passed in $((SECONDS - T0))s (image $IMAGE, $((size / 1000000)) MB)"
