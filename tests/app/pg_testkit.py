"""The throwaway PostgreSQL cluster for the tests (``bench.pgcluster``): outside CI a
missing installation skips the tests that need it, with the reason; with ``CI=true`` it
fails them (``.ci/run`` installs Debian's ``postgresql``).
"""

from __future__ import annotations

import os
import subprocess
import time

import pytest

from bench.pgcluster import PostgresCluster

__all__ = ["PostgresCluster", "start_cluster", "wait_until"]


def start_cluster() -> PostgresCluster:
    """A running cluster, or a skip (outside CI) / failure (CI=true) saying why not."""
    try:
        return PostgresCluster()
    except (RuntimeError, OSError, subprocess.TimeoutExpired) as exc:
        message = f"cannot start a PostgreSQL cluster: {exc}"
        if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
            pytest.fail(message)
        pytest.skip(message)


def wait_until(predicate: object, timeout: float, interval: float = 0.02) -> float:
    """Seconds until ``predicate()`` is true (AssertionError after ``timeout``)."""
    assert callable(predicate)
    t0 = time.monotonic()
    while not predicate():
        if time.monotonic() - t0 > timeout:
            raise AssertionError(f"condition not met within {timeout} s")
        time.sleep(interval)
    return time.monotonic() - t0
