"""Dependencies by role: the service's set (what the image installs) holds what the service
imports; training- and bench-only packages live in the `train` extra, which `make test`
installs and the image does not."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]

# distribution → the module it is imported as
MODULE = {
    "fastapi": "fastapi",
    "fastapi-offline": "fastapi_offline",
    "uvicorn": "uvicorn",
    "pydantic": "pydantic",
    "pydantic-settings": "pydantic_settings",
    "pillow": "PIL",
    "numpy": "numpy",
    "mtcnn": "mtcnn",
    "prometheus-client": "prometheus_client",
    "usearch": "usearch",
    "numkong": "numkong",
    "psycopg": "psycopg",
    "cryptography": "cryptography",
    "tqdm": "tqdm",
    "ai-edge-litert": "ai_edge_litert",
    "h5py": "h5py",
    "matplotlib": "matplotlib",
    "pyyaml": "yaml",
}
# service dependencies that our own code never imports, and why they are still declared
NOT_IMPORTED = {
    "python-multipart": "FastAPI parses the multipart uploads with it",
    "keras": "TensorFlow and mtcnn run on Keras 3: pinned to the version models are built with",
}
TRAINING_ONLY = {"h5py", "matplotlib", "pyyaml"}


def _name(requirement: str) -> str:
    return re.split(r"[\[=<>!~ ;]", requirement, maxsplit=1)[0].lower()


def _imports(module: str, *folders: str) -> list[Path]:
    pattern = re.compile(rf"^\s*(import|from) {re.escape(module)}(\.|\s|$)", re.M)
    return [
        path
        for folder in folders
        for path in sorted((ROOT / folder).rglob("*.py"))
        if pattern.search(path.read_text(encoding="utf-8"))
    ]


def test_the_serving_set_holds_no_training_only_package() -> None:
    for extra in ("cpu", "gpu"):  # what the Dockerfile installs: dependencies + TF_EXTRA
        serving = {
            _name(r) for r in PROJECT["dependencies"] + PROJECT["optional-dependencies"][extra]
        }
        assert not serving & TRAINING_ONLY, serving & TRAINING_ONLY


def test_every_service_dependency_is_imported_by_the_service_or_says_why_not() -> None:
    for requirement in PROJECT["dependencies"]:
        name = _name(requirement)
        if name in NOT_IMPORTED:
            continue
        assert name in MODULE, f"{name}: add its module name (or a reason) to this test"
        assert _imports(MODULE[name], "app", "faces"), f"{name} is declared but not imported"


def test_training_only_packages_are_pinned_in_the_train_extra_and_unused_by_the_service() -> None:
    train = {_name(r): r for r in PROJECT["optional-dependencies"]["train"]}
    for name in TRAINING_ONLY:
        assert re.fullmatch(rf"{name}==[\w.]+", train.get(name, ""), re.I), train
        assert _imports(MODULE[name], "training", "bench"), f"nothing imports {name}"
        assert not _imports(MODULE[name], "app", "faces"), f"the service imports {name}"


def test_make_test_installs_the_train_extra() -> None:
    makefile = (ROOT / "Makefile").read_text()
    test_deps = re.search(r"^test: (.+)$", makefile, re.M)
    assert test_deps, "no test target"
    stamp = test_deps.group(1).split()[0]
    recipe = re.search(rf"^{re.escape(stamp)}:.*\n((?:\t.*\n)+)", makefile, re.M)
    assert recipe, f"no rule for {stamp}"
    extras = re.search(r"install .*-e '\.\[([^\]]+)\]'", recipe.group(1))
    assert extras and "train" in extras.group(1).split(","), recipe.group(1)
