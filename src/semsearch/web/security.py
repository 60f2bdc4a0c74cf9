"""Everything that keeps the server safe to run: who may reach it (the host names, the token
and its page-to-cookie exchange), what another site's page may make it do, how large a
request or a query image may be, and which files and models a request may reach. `semsearch
serve` takes its token and host policy from here too (`serving`)."""

from __future__ import annotations

import dataclasses
import hmac
import io
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse, Response

from semsearch.config import Config
from semsearch.errors import BadImageError, UnknownModelError
from semsearch.featureset import FeatureSet, split_models
from semsearch.images import check_unmoved
from semsearch.session import Session
from semsearch.store import ImageRecord, Store

LOOPBACK_HOSTS = ("127.0.0.1", "localhost")
UPLOAD_MAX_BYTES = 20 * 1024 * 1024
UPLOAD_PATHS = ("/search/upload", "/why/upload")  # the requests whose body is an image
BODY_MAX_BYTES = 64 * 1024  # any other request body (a URL search's JSON)
TOKEN_COOKIE = "semsearch_token"
# A query image may hold at most this many pixels (a small PNG can decode to gigabytes).
QUERY_MAX_PIXELS = 40_000_000

# The page loads only its own scripts and styles; images come from the API.
CSP = ("default-src 'self'; img-src 'self' blob: data:; style-src 'self'; "
       "script-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'none'; "
       "frame-ancestors 'none'")

# -- serving: which hosts, which token, which address ----------------------------------------


def is_loopback(host: str) -> bool:
    """Gives whether host is this machine only (127.0.0.0/8, ::1, localhost)."""
    import ipaddress

    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a name that may resolve to any interface


@dataclass(frozen=True)
class Serving:
    """How a server on a host and port is reached."""

    config: Config  # with its token, made up when one is needed and none was set
    token_made_up: bool
    allowed_hosts: tuple[str, ...]  # the Host names served without a token
    address: str  # what a person opens (with ?token=... when a token is needed)
    everywhere: bool  # listening on every address of the machine (0.0.0.0, ::)


def serving(config: Config, port: int) -> Serving:
    """Gives how `config.host`:port is served: beyond loopback every request needs a token
    (made up here if none is set), and the address to open says so."""
    made_up = not config.token and not is_loopback(config.host)
    if made_up:
        import secrets

        config = dataclasses.replace(config, token=secrets.token_urlsafe(24))
    named = f"[{config.host}]" if ":" in config.host else config.host
    # A loopback address of another spelling (::1, 127.0.0.2) is a name requests use.
    hosts = tuple(dict.fromkeys((*LOOPBACK_HOSTS, config.host, named)))
    everywhere = config.host in ("0.0.0.0", "::")
    address = f"http://{socket.gethostname() if everywhere else named}:{port}/"
    if config.token:
        address += f"?token={config.token}" if made_up else "?token=<your token>"
    return Serving(config, made_up, hosts, address, everywhere)


# -- the guards every request passes ----------------------------------------------------------


def install(app: FastAPI, *, token: str | None, allowed_hosts: tuple[str, ...],
            upload_max_bytes: int) -> None:
    """Adds the guards to the app: without a token, only `allowed_hosts` are served (a page
    cannot reach the server by pointing its own name at 127.0.0.1); with one, any host name
    is, and every request but the static files must carry it. A POST from another site's
    page is refused, and every request body is capped."""
    from starlette.middleware.trustedhost import TrustedHostMiddleware

    # One cap on every request body: an upload's own, else a small one.
    app.add_middleware(BodyLimit, limit_for=lambda path: (
        upload_max_bytes if path.endswith(UPLOAD_PATHS) else BODY_MAX_BYTES))
    if not token:
        app.add_middleware(TrustedHostMiddleware, allowed_hosts=list(allowed_hosts))
    app.middleware("http")(_guard(token))


def _guard(token: str | None) -> Callable[[Request, Any], Any]:
    async def guard(request: Request, call_next: Any) -> Any:
        if token and not request.url.path.startswith("/static/"):
            refused = _token_refusal(request, token)
            if refused is not None:
                return refused
            if request.url.path == "/" and "token" in request.query_params:
                return _signed_in(token)
        if request.method not in ("GET", "HEAD", "OPTIONS") and cross_site(request):
            return JSONResponse({"detail": "refusing a request sent by another site's page"},
                                status_code=403)
        return await call_next(request)
    return guard


def _token_refusal(request: Request, token: str) -> Response | None:
    """Gives the 401 for a request without the token (a page for a person at /, else JSON),
    or None if it carries it."""
    # Any value the request carries may be the one: a cookie left by an earlier server must
    # not hide a fresh ?token= in the address.
    if any(hmac.compare_digest(given.encode(), token.encode()) for given in tokens_of(request)):
        return None
    if request.url.path == "/":
        return Response(_NEEDS_TOKEN, status_code=401, media_type="text/html",
                        headers={"WWW-Authenticate": "Bearer", "Content-Security-Policy": CSP})
    needs = ("this server needs its token: open the address `semsearch serve` printed (it "
             "ends in ?token=...), or send Authorization: Bearer <token>")
    return JSONResponse({"detail": needs}, status_code=401,
                        headers={"WWW-Authenticate": "Bearer"})


def _signed_in(token: str) -> Response:
    """Gives the page trading the token in the address for a cookie, which then opens the
    page without it. A page, not a redirect: a link followed from another site would carry
    the redirect's request as cross-site, without the SameSite=Strict cookie."""
    opened = Response(_SIGNED_IN, media_type="text/html",
                      headers={"Content-Security-Policy": CSP, "Cache-Control": "no-store",
                               "Referrer-Policy": "no-referrer"})
    opened.set_cookie(TOKEN_COOKIE, token, httponly=True, samesite="strict", path="/")
    return opened


def tokens_of(request: Request) -> list[str]:
    """Gives the tokens a request carries: Authorization: Bearer, ?token= on the page's
    address, and the cookie."""
    found = []
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        found.append(value.strip())
    if request.url.path == "/" and (given := request.query_params.get("token")):
        found.append(given)
    if cookie := request.cookies.get(TOKEN_COOKIE):
        found.append(cookie)
    return found


_NEEDS_TOKEN = (b'<!doctype html><meta charset="utf-8"><title>ConvNet Playground</title>'
                b"<h1>ConvNet Playground</h1><p>This server needs its token. Open the address "
                b"<code>semsearch serve</code> printed when it started: it ends in "
                b"<code>?token=...</code>.</p>")

# Opens the page once the cookie is set; the refresh is the page's own navigation.
_SIGNED_IN = (b'<!doctype html><meta charset="utf-8"><meta http-equiv="refresh" content="0;url=/">'
              b"<title>ConvNet Playground</title><p>Token accepted. "
              b'<a href="/">Open ConvNet Playground</a>.</p>')


def cross_site(request: Request) -> bool:
    """Gives whether the browser says another site's page sent this request."""
    site = request.headers.get("sec-fetch-site")
    if site in ("cross-site", "same-site"):
        return True
    origin = request.headers.get("origin")
    if not origin:
        return False  # not from a browser page (curl, scripts)
    return origin.split("://", 1)[-1] != request.headers.get("host", "")


def same_site(request: Request) -> None:
    """Refuses (403) a request for costly work (rendering, embedding, writing caches) that
    another site's page made, e.g. through an <img> tag: browsers say so in Sec-Fetch-Site."""
    if request.headers.get("sec-fetch-site") not in (None, "same-origin", "none"):
        raise HTTPException(403, "refusing a request sent by another site's page")


class BodyLimit:
    """ASGI middleware refusing (413) a request body above `limit_for(path)` bytes, whether
    declared by Content-Length or sent in chunks, without reading on."""

    def __init__(self, app: Any, limit_for: Callable[[str], int]) -> None:
        self.app, self.limit_for = app, limit_for

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = int(self.limit_for(scope["path"]))
        too_large = f"the request body is larger than {limit:,} bytes"
        declared = dict(scope["headers"]).get(b"content-length", b"")
        if declared and (not declared.isdigit() or int(declared) > limit):
            await JSONResponse({"detail": too_large}, status_code=413)(scope, receive, send)
            return
        received = 0

        async def capped() -> Any:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise HTTPException(413, too_large)
            return message

        await self.app(scope, capped, send)


# -- what a request may reach -----------------------------------------------------------------


def check_query_size(data: bytes) -> None:
    """Raises BadImageError if an uploaded or fetched image is too large to decode safely;
    reads only its header."""
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as im:
            width, height = im.size
    except Exception:  # noqa: BLE001 - the decoder says what is wrong, with a 415
        return
    if width * height > QUERY_MAX_PIXELS:
        raise BadImageError("query image", f"{width}x{height} is too large to decode safely "
                            f"(at most {QUERY_MAX_PIXELS // 1_000_000} megapixels)")


def with_file(store: Store, image_id: int) -> ImageRecord:
    """Gives an image's record if its file is still where it was indexed: there, and not
    swapped for a link (or a folder on its path for one), which could point anywhere on this
    machine."""
    record = store.image(image_id)
    check_unmoved(record.path, f"image {image_id}")
    return record


def served_model(session: Session, configured: str, name: str) -> str:
    """Gives name if the web API may load it: a registered model, or a model that made a
    stored feature set or is configured. Never a file named by the client."""
    known = set(session.registry.names()) | set(split_models(configured))
    known |= {part for record in session.store.feature_sets()
              for part in record.feature_set.models}
    if any(part not in known for part in split_models(name)):
        raise UnknownModelError(
            f"unknown model {name[:80]!r}; the web API offers the registered models "
            f"({', '.join(session.registry.names())}) and those of the catalogue")
    return name


def served_feature_set(session: Session, configured: str, name: str | None) -> str | None:
    """Gives the feature set name if its model may be loaded (see served_model)."""
    if name:
        served_model(session, configured, FeatureSet.parse(name).base.model)
    return name
