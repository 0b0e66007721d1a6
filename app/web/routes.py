"""``GET /``: the page (``page.html``) and its assets under ``/web/`` (``static/``)."""

from pathlib import Path
from typing import Any

from fastapi import APIRouter, FastAPI
from fastapi.responses import FileResponse, Response
from fastapi.staticfiles import StaticFiles

from app.web.headers import DocumentHeadersMiddleware

WEB_DIR = Path(__file__).resolve().parent
PAGE = WEB_DIR / "page.html"
STATIC_DIR = WEB_DIR / "static"
ASSETS_URL = "/web"

# Revalidated on every load (a cheap 304 with the ETag): after an upgrade the page never runs with a
# script or stylesheet of the release before.
REVALIDATE = {"Cache-Control": "no-cache"}

router = APIRouter(tags=["page"])


class RevalidatedStaticFiles(StaticFiles):
    def file_response(self, *args: Any, **kwargs: Any) -> Response:
        response = super().file_response(*args, **kwargs)
        response.headers.update(REVALIDATE)
        return response


@router.get("/", include_in_schema=False)
async def page() -> FileResponse:
    return FileResponse(PAGE, media_type="text/html; charset=utf-8", headers=REVALIDATE)


def install_page(app: FastAPI) -> None:
    """Serve the page at ``/``, its scripts, styles and icon at ``/web/``, and the security headers of
    the page and of the documentation pages."""
    app.include_router(router)
    app.mount(ASSETS_URL, RevalidatedStaticFiles(directory=STATIC_DIR), name="web")
    app.add_middleware(DocumentHeadersMiddleware)
