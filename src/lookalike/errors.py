"""The error tree. Each error carries the HTTP status a server would answer with.

Only the CLI turns these into exit codes and only a server into responses; the engine
raises them and never prints.
"""

from __future__ import annotations


class LookalikeError(Exception):
    """Base of every error lookalike raises on purpose."""

    status: int = 500
    code: str = "internal"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class BadInput(LookalikeError):
    """The caller gave something unusable (bad argument, K <= 0, ...)."""

    status = 422
    code = "bad_input"


class BadArgument(BadInput):
    """An argument of the call itself is invalid (``k <= 0``, an unknown descriptor): the
    command was used wrongly, whatever the data (the CLI exits 2)."""


class ImageError(LookalikeError):
    """A file or buffer could not be decoded as an image."""

    status = 400
    code = "bad_image"

    def __init__(self, source: str, reason: str) -> None:
        super().__init__(f"{source}: {reason}")
        self.source = source
        self.reason = reason


class ImageTooLarge(ImageError):
    """An image is over the pixel limit (decompression-bomb guard)."""

    status = 413
    code = "image_too_large"


class Unauthorized(LookalikeError):
    """No API key, or an unknown or revoked one."""

    status = 401
    code = "unauthorized"


class Forbidden(LookalikeError):
    """The key's scope does not allow this, or a path is outside the allowed roots."""

    status = 403
    code = "forbidden"


class TooLarge(LookalikeError):
    """An upload over the size limit."""

    status = 413
    code = "too_large"


class Busy(LookalikeError):
    """Too much work of a kind is running (large images being decoded): retry later."""

    status = 503
    code = "busy"

    def __init__(self, message: str, *, retry_after: int) -> None:
        super().__init__(message)
        # Whole seconds after which a retry is likely to be admitted.
        self.retry_after = retry_after


class Unavailable(LookalikeError):
    """A shared part (the catalog database, the cache, the broker) does not answer, or its
    URL is malformed. The message names the part and where it was looked for."""

    status = 503
    code = "unavailable"


class NotFound(LookalikeError):
    status = 404
    code = "not_found"


class Conflict(LookalikeError):
    status = 409
    code = "conflict"


class SchemaTooNew(LookalikeError):
    """The data folder was written by a newer lookalike."""

    status = 500
    code = "schema_too_new"


class DataFolderError(LookalikeError):
    """The data folder cannot be used: its catalog is damaged or not a catalog, or a part
    of it is not what it should be (a file where a folder belongs)."""

    status = 500
    code = "data_folder"


class VectorMismatch(LookalikeError):
    """This machine's models compute other vectors than the ones the shared catalog holds
    (another CPU or library version): it must not add to that catalog."""

    status = 500
    code = "vector_mismatch"


class ModelError(LookalikeError):
    """A model file is missing or cannot be converted."""

    status = 500
    code = "model_error"
