"""``GET /``: the page (``page.html``) and its assets under ``/web/`` (``static/``)."""

from pathlib import Path

from fastapi import APIRouter, FastAPI
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

from app.web.headers import DocumentHeadersMiddleware

WEB_DIR = Path(__file__).resolve().parent
PAGE = WEB_DIR / "page.html"
STATIC_DIR = WEB_DIR / "static"
ASSETS_URL = "/web"

router = APIRouter(tags=["page"])


@router.get("/", include_in_schema=False)
async def page() -> FileResponse:
    # no-cache: a new release's page is fetched at once (revalidated with its ETag, so cheap).
    return FileResponse(PAGE, media_type="text/html; charset=utf-8", headers={"Cache-Control": "no-cache"})


def install_page(app: FastAPI) -> None:
    """Serve the page at ``/``, its scripts, styles and icon at ``/web/``, and the security headers of
    the page and of the documentation pages."""
    app.include_router(router)
    app.mount(ASSETS_URL, StaticFiles(directory=STATIC_DIR), name="web")
    app.add_middleware(DocumentHeadersMiddleware)
