"""Security headers of the HTML documents the service serves: the page (``/``), Swagger UI (``/docs``)
and ReDoc (``/redoc``). One table, applied by a small ASGI middleware, because the documentation routes
are made by fastapi-offline and their responses cannot be given headers any other way."""

from starlette.types import ASGIApp, Message, Receive, Scope, Send


def _policy(*directives: str) -> str:
    return "; ".join(directives)


# The page runs only its own files: no inline script or style, nothing from another origin. It talks
# to the API on its own origin and shows the chosen photo from a blob: URL; it may not be framed.
PAGE_CSP = _policy(
    "default-src 'none'",
    "script-src 'self'",
    "style-src 'self'",
    "img-src 'self' blob:",
    "connect-src 'self'",
    "base-uri 'none'",
    "form-action 'none'",
    "frame-ancestors 'none'",
)
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
POLICY_BY_PATH = {"/": PAGE_CSP, "/docs": DOCS_CSP, "/redoc": DOCS_CSP}


class DocumentHeadersMiddleware:
    """Adds ``Content-Security-Policy`` and friends to the responses of the paths in ``policies``."""

    def __init__(self, app: ASGIApp, policies: dict[str, str] | None = None) -> None:
        self.app = app
        self.policies = POLICY_BY_PATH if policies is None else policies

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        policy = self.policies.get(scope["path"]) if scope["type"] == "http" else None
        if policy is None:
            await self.app(scope, receive, send)
            return
        extra = [(b"content-security-policy", policy.encode())]
        extra += [(name.encode(), value.encode()) for name, value in COMMON_HEADERS.items()]

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *extra]
            await send(message)

        await self.app(scope, receive, send_with_headers)
