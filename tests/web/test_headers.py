"""What the service sends for the page and the documentation pages, read over HTTP (no browser)."""

import re

import pytest

from app.web.headers import DOCS_CSP, PAGE_CSP, page_csp


def directives(policy: str) -> dict[str, list[str]]:
    parsed = (part.split() for part in policy.split(";") if part.strip())
    return {name: sources for name, *sources in parsed}


def test_the_page_has_a_strict_content_security_policy(client):
    response = client.get("/")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    policy = directives(response.headers["content-security-policy"])
    assert policy["default-src"] == ["'none'"]
    assert policy["script-src"] == ["'self'"]
    assert policy["style-src"] == ["'self'"]
    # Its own origin, and its own WebSocket URL (the camera) by name for browsers before CSP Level 3.
    assert policy["connect-src"] == ["'self'", "ws://testserver", "wss://testserver"]
    assert policy["media-src"] == ["'self'", "blob:"]  # the chosen video plays from a blob: URL
    assert policy["frame-ancestors"] == ["'none'"]
    assert not any("unsafe" in source or "*" in source for sources in policy.values() for source in sources)
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["referrer-policy"] == "no-referrer"


def test_the_page_has_no_inline_script_style_or_handler_and_no_other_origin(client):
    html = client.get("/").text
    scripts = re.findall(r"<script\b([^>]*)>(.*?)</script>", html, flags=re.S)
    assert scripts and all('src="' in attributes and not body.strip() for attributes, body in scripts)
    assert "<style" not in html
    assert not re.search(r"\sstyle=", html)
    assert not re.search(r"\son[a-z]+=", html)
    assert not re.search(r"(src|href)=\"(https?:)?//", html)


@pytest.mark.parametrize(
    ("path", "content_type"),
    [
        ("/web/app.js", "text/javascript"),
        ("/web/shared.js", "text/javascript"),
        ("/web/overlay.js", "text/javascript"),
        ("/web/video.js", "text/javascript"),
        ("/web/camera.js", "text/javascript"),
        ("/web/style.css", "text/css"),
        ("/web/favicon.svg", "image/svg+xml"),
    ],
)
def test_the_page_assets_are_served(client, path, content_type):
    response = client.get(path)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith(content_type)
    # Revalidated on each load, so a new release never runs with the old script or styles.
    assert response.headers["cache-control"] == "no-cache" and response.headers["etag"]
    # Nothing from another origin (the SVG namespace is a name, never fetched).
    text = response.text.replace("http://www.w3.org/2000/svg", "")
    assert "http://" not in text and "https://" not in text


@pytest.mark.parametrize("path", ["/docs", "/redoc"])
def test_the_documentation_pages_load_only_local_assets(client, path):
    response = client.get(path)
    assert response.status_code == 200
    assert response.headers["content-security-policy"] == DOCS_CSP
    urls = re.findall(r"(?:src|href)=\"([^\"]+)\"", response.text)
    assert urls and all(url.startswith("/") and not url.startswith("//") for url in urls)
    for url in urls:
        assert client.get(url).status_code == 200, url


@pytest.mark.parametrize("host", ["evil.example; script-src *", "a b", "x/y", ""])
def test_a_host_header_that_is_no_plain_host_never_reaches_the_policy(client, host):
    response = client.get("/", headers={"host": host})
    assert response.headers["content-security-policy"] == PAGE_CSP == page_csp(host)
    assert directives(PAGE_CSP)["connect-src"] == ["'self'"]


def test_other_paths_get_no_page_policy(client):
    assert "content-security-policy" not in client.get("/health/live").headers
    assert PAGE_CSP != DOCS_CSP
