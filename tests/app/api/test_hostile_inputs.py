"""Hostile-input corpus (issue 12, item 9): every upload route, every kind of bad file.

The corpus is generated here from one LFW photo and Pillow: truncated and corrupted
JPEG/PNG, zero bytes, text/HTML/SVG/PDF, GIF/TIFF, decompression bombs and lying headers,
CMYK, 16-bit, palette+alpha, 1x1, 10000x10, EXIF-rotated faces, polyglots and an oversize
file. Each file goes to each upload field (``/identify``, ``/embed``, enrolment, both
``/verify`` fields) and must get a typed answer: the expected success, or the expected
error envelope; never a 5xx. EXIF-rotated photos must put the face box where the face is
once the photo is upright.
"""

from __future__ import annotations

import io
import struct
import zlib
from collections.abc import Callable

import numpy as np
import pytest
from faceid_testkit import lfw, png_bytes
from fastapi.testclient import TestClient
from PIL import Image

FACE_PHOTO = lfw("Al_Gore", 1)
FACE = "face"  # a decodable photo with a face
NO_FACE = "no face"  # a decodable photo without one
MIB = 1 << 20


def _face() -> Image.Image:
    return Image.open(FACE_PHOTO).convert("RGB")


def _save(img: Image.Image, fmt: str, **options: object) -> bytes:
    out = io.BytesIO()
    img.save(out, fmt, **options)
    return out.getvalue()


def _jpeg() -> bytes:
    return FACE_PHOTO.read_bytes()


def _png() -> bytes:
    return _save(_face(), "PNG")


def _corrupt(data: bytes, start: int, stride: int) -> bytes:
    buf = bytearray(data)
    for i in range(start, len(buf) - 2, stride):
        buf[i] ^= 0x5A
    return bytes(buf)


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    crc = struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)
    return struct.pack(">I", len(body)) + kind + body + crc


def _zlib_bomb_png(width: int, height: int) -> bytes:
    """A real bomb: width x height black pixels, a few hundred kB compressed."""
    raw = zlib.compressobj(9)
    row = b"\x00" + b"\x00" * (width * 3)
    body = b"".join(raw.compress(row) for _ in range(height)) + raw.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", ihdr)
        + _png_chunk(b"IDAT", body)
        + _png_chunk(b"IEND", b"")
    )


def _jpeg_with_size(width: int, height: int) -> bytes:
    """A small real JPEG whose frame header (SOF0) is rewritten to claim another size."""
    data = bytearray(_save(Image.new("RGB", (16, 16), (90, 90, 90)), "JPEG"))
    at = data.index(b"\xff\xc0")
    data[at + 5 : at + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def _exif_rotated(orientation: int) -> bytes:
    """The face photo stored turned, with the EXIF Orientation that turns it upright."""
    turn = {
        3: Image.Transpose.ROTATE_180,
        6: Image.Transpose.ROTATE_90,
        8: Image.Transpose.ROTATE_270,
    }
    stored = _face().transpose(turn[orientation])
    exif = Image.Exif()
    exif[0x0112] = orientation
    return _save(stored, "JPEG", quality=95, exif=exif.tobytes())


def _palette_alpha() -> bytes:
    img = _face().quantize(colors=255)
    img.info["transparency"] = 0
    return _save(img, "PNG", transparency=0)


def _sixteen_bit() -> bytes:
    grey = np.asarray(_face().convert("L"), dtype=np.uint16) * 257
    return _save(Image.fromarray(grey), "PNG")


ERROR = tuple[int, str]
NOT_AN_IMAGE: ERROR = (415, "unsupported_media_type")
ZIP_TAIL = b"PK\x03\x04" + b"\0" * 26 + b"PK\x05\x06" + b"\0" * 18  # an empty ZIP archive
Expect = set[str | ERROR]

CORPUS: dict[str, tuple[Callable[[], bytes], Expect]] = {
    # valid photos, also in unusual encodings
    "jpeg": (_jpeg, {FACE}),
    "png": (_png, {FACE}),
    "webp": (lambda: _save(_face(), "WEBP"), {FACE}),
    "bmp": (lambda: _save(_face(), "BMP"), {FACE}),
    "pgm": (lambda: _save(_face().convert("L"), "PPM"), {FACE}),
    "cmyk-jpeg": (lambda: _save(_face().convert("CMYK"), "JPEG"), {FACE}),
    "16-bit-png": (_sixteen_bit, {FACE}),
    "palette-alpha-png": (_palette_alpha, {FACE}),
    "grey-alpha-png": (lambda: _save(_face().convert("LA"), "PNG"), {FACE}),
    "1x1": (lambda: _save(Image.new("RGB", (1, 1), (200, 10, 10)), "PNG"), {NO_FACE}),
    "10000x10": (lambda: png_bytes(10_000, 10, b"\x80" * 30_000), {NO_FACE}),
    "exif-3": (lambda: _exif_rotated(3), {FACE}),
    "exif-6": (lambda: _exif_rotated(6), {FACE}),
    "exif-8": (lambda: _exif_rotated(8), {FACE}),
    # broken images
    "zero-bytes": (lambda: b"", {(400, "invalid_image")}),
    "truncated-jpeg": (lambda: _jpeg()[: len(_jpeg()) // 3], {(400, "invalid_image")}),
    "truncated-png": (lambda: _png()[: len(_png()) // 2], {(400, "invalid_image")}),
    "jpeg-signature-only": (lambda: b"\xff\xd8\xff", {(400, "invalid_image")}),
    # a corrupted entropy stream decodes to garbage pixels or fails: either is typed
    "corrupted-jpeg": (
        lambda: _corrupt(_jpeg(), 2000, 97),
        {FACE, NO_FACE, (400, "invalid_image")},
    ),
    "corrupted-png": (lambda: _corrupt(_png(), 200, 101), {(400, "invalid_image")}),
    # not images at all
    "text": (lambda: b"just some notes\n" * 10, {(415, "unsupported_media_type")}),
    "html": (
        lambda: b"<!doctype html><html><script>alert(1)</script></html>",
        {(415, "unsupported_media_type")},
    ),
    "svg": (
        lambda: b'<svg xmlns="http://www.w3.org/2000/svg" width="9" height="9"/>',
        {(415, "unsupported_media_type")},
    ),
    "pdf": (lambda: b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF", {NOT_AN_IMAGE}),
    "gif": (lambda: _save(_face(), "GIF"), {(415, "unsupported_media_type")}),
    "tiff": (lambda: _save(_face(), "TIFF"), {(415, "unsupported_media_type")}),
    # decompression bombs and lying headers
    "png-header-bomb": (lambda: png_bytes(10_000, 10_000, b""), {(413, "too_large")}),
    "png-zlib-bomb": (lambda: _zlib_bomb_png(8000, 8000), {(413, "too_large")}),
    "jpeg-claims-60000x60000": (lambda: _jpeg_with_size(60_000, 60_000), {(413, "too_large")}),
    "jpeg-claims-more-than-it-has": (
        lambda: _jpeg_with_size(3000, 3000),
        {(400, "invalid_image"), NO_FACE},
    ),
    "png-signature-jpeg-body": (
        lambda: b"\x89PNG\r\n\x1a\n" + _jpeg()[3:],
        {(400, "invalid_image")},
    ),
    "bmp-claims-huge": (
        lambda: (
            b"BM"
            + struct.pack("<IHHI", 54, 0, 0, 54)
            + struct.pack("<IiiHHIIiiII", 40, 50_000, 50_000, 1, 24, 0, 0, 0, 0, 0, 0)
        ),
        {(413, "too_large")},
    ),
    # polyglots: an image with another file type appended, a script behind a GIF header
    "jpeg-plus-html": (lambda: _jpeg() + b"<html><script>alert(1)</script></html>", {FACE}),
    "jpeg-plus-zip": (lambda: _jpeg() + ZIP_TAIL, {FACE}),
    "gif-js-polyglot": (lambda: b"GIF89a/*\x00\x00*/=1;alert(1);", {NOT_AN_IMAGE}),
    # over the byte cap
    "oversize": (lambda: _jpeg() + b"\0" * (10 * MIB), {(413, "too_large")}),
}

FIELDS = [
    ("/identify", "image"),
    ("/embed", "image"),
    ("/identities/Hostile Test/faces", "image"),
    ("/verify", "image_a"),
    ("/verify", "image_b"),
]


def _outcome(path: str, response: object) -> str | ERROR:
    """FACE / NO_FACE for a typed success, (status, code) for an error envelope."""
    status = response.status_code  # type: ignore[attr-defined]
    assert status < 500, response.text  # type: ignore[attr-defined]
    body = response.json()  # type: ignore[attr-defined]
    if status >= 400:
        assert set(body) == {"error"} and body["error"]["message"], body
        if body["error"]["code"] == "no_face" and status == 422:
            return NO_FACE
        return (status, body["error"]["code"])
    if path in {"/identify", "/embed"}:
        assert status == 200
        return FACE if body["faces"] else NO_FACE
    if path == "/verify":
        assert status == 200 and isinstance(body["same_person"], bool)
        return FACE
    assert status == 201 and body["faces_detected"] >= 1
    return FACE


@pytest.mark.parametrize("name", sorted(CORPUS))
def test_every_upload_field_gives_a_typed_answer(client: TestClient, name: str) -> None:
    make, expected = CORPUS[name]
    data = make()
    photo = FACE_PHOTO.read_bytes()
    seen = {}
    for path, field in FIELDS:
        files = {field: (f"{name}.bin", data, "application/octet-stream")}
        if path == "/verify":
            other = "image_b" if field == "image_a" else "image_a"
            files[other] = ("face.jpg", photo, "image/jpeg")
        outcome = _outcome(path, client.post(path, files=files))
        seen[f"{path} {field}"] = outcome
        assert outcome in expected, (name, path, field, outcome)
    # a file is judged the same way on every route
    assert len(set(seen.values())) == 1, seen
    client.delete("/identities/Hostile Test")


@pytest.mark.parametrize("orientation", [3, 6, 8])
def test_exif_rotated_faces_are_boxed_where_the_face_is(
    client: TestClient, orientation: int
) -> None:
    upright = client.post("/identify", files={"image": ("u.jpg", _jpeg())}).json()["faces"][0]
    turned = client.post(
        "/identify", files={"image": ("t.jpg", _exif_rotated(orientation))}
    ).json()["faces"]
    assert len(turned) == 1
    assert np.allclose(turned[0]["box"], upright["box"], atol=6), (turned, upright)
    assert np.allclose(turned[0]["landmarks"], upright["landmarks"], atol=6)
    # without the EXIF tag the same pixels are sideways: the face is not where it was
    stored = Image.open(io.BytesIO(_exif_rotated(orientation)))
    bare = _save(stored.convert("RGB"), "JPEG", quality=95)
    sideways = client.post("/identify", files={"image": ("s.jpg", bare)}).json()["faces"]
    assert not sideways or not np.allclose(sideways[0]["landmarks"], upright["landmarks"], atol=6)


@pytest.mark.parametrize("name", sorted(CORPUS))
def test_deepstack_recognize_judges_a_file_as_identify_does(client: TestClient, name: str) -> None:
    """The DeepStack dialect's recognize route (``app.api.deepstack``) answers each file
    as ``/identify`` does, in DeepStack's shape (400 for every refused input)."""
    make, _ = CORPUS[name]
    data = make()
    files = {"image": (f"{name}.bin", data, "application/octet-stream")}
    native = _outcome("/identify", client.post("/identify", files=files))
    response = client.post("/v1/vision/face/recognize", files=files)
    assert response.status_code < 500, response.text
    body = response.json()
    if native in (FACE, NO_FACE):
        assert response.status_code == 200 and body["success"] is True, body
        assert bool(body["predictions"]) == (native == FACE), body
    else:
        status, _ = native
        assert response.status_code == (400 if status in (415, 422) else status), body
        assert list(body) == ["success", "error", "duration"] and body["success"] is False
