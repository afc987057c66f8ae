"""The demo chat page served at ``GET /``: one static HTML file plus settings injected per request.

The page (``static/index.html``) is plain HTML/CSS/JS with no build step and loads nothing from
the network but the WebSocket it opens and the JS client's ES modules (``GET /client/*.js``,
same origin). Its one inline ``<style>`` and one inline ``<script>`` are allowed by hash in the
Content-Security-Policy, the modules by ``'self'``, so no ``'unsafe-inline'`` is needed.

The modules have one source, ``clients/js/src``: ``static/client/*.js`` are symlinks to it, which
the local gateway and Chalice's test client read through, and which ``chalice package`` resolves
into plain files in deployment.zip (its zip writer follows links).

Settings are read from the environment at render time (never at import: Chalice's test client
and the local gateway set variables only around a call):

- ``WEBSOCKET_URL``: the URL clients dial, e.g. ``wss://abc123.execute-api.eu-west-1.amazonaws.com/api``.
  Unset, it is derived from ``APIGW_MANAGEMENT_ENDPOINT`` when that is set (a WebSocket API's
  management endpoint is its own URL with ``https``), else the page says it is not configured.
- ``WEBSOCKET_URL_ALLOWLIST``: comma-separated ws(s) origins that ``?ws=`` may point the page at
  when auth is on (default: none). The page sends the token on the connect URL, so with
  ``AUTH_MODE=jwt`` it dials only the configured URL's origin or one of these; anything else in
  ``?ws=`` is refused (in the page's script, and again by the CSP's ``connect-src``, which names
  exactly those origins).
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
from urllib.parse import urlsplit

from chalicelib.config import AUTH_MODES
from chalicelib.protocol import MAX_PAYLOAD_BYTES

TEMPLATE = Path(__file__).with_name("static") / "index.html"
CLIENT_DIR = Path(__file__).with_name("static") / "client"
# The browser modules of clients/js (file-store.js is Node-only and not served).
CLIENT_MODULES = ("index.js", "streams.js", "store.js", "errors.js")
# API Gateway closes a connection (1009) on a frame over 32 KB, and browsers send each message
# as one frame, so the page refuses anything larger before sending.
MAX_FRAME_BYTES = min(32 * 1024, MAX_PAYLOAD_BYTES)
DEFAULT_MAX_TEXT_CHARS = 8192
_PLACEHOLDER_RE = re.compile(r"\{\{([A-Z_]+)\}\}")
# A host a CSP source expression can carry as is (and a browser's URL parser leaves alone):
# lowercase ASCII labels. Anything else (spaces, ';', IPv6, non-ASCII) is not dialled.
_HOST_RE = re.compile(r"[a-z0-9](?:[a-z0-9.-]*[a-z0-9])?")
_DEFAULT_PORTS = {"ws": 80, "wss": 443}
# With auth off there is no secret to steal and the page may be pointed anywhere by ?ws=, but
# only a local gateway (any port, `make run` or the tests) besides the configured origin.
LOCAL_CONNECT_SOURCES = ("ws://127.0.0.1:*", "ws://localhost:*")


@dataclass(frozen=True)
class PageSettings:
    websocket_url: str
    auth_mode: str
    max_text_chars: int
    max_frame_bytes: int = MAX_FRAME_BYTES
    websocket_allowlist: tuple[str, ...] = ()

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
            websocket_allowlist=websocket_allowlist(env),
        )

    def connect_sources(self) -> list[str]:
        """The CSP ``connect-src`` values: every place the page may open a WebSocket to.

        ``jwt``: the configured URL's origin and the allow-listed origins, nothing else
        (``'none'`` when there are none: the page says it is not configured). ``none``: those
        plus a local gateway on any port.
        """
        sources = list(LOCAL_CONNECT_SOURCES) if self.auth_mode == "none" else []
        configured = websocket_origin(self.websocket_url)
        for origin in ([configured] if configured else []) + list(self.websocket_allowlist):
            if origin not in sources:
                sources.append(origin)
        return sources or ["'none'"]


def websocket_url(env: Mapping[str, str]) -> str:
    """``WEBSOCKET_URL``, else the management endpoint as ws(s)://, else "" (not configured)."""
    url = (env.get("WEBSOCKET_URL") or "").strip()
    if not url:
        management = (env.get("APIGW_MANAGEMENT_ENDPOINT") or "").strip().rstrip("/")
        if management.startswith("https://"):
            url = "wss://" + management.removeprefix("https://")
        elif management.startswith("http://"):
            url = "ws://" + management.removeprefix("http://")
    # A URL whose origin the CSP cannot name would be blocked anyway: call it not configured.
    return url if websocket_origin(url) else ""


def websocket_origin(url: str) -> str | None:
    """``ws(s)://host[:port]`` of a WebSocket URL, written as a browser writes an origin
    (lowercase host, no default port), or None when ``url`` is not a ws:// or wss:// URL with a
    plain host name or IPv4 address."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:  # a port out of range or not a number
        return None
    host = parts.hostname or ""
    if parts.scheme not in _DEFAULT_PORTS or not _HOST_RE.fullmatch(host):
        return None
    shown = "" if port is None or port == _DEFAULT_PORTS[parts.scheme] else f":{port}"
    return f"{parts.scheme}://{host}{shown}"


def websocket_allowlist(env: Mapping[str, str]) -> tuple[str, ...]:
    """The origins of ``WEBSOCKET_URL_ALLOWLIST`` (comma-separated); entries that are not ws(s)
    URLs are dropped rather than failing the page, and a path on an entry is ignored."""
    origins: list[str] = []
    for entry in (env.get("WEBSOCKET_URL_ALLOWLIST") or "").split(","):
        origin = websocket_origin(entry) if entry.strip() else None
        if origin and origin not in origins:
            origins.append(origin)
    return tuple(origins)


def _positive_int(raw: str | None, default: int) -> int:
    try:
        value = int(raw) if raw and raw.strip() else default
    except ValueError:
        return default
    return value if value > 0 else default


@dataclass(frozen=True)
class _Template:
    text: str
    script_hash: str
    style_hash: str


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
    return _Template(text, _csp_hash(_inline(text, "script")), _csp_hash(_inline(text, "style")))


def content_security_policy(settings: PageSettings) -> str:
    template = _template()
    return "; ".join(
        [
            "default-src 'none'",
            # 'self': the JS client's modules, imported from this origin (GET /client/*.js).
            f"script-src {template.script_hash} 'self'",
            f"style-src {template.style_hash}",
            # The second line of defence after the script's own check: even a page talked into
            # dialling elsewhere (?ws=, a changed Server field) cannot send the token there.
            f"connect-src {' '.join(settings.connect_sources())}",
            "img-src data:",
            "base-uri 'none'",
            "form-action 'none'",
            "frame-ancestors 'none'",
        ]
    )


def render(settings: PageSettings) -> str:
    """The page with the settings in its <meta> tags (HTML-escaped; scripts read them there)."""
    values = {
        "WEBSOCKET_URL": settings.websocket_url,
        "AUTH_MODE": settings.auth_mode,
        "MAX_TEXT_CHARS": str(settings.max_text_chars),
        "MAX_FRAME_BYTES": str(settings.max_frame_bytes),
        "WEBSOCKET_ALLOWLIST": " ".join(settings.websocket_allowlist),
    }
    return _PLACEHOLDER_RE.sub(
        lambda m: html.escape(values[m.group(1)], quote=True), _template().text
    )


def headers(settings: PageSettings) -> dict[str, str]:
    return {
        "Content-Type": "text/html; charset=utf-8",
        "Content-Security-Policy": content_security_policy(settings),
        # The page embeds per-stage configuration: never serve a stale copy.
        "Cache-Control": "no-store",
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
        "X-Frame-Options": "DENY",
    }


def index_page(env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Keyword arguments for ``chalice.Response``: ``Response(**index_page())``."""
    settings = PageSettings.from_env(env)
    return {"body": render(settings), "status_code": 200, "headers": headers(settings)}


@cache
def _client_source(name: str) -> str:
    return (CLIENT_DIR / name).read_text(encoding="utf-8")  # once per container


def client_module(name: str) -> dict[str, Any]:
    """Keyword arguments for ``chalice.Response``: one of ``CLIENT_MODULES`` as JavaScript.

    Raises ``ValueError`` for any other name (the routes are exactly the module names)."""
    if name not in CLIENT_MODULES:
        raise ValueError(f"not a client module: {name!r}")
    return {
        "body": _client_source(name),
        "status_code": 200,
        "headers": {
            # A module script must come with a JavaScript MIME type (HTML's "module script"
            # fetch refuses anything else, more so under nosniff).
            "Content-Type": "text/javascript; charset=utf-8",
            # The module runs under the page's CSP; opened on its own it may do nothing.
            "Content-Security-Policy": "default-src 'none'; frame-ancestors 'none'",
            # Revalidate, as the page does: a deploy must not pair a new page with old modules.
            "Cache-Control": "no-cache",
            "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "no-referrer",
        },
    }
