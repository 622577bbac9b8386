"""docker-compose.yml has the structure issue 2 asks for (validated without a Docker engine)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from .test_dockerfile import healthcheck_cmd

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"


def compose() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(data, dict)
    return data


def service() -> dict[str, Any]:
    services = compose()["services"]
    assert "faceid" in services
    return services["faceid"]


def gpu_variant() -> dict[str, Any]:
    """The commented GPU service, uncommented and parsed."""
    text = COMPOSE.read_text()
    block = re.search(
        r"# --- GPU variant \(begin\) ---\n(.*?)# --- GPU variant \(end\) ---", text, re.S
    )
    assert block, "the commented GPU variant is missing"
    lines = [ln for ln in block.group(1).splitlines() if ln.strip()]
    start = next(i for i, ln in enumerate(lines) if ln.strip().startswith("# faceid-gpu:"))
    body = "\n".join(ln.replace("  # ", "  ", 1) for ln in lines[start:])
    data = yaml.safe_load("services:\n" + body)
    return data["services"]["faceid-gpu"]


def named_volume_at_data(svc: dict[str, Any]) -> str:
    mounts = [v for v in svc["volumes"] if isinstance(v, str) and v.endswith(":/data")]
    assert len(mounts) == 1, svc["volumes"]
    name = mounts[0].split(":")[0]
    assert not name.startswith((".", "/")), "the gallery needs a named volume, not a bind mount"
    return name


def test_service_builds_the_cpu_image_from_this_repo() -> None:
    build = service()["build"]
    assert build["context"] == "."
    assert build["args"]["TF_EXTRA"] == "cpu"


def test_port_8000_published() -> None:
    ports = [str(p) for p in service()["ports"]]
    assert any(p.endswith(":8000") for p in ports), ports


def test_gallery_on_a_declared_named_volume_at_data() -> None:
    name = named_volume_at_data(service())
    assert name in (compose().get("volumes") or {}), f"volume {name} is not declared"
    assert service()["environment"]["FACEID_DATA_DIR"] == "/data"


def test_api_keys_come_from_the_environment() -> None:
    value = service()["environment"]["FACEID_API_KEYS"]
    assert value.startswith("${FACEID_API_KEYS"), value


def test_healthcheck_and_restart_policy() -> None:
    svc = service()
    check = svc["healthcheck"]
    assert check["test"][0] == "CMD"
    assert check["test"][1:] == healthcheck_cmd(), "keep it identical to the Dockerfile's"
    for key in ("interval", "timeout", "retries", "start_period"):
        assert key in check
    assert svc["restart"] == "unless-stopped"


def test_commented_gpu_variant_is_valid() -> None:
    gpu = gpu_variant()
    assert gpu["build"]["args"]["TF_EXTRA"] == "gpu"
    devices = gpu["deploy"]["resources"]["reservations"]["devices"]
    assert devices[0]["driver"] == "nvidia"
    assert "gpu" in devices[0]["capabilities"]
    assert named_volume_at_data(gpu) == named_volume_at_data(service())
    assert gpu["restart"] == "unless-stopped"
