"""Third-party clients (each in a venv of its own, made once under ``.cache/clients/``)
driving a live service: ``clientkit`` makes the venvs, ``faceid_testkit`` (tests/app, on the
pytest ``pythonpath``) the service."""
