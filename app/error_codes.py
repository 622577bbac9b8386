"""Every error code the service answers: one table, one row per code.

The HTTP handlers (``app.errors``) take each code's status from here, the OpenAPI
document (``app.openapi``) describes every operation's errors from here, and a test
checks that the README's error table is exactly this table.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class ErrorCode:
    """One error: its HTTP status, its code and when it is answered (README wording)."""

    status: int
    code: str
    meaning: str


ERROR_CODES: tuple[ErrorCode, ...] = (
    ErrorCode(400, "invalid_image", "the upload is empty, truncated or corrupt"),
    ErrorCode(
        400,
        "invalid_multipart",
        "the multipart form cannot be parsed (no boundary, a part without a name, …)",
    ),
    ErrorCode(
        400,
        "bad_request",
        "the HTTP request itself is malformed (bad `Content-Length`, request line, header)",
    ),
    ErrorCode(
        401,
        "unauthorized",
        "missing or wrong API key (checked from the headers before the body is read)",
    ),
    ErrorCode(
        403,
        "forbidden",
        "the key's role does not allow this (e.g. a `recognize` key enrolling, listing or "
        "embedding)",
    ),
    ErrorCode(
        404,
        "not_found",
        "no such identity, face, collection (or one the key does not open) or route",
    ),
    ErrorCode(
        405,
        "method_not_allowed",
        "the path exists with other methods, listed in the `Allow` header",
    ),
    ErrorCode(
        408,
        "request_timeout",
        "the headers or the body did not arrive in time; the connection is closed",
    ),
    ErrorCode(
        409,
        "identity_exists",
        "a rename to a name that is already enrolled in the collection (merge instead)",
    ),
    ErrorCode(
        413,
        "too_large",
        "a file over `FACEID_MAX_UPLOAD_BYTES` (refused while it streams) or a photo over "
        "`FACEID_MAX_PIXELS`",
    ),
    ErrorCode(
        413,
        "metadata_too_large",
        "an identity's metadata `data` over 4096 bytes of JSON or an `external_id` over 256 "
        "characters; nothing was changed",
    ),
    ErrorCode(
        415,
        "unsupported_media_type",
        "not JPEG, PNG, WebP, BMP or PGM/PPM, judged by content",
    ),
    ErrorCode(
        422,
        "validation_error",
        "a parameter or field breaks its schema (a missing file, `top_k` out of range, …)",
    ),
    ErrorCode(422, "invalid_identity", "a bad identity name"),
    ErrorCode(422, "invalid_collection", "a bad collection name"),
    ErrorCode(
        422,
        "multiple_files",
        "two files in one field of `/identify`, `/embed` or `/verify` "
        "(`-F image=@a.jpg -F image=@b.jpg`); none is used",
    ),
    ErrorCode(
        422,
        "too_many_images",
        "an enrolment with more `image` parts than `FACEID_ENROLL_MAX_IMAGES`; none is used",
    ),
    ErrorCode(
        422,
        "no_photo_enrolled",
        "none of the photos of a several-photo enrolment could be enrolled; the message "
        "gives each photo's reason",
    ),
    ErrorCode(422, "no_face", "enrolment or `/verify` found no face"),
    ErrorCode(
        422,
        "same_identity",
        "a rename, merge or face move whose source and target are the same identity",
    ),
    ErrorCode(
        422,
        "no_such_face",
        "the face chosen for enrolment (`face_index` out of range, or a `box` that overlaps "
        "no detected face) is not in the photo; nothing was enrolled",
    ),
    ErrorCode(
        422,
        "low_quality",
        "enrolment refused a face under `FACEID_ENROLL_QUALITY_FLOOR`; the message says why",
    ),
    ErrorCode(500, "internal_error", "a bug; the message quotes the request id"),
    ErrorCode(503, "starting", "the model is loading"),
    ErrorCode(
        503,
        "unavailable",
        "the model failed to load, or `FACEID_MAX_CONNECTIONS` connections are open "
        "(`/health` still answers on 8 reserved ones)",
    ),
    ErrorCode(
        503,
        "storage_unavailable",
        "an enrolment, deletion or gallery listing cannot reach the gallery database, or it "
        "did not answer within `FACEID_DB_CONNECT_TIMEOUT_S` / `FACEID_DB_STATEMENT_TIMEOUT_S` "
        "/ `FACEID_DB_LOCK_TIMEOUT_S` (nothing was changed; retry)",
    ),
)

_BY_CODE = {entry.code: entry for entry in ERROR_CODES}

#: The code of a bare HTTP error of a status (one the framework raises, not our code).
DEFAULT_CODE_OF_STATUS: dict[int, str] = {
    400: "invalid_multipart",  # only the body (multipart form) parser raises a bare 400
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    408: "request_timeout",
    413: "too_large",
    415: "unsupported_media_type",
    422: "validation_error",
    500: "internal_error",
    503: "unavailable",
}


def status_of(code: str) -> int:
    """The HTTP status of an error code (KeyError for a code not in the table)."""
    return _BY_CODE[code].status


def codes_of(status: int) -> list[ErrorCode]:
    """The table's rows with this status, in table order."""
    return [entry for entry in ERROR_CODES if entry.status == status]


def describe(statuses: Iterable[int]) -> dict[int, str]:
    """An OpenAPI description per status: each of its codes with its meaning."""
    return {
        status: "; ".join(f"`{e.code}`: {e.meaning}" for e in codes_of(status))
        for status in statuses
    }


def markdown_table() -> str:
    """The README's error table, generated from ``ERROR_CODES``."""
    lines = ["| status | code | when |", "|---|---|---|"]
    lines += [f"| {e.status} | `{e.code}` | {e.meaning} |" for e in ERROR_CODES]
    return "\n".join(lines)
