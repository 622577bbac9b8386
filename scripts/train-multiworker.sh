#!/usr/bin/env bash
# Multi-worker training on one machine: N local processes of `python -m training train`,
# each with its own TF_CONFIG (the cluster of all N plus its own index), so they train one
# model together with tf.distribute.MultiWorkerMirroredStrategy. The same TF_CONFIG, with
# host names instead of localhost, is what a launcher on several machines (Kubernetes'
# TFJob: deploy/kubernetes/tfjob.yaml) sets for each worker.
#
#   scripts/train-multiworker.sh [-n WORKERS] [-p BASE_PORT] [-r RESTARTS] [-l LOG_DIR] \
#       -- --config tiny --run-dir runs/tiny-2w [other `python -m training train` options]
#
#   -n WORKERS    processes to start (default 2); worker 0 is the chief
#   -p BASE_PORT  worker i listens on localhost:BASE_PORT+i (default: N free ports picked now)
#   -r RESTARTS   restart a worker that exits with an error, at most this many times each
#                 (default 3), as a TFJob's restartPolicy OnFailure does: when one worker
#                 dies the others' collective ops fail too, they all restart and continue
#                 from the chief's backup (--resume is always passed, so a restarted
#                 worker continues the run instead of refusing its run directory)
#   -l LOG_DIR    worker-<i>.log (stderr and stdout of every attempt) and worker-<i>.pid
#                 (the running attempt's process) go here (default <run-dir>-logs)
#
# Relative paths are taken from the repository root (the script runs there).
# Exits 0 when every worker finished, else with the first failing worker's status.
# PYTHON picks the interpreter (default .venv/bin/python when present, else python3).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"  # relative paths (--run-dir, -l) are relative to the repository root
WORKERS=2
BASE_PORT=""
RESTARTS=3
LOG_DIR=""
while getopts "n:p:r:l:h" opt; do
    case "$opt" in
        n) WORKERS="$OPTARG" ;;
        p) BASE_PORT="$OPTARG" ;;
        r) RESTARTS="$OPTARG" ;;
        l) LOG_DIR="$OPTARG" ;;
        *) sed -n '2,23p' "${BASH_SOURCE[0]}"; exit 2 ;;
    esac
done
shift $((OPTIND - 1))
if [ "${1:-}" = "--" ]; then shift; fi
TRAIN_ARGS=("$@")

if [ -z "${PYTHON:-}" ]; then
    if [ -x "$ROOT/.venv/bin/python" ]; then PYTHON="$ROOT/.venv/bin/python"; else PYTHON=python3; fi
fi

if [ -z "$LOG_DIR" ]; then
    LOG_DIR="$ROOT/runs/multiworker-logs"
    for ((k = 0; k < ${#TRAIN_ARGS[@]}; k++)); do
        if [ "${TRAIN_ARGS[$k]}" = "--run-dir" ] && [ $((k + 1)) -lt ${#TRAIN_ARGS[@]} ]; then
            LOG_DIR="${TRAIN_ARGS[$((k + 1))]%/}-logs"
        fi
    done
fi
mkdir -p "$LOG_DIR"

# the cluster: N addresses on localhost (free ones unless BASE_PORT is given)
if [ -n "$BASE_PORT" ]; then
    PORTS=()
    for ((i = 0; i < WORKERS; i++)); do PORTS+=($((BASE_PORT + i))); done
else
    # bind N sockets to port 0 at once (so the N ports differ), report them, release them
    read -r -a PORTS <<<"$("$PYTHON" -c '
import socket, sys
socks = [socket.socket() for _ in range(int(sys.argv[1]))]
for s in socks:
    s.bind(("localhost", 0))
print(" ".join(str(s.getsockname()[1]) for s in socks))
' "$WORKERS")"
fi
CLUSTER=""
for port in "${PORTS[@]}"; do CLUSTER+="${CLUSTER:+,}\"localhost:$port\""; done

run_worker() {
    local index=$1 attempt=0 rc
    local log="$LOG_DIR/worker-$index.log"
    while :; do
        echo "=== worker $index attempt $((attempt + 1)) $(date -u +%FT%TZ)" >>"$log"
        TF_CONFIG="{\"cluster\": {\"worker\": [$CLUSTER]}, \"task\": {\"type\": \"worker\", \"index\": $index}}" \
            "$PYTHON" -m training train "${TRAIN_ARGS[@]}" --resume >>"$log" 2>&1 &
        echo $! >"$LOG_DIR/worker-$index.pid"
        rc=0
        wait $! || rc=$?
        if [ "$rc" -eq 0 ]; then return 0; fi
        attempt=$((attempt + 1))
        if [ "$attempt" -gt "$RESTARTS" ]; then
            echo "worker $index: exit $rc, no restarts left" >&2
            return "$rc"
        fi
        echo "worker $index: exit $rc, restart $attempt of $RESTARTS" >&2
        sleep 2
    done
}

echo "cluster of $WORKERS worker(s) on localhost ports ${PORTS[*]}; logs in $LOG_DIR" >&2
PIDS=()
for ((i = 0; i < WORKERS; i++)); do
    run_worker "$i" &
    PIDS+=($!)
done
STATUS=0
for pid in "${PIDS[@]}"; do
    rc=0
    wait "$pid" || rc=$?
    if [ "$STATUS" -eq 0 ]; then STATUS=$rc; fi
done
exit "$STATUS"
