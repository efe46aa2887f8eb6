"""The Workflows page: the web app's built files (`web/dist`) at `/`, beside the API.

Served by a small WSGI layer in front of Flask's routing rather than by Flask routes: the
page is not part of the API, so `/openapi.json` (which documents exactly the app's routes)
stays the API's document. `GET /` (and `/index.html`) answers index.html with the page's
settings written in (auth mode, Supabase URL and anon key), never cached; `GET /assets/*`
answers Vite's content-hashed files, cached for a year as immutable. Anything else goes
on to the API.
"""

from __future__ import annotations

import json
import mimetypes
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from flask import Flask
from werkzeug.security import safe_join
from werkzeug.wrappers import Response

from wf_core.settings import REPO_ROOT

DEFAULT_DIST = REPO_ROOT / "web" / "dist"
CONFIG_BLOCK = '<script id="workflows-config" type="application/json">{}</script>'
IMMUTABLE = "public, max-age=31536000, immutable"
INDEX_PATHS = ("/", "/index.html")
ASSETS = "/assets/"
TYPES = {".js": "text/javascript", ".css": "text/css", ".svg": "image/svg+xml"}

StartResponse = Callable[..., Any]


def page_settings(config: dict[str, Any]) -> dict[str, Any]:
    """What the page needs to know to sign in: never a secret (the anon key is public)."""
    return {
        "auth_mode": str(config.get("AUTH_MODE") or "supabase").strip().lower(),
        "supabase_url": config.get("SUPABASE_URL") or None,
        "supabase_anon_key": config.get("SUPABASE_ANON_KEY") or None,
        "api_base": "",
    }


def _json_error(status: int, code: str, message: str) -> Response:
    body = json.dumps({"error": {"code": code, "message": message}})
    return Response(body, status=status, mimetype="application/json")


def _csp(settings: dict[str, Any]) -> str:
    connect = " ".join(filter(None, ["'self'", settings["supabase_url"]]))
    return (
        "default-src 'self'; script-src 'self'; style-src 'self'; "
        f"connect-src {connect}; img-src 'self' data: blob: https:; "
        "media-src 'self' blob: https:; object-src 'none'; base-uri 'none'; "
        "frame-ancestors 'self'"
    )


class PageFiles:
    """WSGI middleware: the page's files for GET/HEAD of `/` and `/assets/*`, else the API."""

    def __init__(self, api: Callable[..., Iterable[bytes]], app: Flask) -> None:
        self.api = api
        self.app = app

    @property
    def dist(self) -> Path:
        """The built web app's folder."""
        return Path(self.app.config.get("WEB_DIST_DIR") or DEFAULT_DIST)

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO") or "/"
        if environ.get("REQUEST_METHOD") in ("GET", "HEAD"):
            if path in INDEX_PATHS:
                return self._index()(environ, start_response)
            if path.startswith(ASSETS):
                return self._asset(path[len(ASSETS) :])(environ, start_response)
        return self.api(environ, start_response)

    def _index(self) -> Response:
        index = self.dist / "index.html"
        if not index.is_file():
            return _json_error(404, "page_not_built", "The page is not built: run `make install`")
        settings = page_settings(self.app.config)
        # `<` escaped: the settings can never close the script element they sit in.
        block = CONFIG_BLOCK.replace("{}", json.dumps(settings).replace("<", "\\u003c"))
        html = index.read_text(encoding="utf-8").replace(CONFIG_BLOCK, block)
        response = Response(html, mimetype="text/html")
        response.headers["Cache-Control"] = "no-cache"
        response.headers["Content-Security-Policy"] = _csp(settings)
        response.headers["Referrer-Policy"] = "same-origin"
        response.headers["X-Content-Type-Options"] = "nosniff"
        return response

    def _asset(self, name: str) -> Response:
        joined = safe_join(str(self.dist / "assets"), name) if name else None
        path = Path(joined) if joined else None
        if path is None or not path.is_file():
            return _json_error(404, "not_found", "No such file")
        mimetype = TYPES.get(path.suffix) or mimetypes.guess_type(path.name)[0]
        response = Response(path.read_bytes(), mimetype=mimetype or "application/octet-stream")
        # Vite names every asset by its content's hash: a changed file is a new name.
        response.headers["Cache-Control"] = IMMUTABLE
        response.headers["X-Content-Type-Options"] = "nosniff"
        return response


def init_page(app: Flask) -> None:
    """Serve the Workflows page in front of the app's routes."""
    # Both come from BridgeSettings (create_app); an app built otherwise gets the defaults.
    app.config.setdefault("WEB_DIST_DIR", str(DEFAULT_DIST))
    app.config.setdefault("SUPABASE_ANON_KEY", None)
    app.wsgi_app = PageFiles(app.wsgi_app, app)  # type: ignore[method-assign]
