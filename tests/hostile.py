"""Hostile requests to the web API, shared by tests/test_web_security.py (in-process) and
benchmarks/reliability.py (a real `semsearch serve` over loopback): server-side request
forgery through URL searches, paths reaching for files, model names naming files, upload
and body bombs, other sites' pages, forged Host names. Each comes with the answers that
count as refused; a 5xx, a 2xx, or a leak of a file's content does not."""

from __future__ import annotations

import io
import struct
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from PIL import Image

# (method, path, headers, body) -> (status, body)
Send = Callable[[str, str, dict[str, str], bytes | Iterator[bytes] | None], tuple[int, bytes]]

# Shown only if a file of the machine leaked into an answer.
LEAKS = (b"root:x:0:0", b"BEGIN RSA", b"ONNX", b"def create_app")


@dataclass(frozen=True)
class Hostile:
    name: str
    method: str
    path: str
    refused: frozenset[int]
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes | Callable[[], Iterator[bytes]] | None = None


def _png_claiming(width: int, height: int) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buf, "PNG")
    data = bytearray(buf.getvalue())
    at = data.index(b"IHDR")
    data[at + 4:at + 12] = struct.pack(">II", width, height)
    data[at + 17:at + 21] = struct.pack(">I", zlib.crc32(bytes(data[at:at + 17])))
    return bytes(data)


def _bomb_png() -> bytes:
    buf = io.BytesIO()
    Image.new("1", (20000, 20000)).save(buf, "PNG")  # 400 MP in about 50 kB
    return buf.getvalue()


SSRF_TARGETS = (
    "http://127.0.0.1/x.jpg", "http://127.0.0.1:22/", "http://localhost/x.jpg",
    "http://[::1]/x.jpg", "http://0.0.0.0/x.jpg", "http://0/x.jpg", "http://127.1/x.jpg",
    "http://2130706433/x.jpg", "http://0x7f.0.0.1/x.jpg", "http://0177.0.0.1/x.jpg",
    "http://[::ffff:127.0.0.1]/x.jpg", "http://evil.example@127.0.0.1/x.jpg",
    "http://10.0.0.8/x.jpg", "http://172.16.3.4/x.jpg", "http://192.168.1.1/x.jpg",
    "http://[fc00::1]/x.jpg", "http://169.254.169.254/latest/meta-data/",
    "http://[fe80::1]/x.jpg", "http://[fd00:ec2::254]/latest/meta-data/",
    "http://metadata.google.internal/computeMetadata/v1/", "http://100.100.100.200/",
    "file:///etc/passwd", "ftp://example.com/x.jpg", "gopher://127.0.0.1:25/x",
    "data:image/png;base64,iVBORw0KGgo=", "javascript:alert(1)", "dict://127.0.0.1:11211/",
    "http:///etc/passwd", "//127.0.0.1/x.jpg",
)

TRAVERSALS = (
    "/api/images/..%2F..%2Fetc%2Fpasswd/file", "/static/../../../etc/passwd",
    "/static/..%2F..%2F..%2Fetc%2Fpasswd", "/api/images/1%00/file",
    "/static/%2e%2e/%2e%2e/setup.py", "/static//etc/passwd",
    "/static/..%5c..%5cetc%5cpasswd", "/api/collections/1/../../../etc/passwd",
    "/api/images/-1/file", "/api/images/99999999999999999999999/file",
)


def hostile_requests(cid: int, image_id: int, upload_max: int) -> list[Hostile]:
    """Gives the hostile requests against collection cid (image_id is one of its images);
    upload_max is the server's upload cap in bytes."""
    url_search = f"/api/collections/{cid}/search/url"
    upload = f"/api/collections/{cid}/search/upload"
    json_type = {"Content-Type": "application/json"}
    out = [
        Hostile(f"SSRF {target}", "POST", url_search, frozenset({422}), json_type,
                b'{"url": "%s"}' % target.encode())
        for target in SSRF_TARGETS
    ]
    out += [Hostile(f"path {path}", "GET", path, frozenset({404, 422})) for path in TRAVERSALS]
    for name, route in (
        ("model file via classes", f"/api/images/{image_id}/classes?model=onnx:/etc/passwd"),
        ("model file via cam", f"/api/images/{image_id}/cam?class_index=1&model=onnx:../x.onnx"),
        ("model file via layers", "/api/models/onnx:%2Fetc%2Fpasswd/layers"),
        ("model file via search", f"/api/collections/{cid}/search?image_id={image_id}"
                                  "&feature_set=onnx:/etc/hosts@x/gem"),
        ("model file via why", f"/api/why?query={image_id}&result={image_id}"
                               "&feature_set=onnx:/etc/passwd@x/gem"),
        ("model file via map", f"/api/collections/{cid}/map?feature_set=onnx:/root/a.onnx@x/avg"),
    ):
        out.append(Hostile(name, "GET", route, frozenset({404, 422})))
    image = {"Content-Type": "image/png"}
    out += [
        Hostile("upload claiming 60000x60000", "POST", upload, frozenset({415}), image,
                _png_claiming(60000, 60000)),
        Hostile("upload claiming 2^31-1 x 1", "POST", upload, frozenset({415}), image,
                _png_claiming(2**31 - 1, 1)),
        Hostile("decompression bomb upload", "POST", upload, frozenset({415}), image,
                _bomb_png()),
        Hostile("upload over the cap", "POST", upload, frozenset({413}), image,
                b"\x89PNG" + b"0" * upload_max),
        Hostile("chunked upload over the cap", "POST", upload, frozenset({413}), image,
                lambda: (b"0" * 65536 for _ in range(upload_max // 65536 + 2))),
        Hostile("HTML as an image", "POST", upload, frozenset({415}), image,
                b"<html><script>alert(1)</script></html>"),
        Hostile("empty upload", "POST", upload, frozenset({422}), image, b""),
        Hostile("a megabyte of JSON", "POST", url_search, frozenset({413}), json_type,
                b'{"url": "http://x/%s"}' % (b"a" * 1_000_000)),
        Hostile("chunked megabyte of JSON", "POST", url_search, frozenset({413}), json_type,
                lambda: iter([b'{"url": "http://x/'] + [b"a" * 65536] * 16 + [b'"}'])),
        Hostile("JSON that is not JSON", "POST", url_search, frozenset({422}), json_type,
                b"{not json"),
        Hostile("k out of range", "GET",
                f"/api/collections/{cid}/search?image_id={image_id}&k=100000",
                frozenset({422})),
        Hostile("another site's POST", "POST", upload, frozenset({403}),
                {**image, "Origin": "https://evil.example"}, b"\x89PNG"),
        Hostile("another site's POST (fetch metadata)", "POST", upload, frozenset({403}),
                {**image, "Sec-Fetch-Site": "cross-site"}, b"\x89PNG"),
        Hostile("an opaque origin's POST", "POST", upload, frozenset({403}),
                {**image, "Origin": "null"}, b"\x89PNG"),
        Hostile("another site's costly GET", "GET",
                f"/api/collections/{cid}/search?image_id={image_id}", frozenset({403}),
                {"Sec-Fetch-Site": "cross-site"}),
        Hostile("a rebinding page's Host", "GET", "/api/collections", frozenset({400}),
                {"Host": "rebind.example:8000"}),
    ]
    return out


@dataclass
class Outcome:
    hostile: Hostile
    status: int
    refused: bool
    why: str


def run_hostile(send: Send, requests: list[Hostile]) -> list[Outcome]:
    """Sends each hostile request; gives whether each was refused as it should be."""
    outcomes = []
    for h in requests:
        body = h.body() if callable(h.body) else h.body
        try:
            status, content = send(h.method, h.path, dict(h.headers), body)
        except Exception as exc:  # noqa: BLE001 - a dropped connection is not a refusal
            outcomes.append(Outcome(h, 0, False, f"no answer: {exc!r}"))
            continue
        leaked = [marker for marker in LEAKS if marker in content]
        ok = status in h.refused and not leaked
        why = "" if ok else f"status {status}, leaked {leaked}: {content[:200]!r}"
        outcomes.append(Outcome(h, status, ok, why))
    return outcomes
