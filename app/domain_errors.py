"""The service's domain errors: what can go wrong below the web layer.

Nothing here knows HTTP. The face pipeline's refusals (``faces.ImageError``), these
errors and the web layer's own (``app.errors.ApiError``) all carry a machine-readable
``code``; ``app.error_codes.ERROR_CODES`` is the one table that gives each code its HTTP
status and meaning, and ``app.errors`` maps them onto responses. The gallery commands
(``python -m app.gallery``) catch the same classes and print their messages.
"""

from __future__ import annotations

from typing import ClassVar


class DomainError(Exception):
    """A refusal of the domain with a stable ``code`` (a row of ``ERROR_CODES``) and a
    message for people."""

    code: ClassVar[str] = "internal_error"
    #: Seconds after which a retry may succeed (sent as ``Retry-After``), if any.
    retry_after: ClassVar[int | None] = None

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    @property
    def public_message(self) -> str:
        """What a client is told (the message itself unless it holds internals)."""
        return self.message


class NoFace(DomainError):
    """A photo that had to hold a face holds none."""

    code = "no_face"


class LowQuality(DomainError):
    """A face under the enrolment quality floor."""

    code = "low_quality"


class InvalidIdentity(DomainError):
    """An identity name that breaks the naming rule (``app.gallery.names``)."""

    code = "invalid_identity"


class InvalidCollection(DomainError):
    """A collection name that breaks the naming rule (``app.gallery.names``)."""

    code = "invalid_collection"


class UnknownIdentity(DomainError):
    """A correction named an identity (or a face of it) that is not enrolled."""

    code = "not_found"


class IdentityExists(DomainError):
    """A rename to a name that is already enrolled (merge instead)."""

    code = "identity_exists"


class SameIdentity(DomainError):
    """A rename, merge or move whose source and target are the same identity."""

    code = "same_identity"


class MetadataTooLarge(DomainError):
    """An identity's metadata over its size cap."""

    code = "metadata_too_large"


class InvalidMetadata(DomainError):
    """Metadata that JSON cannot carry as it is (NaN or infinite numbers)."""

    code = "validation_error"


class FaceNotInPhoto(DomainError):
    """The face chosen for enrolment (by box or index) is not among the photo's faces."""

    code = "no_such_face"


class StorageUnavailable(DomainError):
    """The gallery database cannot be reached; nothing was changed. The message names the
    database's own error (for logs); clients get a fixed sentence."""

    code = "storage_unavailable"
    retry_after = 2

    @property
    def public_message(self) -> str:
        return "The gallery database is unreachable; nothing was changed. Retry shortly."


class StartupError(RuntimeError):
    """A configuration problem that must stop the service (or a gallery command) before it
    serves: exit code 2 and the message, never an HTTP answer."""
