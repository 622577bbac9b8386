"""End-to-end speed: concurrent clients against the live service vs face_recognition, one run.

1. Starts the service (``python -m app``, loopback, fresh temporary gallery) unless
   ``--url`` is given, and enrolls a small gallery (``--enroll`` LFW people, first image).
2. For each photo set — LFW 250×250 and CelebA whole-scene photos, never the enrolled
   images — and each concurrency (1, 4, 16): that many client threads post the photos to
   ``POST /identify?top_k=5`` back to back until ``--requests`` answers or ``--duration``
   seconds, after an untimed warm-up. Reports throughput (answered images/s), latency
   p50/p95/p99, errors (non-200 or transport), faces found, and the server process's CPU
   (cores busy = CPU seconds / wall seconds, children included) and peak RSS (sampled every
   50 ms with psutil).
3. Right after each service run, while the service sits idle, face_recognition (HOG
   detect + encode every face, what /identify does; its own venv) gets the same photos at
   the same concurrency: a ``multiprocessing`` pool of ``--peer-processes`` workers (default:
   one per usable core, how a user spreads it over the cores) fed by that many client
   threads, one image in flight each. Same photos, same run, same cores, interleaved, so
   a change in the machine's load hits both sides alike.
Headline: our images/s / face_recognition's images/s at 4 clients, per photo set (and the
ratio at every concurrency in the table). Every table states the cores each side had.

The client runs on the same cores as the server (loopback), as a user's benchmark would;
its own CPU time is reported too. face_recognition reads the files itself (no HTTP).

    python -m bench.load             # 200 photos per set, 1/4/16 clients, ≤ 60 s each
    python -m bench.load --quick     # 12 photos per set, 1/4 clients (a test runs this)
    python -m bench.load --repeat 3  # three interleaved rounds; the table keeps the median
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import psutil

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

TARGET_RATIO = 3.0
TARGET_P99_C4_MS = 250.0
HEADLINE_CLIENTS = 4


# --------------------------------------------------------------------------- photos
def choose_photos(data: Path, n: int, n_enroll: int) -> dict[str, Any]:
    lfw = people_images(data / "lfw" / "train")
    multi = [name for name, imgs in lfw.items() if len(imgs) >= 2]
    enroll_people = spread(multi, n_enroll)
    enrolled = {name: lfw[name][0] for name in enroll_people}
    used = set(enrolled.values())
    # Half the LFW photos are other images of enrolled people (matches), half strangers.
    matches = [lfw[name][1] for name in enroll_people]
    strangers = [imgs[0] for name, imgs in lfw.items() if name not in enrolled]
    lfw_photos = spread(matches, n // 2) + spread(strangers, n - min(n // 2, len(matches)))
    lfw_photos = [p for p in lfw_photos if p not in used][:n]
    celeba = people_images(data / "celeba")
    celeba_all = [p for imgs in celeba.values() for p in imgs]
    return {
        "enrolled": enrolled,
        "sets": {"lfw_250x250": lfw_photos, "celeba_scenes": spread(celeba_all, n)},
    }


# --------------------------------------------------------------------------- server probe
class ServerMonitor:
    """CPU seconds and peak RSS of the server process tree while a run lasts."""

    def __init__(self, pid: int | None) -> None:
        self.proc = psutil.Process(pid) if pid else None
        self.peak_rss = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _tree(self) -> list[psutil.Process]:
        if self.proc is None:
            return []
        try:
            return [self.proc, *self.proc.children(recursive=True)]
        except psutil.Error:
            return []

    def cpu_seconds(self) -> float:
        total = 0.0
        for p in self._tree():
            try:
                t = p.cpu_times()
                total += t.user + t.system
            except psutil.Error:
                pass
        return total

    def rss(self) -> int:
        total = 0
        for p in self._tree():
            with contextlib.suppress(psutil.Error):
                total += p.memory_info().rss
        return total

    def _sample(self) -> None:
        while not self._stop.wait(0.05):
            self.peak_rss = max(self.peak_rss, self.rss())

    def __enter__(self) -> ServerMonitor:
        self.cpu0 = self.cpu_seconds()
        self.t0 = time.perf_counter()
        self.peak_rss = self.rss()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join()
        self.wall = time.perf_counter() - self.t0
        self.cpu = self.cpu_seconds() - self.cpu0


# --------------------------------------------------------------------------- load
def enroll(service: Service, enrolled: dict[str, Path]) -> dict[str, Any]:
    import httpx

    ok, failed = 0, []
    with httpx.Client(base_url=service.url, headers=service.headers, timeout=120) as c:
        for name, path in enrolled.items():
            r = c.post(f"/identities/{name}/faces", files={"image": (path.name, path.read_bytes())})
            if r.status_code == 201:
                ok += 1
            else:
                failed.append(f"{name}: {r.status_code}")
    return {"enrolled": ok, "enroll_failed": failed}


def drive(
    service: Service,
    photos: list[bytes],
    concurrency: int,
    max_requests: int,
    max_seconds: float,
) -> dict[str, Any]:
    """``concurrency`` threads post photos to /identify until the count or time bound."""
    import httpx

    lock = threading.Lock()
    issued = 0
    lat: list[float] = []
    faces: list[int] = []
    errors: list[str] = []
    deadline = time.perf_counter() + max_seconds

    def worker(k: int) -> None:
        nonlocal issued
        with httpx.Client(base_url=service.url, headers=service.headers, timeout=60) as c:
            while True:
                with lock:
                    if issued >= max_requests or time.perf_counter() > deadline:
                        return
                    i = issued
                    issued += 1
                data = photos[(i + k) % len(photos)]
                t = time.perf_counter()
                try:
                    r = c.post("/identify", params={"top_k": 5}, files={"image": ("p.jpg", data)})
                    dt = time.perf_counter() - t
                    if r.status_code == 200:
                        n = len(r.json()["faces"])
                        with lock:
                            lat.append(dt)
                            faces.append(n)
                    else:
                        with lock:
                            errors.append(f"{r.status_code} {r.text[:100]}")
                except httpx.HTTPError as e:
                    with lock:
                        errors.append(repr(e)[:120])

    mon = ServerMonitor(service.pid)
    cpu_client0 = time.process_time()
    threads = [threading.Thread(target=worker, args=(k,)) for k in range(concurrency)]
    with mon:
        t0 = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = time.perf_counter() - t0
    f = np.asarray(faces)
    return {
        "concurrency": concurrency,
        "requests": len(lat) + len(errors),
        "ok": len(lat),
        "errors": len(errors),
        "error_samples": errors[:3],
        "wall_s": round(wall, 2),
        "images_per_s": round(len(lat) / wall, 2) if wall else None,
        "latency": percentiles(lat),
        "faces_per_image": round(float(f.mean()), 2) if len(f) else None,
        "no_face_images": int((f == 0).sum()) if len(f) else None,
        "server_cores_busy": round(mon.cpu / mon.wall, 2) if mon.proc else None,
        "server_peak_rss_mb": round(mon.peak_rss / 2**20, 1) if mon.proc else None,
        "client_cpu_s": round(time.process_time() - cpu_client0, 2),
    }


# --------------------------------------------------------------------------- report
def _peer_row(r: dict[str, Any]) -> dict[str, Any]:
    lat = r["latency"]
    return {
        "images/s": r["images_per_s"],
        "p50 ms": lat.get("p50_ms"),
        "p99 ms": lat.get("p99_ms"),
        "cores busy": r.get("cores_busy"),
        "no face": r.get("no_face"),
    }


def cpu_ms_per_image(r: dict[str, Any]) -> float | None:
    """Our CPU per answered image: the server's CPU plus the load generator's."""
    if not r.get("ok") or r.get("server_cores_busy") is None:
        return None
    server_s = r["server_cores_busy"] * r["wall_s"]
    return round((server_s + r["client_cpu_s"]) / r["ok"] * 1000, 1)


def peer_cpu_ms_per_image(r: dict[str, Any]) -> float | None:
    """face_recognition's CPU (all its worker processes) per image."""
    if not r.get("images_per_s") or r.get("cores_busy") is None:
        return None
    return round(r["cores_busy"] / r["images_per_s"] * 1000, 1)


def markdown(result: dict[str, Any]) -> str:
    rows = []
    for set_name, runs in result["service"].items():
        for r in runs:
            rows.append(
                {
                    "photos": set_name,
                    "clients": r["concurrency"],
                    "ok": r["ok"],
                    "errors": r["errors"],
                    "images/s": r["images_per_s"],
                    "p50 ms": r["latency"].get("p50_ms"),
                    "p95 ms": r["latency"].get("p95_ms"),
                    "p99 ms": r["latency"].get("p99_ms"),
                    "faces/img": r["faces_per_image"],
                    "server cores busy": r["server_cores_busy"],
                    "server peak RSS MB": r["server_peak_rss_mb"],
                }
            )
    cores = result["machine"].get("usable_cores")
    lines = [
        "### End-to-end speed — POST /identify vs face_recognition (same photos, same run)",
        "",
        f"Machine: {machine_line(result['machine'])}; load {result.get('load_after')} at end",
        f"Command: `{result['command']}`",
        f"Gallery: {result['gallery']}",
        f"Cores: the service ({result.get('service_workers', 1)} process(es)) and its load "
        f"generator share the {cores} usable cores"
        + (
            f"; face_recognition runs {result['peer_processes']} worker processes on the "
            "same cores, fed the same photos at the same concurrency right after each "
            "service run."
            if result.get("peer_processes")
            else "."
        ),
        "",
        "Service (loopback HTTP, multipart upload, top_k=5)",
        "",
        md_table(rows, list(rows[0]) if rows else []),
    ]
    cmp_rows = []
    for set_name, runs in (result.get("peer") or {}).items():
        ours = {r["concurrency"]: r for r in result["service"].get(set_name, [])}
        for r in runs:
            mine = ours.get(r["clients"])
            row = {"photos": set_name, "clients": r["clients"]}
            if mine:
                row |= {
                    "ours images/s": mine["images_per_s"],
                    "ours p50 ms": mine["latency"].get("p50_ms"),
                    "ours p99 ms": mine["latency"].get("p99_ms"),
                }
            row |= {f"fr {k}": v for k, v in _peer_row(r).items()}
            if mine and r["images_per_s"]:
                row["ratio"] = round(mine["images_per_s"] / r["images_per_s"], 2)
                ours_cpu, fr_cpu = cpu_ms_per_image(mine), peer_cpu_ms_per_image(r)
                row["ours CPU ms/img"], row["fr CPU ms/img"] = ours_cpu, fr_cpu
                if ours_cpu and fr_cpu:
                    row["CPU ratio"] = round(fr_cpu / ours_cpu, 2)
            cmp_rows.append(row)
    if cmp_rows:
        lines += [
            "",
            f"Equal cores: face_recognition with {result.get('peer_processes')} worker "
            f"processes ({result.get('peer_name')}; every face encoded) vs the service, "
            "per concurrency (fr = face_recognition). `ratio`: images/s over images/s. "
            "`CPU ratio`: face_recognition's CPU time per image over ours (server plus load "
            "generator): what the throughput ratio becomes when both sides get the same "
            "CPU time, which a machine shared with other jobs does not guarantee (the "
            "scheduler shares CPU per thread, and the two sides run different numbers of "
            "threads).",
            "",
            md_table(cmp_rows, list(dict.fromkeys(k for r in cmp_rows for k in r))),
        ]
    lines += [
        "",
        "Headline: " + "; ".join(result["headline"]),
        "",
        "Targets: " + "; ".join(result["targets"]),
    ]
    return "\n".join(lines)


def summarise(result: dict[str, Any]) -> None:
    head, targ = [], []
    for set_name, runs in result["service"].items():
        by_c = {r["concurrency"]: r for r in runs}
        peer_by_c = {r["clients"]: r for r in (result.get("peer") or {}).get(set_name, [])}
        c = HEADLINE_CLIENTS if HEADLINE_CLIENTS in by_c else max(by_c)
        ours, peer = by_c[c], peer_by_c.get(c)
        if peer and peer["images_per_s"]:
            ratio = ours["images_per_s"] / peer["images_per_s"]
            ours_cpu, fr_cpu = cpu_ms_per_image(ours), peer_cpu_ms_per_image(peer)
            cpu_note = (
                f"; CPU per image {ours_cpu} ms vs {fr_cpu} ms = {fr_cpu / ours_cpu:.2f}×"
                if ours_cpu and fr_cpu
                else ""
            )
            head.append(
                f"{set_name}: {ours['images_per_s']} img/s vs {peer['images_per_s']} img/s "
                f"(c={c}, face_recognition {result.get('peer_processes')} processes) = "
                f"{ratio:.2f}×{cpu_note}"
            )
            targ.append(
                f"{set_name} c={c} ratio {ratio:.2f}× vs ≥ {TARGET_RATIO}×: "
                + ("MET" if ratio >= TARGET_RATIO else f"MISSED by {TARGET_RATIO - ratio:.2f}×")
            )
        else:
            head.append(f"{set_name}: {ours['images_per_s']} img/s (c={c})")
    c4 = [r for r in result["service"].get("lfw_250x250", []) if r["concurrency"] == 4]
    if c4 and c4[0]["latency"].get("p99_ms") is not None:
        p99 = c4[0]["latency"]["p99_ms"]
        targ.append(
            f"LFW c=4 p99 {p99:.0f} ms vs < {TARGET_P99_C4_MS:.0f} ms: "
            + ("MET" if p99 < TARGET_P99_C4_MS else f"MISSED by {p99 - TARGET_P99_C4_MS:.0f} ms")
        )
    result["headline"], result["targets"] = head, targ


def run_peer_level(
    paths: list[Path], processes: int, clients: int, venv: Path | None
) -> dict[str, Any]:
    """face_recognition over ``paths`` with a pool of ``processes`` and ``clients`` senders."""
    from bench.peer import run_peer

    r = run_peer(paths, venv=venv, all_faces=True, processes=processes, clients=clients)
    s = r["summary"]
    return {
        "clients": clients,
        "processes": processes,
        "images": s["images"],
        "images_per_s": round(s["images_per_s"], 2),
        "latency": percentiles(list(r["seconds"])),
        "detect_p50_ms": round(float(np.median(r["detect_s"])) * 1000, 1),
        "encode_p50_ms": round(float(np.median(r["encode_s"])) * 1000, 1),
        "no_face": s["no_face"],
        "faces_per_image": round(float(np.mean(r["n_faces"])), 2),
        "cores_busy": round(s["cores_used"], 2) if s.get("cores_used") else None,
    }


def _median_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The run with the median images/s (others kept under ``rounds``)."""
    ordered = sorted(runs, key=lambda r: r["images_per_s"] or 0)
    chosen = dict(ordered[len(ordered) // 2])
    if len(runs) > 1:
        chosen["rounds_images_per_s"] = [r["images_per_s"] for r in runs]
    return chosen


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--url", default=None, help="use a running service instead of starting one")
    ap.add_argument("--model-dir", default=None)
    ap.add_argument("--api-key", default=None)
    ap.add_argument("--photos", type=int, default=200, help="photos per set")
    ap.add_argument("--enroll", type=int, default=50, help="people enrolled first")
    ap.add_argument("--concurrency", default="1,4,16")
    ap.add_argument("--requests", type=int, default=200, help="max requests per run")
    ap.add_argument("--duration", type=float, default=60.0, help="max seconds per run")
    ap.add_argument("--warmup", type=int, default=4, help="untimed requests per set")
    ap.add_argument("--repeat", type=int, default=1, help="interleaved rounds (median kept)")
    ap.add_argument("--no-peer", action="store_true")
    ap.add_argument("--peer-venv", type=Path, default=None)
    ap.add_argument(
        "--peer-processes",
        type=int,
        default=0,
        help="face_recognition worker processes (0: one per usable core)",
    )
    ap.add_argument(
        "--workers",
        type=int,
        default=1,
        help="service worker processes (uvicorn --workers; the gallery is enrolled first "
        "through one process, then read by all)",
    )
    ap.add_argument("--quick", action="store_true", help="12 photos/set, c=1,4, 12 requests")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)
    if args.quick:
        args.photos, args.enroll, args.requests, args.concurrency = 12, 5, 12, "1,4"
        args.duration, args.warmup = 30.0, 2
    out_dir = args.out or (RESULTS / "quick" if args.quick else RESULTS)
    levels = [int(x) for x in args.concurrency.split(",")]
    chosen = choose_photos(args.data, args.photos, args.enroll)

    result: dict[str, Any] = {
        "command": "python -m bench.load " + " ".join(argv if argv is not None else sys.argv[1:]),
        "machine": machine_info(),
        "service": {},
    }
    peer_processes = args.peer_processes or int(result["machine"]["usable_cores"] or 1)
    if not args.no_peer:
        from bench.peer import PEER_NAME

        result["peer_name"] = PEER_NAME
        result["peer_processes"] = peer_processes
        result["peer"] = {}
    result["service_workers"] = args.workers
    data_dir = Path(tempfile.mkdtemp(prefix="faceid-load-")) if args.workers > 1 else None
    if data_dir is not None:  # enrol through one process, then serve with several
        with live_service(model_dir=args.model_dir, data_dir=data_dir) as one:
            e = enroll(one, chosen["enrolled"])
    with live_service(
        args.url,
        model_dir=args.model_dir,
        api_key=args.api_key,
        data_dir=data_dir,
        workers=args.workers,
    ) as service:
        result["model"] = service.health.get("model")
        if data_dir is None:
            e = enroll(service, chosen["enrolled"])
        result["gallery"] = f"{e['enrolled']} LFW people enrolled (1 photo each)"
        result["enroll_failed"] = e["enroll_failed"]
        for set_name, paths in chosen["sets"].items():
            photos = [p.read_bytes() for p in paths]
            drive(service, photos, min(2, len(photos)), args.warmup, 60)  # warm-up
            ours: dict[int, list[dict[str, Any]]] = {c: [] for c in levels}
            theirs: dict[int, list[dict[str, Any]]] = {c: [] for c in levels}
            for round_ in range(args.repeat):
                for c in levels:
                    print(f"load: {set_name} c={c} round {round_ + 1} ...", file=sys.stderr)
                    r = drive(service, photos, c, args.requests, args.duration)
                    print(f"  {json.dumps(r)}", file=sys.stderr, flush=True)
                    ours[c].append(r)
                    if not args.no_peer:
                        pr = run_peer_level(paths, peer_processes, c, args.peer_venv)
                        print(f"  face_recognition: {json.dumps(pr)}", file=sys.stderr)
                        theirs[c].append(pr)
            result["service"][set_name] = [_median_run(ours[c]) for c in levels]
            if not args.no_peer:
                result["peer"][set_name] = [_median_run(theirs[c]) for c in levels]
    if data_dir is not None:
        shutil.rmtree(data_dir, ignore_errors=True)
    result["load_after"] = round(os.getloadavg()[0], 2)
    summarise(result)
    write_results(out_dir, "load", result, markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
