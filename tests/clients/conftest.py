"""Client tests: unmodified third-party clients drive a live faceid. The service helpers
live in tests/app (``faceid_testkit``)."""

from __future__ import annotations

import sys
from pathlib import Path

APP_TESTS = str(Path(__file__).resolve().parents[1] / "app")
if APP_TESTS not in sys.path:
    sys.path.insert(0, APP_TESTS)
