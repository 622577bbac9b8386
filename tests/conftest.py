"""Fixtures shared by every test folder: the shared datasets and one face pipeline; and
the markers that ``make test-fast`` leaves out (registered in pyproject.toml)."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

REPO = Path(__file__).resolve().parents[1]
DATA_ROOT = REPO.parent / "shared" / "data"


@pytest.fixture(scope="session")
def data_root() -> Path:
    if not (DATA_ROOT / "orl").is_dir():
        pytest.skip(f"shared datasets not found at {DATA_ROOT}")
    return DATA_ROOT


@pytest.fixture(scope="session")
def pipeline():  # type: ignore[no-untyped-def]
    from faces import FacePipeline

    return FacePipeline()


# ------------------------------------------------------------------------------- markers
# Tests that reach outside this process carry a marker, so that `make test-fast` can leave
# them out. Two are applied here; `live_service` and `subprocess` are written on the tests.
OUTSIDE_THE_PROCESS = ("postgres", "browser", "live_service", "subprocess")
FIXTURE_MARKERS = {"postgres": "postgres"}  # a test using this fixture gets this marker
BROWSER_TESTS = Path(__file__).resolve().parent / "browser"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.path.is_relative_to(BROWSER_TESTS):
            item.add_marker(pytest.mark.browser)
        for fixture, marker in FIXTURE_MARKERS.items():
            if fixture in getattr(item, "fixturenames", ()):
                item.add_marker(marker)


@pytest.fixture(autouse=True)
def _marked_if_it_leaves_the_process(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> Iterator[None]:
    """Keeps the markers honest: a test that starts a process (``subprocess.Popen``, which
    ``run`` and ``check_output`` use) without a marker from ``OUTSIDE_THE_PROCESS``, or
    that asks for a marked fixture at run time (``request.getfixturevalue``) without its
    marker, fails at teardown. Processes started by module- or session-scoped fixtures
    before the test's own set-up are not seen here."""
    node = request.node
    started: list[str] = []
    if not any(node.get_closest_marker(m) for m in OUTSIDE_THE_PROCESS):
        original = subprocess.Popen.__init__

        def recording(self: subprocess.Popen[Any], args: Any, *more: Any, **kw: Any) -> None:
            started.append(str(args)[:200])
            original(self, args, *more, **kw)

        monkeypatch.setattr(subprocess.Popen, "__init__", recording)
    yield
    unmarked = [
        f"uses the `{fixture}` fixture: mark it @pytest.mark.{marker}"
        for fixture, marker in FIXTURE_MARKERS.items()
        if fixture in request.fixturenames and node.get_closest_marker(marker) is None
    ]
    if started:
        unmarked.append(
            f"started {started}: mark it @pytest.mark.subprocess (or live_service, if it "
            "is the service)"
        )
    if unmarked:
        pytest.fail(f"{node.nodeid} " + "; ".join(unmarked), pytrace=False)
