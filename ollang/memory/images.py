"""Images inside stored messages: kept once per content, referenced from their messages.

A message's content may hold image blocks (LangChain's ``{"type": "image", "base64":
..., "mime_type": ...}``). Stored inline, the same photo resent with every turn of a
conversation (vision models need it in the history) would be stored once per message
that carries it, as base64 text. Stores instead keep each image's bytes once, under the
SHA-256 of its bytes, and the message's block refers to it
(``{"type": "image", "ollang_image": "<sha256 hex>", "mime_type": ...}``). Reads put the
base64 back, so messages come out exactly as they went in.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["IMAGE_REF", "StoredImage", "image_refs", "restore_images", "split_images"]

#: The key of a stored image's reference in a content block.
IMAGE_REF = "ollang_image"


@dataclass(frozen=True)
class StoredImage:
    """An image's bytes as a store keeps them."""

    hash: str
    mime: str
    data: bytes


def _is_inline_image(block: Any) -> bool:
    return (
        isinstance(block, Mapping)
        and block.get("type") == "image"
        and isinstance(block.get("base64"), str)
        and bool(block.get("base64"))
    )


def split_images(content: Sequence[Any]) -> tuple[list[Any], list[StoredImage]]:
    """Content blocks with inline images replaced by references, and those images.

    Blocks whose base64 does not decode are kept inline (nothing is lost; they are
    just not deduplicated).
    """
    blocks: list[Any] = []
    images: list[StoredImage] = []
    for block in content:
        if not _is_inline_image(block):
            blocks.append(block)
            continue
        try:
            data = base64.b64decode(block["base64"], validate=True)
        except (binascii.Error, ValueError):
            blocks.append(block)
            continue
        digest = hashlib.sha256(data).hexdigest()
        mime = str(block.get("mime_type") or "application/octet-stream")
        images.append(StoredImage(digest, mime, data))
        ref = {key: value for key, value in block.items() if key != "base64"}
        ref[IMAGE_REF] = digest
        ref["mime_type"] = mime
        blocks.append(ref)
    return blocks, images


def image_refs(content: Iterable[Any]) -> list[str]:
    """The hashes of the images a stored content list refers to."""
    return [
        str(block[IMAGE_REF])
        for block in content
        if isinstance(block, Mapping) and block.get("type") == "image" and IMAGE_REF in block
    ]


def restore_images(
    content: list[Any], fetch: Callable[[list[str]], Mapping[str, bytes]]
) -> list[Any]:
    """Stored content with each image reference replaced by the image's base64 again.

    ``fetch`` gets the hashes and returns their bytes. A reference whose image is
    missing is left as a reference (visible, never silently dropped).
    """
    refs = image_refs(content)
    if not refs:
        return content
    found = fetch(refs)
    restored: list[Any] = []
    for block in content:
        digest = block.get(IMAGE_REF) if isinstance(block, Mapping) else None
        if digest is not None and digest in found:
            inline = {key: value for key, value in block.items() if key != IMAGE_REF}
            inline["base64"] = base64.b64encode(found[digest]).decode("ascii")
            restored.append(inline)
        else:
            restored.append(block)
    return restored
