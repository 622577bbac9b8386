"""``python -m app`` / ``faceid-serve``: serve with uvicorn on FACEID_HOST:FACEID_PORT."""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

from pydantic import ValidationError


def main() -> None:
    """Check the configuration, then run uvicorn; exit non-zero when startup fails."""
    from app.settings import Settings

    try:
        settings = Settings()
    except ValidationError as exc:
        print(f"faceid: invalid configuration:\n{exc}", file=sys.stderr)
        raise SystemExit(2) from None

    from app.domain_errors import StartupError
    from app.log import configure_logging
    from app.state import preflight

    configure_logging(settings.log_level)
    try:  # fail fast with a clear message, before TensorFlow is even imported
        checked = preflight(settings)
    except StartupError as exc:
        print(f"faceid: refusing to start: {exc}", file=sys.stderr)
        raise SystemExit(2) from None

    import uvicorn

    if settings.workers > 1:
        # N processes on one socket; each builds the app from the environment
        # (app.main:app) and follows the others' gallery changes.
        checked.store.close()  # each worker opens (and checks) the gallery again
        from app.server import WORKER_FAILURE_FILE, server_options
        from app.supervisor import serve_workers

        with tempfile.TemporaryDirectory(prefix="faceid-") as tmp:
            failure = Path(tmp) / "worker-startup-failure"
            os.environ[WORKER_FAILURE_FILE] = str(failure)  # inherited by the workers
            # Workers die with this process and a dead one is replaced within a second
            # (app.supervisor). Loading TensorFlow and converting the model can hold the GIL
            # for seconds at a time on a busy machine: a worker still starting may leave its
            # liveness pings unanswered for up to 120 s before it is replaced.
            status = serve_workers(
                "app.main:app",
                workers=settings.workers,
                startup_timeout=120,
                **server_options(settings),
            )
            if failure.exists():
                reason = failure.read_text(encoding="utf-8")
                print(
                    f"faceid: a worker could not load the model, all workers stopped: {reason}",
                    file=sys.stderr,
                )
                raise SystemExit(1)
        if status:
            raise SystemExit(status)
        return

    from app.main import create_app
    from app.server import server_config

    server: uvicorn.Server | None = None

    def stop() -> None:  # the model failed to load: shut down instead of hanging unready
        if server is not None:
            server.should_exit = True

    application = create_app(settings, checked=checked, on_startup_failure=stop)
    server = uvicorn.Server(server_config(settings, application))
    server.run()
    if not server.started or application.state.faceid.failed:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
