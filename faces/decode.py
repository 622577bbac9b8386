"""Decode uploaded bytes into an RGB uint8 array, refusing anything that is not a photo.

The format is decided by the file's content (magic bytes), never by its name or the
client's Content-Type. The pixel cap is checked from the header, before the pixels
are decoded, so a decompression bomb costs nothing.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps

# Pillow's own bomb guard is replaced by our explicit cap (checked before load()).
Image.MAX_IMAGE_PIXELS = None

DEFAULT_MAX_PIXELS = 40_000_000

_PILLOW_FORMATS = {"JPEG": "jpeg", "PNG": "png", "WEBP": "webp", "BMP": "bmp", "PPM": "pnm"}


class ImageError(ValueError):
    """A typed refusal of an input image: a machine-readable ``code`` and a message.

    Codes: ``invalid_image`` (corrupt, truncated, empty), ``unsupported_media_type`` (not
    JPEG/PNG/WebP/BMP/PGM/PPM), ``too_large`` (over the pixel cap). The service maps them
    to HTTP statuses (``app.errors``); training counts them.
    """

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class DecodedImage:
    """An RGB uint8 image (H×W×3) with the format it was decoded from."""

    pixels: np.ndarray
    format: str

    @property
    def width(self) -> int:
        return int(self.pixels.shape[1])

    @property
    def height(self) -> int:
        return int(self.pixels.shape[0])


def sniff_format(data: bytes) -> str | None:
    """Return the image format named by the leading bytes, or None if not one we accept."""
    if data[:3] == b"\xff\xd8\xff":
        return "jpeg"
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return "png"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    if data[:2] == b"BM":
        return "bmp"
    if len(data) >= 3 and data[0:1] == b"P" and data[1:2] in b"2356" and data[2:3].isspace():
        return "pnm"
    return None


def _to_rgb_uint8(img: Image.Image) -> np.ndarray:
    """Convert any Pillow mode (L, LA, P, RGBA, CMYK, I;16, I, F …) to RGB uint8."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        arr = np.asarray(img, dtype=np.float64)
        top = 65535.0 if img.mode.startswith("I;16") or arr.max(initial=0) > 255 else 255.0
        grey = np.clip(arr / top * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return np.repeat(grey[:, :, None], 3, axis=2)
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(background, rgba)
    return np.asarray(img.convert("RGB"), dtype=np.uint8)


def decode_image(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS) -> DecodedImage:
    """Decode image bytes to an upright RGB uint8 array.

    Raises ImageError with code ``unsupported_media_type`` for content that is not
    JPEG/PNG/WebP/BMP/PGM/PPM, ``too_large`` when width×height exceeds ``max_pixels``,
    and ``invalid_image`` for truncated or corrupt files.
    """
    if not data:
        raise ImageError("invalid_image", "The uploaded file is empty.")
    fmt = sniff_format(data)
    if fmt is None:
        raise ImageError(
            "unsupported_media_type",
            "Unsupported image type: send JPEG, PNG, WebP, BMP or PGM/PPM.",
        )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            img = Image.open(io.BytesIO(data))
            if _PILLOW_FORMATS.get(img.format or "") != fmt:
                raise ImageError("invalid_image", "The image content is malformed.")
            width, height = img.size
            if width * height > max_pixels:
                raise ImageError(
                    "too_large",
                    f"Image has {width}x{height} pixels; the limit is {max_pixels} pixels.",
                )
            if width < 1 or height < 1:
                raise ImageError("invalid_image", "The image has no pixels.")
            img.load()
            upright: Image.Image = ImageOps.exif_transpose(img) or img
            pixels = _to_rgb_uint8(upright)
    except ImageError:
        raise
    except (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError) as exc:
        raise ImageError(
            "invalid_image",
            f"The image could not be decoded ({type(exc).__name__}).",
        ) from exc
    return DecodedImage(pixels=np.ascontiguousarray(pixels), format=fmt)
