"""Scale-out: how long a change takes to reach another process, and /identify throughput
with 1 and 2 worker processes (issue 13), in one run.

1. Propagation, per storage engine (a throwaway PostgreSQL cluster from Debian's binaries,
   ``bench.pgcluster``, and one SQLite file): starts two service processes A and B on one
   gallery (``python -m app``, loopback, the shipped model), then ``--rounds`` times
   enrolls a new LFW person on one of them (alternating A→B and B→A) and, from the moment
   the 201 arrives, polls the other's ``GET /health`` every 2 ms until its in-memory
   gallery counts the face; then deletes the person the same way (204 → the face is gone).
   Reports the delay p50/p95/p99/max for enrollments and erasures.
2. Throughput: ``python -m app`` with ``FACEID_WORKERS=1`` and then ``2`` on one SQLite
   gallery of ``--enroll`` LFW people: ``--clients`` threads post LFW photos to
   ``POST /identify?top_k=5`` back to back (``bench.load``'s driver) for ``--requests``
   answers, after a warm-up. Reports images/s and latency.

    python -m bench.propagation               # 100 rounds each, 4 clients, 200 requests
    python -m bench.propagation --quick       # 10 rounds, 24 requests
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bench.common import (
    DEFAULT_DATA,
    RESULTS,
    Service,
    live_service,
    machine_info,
    machine_line,
    md_table,
    people_images,
    percentiles,
    spread,
    write_results,
)

TARGET_P99_MS = 1000.0  # the README's staleness bound


def _faces(client: Any, service: Service) -> int:
    return int(client.get(f"{service.url}/health").json()["gallery"]["faces"])


def measure(a: Service, b: Service, photos: list[Path], rounds: int) -> dict[str, Any]:
    """Enroll-then-delete ``rounds`` times, alternating the writer; delays in seconds."""
    import httpx

    added: list[float] = []
    erased: list[float] = []
    failures: list[str] = []
    refused: list[str] = []  # photos the enrolment quality floor refuses (422): not a delay
    with httpx.Client(timeout=60) as client:
        for i in range(rounds):
            writer, reader = (a, b) if i % 2 == 0 else (b, a)
            photo = photos[i % len(photos)]
            before = _faces(client, reader)
            name = f"prop-{i}"
            r = client.post(
                f"{writer.url}/identities/{name}/faces",
                files={"image": (photo.name, photo.read_bytes())},
            )
            if r.status_code == 422:
                refused.append(f"{photo.name}: {r.json()['error']['code']}")
                continue
            if r.status_code != 201:
                failures.append(f"enroll {name}: {r.status_code}")
                continue
            added.append(_wait(client, reader, before + 1))
            r = client.delete(f"{writer.url}/identities/{name}")
            if r.status_code != 204:
                failures.append(f"delete {name}: {r.status_code}")
                continue
            erased.append(_wait(client, reader, before))
    return {
        "rounds": rounds,
        "enroll": percentiles(added),
        "erase": percentiles(erased),
        "failures": failures,
        "refused_photos": refused,
    }


def _wait(client: Any, reader: Service, faces: int, timeout: float = 30.0) -> float:
    t0 = time.perf_counter()
    while _faces(client, reader) != faces:
        if time.perf_counter() - t0 > timeout:
            raise TimeoutError(f"{reader.url} did not reach {faces} faces in {timeout} s")
        time.sleep(0.002)
    return time.perf_counter() - t0


@contextlib.contextmanager
def storage(kind: str) -> Iterator[dict[str, str]]:
    """Environment for two services sharing one gallery of ``kind``."""
    if kind == "postgresql":
        from bench.pgcluster import PostgresCluster

        cluster = PostgresCluster()
        try:
            yield {"FACEID_DATABASE_URL": cluster.url}
        finally:
            cluster.destroy()
    else:
        with tempfile.TemporaryDirectory(prefix="faceid-prop-") as tmp:
            yield {"FACEID_DATA_DIR": tmp}


def throughput(
    workers: int, people: dict[str, Path], photos: list[bytes], clients: int, requests: int
) -> dict[str, Any]:
    from bench.load import drive, enroll

    with (
        tempfile.TemporaryDirectory(prefix="faceid-prop-") as tmp,
        live_service(extra_env={"FACEID_DATA_DIR": tmp, "FACEID_WORKERS": str(workers)}) as svc,
    ):
        # /health answered 200 once one worker was ready: wait until every worker is.
        _all_workers_ready(svc, workers)
        enrolled = enroll(svc, people)["enrolled"]
        if enrolled < len(people) // 2:  # a few refused for quality (422) is expected
            raise RuntimeError(f"enrolled only {enrolled} of {len(people)} people")
        time.sleep(1.0)  # every worker has followed the enrollments
        drive(svc, photos, clients, 2 * clients, 60)  # warm-up: reaches both workers
        run = drive(svc, photos, clients, requests, 120)
    run["workers"] = workers
    run["enrolled"] = enrolled
    return run


def _all_workers_ready(svc: Service, workers: int, timeout: float = 600.0) -> None:
    """Until 10 × ``workers`` health checks in a row, each on a new connection, answer 200."""
    import httpx

    streak, deadline = 0, time.monotonic() + timeout
    while streak < 10 * workers:
        if time.monotonic() > deadline:
            raise TimeoutError(f"not every one of {workers} workers became ready")
        ok = httpx.get(f"{svc.url}/health", timeout=10).status_code == 200
        streak = streak + 1 if ok else 0
        time.sleep(0.05 if ok else 1.0)


def markdown(result: dict[str, Any]) -> str:
    prop_rows = []
    for kind, r in result["propagation"].items():
        for what in ("enroll", "erase"):
            p = r[what]
            prop_rows.append(
                {
                    "storage": kind,
                    "change": what,
                    "n": p.get("n"),
                    "p50 ms": p.get("p50_ms"),
                    "p95 ms": p.get("p95_ms"),
                    "p99 ms": p.get("p99_ms"),
                    "max ms": p.get("max_ms"),
                }
            )
    tp_rows = [
        {
            "workers": r["workers"],
            "clients": r["concurrency"],
            "ok": r["ok"],
            "errors": r["errors"],
            "images/s": r["images_per_s"],
            "p50 ms": r["latency"].get("p50_ms"),
            "p99 ms": r["latency"].get("p99_ms"),
            "server cores busy": r["server_cores_busy"],
            "server peak RSS MB": r["server_peak_rss_mb"],
        }
        for r in result["throughput"]
    ]
    lines = [
        "### Scale-out — propagation delay between two processes, /identify with 1 and 2 workers",
        "",
        f"Machine: {machine_line(result['machine'])}",
        f"Command: `{result['command']}`",
        "",
        "Propagation (201/204 on one process → the other's in-memory gallery has the change; "
        f"`FACEID_SYNC_POLL_MS` {result['poll_ms']})",
        "",
        md_table(prop_rows, list(prop_rows[0]) if prop_rows else []),
        "",
        f"Throughput (`POST /identify?top_k=5`, LFW photos, {result['gallery']})",
        "",
        md_table(tp_rows, list(tp_rows[0]) if tp_rows else []),
        "",
        "Targets: " + "; ".join(result["targets"]),
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--storage", default="postgresql,sqlite", help="engines to measure")
    ap.add_argument("--rounds", type=int, default=100, help="enroll+delete rounds per engine")
    ap.add_argument("--workers", default="1,2", help="FACEID_WORKERS values for throughput")
    ap.add_argument("--enroll", type=int, default=50, help="people enrolled for throughput")
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--requests", type=int, default=200)
    ap.add_argument("--quick", action="store_true", help="10 rounds, 24 requests")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)
    if args.quick:
        args.rounds, args.requests, args.enroll = 10, 24, 5
    out_dir = args.out or (RESULTS / "quick" if args.quick else RESULTS)
    lfw = people_images(args.data / "lfw" / "train")
    names = list(lfw)
    probe_photos = [lfw[n][0] for n in names[: max(args.rounds, 1)]]
    people = {n: lfw[n][0] for n in spread([n for n in names if len(lfw[n]) >= 2], args.enroll)}
    queries = [lfw[n][1].read_bytes() for n in people] + [
        lfw[n][0].read_bytes() for n in spread(names[len(names) // 2 :], len(people))
    ]
    poll_ms = 250.0
    result: dict[str, Any] = {
        "command": "python -m bench.propagation "
        + " ".join(argv if argv is not None else sys.argv[1:]),
        "machine": machine_info(),
        "poll_ms": poll_ms,
        "propagation": {},
        "throughput": [],
        "gallery": f"{len(people)} LFW people offered for enrolment, SQLite",
    }
    for kind in [k for k in args.storage.split(",") if k]:
        print(f"propagation: {kind} ...", file=sys.stderr, flush=True)
        with storage(kind) as env:
            env["FACEID_SYNC_POLL_MS"] = str(poll_ms)
            with live_service(extra_env=env) as a, live_service(extra_env=env) as b:
                result["propagation"][kind] = measure(a, b, probe_photos, args.rounds)
        print(f"  {result['propagation'][kind]}", file=sys.stderr, flush=True)
    for workers in [int(w) for w in args.workers.split(",") if w]:
        print(f"throughput: {workers} worker(s) ...", file=sys.stderr, flush=True)
        run = throughput(workers, people, queries, args.clients, args.requests)
        result["throughput"].append(run)
        print(f"  {run}", file=sys.stderr, flush=True)
    targets = []
    for kind, r in result["propagation"].items():
        worst = max(r["enroll"].get("p99_ms", 0.0), r["erase"].get("p99_ms", 0.0))
        targets.append(
            f"{kind} p99 {worst:.0f} ms vs ≤ {TARGET_P99_MS:.0f} ms: "
            + ("MET" if worst <= TARGET_P99_MS and not r["failures"] else "MISSED")
        )
    result["targets"] = targets
    write_results(out_dir, "propagation", result, markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
