"""The demo chat page served at ``GET /``: one static HTML file plus settings injected per request.

The page (``static/index.html``) is plain HTML/CSS/JS with no build step and loads nothing from
the network but the WebSocket it opens. Its one inline ``<style>`` and one inline ``<script>``
are allowed by hash in the Content-Security-Policy, so no ``'unsafe-inline'`` is needed.

Settings are read from the environment at render time (never at import: Chalice's test client
and the local gateway set variables only around a call):

- ``WEBSOCKET_URL``: the URL clients dial, e.g. ``wss://abc123.execute-api.eu-west-1.amazonaws.com/api``.
  Unset, it is derived from ``APIGW_MANAGEMENT_ENDPOINT`` when that is set (a WebSocket API's
  management endpoint is its own URL with ``https``), else the page says it is not configured.
- ``AUTH_MODE``: ``jwt`` (the default, as in config.py) shows a token field, ``none`` a user id.
- ``MAX_TEXT_CHARS``: the longest ``text`` the server accepts, for the page's size check.
"""

from __future__ import annotations

import base64
import hashlib
import html
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from chalicelib.config import AUTH_MODES
from chalicelib.protocol import MAX_PAYLOAD_BYTES

TEMPLATE = Path(__file__).with_name("static") / "index.html"
# API Gateway closes a connection (1009) on a frame over 32 KB, and browsers send each message
# as one frame, so the page refuses anything larger before sending.
MAX_FRAME_BYTES = min(32 * 1024, MAX_PAYLOAD_BYTES)
DEFAULT_MAX_TEXT_CHARS = 8192
_PLACEHOLDER_RE = re.compile(r"\{\{([A-Z_]+)\}\}")


@dataclass(frozen=True)
class PageSettings:
    websocket_url: str
    auth_mode: str
    max_text_chars: int
    max_frame_bytes: int = MAX_FRAME_BYTES

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> PageSettings:
        """Never raises: a misconfigured stage still gets a page that says what is wrong."""
        env = os.environ if env is None else env
        auth_mode = env.get("AUTH_MODE", "jwt").strip().lower()
        if auth_mode not in AUTH_MODES:
            auth_mode = "jwt"
        return cls(
            websocket_url=websocket_url(env),
            auth_mode=auth_mode,
            max_text_chars=_positive_int(env.get("MAX_TEXT_CHARS"), DEFAULT_MAX_TEXT_CHARS),
        )


def websocket_url(env: Mapping[str, str]) -> str:
    """``WEBSOCKET_URL``, else the management endpoint as ws(s)://, else "" (not configured)."""
    url = (env.get("WEBSOCKET_URL") or "").strip()
    if url:
        return url if url.startswith(("ws://", "wss://")) else ""
    management = (env.get("APIGW_MANAGEMENT_ENDPOINT") or "").strip().rstrip("/")
    if management.startswith("https://"):
        return "wss://" + management.removeprefix("https://")
    if management.startswith("http://"):
        return "ws://" + management.removeprefix("http://")
    return ""


def _positive_int(raw: str | None, default: int) -> int:
    try:
        value = int(raw) if raw and raw.strip() else default
    except ValueError:
        return default
    return value if value > 0 else default


@dataclass(frozen=True)
class _Template:
    text: str
    csp: str


def _csp_hash(source: str) -> str:
    digest = hashlib.sha256(source.encode("utf-8")).digest()
    return "'sha256-" + base64.b64encode(digest).decode("ascii") + "'"


def _inline(text: str, tag: str) -> str:
    found = re.findall(rf"<{tag}>(.*?)</{tag}>", text, flags=re.DOTALL)
    if len(found) != 1:
        raise ValueError(f"{TEMPLATE.name} must have exactly one inline <{tag}>")
    return str(found[0])


@cache
def _template() -> _Template:
    text = TEMPLATE.read_text(encoding="utf-8")
    csp = "; ".join(
        [
            "default-src 'none'",
            f"script-src {_csp_hash(_inline(text, 'script'))}",
            f"style-src {_csp_hash(_inline(text, 'style'))}",
            # Any ws:/wss: host: the URL comes from configuration or ?ws=, not from this origin.
            "connect-src ws: wss:",
            "img-src data:",
            "base-uri 'none'",
            "form-action 'none'",
            "frame-ancestors 'none'",
        ]
    )
    return _Template(text, csp)


def render(settings: PageSettings) -> str:
    """The page with the settings in its <meta> tags (HTML-escaped; scripts read them there)."""
    values = {
        "WEBSOCKET_URL": settings.websocket_url,
        "AUTH_MODE": settings.auth_mode,
        "MAX_TEXT_CHARS": str(settings.max_text_chars),
        "MAX_FRAME_BYTES": str(settings.max_frame_bytes),
    }
    return _PLACEHOLDER_RE.sub(
        lambda m: html.escape(values[m.group(1)], quote=True), _template().text
    )


def headers() -> dict[str, str]:
    return {
        "Content-Type": "text/html; charset=utf-8",
        "Content-Security-Policy": _template().csp,
        # The page embeds per-stage configuration: never serve a stale copy.
        "Cache-Control": "no-store",
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
        "X-Frame-Options": "DENY",
    }


def index_page(env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Keyword arguments for ``chalice.Response``: ``Response(**index_page())``."""
    return {
        "body": render(PageSettings.from_env(env)),
        "status_code": 200,
        "headers": headers(),
    }
