"""QR labels for city codes, in PNG and SVG, for the sticker on the device."""

from __future__ import annotations

import io

import segno


def qr_content(code: str, base_url: str | None) -> str:
    """What the QR encodes: the bare code, or a link to it when a base URL is set."""
    return f"{base_url.rstrip('/')}/{code}" if base_url else code


def qr_png(content: str, scale: int = 8) -> bytes:
    out = io.BytesIO()
    segno.make(content, error="m", micro=False).save(out, kind="png", scale=scale, border=4)
    return out.getvalue()


def qr_svg(content: str, scale: int = 8) -> bytes:
    out = io.BytesIO()
    segno.make(content, error="m", micro=False).save(out, kind="svg", scale=scale, border=4, title=content)
    return out.getvalue()
