"""What an identity may be called: one rule for the API, the gallery commands and import."""

from __future__ import annotations

import re
import unicodedata

from app.domain_errors import InvalidCollection, InvalidIdentity

MAX_IDENTITY_LENGTH = 128
#: The same rule as a regular expression (``\p`` classes), for the OpenAPI document.
IDENTITY_PATTERN = r"^(?! )(?!.* $)[\p{L}\p{M}\p{Nd} _.'-]*[\p{L}\p{Nd}][\p{L}\p{M}\p{Nd} _.'-]*$"
#: The rule in words (documentation of the identity parameter).
IDENTITY_RULE = (
    f"1–{MAX_IDENTITY_LENGTH} characters: Unicode letters with their combining marks, "
    "digits, space and _ - . ', at least one letter or digit, no space at either end"
)
_IDENTITY_PUNCTUATION = frozenset(" _-.'")


def validate_identity(name: str) -> str:
    """NFC-normalised identity name, or ``InvalidIdentity``.

    1–128 characters of Unicode letters (with their combining marks), decimal digits,
    space and ``_ - . '``; at least one letter or digit; no leading or trailing space.
    """
    name = unicodedata.normalize("NFC", name)
    problem = None
    if not 1 <= len(name) <= MAX_IDENTITY_LENGTH:
        problem = f"must be 1 to {MAX_IDENTITY_LENGTH} characters long"
    elif name != name.strip(" "):
        problem = "must not start or end with a space"
    else:
        has_alnum = False
        for ch in name:
            category = unicodedata.category(ch)
            if category[0] == "L" or category == "Nd":
                has_alnum = True
            elif category[0] == "M" or ch in _IDENTITY_PUNCTUATION:
                continue
            else:
                problem = f"contains {ch!r}; allowed are letters, digits, space and _ - . '"
                break
        if problem is None and not has_alnum:
            problem = "must contain a letter or a digit"
    if problem is not None:
        raise InvalidIdentity(f"Invalid identity name: it {problem}.")
    return name


MAX_COLLECTION_LENGTH = 64
#: A collection name: ASCII letters, digits, ``_ - .``, starting with a letter or digit.
COLLECTION_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
_COLLECTION = re.compile(COLLECTION_PATTERN)


def validate_collection(name: str) -> str:
    """A collection name, or ``InvalidCollection``: 1–64 ASCII letters, digits and
    ``_ - .``, starting with a letter or a digit (it appears in URLs and key scopes)."""
    if not _COLLECTION.match(name):
        raise InvalidCollection(
            f"Invalid collection name {name[:80]!r}: use 1 to {MAX_COLLECTION_LENGTH} ASCII "
            "letters, digits, '_', '-' or '.', starting with a letter or a digit."
        )
    return name
