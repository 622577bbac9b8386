"""Live service processes on loopback for the scale-out tests: start, kill -9, restart,
and the scenarios both engines share (``test_scale_out_pg.py``, ``test_scale_out_sqlite.py``).

Servers run the tiny test model with the SavedModel engine and a batch size of 1, so a
process is ready after its TensorFlow import and one small warm-up.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from faceid_testkit import LFW, free_port, image_file

from app.settings import REPO_ROOT

BOUND_S = 1.0  # the documented staleness bound
EXACT = 0.9999  # identify threshold: only the enrolled photo itself matches


def photos(n: int) -> list[Path]:
    """The first photo of ``n`` LFW people (one detectable face each)."""
    people = sorted(p for p in LFW.iterdir() if p.is_dir())[:n]
    return [sorted(p.iterdir())[0] for p in people]


class Server:
    """One ``python -m app`` process; ``start`` again after ``kill`` gives a fresh one."""

    def __init__(self, name: str, model_dir: Path, log_dir: Path, **env: str) -> None:
        self.name = name
        self.model_dir = model_dir
        self.log_dir = log_dir
        self.extra_env = env
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = 0
        self.starts = 0

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("FACEID_")}
        env.update(
            FACEID_MODEL_DIR=str(self.model_dir),
            FACEID_HOST="127.0.0.1",
            FACEID_PORT=str(self.port),
            FACEID_LOG_LEVEL="WARNING",
            FACEID_ENGINE="savedmodel",
            FACEID_BATCH_MAX_SIZE="1",
            FACEID_DETECT_WORKERS="2",
            # The photos' quality is not what these tests are about (the tiny model's
            # blur estimate refuses some LFW photos).
            FACEID_ENROLL_QUALITY_FLOOR="0",
            FACEID_PROBE_QUALITY_FLOOR="0",
            TF_CPP_MIN_LOG_LEVEL="2",
            PYTHONUNBUFFERED="1",
        )
        env.update(self.extra_env)
        return env

    def launch(self, port: int | None = None) -> None:
        """Start the process (returns at once; ``wait_ready`` waits for /health), on
        ``port`` (default: a free one)."""
        self.port = port or free_port()
        self.starts += 1
        log = (self.log_dir / f"{self.name}-{self.starts}.log").open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "app"],
            cwd=REPO_ROOT,
            env=self.env(),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()

    def log_tail(self) -> str:
        path = self.log_dir / f"{self.name}-{self.starts}.log"
        return path.read_text(errors="replace")[-3000:] if path.exists() else ""

    def wait_ready(self, timeout: float = 300.0) -> None:
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(
                    f"{self.name} exited with {self.proc.returncode}:\n{self.log_tail()}"
                )
            try:
                if httpx.get(f"{self.base}/health", timeout=5).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        raise AssertionError(f"{self.name} did not become ready:\n{self.log_tail()}")

    def kill9(self) -> None:
        """SIGKILL the process group (its uvicorn workers too): no shutdown hook runs."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill9()

    # ------------------------------------------------------------- requests
    def health(self) -> dict[str, Any]:
        response = httpx.get(f"{self.base}/health", timeout=10)
        assert response.status_code == 200, response.text
        return dict(response.json())

    def enroll(self, identity: str, photo: Path) -> httpx.Response:
        return httpx.post(
            f"{self.base}/identities/{identity}/faces", files=image_file(photo), timeout=60
        )

    def delete(self, identity: str) -> httpx.Response:
        return httpx.delete(f"{self.base}/identities/{identity}", timeout=60)

    def identify(self, photo: Path, top_k: int = 1) -> dict[str, Any]:
        """The largest face's result, at the exact-photo threshold."""
        response = httpx.post(
            f"{self.base}/identify",
            params={"threshold": EXACT, "top_k": top_k, "max_faces": 1},
            files=image_file(photo),
            timeout=60,
        )
        assert response.status_code == 200, response.text
        return dict(response.json()["faces"][0])

    def who(self, photo: Path) -> str | None:
        identity = self.identify(photo)["identity"]
        return None if identity is None else str(identity)

    def known_identities(self, probe: Path) -> set[str]:
        """Every identity in this process's memory (the candidates of one search)."""
        return {c["identity"] for c in self.identify(probe, top_k=100)["candidates"]}

    def database_identities(self) -> dict[str, int]:
        """Identity → faces, as the database holds them (GET /identities reads it)."""
        body = httpx.get(f"{self.base}/identities", params={"limit": 1000}, timeout=30).json()
        return {i["identity"]: i["faces"] for i in body["identities"]}


def start_all(servers: list[Server]) -> None:
    """Launch every server at once, then wait for each (TensorFlow loads in parallel)."""
    for server in servers:
        server.launch()
    for server in servers:
        server.wait_ready()


def wait_for(predicate: Callable[[], bool], timeout: float, interval: float = 0.02) -> float:
    """Seconds until ``predicate()`` holds (AssertionError after ``timeout``)."""
    t0 = time.monotonic()
    while not predicate():
        if time.monotonic() - t0 > timeout:
            raise AssertionError(f"not within {timeout} s")
        time.sleep(interval)
    return time.monotonic() - t0


# ------------------------------------------------------------------ scenarios
def enrol_on_a_is_identified_on_b(a: Server, b: Server, photo: Path) -> None:
    faces_before = b.health()["gallery"]["faces"]
    assert b.who(photo) is None
    response = a.enroll("Scale Person", photo)
    assert response.status_code == 201, response.text
    assert a.who(photo) == "Scale Person"  # read-your-writes on A, at once
    delay = wait_for(lambda: b.health()["gallery"]["faces"] == faces_before + 1, 10 * BOUND_S)
    assert delay < BOUND_S, f"B saw the enrollment after {delay:.2f} s"
    assert b.who(photo) == "Scale Person"


def delete_on_a_is_unknown_on_b(a: Server, b: Server, photo: Path) -> None:
    assert b.who(photo) == "Scale Person"
    assert a.delete("Scale Person").status_code == 204
    assert a.who(photo) is None
    delay = wait_for(lambda: "Scale Person" not in b.known_identities(photo), 10 * BOUND_S)
    assert delay < BOUND_S + 1.0, f"B forgot the person after {delay:.2f} s"  # + one search
    assert b.who(photo) is None


def killed_b_gets_what_a_enrolled_meanwhile(a: Server, b: Server, photo: Path) -> None:
    b.kill9()
    response = a.enroll("While B Was Dead", photo)
    assert response.status_code == 201, response.text
    b.launch()
    b.wait_ready()
    assert b.who(photo) == "While B Was Dead"
    seq = a.health()["gallery"]["change_seq"]
    wait_for(lambda: b.health()["gallery"]["change_seq"] == seq, 10 * BOUND_S)
    assert a.delete("While B Was Dead").status_code == 204


def concurrent_clients_leave_every_gallery_equal_to_the_database(
    servers: list[Server], probe: Path
) -> None:
    """8 clients enrolling and deleting across the servers at once."""
    pictures = photos(24)
    errors: list[str] = []

    def client(n: int) -> None:
        server = servers[n % len(servers)]
        for i in range(6):
            name = f"client{n}-{i % 3}"
            if i >= 3 and i % 2 == 1:
                response = server.delete(name)
                expected = {204}
            else:
                response = server.enroll(name, pictures[(3 * n + i) % len(pictures)])
                expected = {201}
            if response.status_code not in expected:
                errors.append(f"{server.name} {name}: {response.status_code} {response.text}")

    threads = [threading.Thread(target=client, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    truth = servers[0].database_identities()
    # Each client enrolled -0, -1, -2, deleted -0, enrolled -1 again, deleted -2.
    assert truth == {f"client{n}-1": 2 for n in range(8)}
    faces = sum(truth.values())

    def converged() -> bool:
        seqs = {s.health()["gallery"]["change_seq"] for s in servers}
        counts = {s.health()["gallery"]["faces"] for s in servers}
        return len(seqs) == 1 and counts == {faces}

    wait_for(converged, 10 * BOUND_S, interval=0.1)
    for server in servers:
        assert server.database_identities() == truth
        assert server.known_identities(probe) == set(truth)
        assert server.health()["gallery"]["identities"] == len(truth)
    for name in truth:
        assert servers[0].delete(name).status_code == 204
