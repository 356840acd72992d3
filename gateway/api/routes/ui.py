"""The web playground at `/ui`: one page, a script and a stylesheet shipped in the package
(no build step, nothing from other sites). Open like `/docs`: the files hold no data, and
every call the page makes carries the key the user typed."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse

UI_DIR = Path(__file__).resolve().parents[2] / "ui"
# Only this gateway's own files run and are reached: a key kept in the page's local storage
# is readable by any script on the page, so no other script may be.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}

router = APIRouter(tags=["playground"], include_in_schema=False)


def _file(name: str, media_type: str) -> FileResponse:
    return FileResponse(UI_DIR / name, media_type=media_type, headers=HEADERS)


@router.get("/ui")
def playground() -> FileResponse:
    """The playground page."""
    return _file("index.html", "text/html; charset=utf-8")


@router.get("/ui/app.js")
def playground_script() -> FileResponse:
    return _file("app.js", "text/javascript; charset=utf-8")


@router.get("/ui/style.css")
def playground_style() -> FileResponse:
    return _file("style.css", "text/css; charset=utf-8")
