"""An identity's metadata within its caps: what the API and the gallery commands accept."""

from __future__ import annotations

import json

from app.domain_errors import InvalidMetadata, MetadataTooLarge
from app.gallery.storage.base import EXTERNAL_ID_MAX_CHARS, METADATA_MAX_BYTES, IdentityMeta


def checked_metadata(external_id: str | None, data: dict[str, object] | None) -> IdentityMeta:
    """Metadata within its caps (``MetadataTooLarge`` otherwise: an ``external_id`` over
    ``EXTERNAL_ID_MAX_CHARS`` characters, ``data`` over ``METADATA_MAX_BYTES`` of compact
    UTF-8 JSON)."""
    if external_id is not None and len(external_id) > EXTERNAL_ID_MAX_CHARS:
        raise MetadataTooLarge(
            f"external_id has {len(external_id)} characters; the limit is "
            f"{EXTERNAL_ID_MAX_CHARS}. Nothing was changed."
        )
    if data is not None:
        try:
            text = json.dumps(data, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
        except ValueError:
            raise InvalidMetadata(
                "data holds NaN or an infinite number, which JSON cannot."
            ) from None
        size = len(text.encode())
        if size > METADATA_MAX_BYTES:
            raise MetadataTooLarge(
                f"data is {size} bytes of JSON; the limit is {METADATA_MAX_BYTES}. "
                "Nothing was changed."
            )
    return IdentityMeta(external_id, data)
