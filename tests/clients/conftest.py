"""Third-party clients (each in a venv of its own, made once under ``.cache/clients/``)
driving a live service: ``clientkit`` makes the venvs, ``faceid_testkit`` the service."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "app"))  # faceid_testkit
