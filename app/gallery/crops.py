"""Kept aligned crops, sealed at rest (``FACEID_KEEP_ALIGNED_CROPS=1``).

With the setting on, every enrolled face's aligned 112×112 crop is stored in its gallery
row, so that ``python -m app.gallery reembed`` can move the gallery to a new model without
the original photos. A face crop is biometric data, so it is never stored in clear: each
crop is sealed with AES-256-GCM (``cryptography``) under ``FACEID_CROP_KEY``, with a fresh
96-bit nonce and the face id as associated data (a sealed crop copied onto another row
does not open). Erasing a face deletes its row, crop included.

Sealed format: ``b"FC1"`` + 12-byte nonce + ciphertext and tag of the crop's raw
112×112×3 uint8 RGB bytes.
"""

from __future__ import annotations

import base64
import binascii
import os

import numpy as np
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from faces.model_contract import INPUT_SHAPE

_MAGIC = b"FC1"
_NONCE = 12
_KEY_BYTES = 32


class CropKeyError(ValueError):
    """The crop key is missing or malformed, or a sealed crop does not open with it."""


def new_key() -> str:
    """A fresh random key, as FACEID_CROP_KEY expects it (URL-safe base64 of 32 bytes)."""
    return base64.urlsafe_b64encode(os.urandom(_KEY_BYTES)).decode("ascii")


def parse_key(text: str) -> bytes:
    """The 32 key bytes of a FACEID_CROP_KEY value (base64, standard or URL-safe)."""
    cleaned = text.strip()
    try:
        raw = base64.urlsafe_b64decode(cleaned.replace("+", "-").replace("/", "_"))
    except (binascii.Error, ValueError) as exc:
        raise CropKeyError("FACEID_CROP_KEY is not base64") from exc
    if len(raw) != _KEY_BYTES:
        raise CropKeyError(
            f"FACEID_CROP_KEY must encode {_KEY_BYTES} bytes (it encodes {len(raw)}); make "
            'one with: python -c "from app.gallery.crops import new_key; print(new_key())"'
        )
    return raw


class CropVault:
    """Seals and opens aligned crops with one key."""

    def __init__(self, key: bytes) -> None:
        if len(key) != _KEY_BYTES:
            raise CropKeyError(f"a crop key has {_KEY_BYTES} bytes, not {len(key)}")
        self._aead = AESGCM(key)

    @classmethod
    def from_setting(cls, text: str) -> CropVault:
        """A vault for a FACEID_CROP_KEY value (raises CropKeyError)."""
        return cls(parse_key(text))

    def seal(self, face_id: str, crop: np.ndarray) -> bytes:
        """The encrypted crop of ``face_id`` (a 112×112×3 uint8 array)."""
        pixels = np.ascontiguousarray(crop, dtype=np.uint8)
        if pixels.shape != INPUT_SHAPE:
            raise ValueError(f"an aligned crop is {INPUT_SHAPE}, not {pixels.shape}")
        nonce = os.urandom(_NONCE)
        return _MAGIC + nonce + self._aead.encrypt(nonce, pixels.tobytes(), face_id.encode())

    def open(self, face_id: str, sealed: bytes) -> np.ndarray:
        """The crop sealed for ``face_id`` (raises CropKeyError when it does not open: another
        key, another face's crop, or altered bytes)."""
        if not sealed.startswith(_MAGIC) or len(sealed) <= len(_MAGIC) + _NONCE:
            raise CropKeyError(f"the kept crop of face {face_id} is not in a known format")
        nonce = sealed[len(_MAGIC) : len(_MAGIC) + _NONCE]
        try:
            raw = self._aead.decrypt(nonce, sealed[len(_MAGIC) + _NONCE :], face_id.encode())
        except InvalidTag as exc:
            raise CropKeyError(
                f"the kept crop of face {face_id} does not open with FACEID_CROP_KEY "
                "(another key, or the stored bytes were altered)"
            ) from exc
        return np.frombuffer(raw, dtype=np.uint8).reshape(INPUT_SHAPE).copy()
