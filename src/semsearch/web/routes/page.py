"""The page itself: index.html under the content security policy (its scripts and styles
are the static files app.create_app mounts)."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse

from semsearch.web.security import CSP

STATIC = Path(__file__).resolve().parents[1] / "static"  # also mounted at /static

router = APIRouter()


@router.get("/", include_in_schema=False)
def page() -> FileResponse:
    return FileResponse(STATIC / "index.html", media_type="text/html",
                        headers={"Content-Security-Policy": CSP})
