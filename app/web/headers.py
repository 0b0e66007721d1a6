"""Security headers of the HTML documents the service serves: the page (``/``), Swagger UI (``/docs``)
and ReDoc (``/redoc``). One table, applied by a small ASGI middleware, because the documentation routes
are made by fastapi-offline and their responses cannot be given headers any other way."""

import re
from collections.abc import Callable

from starlette.types import ASGIApp, Message, Receive, Scope, Send


def _policy(*directives: str) -> str:
    return "; ".join(directives)


# A Host header that names a host (name, IPv4 or bracketed IPv6) and maybe a port, and nothing else: only
# such a value is written into the page's policy.
_HOST = re.compile(r"(?:[A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\])(?::\d{1,5})?")


def page_csp(host: str | None = None) -> str:
    """The page runs only its own files: no inline script or style, nothing from another origin. It talks
    to the API on its own origin (HTTP, and the camera's WebSocket), shows the chosen photo and plays the
    chosen video from blob: URLs; it may not be framed.

    ``'self'`` covers ``ws:``/``wss:`` on the page's own host in CSP Level 3 browsers; for older ones the
    WebSocket URL of ``host`` (the request's Host header, when it is a plain host) is named as well."""
    connect = ["'self'"]
    if host and _HOST.fullmatch(host):
        connect += [f"ws://{host}", f"wss://{host}"]
    return _policy(
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' blob:",
        "media-src 'self' blob:",
        f"connect-src {' '.join(connect)}",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
    )


PAGE_CSP = page_csp()
# Swagger UI and ReDoc as FastAPI writes them: an inline start-up script (Swagger UI), inline styles
# (both), ReDoc's search worker from a blob:. Nothing may come from elsewhere: ReDoc's attribution
# logo on its CDN is refused by the browser (ReDoc then leaves it out) instead of leaking a request.
DOCS_CSP = _policy(
    "default-src 'self'",
    "script-src 'self' 'unsafe-inline' blob:",
    "worker-src 'self' blob:",
    "style-src 'self' 'unsafe-inline'",
    "img-src 'self' data:",
    "font-src 'self' data:",
    "connect-src 'self'",
    "base-uri 'self'",
    "frame-ancestors 'none'",
)
COMMON_HEADERS = {"x-content-type-options": "nosniff", "referrer-policy": "no-referrer"}
# A path's policy: fixed, or made from the request's Host header.
Policy = str | Callable[[str | None], str]
POLICY_BY_PATH: dict[str, Policy] = {"/": page_csp, "/docs": DOCS_CSP, "/redoc": DOCS_CSP}


def _host(scope: Scope) -> str | None:
    for name, value in scope.get("headers", []):
        if name == b"host":
            return value.decode("latin-1")
    return None


class DocumentHeadersMiddleware:
    """Adds ``Content-Security-Policy`` and friends to the responses of the paths in ``policies``."""

    def __init__(self, app: ASGIApp, policies: dict[str, Policy] | None = None) -> None:
        self.app = app
        self.policies = POLICY_BY_PATH if policies is None else policies

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        policy = self.policies.get(scope["path"]) if scope["type"] == "http" else None
        if policy is None:
            await self.app(scope, receive, send)
            return
        text = policy if isinstance(policy, str) else policy(_host(scope))
        extra = [(b"content-security-policy", text.encode())]
        extra += [(name.encode(), value.encode()) for name, value in COMMON_HEADERS.items()]

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *extra]
            await send(message)

        await self.app(scope, receive, send_with_headers)
