"""Field photos of dispatch steps: what is accepted, decided from the bytes, never from the client's word."""

from __future__ import annotations

from registry.errors import Invalid, LedgerError

MAX_PHOTO_BYTES = 5 * 1024 * 1024
MAX_PHOTOS_PER_STEP = 10
_SIGNATURES = {b"\xff\xd8\xff": "image/jpeg", b"\x89PNG\r\n\x1a\n": "image/png"}


class TooLarge(LedgerError):
    status = 413


def sniff(image: bytes) -> str | None:
    """The content type of a JPEG or PNG, from its first bytes; None for anything else."""
    return next((kind for magic, kind in _SIGNATURES.items() if image.startswith(magic)), None)


def accept(photos: list[tuple[str, bytes]]) -> list[tuple[str, bytes]]:
    """(content type, bytes) of each (name, bytes) upload: 413 past the limits, 422 for a non-image."""
    if len(photos) > MAX_PHOTOS_PER_STEP:
        raise TooLarge(f"at most {MAX_PHOTOS_PER_STEP} photos per step; got {len(photos)}", field="photos")
    accepted = []
    for name, image in photos:
        if len(image) > MAX_PHOTO_BYTES:
            raise TooLarge(f"photo {name!r} is over {MAX_PHOTO_BYTES // 1024 // 1024} MiB", field="photos")
        kind = sniff(image)
        if kind is None:
            raise Invalid(f"photo {name!r} is not a JPEG or PNG image", field="photos")
        accepted.append((kind, image))
    return accepted
