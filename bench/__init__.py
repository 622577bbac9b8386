"""Reproducible benchmarks of the face-identification service against face_recognition.

Run each module with ``python -m bench.<name>`` from the repository root; see
``docs/BENCHMARKS.md``.
"""
