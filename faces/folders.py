"""The folder-per-person layout that training and ``python -m app.gallery`` read.

``root/<identity>/<photo>``: one folder per person, named as the person; photos are the
files with an image suffix (``IMAGE_SUFFIXES``), anything else is ignored.
"""

from __future__ import annotations

from pathlib import Path

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".pgm", ".ppm", ".bmp", ".webp"})


def photos_in(folder: Path) -> list[Path]:
    """The photos directly inside ``folder``, sorted by name."""
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def list_identities(root: Path) -> list[Path]:
    """Identity folders under ``root`` that hold at least one photo, sorted by name."""
    return sorted(
        d for d in root.iterdir() if d.is_dir() and not d.name.startswith(".") and photos_in(d)
    )
