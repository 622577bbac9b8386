"""The container stage (issue 26): scripts/container-smoke.sh builds the image from the Dockerfile
as it is, .ci/run runs it after the service smoke test and fails when it fails, the local
stand-ins for the public base images carry exactly the names the Dockerfile and compose file
use, and the Debian mirror they are made from is read from apt's sources, never written down.
The runs themselves need podman and root: .ci/run does them (docs/BENCHMARKS.md records one)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement

from .test_dockerfile import stages

ROOT = Path(__file__).resolve().parents[2]
CI_RUN = ROOT / ".ci" / "run"
CONTAINER_SMOKE = ROOT / "scripts" / "container-smoke.sh"
COMPOSE_SMOKE = ROOT / "scripts" / "compose-smoke.sh"
MAKE_IMAGES = ROOT / "deploy" / "local-images" / "make-images.sh"
PG_ENTRYPOINT = ROOT / "deploy" / "local-images" / "postgres" / "docker-entrypoint.sh"
SCRIPTS = [CONTAINER_SMOKE, COMPOSE_SMOKE, MAKE_IMAGES]

# Most of these run a shell script or shellcheck (bash -n, make-images.sh …).
pytestmark = pytest.mark.subprocess


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_script_is_executable_strict_bash(script: Path) -> None:
    assert os.access(script, os.X_OK), f"chmod +x {script.relative_to(ROOT)}"
    text = script.read_text()
    assert text.startswith("#!/usr/bin/env bash\n")
    assert "set -euo pipefail" in text
    res = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr


def test_shellcheck_passes() -> None:
    exe = shutil.which("shellcheck")
    if exe is None:
        if os.environ.get("CI") == "true":
            pytest.fail("shellcheck is missing: .ci/run installs it with apt-get")
        pytest.skip("shellcheck is not installed (apt-get install shellcheck)")
    files = [*SCRIPTS, PG_ENTRYPOINT, CI_RUN, ROOT / "scripts" / "smoke.sh"]
    res = subprocess.run([exe, *map(str, files)], capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr


def test_the_image_is_built_from_the_dockerfile_unchanged() -> None:
    text = CONTAINER_SMOKE.read_text()
    build = re.search(r'"\$PODMAN" build (.*?)\|\| die', text, re.S)
    assert build, "container-smoke.sh must run podman build"
    args = build.group(1)
    assert "-f Dockerfile" in args and args.rstrip().rstrip("\\").rstrip().endswith(".")
    assert "--format docker" in args, "the OCI format drops HEALTHCHECK"
    # No rewritten copy of the Dockerfile, no edits to it, no build args that change the base.
    assert "--build-arg" not in text and "--from" not in args
    for script in (CONTAINER_SMOKE, COMPOSE_SMOKE, MAKE_IMAGES):
        body = script.read_text()
        assert not re.search(r"(sed -i|>\s*\"?\$?\w*/?Dockerfile)", body), script.name
    # --make-base switches pulling off; without it the base is pulled as with Docker.
    assert "--pull=never" in text and "--pull=missing" in text
    assert "FACEID_LOCAL_BASE" in text and "--make-base" in text


def test_the_smoke_test_checks_what_the_issue_asks() -> None:
    text = CONTAINER_SMOKE.read_text()
    assert 'scripts/smoke.sh "$BASE"' in text
    assert "healthcheck run" in text and "Health.Status" in text
    assert "/proc/1/status" in text and "Config.User" in text  # non-root, image and process
    assert '-v "$VOLUME:/data"' in text and '"$PODMAN" start "$CID"' in text  # restart, volume
    assert 'stop -t "$STOP_GRACE"' in text and "ExitCode" in text  # SIGTERM within the grace


def test_polling_rereads_the_state_every_time() -> None:
    # `wait_for ... test "$(curl ...)" = 200` would expand the curl once and poll a constant.
    for script in (CONTAINER_SMOKE, COMPOSE_SMOKE):
        for line in re.findall(r"^\s*wait_for .*$", script.read_text(), re.M):
            assert "$(" not in line, f"{script.name}: {line.strip()}"


def test_ci_runs_the_container_stage_after_the_service_smoke_test_and_fails_with_it() -> None:
    text = CI_RUN.read_text()
    smoke = text.index('scripts/smoke.sh "$BASE"')
    ctr = text.index('scripts/container-smoke.sh "${CONTAINER_ARGS[@]}" || die')
    cmp_ = text.index('scripts/compose-smoke.sh "${CONTAINER_ARGS[@]}" || die')
    assert smoke < ctr < cmp_
    assert text.index("podman runc debootstrap shellcheck") < text.index("\nmake test")
    # CI has no registry: the base images are made locally unless asked to pull.
    assert "CONTAINER_ARGS=(--make-base)" in text
    # No way to skip the single image; the compose stage is on unless CI_COMPOSE=0.
    assert "CI_COMPOSE:-1" in text
    assert not re.search(r"container-smoke\.sh[^\n]*\|\| (true|echo|:)", text)


def test_make_targets_run_the_scripts() -> None:
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^container-smoke:\n\tscripts/container-smoke\.sh$", makefile, re.M)
    assert re.search(r"^compose-smoke:\n\tscripts/compose-smoke\.sh$", makefile, re.M)


def image_names() -> list[str]:
    res = subprocess.run([str(MAKE_IMAGES), "names"], capture_output=True, text=True, check=True)
    return res.stdout.split()


def test_stand_ins_are_tagged_with_the_names_the_dockerfile_and_compose_file_use() -> None:
    version = re.search(r"^ARG PYTHON_VERSION=(\S+)$", (ROOT / "Dockerfile").read_text(), re.M)
    assert version
    froms = {
        rest.split()[0].replace("${PYTHON_VERSION}", version.group(1))
        for st in stages()
        for word, rest in st
        if word == "FROM"
    }
    services = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    python, postgres, nginx = image_names()
    assert froms == {python}
    assert postgres == services["postgres"]["image"]
    assert nginx == services["nginx"]["image"]


def test_the_stand_in_base_has_python_on_path_like_the_official_image() -> None:
    # The Dockerfile runs `python -m venv`: the official image has /usr/local/bin/python,
    # Debian only python3.
    assert "/usr/local/bin/python" in MAKE_IMAGES.read_text()
    assert "python3-venv" in MAKE_IMAGES.read_text()


def test_the_postgres_stand_in_keeps_the_official_images_contract() -> None:
    containerfile = (MAKE_IMAGES.parent / "postgres" / "Containerfile").read_text()
    entry = PG_ENTRYPOINT.read_text()
    assert os.access(PG_ENTRYPOINT, os.X_OK)
    assert "VOLUME /var/lib/postgresql/data" in containerfile
    for var in ("POSTGRES_USER", "POSTGRES_DB", "POSTGRES_PASSWORD"):
        assert var in entry
    assert "scram-sha-256" in entry and "listen_addresses = '*'" in entry
    res = subprocess.run(["sh", "-n", str(PG_ENTRYPOINT)], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    nginx = (MAKE_IMAGES.parent / "nginx" / "Containerfile").read_text()
    assert "sites-enabled/default" in nginx and "daemon off;" in nginx


def mirror_from(apt_etc: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "APT_ETC": str(apt_etc)}
    return subprocess.run(
        [str(MAKE_IMAGES), "mirror"], capture_output=True, text=True, env=env, check=False
    )


def test_the_debian_mirror_comes_from_apts_deb822_sources(tmp_path: Path) -> None:
    (tmp_path / "sources.list.d").mkdir()
    (tmp_path / "sources.list.d" / "debian.sources").write_text(
        "Types: deb\n"
        "URIs: http://security.example/debian-security\n"
        "Suites: bookworm-security\n"
        "Components: main\n"
        "\n"
        "Types: deb-src deb\n"
        "# a comment\n"
        "URIs: http://mirror.example/debian http://second.example/debian\n"
        "Suites: bookworm bookworm-updates\n"
        "Components: main\n"
    )
    res = mirror_from(tmp_path)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "http://mirror.example/debian"


def test_the_debian_mirror_comes_from_a_one_line_sources_list(tmp_path: Path) -> None:
    (tmp_path / "sources.list").write_text(
        "# deb http://commented.example/debian bookworm main\n"
        "deb http://security.example/debian-security bookworm-security main\n"
        "deb [signed-by=/usr/share/keyrings/k.gpg arch=amd64] "
        "http://list.example/debian bookworm main\n"
    )
    res = mirror_from(tmp_path)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "http://list.example/debian"


def test_no_bookworm_mirror_is_an_error_not_a_guess(tmp_path: Path) -> None:
    (tmp_path / "sources.list").write_text("deb http://x.example/debian trixie main\n")
    res = mirror_from(tmp_path)
    assert res.returncode != 0 and res.stdout == ""


def test_no_mirror_or_registry_host_is_written_in_the_delivery_files() -> None:
    files = [*SCRIPTS, PG_ENTRYPOINT, CI_RUN, ROOT / "Dockerfile"]
    files += list((MAKE_IMAGES.parent).rglob("Containerfile"))
    for path in files:
        hosts = re.findall(r"https?://([\w.-]+)", path.read_text())
        assert set(hosts) <= {"127.0.0.1", "list.example"}, (path.name, hosts)


# --- item 5: ARM64 ----------------------------------------------------------------------------

PYPROJECT = ROOT / "pyproject.toml"


def cpu_extra_for(machine: str, system: str = "Linux") -> list[str]:
    import tomllib

    extra = tomllib.loads(PYPROJECT.read_text())["project"]["optional-dependencies"]["cpu"]
    env = {
        "platform_machine": machine,
        "platform_system": system,
        "sys_platform": system.lower(),
        "python_version": "3.11",
        "python_full_version": "3.11.14",
        "extra": "",
    }
    picked = []
    for line in extra:
        req = Requirement(line)
        if req.marker is None or req.marker.evaluate(env):
            picked.append(f"{req.name}{req.specifier}")
    return picked


def test_x86_64_installs_tensorflow_cpu_as_before() -> None:
    assert cpu_extra_for("x86_64") == ["tensorflow-cpu==2.21.0"]
    assert cpu_extra_for("AMD64", "Windows") == ["tensorflow-cpu==2.21.0"]


def test_arm64_installs_the_tensorflow_wheel_of_the_same_version() -> None:
    # tensorflow-cpu has no aarch64 wheel; on ARM64 the plain tensorflow wheel is the CPU build.
    assert cpu_extra_for("aarch64") == ["tensorflow==2.21.0"]
    assert cpu_extra_for("arm64", "Darwin") == ["tensorflow==2.21.0"]


def test_gpu_extra_is_unchanged() -> None:
    import tomllib

    extras = tomllib.loads(PYPROJECT.read_text())["project"]["optional-dependencies"]
    assert extras["gpu"] == ["tensorflow[and-cuda]==2.21.0"]
