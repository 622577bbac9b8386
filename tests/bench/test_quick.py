"""Each benchmark's ``--quick`` mode runs and writes sane results (benchmarks are not tests;
this only keeps the scripts working).

The accuracy and load quick runs start the real service (``python -m app``) and need the
shipped model; they also run face_recognition in its own venv
(``~/.cache/faceid/peer-venv``, created from PyPI on first use, ~15 s and ~130 MB).
Set ``FACEID_BENCH_NO_PEER=1`` to pass ``--no-peer`` instead (e.g. an offline CI).
"""

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
NO_PEER = os.environ.get("FACEID_BENCH_NO_PEER") == "1"

pytestmark = pytest.mark.subprocess  # each runs a benchmark: python -m bench.<name> --quick
needs_data = pytest.mark.skipif(not (DATA / "lfw").is_dir(), reason=f"no datasets at {DATA}")
needs_model = pytest.mark.skipif(not MODEL.exists(), reason="no shipped model in model_store/")


def run_quick(
    module: str, out: Path, *extra: str, timeout: int = 600, stem: str | None = None
) -> dict:
    cmd = [sys.executable, "-m", module, "--quick", "--out", str(out), *extra]
    p = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=timeout)
    assert p.returncode == 0, f"{' '.join(cmd)} failed:\n{p.stdout[-2000:]}\n{p.stderr[-4000:]}"
    stem = stem or module.rsplit(".", 1)[1]
    assert (out / f"{stem}.md").read_text().startswith("###")
    return json.loads((out / f"{stem}.json").read_text())


def check_machine(m: dict) -> None:
    assert m["cores"] >= 1 and m["cpu_model"] and m["date"]


def test_gallery_quick(tmp_path: Path) -> None:
    r = run_quick("bench.gallery", tmp_path)
    check_machine(r["machine"])
    (row,) = r["exact"]
    assert row["faces"] == 10_000
    s = row["search_top5_single"]
    assert s["n"] == 100 and 0 < s["p50_ms"] <= s["p99_ms"] < 5_000
    assert row["rank1_sanity"] >= 0.95  # synthetic genuine queries find their identity
    assert row["add_many_faces_per_s"] > 1_000
    assert row["matrix_mb"] == pytest.approx(10_000 * 128 * 4 / 2**20, abs=0.1)
    assert row["startup_s"] > 0 and row["durable_enroll_per_s"] > 0


@pytest.mark.slow
@needs_data
@needs_model
@pytest.mark.live_service
def test_accuracy_quick(tmp_path: Path) -> None:
    r = run_quick("bench.accuracy", tmp_path, *(["--no-peer"] if NO_PEER else []))
    check_machine(r["machine"])
    systems = ["service"] if NO_PEER else ["service", "face_recognition"]
    assert sorted(r["systems"]) == sorted(systems)
    for name in systems:
        s = r["systems"][name]
        v = s["verification"]["all"]
        assert v["pairs"] == 48
        assert 0.5 <= v["accuracy_10fold"] <= 1 and 0.5 <= v["auc"] <= 1
        assert 0 <= v["failed_pairs"] <= 48 and 0 <= s["no_face_images"] <= s["images"]
        i = s["identification"]
        assert i["enrolled_people"] == 8 and i["impostor_probes"] == 8
        assert 0 <= i["rank1"] <= 1
    assert r["systems"]["service"]["errors"] == 0
    assert (tmp_path / "accuracy_roc.png").stat().st_size > 1_000


@pytest.mark.slow
@needs_data
@needs_model
@pytest.mark.live_service
def test_load_quick(tmp_path: Path) -> None:
    r = run_quick("bench.load", tmp_path, *(["--no-peer"] if NO_PEER else []))
    check_machine(r["machine"])
    assert set(r["service"]) == {"lfw_250x250", "celeba_scenes"}
    for runs in r["service"].values():
        assert [x["concurrency"] for x in runs] == [1, 4]
        for x in runs:
            assert x["errors"] == 0 and x["ok"] == 12
            assert x["images_per_s"] > 0
            assert 0 < x["latency"]["p50_ms"] <= x["latency"]["p99_ms"]
            assert x["server_peak_rss_mb"] > 50 and x["server_cores_busy"] >= 0
    if not NO_PEER:
        # face_recognition ran at every concurrency, one worker process per usable core.
        assert r["peer_processes"] == r["machine"]["usable_cores"]
        for runs in r["peer"].values():
            assert [p["clients"] for p in runs] == [1, 4]
            for p in runs:
                assert p["images"] == 12 and p["images_per_s"] > 0
                assert p["processes"] == r["peer_processes"]
                assert 0 < p["latency"]["p50_ms"] <= p["latency"]["p99_ms"]
        assert len(r["headline"]) == 2 and all("c=4" in h and "×" in h for h in r["headline"])
        md = (tmp_path / "load.md").read_text()
        assert f"{r['peer_processes']} worker processes" in md and "ratio" in md


@pytest.mark.slow
@needs_model
def test_gpu_quick(tmp_path: Path) -> None:
    # On a CPU this only proves the script works; the figures come from a lent GPU.
    r = run_quick("bench.gpu", tmp_path)
    check_machine(r["machine"])
    (train,) = r["training"]
    assert train["recipe"] == "scratch" and train["batch"] == 8 and train["steps_timed"] == 2
    assert train["images_per_s"] > 0 and train["parameters"] > 500_000
    assert [row["batch"] for row in r["inference"]] == [1, 4]
    for row in r["inference"]:
        assert row["calls"] >= 5 and row["images_per_s"] > 0
        assert row["images_per_s"] == pytest.approx(row["batch"] / row["p50_ms"] * 1e3, rel=0.01)


@pytest.mark.slow
@needs_data
@needs_model
@pytest.mark.live_service
def test_open_set_quick(tmp_path: Path) -> None:
    r = run_quick(
        "bench.open_set", tmp_path, "--data", str(DATA / "lfw" / "train"), "--enrolled", "40"
    )
    check_machine(r["machine"])
    res = r["result"]
    assert r["enrolled_people"] == 8 and r["target_fpir"] == 0.01
    assert res["enrolment"].get("enrolled", 0) >= 6  # LFW photos: nearly all enrol
    assert res["mated_probes"] + res["stranger_probes"] > 0
    assert 0.0 <= res["fpir"] <= 1.0 and len(res["thresholds_seen"]) == 1


@pytest.mark.slow
@needs_data
@needs_model
@pytest.mark.live_service
def test_profile_quick(tmp_path: Path) -> None:
    r = run_quick("bench.profile", tmp_path, timeout=900, stem="profile-lite")
    check_machine(r["machine"])
    assert r["detector"] == "lite"
    for s in r["sets"].values():
        assert s["images"] == 8
        cpu = s["cpu_ms"]
        for stage in ("decode", "detect", "align + quality", "model", "gallery search", "json"):
            assert cpu[stage] > 0, stage
        # the P-Net levels, R-Net and O-Net are timed inside detection, and add up to less
        detection = [v for k, v in s["wall_ms"].items() if k.startswith("detect.")]
        assert any(k.startswith("detect.pnet.net.level0") for k in s["wall_ms"])
        assert 0 < sum(detection) <= s["wall_ms"]["detect"] * 1.05
        assert s["batching_wait_ms"] >= 0 and s["http_p50_ms"] > 0
        assert s["loaded_images_per_s"] > 0


@pytest.mark.slow
@needs_data
@needs_model
def test_equivalence_quick(tmp_path: Path) -> None:
    r = run_quick("bench.equivalence", tmp_path, timeout=900)
    lite_vs_ref, lean_vs_lite = r["summary"]
    assert lite_vs_ref["compared"] == "lite vs reference"
    assert lite_vs_ref["faces (reference)"] > 40
    assert lite_vs_ref["images whose face count differs"] == 0
    assert lite_vs_ref["max box difference px"] < 1.0
    assert lite_vs_ref["min embedding cosine"] > 0.999
    # the lean path (LiteRT, flatbuffers from the child converter) answers as the in-process one
    assert lean_vs_lite["compared"] == "lean vs lite"
    assert lean_vs_lite["images whose face count differs"] == 0
    assert lean_vs_lite["max box difference px"] < 0.01
    assert lean_vs_lite["min embedding cosine"] >= 0.9999
    ref, lite, lean = r["rows"]
    assert (ref["path"], lite["path"], lean["path"]) == ("reference", "lite", "lean")
    assert (lite["embedding engine"], lean["embedding engine"]) == ("tflite-int8-tf", "tflite-int8")
    assert ref["no face"] == lite["no face"] == lean["no face"]
    accuracy = next(k for k in lite if k.startswith("accuracy"))
    assert lean[accuracy] == lite[accuracy]


@pytest.mark.slow
@needs_data
@needs_model
def test_lean_quick(tmp_path: Path) -> None:
    r = run_quick("bench.lean", tmp_path, timeout=1800)
    check_machine(r["machine"])
    runs = {(run["side"], run["workers"]): run for run in r["runs"]}
    assert set(runs) == {("before", 1), ("after", 1), ("before", 2), ("after", 2)}
    for (_side, workers), run in runs.items():
        assert run["load"]["ok"] == 20 and run["load"]["errors"] == 0
        assert run["cold_start_s"] > 0 and run["warm_start_s"] > 0
        serving = [p for p in run["idle"]["processes"] if p["role"] in ("server", "worker")]
        assert len(serving) == workers
        assert run["idle"]["total_mb"] >= sum(p["rss_mb"] for p in serving) > 0
    # TensorFlow stays out of the lean serving processes: each is far smaller than before's
    for workers in (1, 2):
        after = runs[("after", workers)]["idle"]["max_serving_process_mb"]
        assert after < 0.6 * runs[("before", workers)]["idle"]["max_serving_process_mb"]
