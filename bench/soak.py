"""Soak: many clients on mixed routes for a long while; does anything break or grow?

Starts the service (``python -m app``, loopback, fresh temporary gallery, an API key)
unless ``--url`` is given, enrolls a few LFW people, then ``--concurrency`` client threads
send requests back to back for ``--duration`` seconds, each picking a route at random:
identify, verify, embed, enrol-then-delete a face, list, get an identity, health, and a
hostile upload (text posing as a photo, expected 415). Reports per route and overall:
requests, status codes, 5xx, transport errors, answers other than the expected ones,
latency p50/p99; and the server process's RSS after warm-up, at the end, its peak and its
growth (MiB and MiB per minute, from a line fitted to samples taken every 0.5 s).

    python -m bench.soak                                   # 16 clients, 300 s
    python -m bench.soak --concurrency 32 --duration 900   # longer, harder
    python -m bench.soak --quick                           # 4 clients, 15 s (a test runs this)

Exit status 1 when any answer was a 5xx or a transport error.
"""

from __future__ import annotations

import argparse
import random
import threading
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import psutil

from bench.common import (
    DEFAULT_DATA,
    RESULTS,
    live_service,
    machine_info,
    machine_line,
    md_table,
    people_images,
    percentiles,
    spread,
    write_results,
)

API_KEY = "soak-key"
# route -> (weight, expected statuses)
ROUTES: dict[str, tuple[int, set[int]]] = {
    "POST /identify": (35, {200}),
    "POST /verify": (10, {200, 422}),
    "POST /embed": (10, {200}),
    "POST+DELETE /identities/{identity}/faces": (10, {201, 204, 422}),
    "GET /identities": (10, {200}),
    "GET /identities/{identity}": (5, {200}),
    "GET /health": (5, {200}),
    "POST /identify (not a photo)": (15, {415}),
}


class RssSampler:
    """Samples the server's RSS (MiB) every ``interval`` seconds in a thread."""

    def __init__(self, pid: int | None, interval: float = 0.5) -> None:
        self.process = psutil.Process(pid) if pid else None
        self.interval = interval
        self.samples: list[tuple[float, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _rss(self) -> float:
        assert self.process is not None
        return self.process.memory_info().rss / 2**20

    def _run(self) -> None:
        t0 = time.monotonic()
        while not self._stop.wait(self.interval):
            self.samples.append((time.monotonic() - t0, self._rss()))

    def __enter__(self) -> RssSampler:
        if self.process is not None:
            self.samples.append((0.0, self._rss()))
            self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
        if self.process is not None:
            self.samples.append((self.samples[-1][0] + self.interval, self._rss()))

    def summary(self) -> dict[str, Any]:
        if not self.samples:
            return {"measured": False}
        t = np.array([s[0] for s in self.samples])
        rss = np.array([s[1] for s in self.samples])
        slope = float(np.polyfit(t, rss, 1)[0]) * 60.0 if len(t) >= 3 else 0.0
        return {
            "measured": True,
            "start_mib": round(float(rss[0]), 1),
            "end_mib": round(float(rss[-1]), 1),
            "peak_mib": round(float(rss.max()), 1),
            "growth_mib": round(float(rss[-1] - rss[0]), 1),
            "slope_mib_per_min": round(slope, 2),
            "samples": len(rss),
        }


class Worker(threading.Thread):
    """One client: random routes back to back until the deadline."""

    def __init__(
        self, url: str, photos: dict[str, Any], deadline: float, seed: int, results: dict
    ) -> None:
        super().__init__(daemon=True)
        self.http = httpx.Client(
            base_url=url, headers={"Authorization": f"Bearer {API_KEY}"}, timeout=60
        )
        self.photos = photos
        self.deadline = deadline
        self.rng = random.Random(seed)
        self.results = results
        self.names = list(ROUTES)
        self.weights = [ROUTES[n][0] for n in self.names]

    def _photo(self) -> tuple[str, bytes, str]:
        path = self.rng.choice(self.photos["queries"])
        return (path.name, path.read_bytes(), "image/jpeg")

    def _once(self, route: str) -> int:
        http, rng = self.http, self.rng
        if route == "POST /identify":
            return http.post("/identify", files={"image": self._photo()}).status_code
        if route == "POST /verify":
            files = {"image_a": self._photo(), "image_b": self._photo()}
            return http.post("/verify", files=files).status_code
        if route == "POST /embed":
            return http.post("/embed", files={"image": self._photo()}).status_code
        if route == "POST+DELETE /identities/{identity}/faces":
            name = f"Soak {rng.randrange(1_000_000)}"
            enrolled = http.post(f"/identities/{name}/faces", files={"image": self._photo()})
            if enrolled.status_code != 201:
                return enrolled.status_code
            return http.delete(f"/identities/{name}").status_code
        if route == "GET /identities":
            return http.get("/identities", params={"limit": 50}).status_code
        if route == "GET /identities/{identity}":
            return http.get(f"/identities/{rng.choice(self.photos['names'])}").status_code
        if route == "GET /health":
            return http.get("/health").status_code
        notes = ("notes.jpg", b"just some text, not a photo\n" * 20, "image/jpeg")
        return http.post("/identify", files={"image": notes}).status_code

    def run(self) -> None:
        while time.monotonic() < self.deadline:
            route = self.rng.choices(self.names, self.weights)[0]
            t0 = time.perf_counter()
            try:
                status = self._once(route)
            except httpx.HTTPError as exc:
                status = -1
                self.results["transport_errors"].append(f"{route}: {type(exc).__name__}")
            self.results["records"].append((route, status, time.perf_counter() - t0))
        self.http.close()


def choose_photos(data: Path, n_people: int) -> dict[str, Any]:
    lfw = people_images(data / "lfw" / "train")
    multi = spread(sorted(name for name, imgs in lfw.items() if len(imgs) >= 3), n_people)
    return {
        "enrolled": {name.replace("_", " "): lfw[name][0] for name in multi},
        "names": [name.replace("_", " ") for name in multi],
        "queries": [lfw[name][i] for name in multi for i in (1, 2)],
    }


def soak(url: str, pid: int | None, concurrency: int, duration: float, data: Path) -> dict:
    photos = choose_photos(data, 8)
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {API_KEY}"}) as http:
        for name, path in photos["enrolled"].items():
            files = {"image": (path.name, path.read_bytes(), "image/jpeg")}
            response = http.post(f"/identities/{name}/faces", files=files, timeout=120)
            response.raise_for_status()
        for path in photos["queries"][:4]:  # warm-up, untimed
            http.post("/identify", files={"image": (path.name, path.read_bytes())}, timeout=120)
    results: dict[str, list[Any]] = {"records": [], "transport_errors": []}
    deadline = time.monotonic() + duration
    workers = [Worker(url, photos, deadline, seed, results) for seed in range(concurrency)]
    with RssSampler(pid) as rss:
        t0 = time.monotonic()
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        wall = time.monotonic() - t0
    by_route: dict[str, list[tuple[int, float]]] = defaultdict(list)
    for route, status, seconds in results["records"]:
        by_route[route].append((status, seconds))
    rows = []
    for route in ROUTES:
        answers = by_route.get(route, [])
        statuses = Counter(s for s, _ in answers)
        lat = percentiles([t for _, t in answers])
        rows.append(
            {
                "route": route,
                "requests": len(answers),
                "statuses": dict(sorted(statuses.items())),
                "5xx": sum(n for s, n in statuses.items() if s >= 500),
                "unexpected": sum(n for s, n in statuses.items() if s not in ROUTES[route][1]),
                "p50_ms": lat.get("p50_ms"),
                "p99_ms": lat.get("p99_ms"),
            }
        )
    everything = percentiles([t for _, _, t in results["records"]])
    return {
        "concurrency": concurrency,
        "duration_s": round(wall, 1),
        "requests": len(results["records"]),
        "requests_per_s": round(len(results["records"]) / wall, 2),
        "5xx": sum(r["5xx"] for r in rows),
        "unexpected": sum(r["unexpected"] for r in rows),
        "transport_errors": len(results["transport_errors"]),
        "transport_error_examples": results["transport_errors"][:10],
        "p50_ms": everything.get("p50_ms"),
        "p99_ms": everything.get("p99_ms"),
        "rss": rss.summary(),
        "routes": rows,
    }


def markdown(result: dict[str, Any]) -> str:
    s, rss = result["soak"], result["soak"]["rss"]
    lines = [
        f"### Soak: {s['concurrency']} clients, {s['duration_s']} s, mixed routes",
        "",
        machine_line(result["machine"]),
        "",
        f"{s['requests']} requests ({s['requests_per_s']}/s): **{s['5xx']} 5xx**, "
        f"{s['transport_errors']} transport errors, {s['unexpected']} unexpected answers; "
        f"latency p50 {s['p50_ms']} ms, p99 {s['p99_ms']} ms.",
        "",
    ]
    if rss.get("measured"):
        lines += [
            f"Server RSS: {rss['start_mib']} MiB after warm-up, {rss['end_mib']} MiB at the "
            f"end (peak {rss['peak_mib']}), growth {rss['growth_mib']} MiB, fitted slope "
            f"{rss['slope_mib_per_min']} MiB/min.",
            "",
        ]
    table = [
        {**r, "statuses": " ".join(f"{k}×{v}" for k, v in r["statuses"].items())}
        for r in s["routes"]
    ]
    lines.append(
        md_table(table, ["route", "requests", "statuses", "5xx", "unexpected", "p50_ms", "p99_ms"])
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", help="an already running service (with key soak-key)")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--duration", type=float, default=300.0, help="seconds")
    parser.add_argument("--quick", action="store_true", help="4 clients for 15 s")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--model-dir", help="FACEID_MODEL_DIR for the started service")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    if args.quick:
        args.concurrency, args.duration = 4, 15.0
    machine = machine_info()
    with live_service(args.url, model_dir=args.model_dir, api_key=API_KEY) as service:
        result = soak(service.url, service.pid, args.concurrency, args.duration, args.data)
    report = {"machine": machine, "command": "python -m bench.soak", "soak": result}
    write_results(args.out, "soak", report, markdown(report))
    return 1 if result["5xx"] or result["transport_errors"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
