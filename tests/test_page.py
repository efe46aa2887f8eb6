"""bridge_api.routes.page: the built web app at `/` in front of the API, with the right caching."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from bridge_api import create_app
from bridge_api.routes.page import CONFIG_BLOCK

INDEX = f"<!doctype html><html><head>{CONFIG_BLOCK}</head><body></body></html>"


@pytest.fixture
def dist(tmp_path: Path) -> Path:
    """A stand-in for `web/dist`: index.html and one hashed asset."""
    (tmp_path / "assets").mkdir()
    (tmp_path / "index.html").write_text(INDEX)
    (tmp_path / "assets" / "index-AbC123.js").write_text("console.log(1)")
    (tmp_path / "assets" / "index-AbC123.css").write_text("body{}")
    return tmp_path


def _client(dist: Path, **config):
    settings = {"AUTH_MODE": "disabled", "WEB_DIST_DIR": str(dist), **config}
    return create_app(settings).test_client()


def _settings(html: str) -> dict:
    found = re.search(r'id="workflows-config" type="application/json">(.*?)</script>', html)
    assert found, html
    return json.loads(found.group(1))


def test_index_is_never_cached_and_carries_the_demo_settings(dist: Path) -> None:
    response = _client(dist).get("/")
    assert response.status_code == 200 and response.mimetype == "text/html"
    assert response.headers["Cache-Control"] == "no-cache"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert "script-src 'self'" in response.headers["Content-Security-Policy"]
    assert _settings(response.text) == {
        "auth_mode": "disabled",
        "supabase_url": None,
        "supabase_anon_key": None,
        "api_base": "",
    }
    assert _client(dist).get("/index.html").text == response.text


def test_index_carries_the_supabase_settings_and_never_the_secret(dist: Path) -> None:
    client = _client(
        dist,
        AUTH_MODE="supabase",
        SUPABASE_URL="https://proj.supabase.co",
        SUPABASE_JWT_SECRET="s" * 40,
        SUPABASE_ANON_KEY="anon-</script><b>",
    )
    response = client.get("/")
    settings = _settings(response.text)
    assert settings["auth_mode"] == "supabase"
    assert settings["supabase_url"] == "https://proj.supabase.co"
    assert settings["supabase_anon_key"] == "anon-</script><b>"  # escaped inside the block
    assert "s" * 40 not in response.text
    assert "https://proj.supabase.co" in response.headers["Content-Security-Policy"]


@pytest.mark.parametrize(
    ("name", "mimetype"),
    [("index-AbC123.js", "text/javascript"), ("index-AbC123.css", "text/css")],
)
def test_hashed_assets_are_cached_for_a_year(dist: Path, name: str, mimetype: str) -> None:
    response = _client(dist).get(f"/assets/{name}")
    assert response.status_code == 200 and response.mimetype == mimetype
    assert response.headers["Cache-Control"] == "public, max-age=31536000, immutable"
    head = _client(dist).head(f"/assets/{name}")
    assert head.status_code == 200 and head.data == b""


@pytest.mark.parametrize("path", ["/assets/missing.js", "/assets/../index.html", "/assets/"])
def test_anything_else_under_assets_is_a_json_404(dist: Path, path: str) -> None:
    response = _client(dist).get(path)
    assert response.status_code == 404
    assert response.json["error"]["code"] == "not_found"


def test_an_unbuilt_page_says_how_to_build_it(tmp_path: Path) -> None:
    response = _client(tmp_path / "nothing").get("/")
    assert response.status_code == 404
    assert response.json["error"]["code"] == "page_not_built"
    assert "make install" in response.json["error"]["message"]


def test_the_api_is_untouched(dist: Path) -> None:
    client = _client(dist)
    assert client.get("/workflows/list").json["workflows"]
    # Only GET and HEAD of the page's paths are the page's; a POST to / is the API's 405.
    response = client.post("/")
    assert response.status_code in (404, 405) and "error" in response.json
    assert "/" not in {rule.rule for rule in client.application.url_map.iter_rules()}
