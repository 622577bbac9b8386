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


def test_scale_profile_runs_postgres_two_replicas_and_nginx() -> None:
    services = compose()["services"]
    scale = {name for name, svc in services.items() if "scale" in (svc.get("profiles") or [])}
    assert scale == {"postgres", "faceid-replica", "nginx"}
    assert "profiles" not in service(), "the single-process service stays the default"

    replica = services["faceid-replica"]
    assert replica["deploy"]["replicas"] == 2
    assert replica["build"] == service()["build"]
    url = replica["environment"]["FACEID_DATABASE_URL"]
    assert re.fullmatch(
        r"postgresql://faceid:\$\{FACEID_DB_PASSWORD:-faceid\}@postgres:5432/faceid", url
    )
    assert replica["environment"]["FACEID_API_KEYS"].startswith("${FACEID_API_KEYS")
    assert replica["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert replica["healthcheck"]["test"][1:] == healthcheck_cmd()
    assert "ports" not in replica, "replicas are reached through nginx only"

    db = services["postgres"]
    assert db["image"].startswith("postgres:")
    assert db["environment"]["POSTGRES_PASSWORD"] == "${FACEID_DB_PASSWORD:-faceid}"
    assert "pg_isready" in db["healthcheck"]["test"]
    assert "pgdata" in (compose().get("volumes") or {})

    proxy = services["nginx"]
    assert proxy["image"].startswith("nginx:")
    assert [str(p) for p in proxy["ports"]] == ["127.0.0.1:8080:80"]
    mount = proxy["volumes"][0].split(":")
    conf = (ROOT / mount[0]).read_text()
    assert mount[1] == "/etc/nginx/conf.d/default.conf"
    assert "server faceid-replica:8000" in conf and "proxy_pass http://faceid;" in conf
    size = re.search(r"client_max_body_size (\d+)m;", conf)
    assert size and int(size.group(1)) > 20, "/verify takes two 10 MiB images"
