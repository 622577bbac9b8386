"""Helpers shared by the benchmarks: live service, datasets, statistics, machine, output.

Nothing here imports TensorFlow or dlib: the service runs as a subprocess
(``python -m app``) and face_recognition runs in its own virtual environment
(``bench.peer``), so every number is measured the way a user would see it.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import math
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from faces.cpu import usable_cores
from faces.folders import IMAGE_SUFFIXES

REPO = Path(__file__).resolve().parent.parent
DEFAULT_DATA = Path(os.environ.get("FACEID_BENCH_DATA", REPO.parent / "shared" / "data"))
RESULTS = REPO / "bench" / "results"


# --------------------------------------------------------------------------- datasets
def lfw_image(data: Path, name: str, index: int) -> Path:
    """Path of LFW image ``index`` (1-based) of ``name``."""
    return data / "lfw" / "train" / name / f"{name}_{index:04d}.jpg"


def read_pairs(data: Path) -> list[tuple[Path, Path, bool]]:
    """``pairsDevTrain.txt`` as (image_a, image_b, same_person), in file order.

    The file holds 1,100 genuine pairs, then 1,100 impostor pairs.
    """
    lines = (data / "lfw" / "pairsDevTrain.txt").read_text().splitlines()
    pairs: list[tuple[Path, Path, bool]] = []
    for line in lines[1:]:
        parts = line.split("\t")
        if len(parts) == 3:
            name, i, j = parts
            pairs.append((lfw_image(data, name, int(i)), lfw_image(data, name, int(j)), True))
        elif len(parts) == 4:
            n1, i, n2, j = parts
            pairs.append((lfw_image(data, n1, int(i)), lfw_image(data, n2, int(j)), False))
    return pairs


def people_images(root: Path) -> dict[str, list[Path]]:
    """Folder-per-identity dataset → {identity: sorted image paths}."""
    out: dict[str, list[Path]] = {}
    for d in sorted(p for p in root.iterdir() if p.is_dir()):
        imgs = sorted(p for p in d.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if imgs:
            out[d.name] = imgs
    return out


def spread(items: Sequence[Any], n: int) -> list[Any]:
    """``n`` items taken evenly across ``items`` (deterministic, keeps order)."""
    if n >= len(items):
        return list(items)
    idx = np.linspace(0, len(items) - 1, n).round().astype(int)
    return [items[i] for i in idx]


def load_split(path: Path | None) -> dict[str, set[str]] | None:
    """Identity split written by ``training prepare`` → {"train": {...}, "val": {...}}.

    Accepts a JSON object with list values under keys such as ``train``/``val``/``validation``
    (optionally nested per dataset, e.g. ``{"val": {"lfw": [...]}}``). None when absent.
    """
    if path is None or not path.exists():
        return None
    raw = json.loads(path.read_text())

    def names(v: Any) -> set[str]:
        if isinstance(v, dict):
            return set().union(*(names(x) for x in v.values())) if v else set()
        if isinstance(v, list):
            return {str(x).split("/")[-1] for x in v}
        return set()

    out: dict[str, set[str]] = {}
    for key, value in raw.items():
        k = key.lower()
        if k.startswith("val"):
            out["val"] = out.get("val", set()) | names(value)
        elif k.startswith("train"):
            out["train"] = out.get("train", set()) | names(value)
    return out or None


# --------------------------------------------------------------------------- statistics
def percentiles(values_s: Sequence[float]) -> dict[str, float]:
    """Latency summary in milliseconds from values in seconds."""
    if len(values_s) == 0:
        return {"n": 0}
    a = np.asarray(values_s, dtype=np.float64) * 1000.0
    return {
        "n": len(a),
        "mean_ms": round(float(a.mean()), 3),
        "p50_ms": round(float(np.percentile(a, 50)), 3),
        "p95_ms": round(float(np.percentile(a, 95)), 3),
        "p99_ms": round(float(np.percentile(a, 99)), 3),
        "max_ms": round(float(a.max()), 3),
    }


# --------------------------------------------------------------------------- machine
def machine_info() -> dict[str, Any]:
    """Cores, CPU model, GPU, memory, load, versions and date, for the record."""
    model = platform.processor() or "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    gpu = None
    if shutil.which("nvidia-smi"):
        with contextlib.suppress(Exception):
            gpu = (
                subprocess.run(
                    ["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"],
                    capture_output=True,
                    text=True,
                    timeout=10,
                ).stdout.strip()
                or None
            )
    mem_gb = None
    with contextlib.suppress(Exception):
        import psutil

        mem_gb = round(psutil.virtual_memory().total / 2**30, 1)
    commit = None
    with contextlib.suppress(Exception):
        commit = subprocess.run(
            ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
    return {
        "date": _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu_model": model,
        "cores": os.cpu_count(),
        "usable_cores": usable_cores(),
        "gpu": gpu,
        "memory_gb": mem_gb,
        "load_avg_1m": round(os.getloadavg()[0], 2),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "git_commit": commit,
    }


def machine_line(m: dict[str, Any]) -> str:
    gpu = m.get("gpu") or "no GPU"
    return (
        f"{m['date']} · {m['cpu_model']} · {m['usable_cores']}/{m['cores']} cores · {gpu} · "
        f"{m.get('memory_gb')} GiB RAM · load {m['load_avg_1m']} at start · "
        f"commit {m.get('git_commit')}"
    )


# --------------------------------------------------------------------------- output
def write_results(out_dir: Path, stem: str, result: dict[str, Any], markdown: str) -> Path:
    """Write ``<stem>.json`` and ``<stem>.md`` under ``out_dir``; print the Markdown."""
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / f"{stem}.json").write_text(json.dumps(result, indent=2, default=_jsonable) + "\n")
    (out_dir / f"{stem}.md").write_text(markdown + "\n")
    print(markdown)
    print(f"\nwrote {out_dir / (stem + '.json')} and {out_dir / (stem + '.md')}")
    return out_dir / f"{stem}.json"


def _jsonable(o: Any) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    if isinstance(o, set):
        return sorted(o)
    raise TypeError(type(o))


def md_table(rows: list[dict[str, Any]], columns: list[str]) -> str:
    def fmt(v: Any) -> str:
        if v is None:
            return "—"
        if isinstance(v, float):
            if math.isnan(v):
                return "—"
            return f"{v:.4g}" if abs(v) < 1000 else f"{v:,.0f}"
        return str(v)

    head = "| " + " | ".join(columns) + " |"
    sep = "|" + "|".join("---" for _ in columns) + "|"
    body = ["| " + " | ".join(fmt(r.get(c)) for c in columns) + " |" for r in rows]
    return "\n".join([head, sep, *body])


# --------------------------------------------------------------------------- live service
def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Service:
    """A running service: base URL, server pid (None for an external one), auth headers."""

    url: str
    pid: int | None
    headers: dict[str, str] = field(default_factory=dict)
    health: dict[str, Any] = field(default_factory=dict)
    log_path: Path | None = None

    @property
    def threshold(self) -> float | None:
        t = (self.health.get("model") or {}).get("threshold")
        return None if t is None else float(t)

    @property
    def model_version(self) -> str | None:
        v = (self.health.get("model") or {}).get("version")
        return None if v is None else str(v)


def wait_healthy(url: str, timeout_s: float, proc: subprocess.Popen | None = None) -> dict:
    """Poll ``GET /health`` until 200; raise if the process dies or the time runs out."""
    import httpx

    deadline = time.monotonic() + timeout_s
    last = ""
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"service exited with code {proc.returncode} before /health")
        try:
            r = httpx.get(url + "/health", timeout=5.0)
            if r.status_code == 200:
                return r.json()
            last = f"{r.status_code} {r.text[:200]}"
        except httpx.HTTPError as e:
            last = repr(e)
        time.sleep(0.5)
    raise TimeoutError(f"/health not ready after {timeout_s:.0f}s (last: {last})")


@contextlib.contextmanager
def live_service(
    url: str | None = None,
    *,
    model_dir: str | None = None,
    api_key: str | None = None,
    extra_env: dict[str, str] | None = None,
    startup_timeout_s: float = 300.0,
    data_dir: Path | None = None,
    workers: int = 1,
) -> Iterator[Service]:
    """Yield a healthy service.

    With ``url`` (an already-running service) nothing is started; otherwise
    ``python -m app`` is started on a free loopback port with a fresh temporary data
    directory (empty gallery) or ``data_dir``, and is stopped (SIGTERM, then SIGKILL) on
    exit. ``workers`` > 1 runs ``uvicorn app.main:create_app --factory --workers N``
    instead: N processes, each with its own model and its own copy of the gallery read at
    startup (enrolments made through one are not seen by the others, so enrol first).
    """
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    if url:
        url = url.rstrip("/")
        health = wait_healthy(url, startup_timeout_s)
        yield Service(url=url, pid=_pid_listening_on(url), headers=headers, health=health)
        return
    tmp = Path(tempfile.mkdtemp(prefix="faceid-bench-"))
    port = free_port()
    env = dict(os.environ)
    env.update(
        {
            "FACEID_HOST": "127.0.0.1",
            "FACEID_PORT": str(port),
            "FACEID_DATA_DIR": str(data_dir or tmp / "data"),
            "FACEID_LOG_LEVEL": env.get("FACEID_LOG_LEVEL", "WARNING"),
            "TF_CPP_MIN_LOG_LEVEL": "2",
        }
    )
    env.pop("FACEID_API_KEYS", None)
    if api_key:
        env["FACEID_API_KEYS"] = api_key
    if model_dir:
        env["FACEID_MODEL_DIR"] = model_dir
    env.update(extra_env or {})
    log_path = tmp / "service.log"
    with open(log_path, "wb") as log:
        command = [sys.executable, "-m", "app"]
        if workers > 1:
            command = [
                *(sys.executable, "-m", "uvicorn", "app.main:create_app", "--factory"),
                *("--host", "127.0.0.1", "--port", str(port), "--workers", str(workers)),
                *("--log-level", "warning", "--no-access-log"),
                # a worker converting its models for a minute on a busy machine must not
                # be taken for dead (uvicorn's default: 5 s, then it restarts the worker)
                *("--timeout-worker-healthcheck", "600"),
            ]
        proc = subprocess.Popen(
            command,
            cwd=REPO,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        try:
            health = wait_healthy(base, startup_timeout_s, proc)
            if workers > 1:  # the first ready worker answers: wait until every one does
                _wait_all_ready(base, 10 * workers, startup_timeout_s)
        except Exception:
            tail = log_path.read_text(errors="replace")[-3000:]
            print(f"--- service log tail ({log_path}) ---\n{tail}", file=sys.stderr)
            raise
        yield Service(url=base, pid=proc.pid, headers=headers, health=health, log_path=log_path)
    finally:
        _stop(proc)
        shutil.rmtree(tmp, ignore_errors=True)


def _wait_all_ready(url: str, in_a_row: int, timeout_s: float) -> None:
    """Poll ``/health`` on fresh connections until ``in_a_row`` answers in a row are 200
    (several worker processes share the port; a loading one answers 503)."""
    import httpx

    deadline = time.monotonic() + timeout_s
    ok = 0
    while ok < in_a_row:
        if time.monotonic() > deadline:
            raise TimeoutError(f"not every worker of {url} became ready")
        try:
            ok = ok + 1 if httpx.get(url + "/health", timeout=5.0).status_code == 200 else 0
        except httpx.HTTPError:
            ok = 0
        if not ok:
            time.sleep(0.5)


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


def _pid_listening_on(url: str) -> int | None:
    """Pid of the local process listening on the URL's port (for CPU/RSS), if visible."""
    from urllib.parse import urlparse

    import psutil

    port = urlparse(url).port
    with contextlib.suppress(Exception):
        for c in psutil.net_connections(kind="tcp"):
            if c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port == port and c.pid:
                return int(c.pid)
    return None


def largest_face(faces: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The face with the largest box (the API lists faces largest first; this re-checks)."""
    if not faces:
        return None

    def area(f: dict[str, Any]) -> float:
        x1, y1, x2, y2 = f["box"]
        return float(max(0.0, x2 - x1) * max(0.0, y2 - y1))

    return max(faces, key=area)
