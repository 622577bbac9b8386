"""Lean serving, before and after, side by side in one run: memory, start-up, throughput.

"Before" is the service as it was: ``FACEID_ENGINE=tflite-int8-tf``, TensorFlow in every
serving process, the SavedModel converted there at every start (or, with
``--before-checkout DIR``, the code of another checkout, e.g. a ``git worktree`` of an
older commit, with its default engine). "After" is the default: ``tflite-int8`` converted
in a child process, cached next to the gallery and served on LiteRT.

For each side and each worker count (``--workers``, default 1 and 4), ``python -m app``
(``FACEID_WORKERS``) is started on loopback with a fresh gallery:

1. **cold start**: empty engine cache; seconds from launch until every worker answers
   ``/health`` 200;
2. **idle memory**: resident set size (RSS) of every process of the service (supervisor,
   workers, any helper; the converter child has exited by then), summed and per process,
   two seconds after the start;
3. a small gallery is enrolled (``--enroll`` LFW people), then ``--calls`` ``POST
   /identify`` of LFW photos from 4 client threads: images/s and latency p50/p99;
4. **memory after the calls**, the same way;
5. **warm start**: the service is stopped and started again on the same gallery and
   engine cache; seconds to healthy and idle memory again.

Run it on a quiet machine (the table records the load average at start and end):

    python -m bench.lean                       # 1,000 calls; 1 and 4 workers
    python -m bench.lean --quick               # 20 calls, 1 and 2 workers (a check)
    python -m bench.lean --before-checkout ../faceid-ef2d78f   # main's code as "before"
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil

from bench.common import (
    DEFAULT_DATA,
    REPO,
    RESULTS,
    Service,
    free_port,
    machine_info,
    machine_line,
    md_table,
    people_images,
    spread,
    write_results,
)
from bench.common import _wait_all_ready as wait_all_ready
from bench.load import drive, enroll

AIM_IDLE_MB = 400.0
AIM_WARM_START_S = 5.0
CLIENTS = 4


def tree_rss(pid: int) -> list[dict[str, Any]]:
    """RSS (MB) of the process ``pid`` and every descendant, each named by its role."""
    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.Error:
        return []
    rows = []
    for p in procs:
        with contextlib.suppress(psutil.Error):
            cmd = " ".join(p.cmdline())
            if "resource_tracker" in cmd:
                role = "resource tracker"
            elif "app.inference.convert" in cmd:
                role = "converter"
            elif p.pid == pid:
                role = "server" if not root.children() else "supervisor"
            else:
                role = "worker"
            rows.append(
                {"pid": p.pid, "role": role, "rss_mb": round(p.memory_info().rss / 2**20, 1)}
            )
    return rows


def memory(pid: int) -> dict[str, Any]:
    rows = tree_rss(pid)
    serving = [r["rss_mb"] for r in rows if r["role"] in ("server", "worker")]
    return {
        "total_mb": round(sum(r["rss_mb"] for r in rows), 1),
        "max_serving_process_mb": max(serving, default=None),
        "processes": rows,
    }


class Launch:
    """One ``python -m app`` run: started, timed to healthy, stopped."""

    def __init__(
        self, cwd: Path, env: dict[str, str], workers: int, log_path: Path, timeout_s: float
    ) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {**env, "FACEID_PORT": str(self.port), "FACEID_WORKERS": str(workers)}
        self.log = log_path.open("ab")
        t0 = time.perf_counter()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "app"],
            cwd=cwd,
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            wait_all_ready(self.url, 10 * workers, timeout_s)
        except Exception:
            self.stop()
            tail = log_path.read_text(errors="replace")[-3000:]
            print(f"--- service log tail ({log_path}) ---\n{tail}", file=sys.stderr)
            raise
        self.start_s = round(time.perf_counter() - t0, 2)

    def stop(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        self.log.close()


def run_side(
    side: str,
    cwd: Path,
    engine: str | None,
    workers: int,
    photos: list[bytes],
    enrolled: dict[str, Path],
    calls: int,
    timeout_s: float,
) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="faceid-lean-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("FACEID_")}
    env.update(
        FACEID_HOST="127.0.0.1",
        FACEID_DATA_DIR=str(tmp / "data"),
        FACEID_LOG_LEVEL="WARNING",
        TF_CPP_MIN_LOG_LEVEL="2",
        PYTHONUNBUFFERED="1",
    )
    if engine:
        env["FACEID_ENGINE"] = engine
    log_path = tmp / "service.log"
    row: dict[str, Any] = {"side": side, "engine": engine or "default", "workers": workers}
    try:
        cold = Launch(cwd, env, workers, log_path, timeout_s)
        try:
            row["cold_start_s"] = cold.start_s
            time.sleep(2.0)
            row["idle"] = memory(cold.proc.pid)
            service = Service(url=cold.url, pid=cold.proc.pid)
            row["enroll"] = enroll(service, enrolled)
            row["load"] = drive(service, photos, CLIENTS, calls, max_seconds=3600.0)
            row["after_calls"] = memory(cold.proc.pid)
        finally:
            cold.stop()
        warm = Launch(cwd, env, workers, log_path, timeout_s)
        try:
            row["warm_start_s"] = warm.start_s
            time.sleep(2.0)
            row["idle_warm"] = memory(warm.proc.pid)
        finally:
            warm.stop()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return row


def table_row(r: dict[str, Any]) -> dict[str, Any]:
    load = r["load"]
    return {
        "side": r["side"],
        "engine": r["engine"],
        "workers": r["workers"],
        "cold start s": r["cold_start_s"],
        "warm start s": r["warm_start_s"],
        "idle RSS, all processes MB": r["idle"]["total_mb"],
        "idle RSS, largest serving process MB": r["idle"]["max_serving_process_mb"],
        f"RSS after {load['ok']} calls, all MB": r["after_calls"]["total_mb"],
        "… largest serving process MB": r["after_calls"]["max_serving_process_mb"],
        f"images/s at {CLIENTS} clients": load["images_per_s"],
        "p99 ms": load["latency"].get("p99_ms"),
        "errors": load["errors"],
    }


def markdown(result: dict[str, Any]) -> str:
    rows = [table_row(r) for r in result["runs"]]
    lines = [
        "### Lean serving — before and after",
        "",
        f"Machine: {machine_line(result['machine'])}; load {result['load_after']} at end",
        f"Command: `{result['command']}`",
        "",
        md_table(rows, list(rows[0])),
        "",
        "Per process at idle (cold start), MB: "
        + "; ".join(
            f"{r['side']} ×{r['workers']}: "
            + ", ".join(f"{p['role']} {p['rss_mb']}" for p in r["idle"]["processes"])
            for r in result["runs"]
        ),
        "",
        f"Aim: ≤ {AIM_IDLE_MB:.0f} MB per serving process at idle, warm start ≤ "
        f"{AIM_WARM_START_S:.0f} s to healthy, throughput not lower than before.",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--calls", type=int, default=1000, help="/identify calls per run")
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 4])
    ap.add_argument("--enroll", type=int, default=50, help="LFW people enrolled first")
    ap.add_argument("--photos", type=int, default=200, help="distinct LFW photos posted")
    ap.add_argument(
        "--before-checkout",
        type=Path,
        default=None,
        help="run 'before' from this checkout with its default engine "
        "(default: this checkout with FACEID_ENGINE=tflite-int8-tf)",
    )
    ap.add_argument("--sides", nargs="+", default=["before", "after"], choices=["before", "after"])
    ap.add_argument("--startup-timeout", type=float, default=900.0)
    ap.add_argument("--quick", action="store_true", help="20 calls, 1 and 2 workers, 5 people")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)
    if args.quick:
        args.calls, args.workers, args.enroll, args.photos = 20, [1, 2], 5, 20
    out_dir = args.out or (RESULTS / "quick" if args.quick else RESULTS)

    lfw = people_images(args.data / "lfw" / "train")
    multi = [name for name, imgs in lfw.items() if len(imgs) >= 2]
    enrolled = {name: lfw[name][0] for name in spread(multi, args.enroll)}
    others = [p for imgs in lfw.values() for p in imgs if p not in set(enrolled.values())]
    photos = [p.read_bytes() for p in spread(others, args.photos)]

    before_cwd = (args.before_checkout or REPO).resolve()
    sides = {
        "before": (before_cwd, None if args.before_checkout else "tflite-int8-tf"),
        "after": (REPO, "tflite-int8"),
    }
    machine = machine_info()
    runs = []
    for workers in args.workers:
        for side in args.sides:
            cwd, engine = sides[side]
            print(f"lean: {side}, {workers} worker(s)", file=sys.stderr, flush=True)
            runs.append(
                run_side(
                    side, cwd, engine, workers, photos, enrolled, args.calls, args.startup_timeout
                )
            )
    result = {
        "command": "python -m bench.lean " + " ".join(argv if argv is not None else sys.argv[1:]),
        "machine": machine,
        "runs": runs,
        "load_after": round(os.getloadavg()[0], 2),
    }
    write_results(out_dir, "lean", result, markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
