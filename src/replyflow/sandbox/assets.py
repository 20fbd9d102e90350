"""Small generated SVG images standing in for Instagram's CDN: media thumbnails, profile pictures, Page pictures."""

from __future__ import annotations

import hashlib
from html import escape

from replyflow.sandbox.models import IGAccount, Media, Page

# Served with the image: our own SVG never needs scripts or outside resources.
SVG_HEADERS = {
    "content-type": "image/svg+xml; charset=utf-8",
    "content-security-policy": "default-src 'none'; style-src 'unsafe-inline'",
    "cache-control": "public, max-age=3600",
    "x-content-type-options": "nosniff",
}


def media_svg(media: Media) -> str:
    """A square thumbnail: the media's colour, its emoji, the caption's first words and a badge for reels."""
    base = _safe_color(media.color)
    shade = _shift(base, -60)
    words = _first_words(media.caption, limit=32)
    badge = ""
    if media.media_product_type == "REELS":
        badge = (
            '<rect x="468" y="28" width="144" height="52" rx="26" fill="#000" fill-opacity="0.45"/>'
            '<text x="540" y="63" font-size="26" text-anchor="middle" fill="#fff" '
            'font-family="Helvetica, Arial, sans-serif" font-weight="700">▶ REEL</text>'
        )
    return (
        '<svg xmlns="http://www.w3.org/2000/svg" width="640" height="640" viewBox="0 0 640 640">'
        f'<defs><linearGradient id="g" x1="0" y1="0" x2="1" y2="1"><stop offset="0" stop-color="{base}"/>'
        f'<stop offset="1" stop-color="{shade}"/></linearGradient></defs>'
        '<rect width="640" height="640" fill="url(#g)"/>'
        '<text x="320" y="330" font-size="200" text-anchor="middle" dominant-baseline="middle">'
        f"{escape(media.emoji)}</text>"
        f"{badge}"
        '<rect x="0" y="540" width="640" height="100" fill="#000" fill-opacity="0.35"/>'
        '<text x="32" y="600" font-size="30" fill="#fff" font-family="Helvetica, Arial, sans-serif">'
        f"{escape(words)}</text></svg>"
    )


def avatar_svg(account: IGAccount) -> str:
    """A round profile picture with the account's initial."""
    color = _safe_color(account.color)
    initial = escape(account.username[:1].upper() or "?")
    return (
        '<svg xmlns="http://www.w3.org/2000/svg" width="150" height="150" viewBox="0 0 150 150">'
        f'<circle cx="75" cy="75" r="75" fill="{color}"/>'
        '<text x="75" y="78" font-size="72" text-anchor="middle" dominant-baseline="middle" fill="#fff" '
        f'font-family="Helvetica, Arial, sans-serif" font-weight="700">{initial}</text></svg>'
    )


def page_svg(page: Page) -> str:
    digest = hashlib.sha256(page.id.encode()).hexdigest()
    color = "#" + digest[:6]
    initial = escape(page.name[:1].upper() or "?")
    return (
        '<svg xmlns="http://www.w3.org/2000/svg" width="50" height="50" viewBox="0 0 50 50">'
        f'<rect width="50" height="50" rx="8" fill="{color}"/>'
        '<text x="25" y="27" font-size="26" text-anchor="middle" dominant-baseline="middle" fill="#fff" '
        f'font-family="Helvetica, Arial, sans-serif" font-weight="700">{initial}</text></svg>'
    )


def _first_words(text: str, *, limit: int) -> str:
    flat = " ".join(text.split())
    if len(flat) <= limit:
        return flat
    return flat[: limit - 1].rsplit(" ", 1)[0] + "…"


def _safe_color(value: str) -> str:
    """Only ``#rrggbb`` reaches the SVG; anything else falls back to a coffee brown."""
    if len(value) == 7 and value.startswith("#") and all(c in "0123456789abcdefABCDEF" for c in value[1:]):
        return value
    return "#8a5a44"


def _shift(color: str, amount: int) -> str:
    channels = [int(color[i : i + 2], 16) for i in (1, 3, 5)]
    return "#" + "".join(f"{max(0, min(255, c + amount)):02x}" for c in channels)
