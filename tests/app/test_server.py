"""The uvicorn set-up of ``python -m app`` (app/server.py); its behaviour over sockets is
tested in tests/app/api/test_hardening.py."""

from __future__ import annotations

import pickle

import pytest
import uvicorn

from app.server import FaceidHttpProtocol, _limits_from_environment, server_config, server_options
from app.settings import Settings


def test_server_config_carries_the_settings() -> None:
    settings = Settings(header_timeout_s=3.5, max_connections=7, keep_alive_timeout_s=9)
    config = server_config(settings, object())
    assert config.http is FaceidHttpProtocol
    assert config.faceid_limits == (3.5, 7)  # type: ignore[attr-defined]
    assert config.timeout_keep_alive == 9


def test_worker_processes_can_receive_the_options_and_read_limits_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # uvicorn --workers pickles its configuration into each worker process
    options = pickle.loads(pickle.dumps(server_options(Settings())))
    assert options["http"] is FaceidHttpProtocol
    uvicorn.Config("app.main:app", workers=2, **options)
    monkeypatch.setenv("FACEID_HEADER_TIMEOUT_S", "2.5")
    monkeypatch.setenv("FACEID_MAX_CONNECTIONS", "11")
    _limits_from_environment.cache_clear()
    try:
        assert _limits_from_environment() == (2.5, 11)
    finally:
        _limits_from_environment.cache_clear()
