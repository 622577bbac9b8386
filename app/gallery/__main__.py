"""``python -m app.gallery``: the operator commands of ``app.admin`` (see ``app.admin.cli``)."""

from app.admin.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
