"""Reliability scenarios of issue 28, as repeatable measurements.

1. ``frozen-db``: ``python -m app`` on a throwaway PostgreSQL cluster (``bench.pgcluster``)
   with one enrolled face. The whole server is frozen with SIGSTOP (a hung host: its kernel
   still ACKs TCP, nothing ever fails), ``--listings`` ``GET /identities`` are sent at once,
   and while they are pending ``/identify`` is timed ``--probes`` times. Reports /identify
   latency before and during the freeze, each listing's status and time, how long /health
   takes to say ``degraded``, and how long after the thaw it says ``ok`` again.
2. ``kill-supervisor``: ``python -m app`` with ``FACEID_WORKERS=2``; ``kill -9`` of the
   supervisor only (not its workers), ``--rounds`` times: how long until no worker is left,
   and whether ``python -m app`` started again on the same port serves (and how soon).
3. ``kill-worker``: the same service; ``kill -9`` of one worker, ``--rounds`` times: how
   long until its replacement process runs, and until the service answers again from the
   replacement alone.

    python -m bench.reliability                     # every scenario
    python -m bench.reliability frozen-db --quick   # one scenario, fewer rounds

Results: ``bench/results/reliability.{json,md}`` (with the machine's load: these are
latencies on a shared machine, not throughput figures).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil

from bench.common import (
    DEFAULT_DATA,
    REPO,
    RESULTS,
    free_port,
    machine_info,
    machine_line,
    md_table,
    people_images,
    write_results,
)
from bench.pgcluster import PostgresCluster


def _until(predicate: Callable[[], bool], timeout: float, interval: float = 0.05) -> float | None:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        with contextlib.suppress(Exception):
            if predicate():
                return time.monotonic() - t0
        time.sleep(interval)
    return None


class _Proc:
    """One ``python -m app`` process on a given port."""

    def __init__(self, env: dict[str, str], port: int, log: Path) -> None:
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        full = {k: v for k, v in os.environ.items() if not k.startswith("FACEID_")}
        full.update(
            FACEID_HOST="127.0.0.1",
            FACEID_PORT=str(port),
            FACEID_LOG_LEVEL="WARNING",
            TF_CPP_MIN_LOG_LEVEL="2",
            **env,
        )
        with log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "app"],
                cwd=REPO,
                env=full,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def health(self) -> dict[str, Any]:
        return dict(httpx.get(f"{self.url}/health", timeout=10).json())

    def ready(self, timeout: float = 600.0) -> float:
        took = _until(
            lambda: httpx.get(f"{self.url}/health", timeout=5).status_code == 200, timeout, 0.2
        )
        if took is None:
            raise RuntimeError(f"the service on {self.url} did not become ready")
        return took

    def workers(self) -> set[int]:
        found = set()
        for child in psutil.Process(self.proc.pid).children():
            with contextlib.suppress(psutil.Error):  # a zombie, or gone meanwhile
                if "spawn_main" in " ".join(child.cmdline()):
                    found.add(child.pid)
        return found

    def stop(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


@contextlib.contextmanager
def _service(env: dict[str, str], tmp: Path, name: str) -> Iterator[_Proc]:
    proc = _Proc(env, free_port(), tmp / f"{name}.log")
    try:
        proc.ready()
        yield proc
    finally:
        proc.stop()


def _identify(url: str, photo: Path) -> float:
    t0 = time.monotonic()
    r = httpx.post(
        f"{url}/identify",
        params={"max_faces": 1},
        files={"image": (photo.name, photo.read_bytes(), "image/jpeg")},
        timeout=120,
    )
    r.raise_for_status()
    return time.monotonic() - t0


# ------------------------------------------------------------------------ frozen-db
def frozen_db(photo: Path, tmp: Path, listings: int, probes: int) -> dict[str, Any]:
    cluster = PostgresCluster()
    env = {"FACEID_DATABASE_URL": cluster.url, "FACEID_DATA_DIR": str(tmp / "unused")}
    try:
        with _service(env, tmp, "frozen-db") as svc:
            httpx.post(
                f"{svc.url}/identities/Someone/faces",
                files={"image": (photo.name, photo.read_bytes(), "image/jpeg")},
                timeout=120,
            )
            before = [_identify(svc.url, photo) for _ in range(probes)]
            results: list[dict[str, Any]] = []

            def listing() -> None:
                t0 = time.monotonic()
                try:
                    r = httpx.get(f"{svc.url}/identities", timeout=120)
                    code = r.json().get("error", {}).get("code") if r.status_code != 200 else ""
                    results.append({"status": r.status_code, "code": code})
                except httpx.TimeoutException:
                    results.append({"status": "no answer in 120 s", "code": ""})
                results[-1]["seconds"] = round(time.monotonic() - t0, 2)

            cluster.freeze()
            frozen_at = time.monotonic()
            try:
                threads = [threading.Thread(target=listing) for _ in range(listings)]
                for t in threads:
                    t.start()
                time.sleep(0.5)
                during = [_identify(svc.url, photo) for _ in range(probes)]
                degraded = _until(lambda: svc.health()["status"] == "degraded", 120.0)
                degraded_after = None if degraded is None else time.monotonic() - frozen_at
                for t in threads:
                    t.join(timeout=150)
            finally:
                cluster.thaw()
            recovered = _until(lambda: svc.health()["status"] == "ok", 120.0)
    finally:
        cluster.destroy()
    return {
        "listings": listings,
        "identify_before_s": before,
        "identify_frozen_s": during,
        "listing_results": results,
        "degraded_after_s": degraded_after,
        "ok_after_thaw_s": recovered,
    }


# --------------------------------------------------------------- kill-supervisor / worker
def kill_supervisor(tmp: Path, rounds: int) -> list[dict[str, Any]]:
    env = {"FACEID_WORKERS": "2", "FACEID_DATA_DIR": str(tmp / "data")}
    port = free_port()
    out: list[dict[str, Any]] = []
    svc = _Proc(env, port, tmp / "kill-supervisor.log")
    try:
        svc.ready()
        for _ in range(rounds):
            _until(lambda s=svc: len(s.workers()) == 2, 60.0)  # type: ignore[misc]
            children = svc.workers()
            os.kill(svc.proc.pid, signal.SIGKILL)
            svc.proc.wait(timeout=30)
            gone = _until(lambda c=children: not any(_alive(p) for p in c), 120.0)  # type: ignore[misc]
            svc = _Proc(env, port, tmp / "kill-supervisor.log")
            try:
                ready: float | None = svc.ready()
            except RuntimeError:
                ready = None
            out.append(
                {
                    "workers_gone_s": None if gone is None else round(gone, 2),
                    "orphans_left": sum(_alive(p) for p in children),
                    "restart_exit": svc.proc.poll(),
                    "restart_ready_s": None if ready is None else round(ready, 1),
                }
            )
            if ready is None:
                break
    finally:
        svc.stop()
    return out


def kill_worker(tmp: Path, rounds: int) -> list[dict[str, Any]]:
    env = {"FACEID_WORKERS": "2", "FACEID_DATA_DIR": str(tmp / "data")}
    out: list[dict[str, Any]] = []
    with _service(env, tmp, "kill-worker") as svc:
        for _ in range(rounds):
            _until(lambda: len(svc.workers()) == 2, 60.0)
            victim, survivor = sorted(svc.workers())
            os.kill(victim, signal.SIGKILL)
            replaced = _until(lambda v=victim: len(svc.workers() - {v}) == 2, 300.0, 0.02)  # type: ignore[misc]
            os.kill(survivor, signal.SIGSTOP)  # only the replacement can answer now
            try:
                serving = _until(
                    lambda: httpx.get(f"{svc.url}/health", timeout=5).status_code == 200,
                    600.0,
                    0.2,
                )
            finally:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(survivor, signal.SIGCONT)
            out.append(
                {
                    "replacement_running_s": None if replaced is None else round(replaced, 2),
                    "replacement_serving_s": None if serving is None else round(serving, 1),
                }
            )
            svc.ready()
    return out


# ------------------------------------------------------------------------------ main
def _ms(values: list[float]) -> str:
    return ", ".join(f"{v * 1000:.0f}" for v in values)


def markdown(result: dict[str, Any]) -> str:
    lines = ["# Reliability (issue 28)", "", machine_line(result["machine"]), ""]
    lines.append(
        f"Load average at the start: {result['load_before']}, at the end: "
        f"{result['load_after']} (a shared machine)."
    )
    frozen = result.get("frozen_db")
    if frozen:
        lines += [
            "",
            "## Frozen database (every PostgreSQL process SIGSTOPped)",
            "",
            f"- /identify before the freeze (ms): {_ms(frozen['identify_before_s'])}",
            f"- /identify with {frozen['listings']} listings pending on the frozen database "
            f"(ms): {_ms(frozen['identify_frozen_s'])}",
            f"- /health `degraded` {frozen['degraded_after_s']:.1f} s after the freeze; "
            f"`ok` {frozen['ok_after_thaw_s']:.1f} s after the thaw",
            "",
            md_table(frozen["listing_results"], ["status", "code", "seconds"]),
        ]
    for key, title in (
        ("kill_supervisor", "kill -9 of the FACEID_WORKERS=2 supervisor, then a restart"),
        ("kill_worker", "kill -9 of one of two workers"),
    ):
        rows = result.get(key)
        if rows:
            lines += ["", f"## {title}", "", md_table(rows, list(rows[0]))]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    every = ["frozen-db", "kill-supervisor", "kill-worker"]
    parser.add_argument("scenarios", nargs="*", help=f"some of {', '.join(every)} (default: all)")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--listings", type=int, default=10)
    parser.add_argument("--probes", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="2 rounds, 3 probes")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    args.scenarios = args.scenarios or every
    unknown = set(args.scenarios) - set(every)
    if unknown:
        parser.error(f"unknown scenarios: {', '.join(sorted(unknown))}")
    if args.quick:
        args.rounds, args.probes = 2, 3
    photo = people_images(args.data / "lfw" / "train")["Al_Gore"][0]
    result: dict[str, Any] = {
        "machine": machine_info(),
        "load_before": [round(x, 2) for x in os.getloadavg()],
    }
    with tempfile.TemporaryDirectory(prefix="faceid-reliability-") as tmp_name:
        tmp = Path(tmp_name)
        if "frozen-db" in args.scenarios:
            result["frozen_db"] = frozen_db(photo, tmp, args.listings, args.probes)
        if "kill-supervisor" in args.scenarios:
            result["kill_supervisor"] = kill_supervisor(tmp, args.rounds)
        if "kill-worker" in args.scenarios:
            result["kill_worker"] = kill_worker(tmp, args.rounds)
    result["load_after"] = [round(x, 2) for x in os.getloadavg()]
    write_results(args.out, "reliability", result, markdown(result))


if __name__ == "__main__":
    main()
