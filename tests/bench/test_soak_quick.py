"""``python -m bench.soak --quick`` runs against the real service and reports sanely:
every route exercised, no 5xx, no transport error, RSS measured."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DATA = Path(os.environ.get("FACEID_BENCH_DATA", REPO.parent / "shared" / "data"))
MODEL = REPO / "model_store" / "faceid" / "2" / "model_card.json"


@pytest.mark.slow
@pytest.mark.subprocess
@pytest.mark.live_service
@pytest.mark.skipif(not (DATA / "lfw").is_dir(), reason=f"no datasets at {DATA}")
@pytest.mark.skipif(not MODEL.exists(), reason="no shipped model in model_store/")
def test_soak_quick(tmp_path: Path) -> None:
    command = [sys.executable, "-m", "bench.soak", "--quick", "--out", str(tmp_path)]
    env = {**os.environ, "FACEID_BENCH_DATA": str(DATA)}
    run = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert (tmp_path / "soak.md").read_text().startswith("### Soak: 4 clients")
    result = json.loads((tmp_path / "soak.json").read_text())["soak"]
    assert result["concurrency"] == 4 and 14 <= result["duration_s"] < 60
    assert result["5xx"] == 0 and result["transport_errors"] == 0 and result["unexpected"] == 0
    assert result["requests"] == sum(r["requests"] for r in result["routes"]) >= 20
    assert all(r["requests"] >= 1 for r in result["routes"]), result["routes"]
    hostile = next(r for r in result["routes"] if "not a photo" in r["route"])
    assert set(hostile["statuses"]) == {"415"}
    assert 0 < result["p50_ms"] <= result["p99_ms"]
    rss = result["rss"]
    assert rss["measured"] and rss["peak_mib"] >= max(rss["start_mib"], rss["end_mib"]) > 100
