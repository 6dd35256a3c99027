"""Images a user attaches to a message: read, checked, and turned into content blocks.

Vision models on Ollama take PNG, JPEG, GIF and WebP. What reaches a model is checked
here once, whoever attaches it (``ollang ask -i``, the REPL's ``/image``, ``images`` in
an HTTP request, the page): it must be one of those formats (by its first bytes, not its
name) and at most :data:`MAX_IMAGE_BYTES`. The result is LangChain's standard image
block, ``{"type": "image", "base64": ..., "mime_type": ...}``, which ``ChatOllama``
and ollang's own path to Ollama both send as Ollama's ``images``.
"""

from __future__ import annotations

import base64
import binascii
from pathlib import Path
from typing import Any

from ollang.errors import InvalidInputError

__all__ = [
    "MAX_IMAGES",
    "MAX_IMAGE_BYTES",
    "ImageTooLargeError",
    "image_block",
    "image_block_from_base64",
    "image_block_from_path",
    "image_kind",
    "looks_like_image_path",
]

#: Largest image accepted, in bytes (decoded): a phone photo fits, a raw scan does not.
MAX_IMAGE_BYTES = 10 * 1024 * 1024
#: Most images in one message.
MAX_IMAGES = 8
_SUFFIXES = (".png", ".jpg", ".jpeg", ".gif", ".webp")


class ImageTooLargeError(InvalidInputError):
    """An attached image is over :data:`MAX_IMAGE_BYTES`."""

    http_status = 413


def image_kind(data: bytes) -> str | None:
    """The MIME type of image ``data`` from its signature, or ``None`` if it is none of
    PNG, JPEG, GIF or WebP.

    Written out rather than a dependency: four fixed byte signatures, from each
    format's specification.
    """
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if data.startswith((b"GIF87a", b"GIF89a")):
        return "image/gif"
    if len(data) >= 12 and data.startswith(b"RIFF") and data[8:12] == b"WEBP":
        return "image/webp"
    return None


def image_block(data: bytes, name: str = "the image") -> dict[str, Any]:
    """A content block for image ``data``.

    Raises:
        ImageTooLargeError: over :data:`MAX_IMAGE_BYTES` (HTTP 413).
        InvalidInputError: not a PNG, JPEG, GIF or WebP image (exit 2, HTTP 422).
    """
    if len(data) > MAX_IMAGE_BYTES:
        raise ImageTooLargeError(
            f"{name} is {len(data) / 2**20:.1f} MiB; images may be at most "
            f"{MAX_IMAGE_BYTES // 2**20} MiB",
            "send a smaller image (resize or compress it)",
        )
    kind = image_kind(data)
    if kind is None:
        raise InvalidInputError(
            f"{name} is not an image (PNG, JPEG, GIF or WebP)", "attach an image file"
        )
    return {"type": "image", "base64": base64.b64encode(data).decode("ascii"), "mime_type": kind}


def image_block_from_base64(text: str, name: str = "an image") -> dict[str, Any]:
    """A content block for a base64 image (a data URL's ``data:...;base64,`` is accepted)."""
    payload = text.split(",", 1)[1] if text.startswith("data:") and "," in text else text
    if len(payload) > (MAX_IMAGE_BYTES * 4) // 3 + 4:
        raise ImageTooLargeError(
            f"{name} is over {MAX_IMAGE_BYTES // 2**20} MiB", "send a smaller image"
        )
    try:
        data = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError) as err:
        raise InvalidInputError(
            f"{name} is not valid base64", "send the image's bytes as base64"
        ) from err
    return image_block(data, name)


def image_block_from_path(path: str | Path) -> dict[str, Any]:
    """A content block for the image file at ``path``.

    Raises:
        InvalidInputError: no such file, unreadable, or not an image (exit 2).
        ImageTooLargeError: too large.
    """
    file = Path(path).expanduser()
    if not file.is_file():
        raise InvalidInputError(f"no image file {path}", "check the path")
    size = file.stat().st_size
    if size > MAX_IMAGE_BYTES:
        raise ImageTooLargeError(
            f"{path} is {size / 2**20:.1f} MiB; images may be at most "
            f"{MAX_IMAGE_BYTES // 2**20} MiB",
            "send a smaller image (resize or compress it)",
        )
    try:
        data = file.read_bytes()
    except OSError as err:
        raise InvalidInputError(f"cannot read {path}: {err.strerror or err}") from err
    return image_block(data, str(path))


def looks_like_image_path(word: str) -> bool:
    """Whether a word of a typed message names an image file (as ``ollama run`` reads
    ``describe ./cat.png``): an image suffix and an existing file."""
    candidate = word.strip("'\"")
    return candidate.lower().endswith(_SUFFIXES) and Path(candidate).expanduser().is_file()
