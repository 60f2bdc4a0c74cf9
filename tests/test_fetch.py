"""Fetching images by URL: only public addresses, checked after DNS and on every redirect,
with timeouts and a size cap. A real HTTP server on loopback stands in for the internet
(let through only where a test says so)."""

from __future__ import annotations

import ipaddress
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from semsearch.web.fetch import FetchError, FetchPolicy, check_address, fetch

LOOPBACK = FetchPolicy(allow=(ipaddress.ip_network("127.0.0.0/8"),))
PNG = b"\x89PNG\r\n\x1a\n" + b"x" * 100


class _Handler(BaseHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
        port = self.server.server_address[1]
        routes = {
            "/image.png": (200, {"Content-Type": "image/png"}, PNG),
            "/to-image": (302, {"Location": "/image.png"}, b""),
            "/to-private": (302, {"Location": "http://10.1.2.3/x.png"}, b""),
            "/to-metadata": (301, {"Location": "http://169.254.169.254/latest/meta-data"}, b""),
            "/to-file": (302, {"Location": "file:///etc/passwd"}, b""),
            "/loop": (302, {"Location": f"http://127.0.0.1:{port}/loop"}, b""),
            "/missing": (404, {}, b"no"),
            "/huge": (200, {"Content-Length": str(10**9)}, b""),
        }
        if self.path == "/endless":  # no Content-Length, more than the cap
            self.send_response(200)
            self.end_headers()
            for _ in range(64):
                self.wfile.write(b"y" * 65536)
            return
        if self.path == "/slow-headers":  # the status line and headers trickle in
            for part in (b"HTTP/1.1 200 OK\r\n", b"X-A: 1\r\n", b"X-B: 2\r\n",
                         b"X-C: 3\r\n", b"X-D: 4\r\n", b"X-E: 5\r\n", b"X-F: 6\r\n"):
                try:
                    self.wfile.write(part)
                    self.wfile.flush()
                except OSError:
                    return
                time.sleep(0.4)
            return
        if self.path == "/host":
            body = self.headers.get("Host", "").encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        if self.path == "/slow":
            self.send_response(200)
            self.send_header("Content-Length", "1000")
            self.end_headers()
            for _ in range(20):
                self.wfile.write(b"z")
                self.wfile.flush()
                time.sleep(0.2)
            return
        status, headers, body = routes.get(self.path, (404, {}, b""))
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        if "Content-Length" not in headers:
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


@pytest.mark.parametrize("address", [
    "127.0.0.1", "10.0.0.1", "172.16.5.4", "192.168.1.1", "169.254.169.254", "100.64.0.1",
    "0.0.0.0", "224.0.0.1", "255.255.255.255", "::1", "fe80::1", "fc00::1", "fd00:ec2::254",
    "::ffff:127.0.0.1", "::ffff:10.0.0.1", "::",
    # IPv6 forms that carry an IPv4 address, or tunnel: judged by it, or refused outright.
    "::127.0.0.1", "::ffff:0:7f00:1", "64:ff9b::a9fe:a9fe", "64:ff9b::a00:1",
    "64:ff9b:1::a00:1", "2002:a00:1::1", "2002:7f00:1::", "fec0::1", "2001::1",
])
def test_non_public_addresses_are_refused(address: str) -> None:
    with pytest.raises(FetchError, match="not a public internet address"):
        check_address(address, FetchPolicy())


def test_public_addresses_pass() -> None:
    assert str(check_address("93.184.216.34", FetchPolicy())) == "93.184.216.34"
    assert str(check_address("2606:2800:220:1::1", FetchPolicy())) == "2606:2800:220:1::1"


@pytest.mark.parametrize("url, message", [
    ("file:///etc/passwd", "only http and https"),
    ("ftp://example.com/x.png", "only http and https"),
    ("gopher://127.0.0.1:70/", "only http and https"),
    ("javascript:alert(1)", "only http and https"),
    ("/relative/path.png", "without a scheme"),
    ("http://127.0.0.1/x.png", "not a public"),
    ("http://localhost/x.png", "not a public"),
    ("http://[::1]/x.png", "not a public"),
    ("http://2130706433/x.png", "not a public"),  # 127.0.0.1 written as one number
    ("http://0x7f.1/x.png", "not a public"),
    ("http://169.254.169.254/latest/meta-data/", "not a public"),
    ("http://10.0.0.1/x.png", "not a public"),
    ("http://user:pw@example.com/x.png", "user name or password"),
    ("http://example.com:99999/x.png", "invalid port"),
    ("http:///x.png", "has no host"),
])
def test_refused_urls(url: str, message: str) -> None:
    with pytest.raises(FetchError, match=message):
        fetch(url, FetchPolicy(), resolve=_no_dns_for("example.com"))


def _no_dns_for(*names: str):  # type: ignore[no-untyped-def]
    from semsearch.web.fetch import _resolve

    def resolve(host: str, port: int) -> list[str]:
        assert host not in names, "a refused URL must not be resolved"
        return _resolve(host, port)

    return resolve


def test_a_name_resolving_to_a_private_address_is_refused() -> None:
    with pytest.raises(FetchError, match="refusing to fetch from 10.0.0.7"):
        fetch("http://images.example/x.png", FetchPolicy(),
              resolve=lambda host, port: ["93.184.216.34", "10.0.0.7"])


def test_fetches_an_image_and_follows_checked_redirects(server: str) -> None:
    assert fetch(f"{server}/image.png", LOOPBACK) == PNG
    assert fetch(f"{server}/to-image", LOOPBACK) == PNG


@pytest.mark.parametrize("path, message", [
    ("/to-private", "refusing to fetch from 10.1.2.3"),
    ("/to-metadata", "refusing to fetch from 169.254.169.254"),
    ("/to-file", "only http and https"),
    ("/loop", "more than 5 redirects"),
    ("/missing", "answered HTTP 404"),
    ("/huge", "more than the"),
    ("/endless", "more than the"),
])
def test_bad_answers_are_refused(server: str, path: str, message: str) -> None:
    policy = FetchPolicy(allow=LOOPBACK.allow, max_bytes=1024 * 1024)
    with pytest.raises(FetchError, match=message):
        fetch(server + path, policy)


def test_slow_answers_hit_the_deadline(server: str) -> None:
    # The body trickles in for 4 s, each byte well within the read timeout.
    policy = FetchPolicy(allow=LOOPBACK.allow, deadline=1.0, read_timeout=0.5)
    with pytest.raises(FetchError, match="took too long"):
        fetch(f"{server}/slow", policy)


def test_loopback_is_refused_by_default(server: str) -> None:
    with pytest.raises(FetchError, match="not a public"):
        fetch(f"{server}/image.png")


def test_trickled_headers_hit_the_deadline(server: str) -> None:
    policy = FetchPolicy(allow=LOOPBACK.allow, deadline=1.0, read_timeout=0.8)
    with pytest.raises(FetchError, match="took too long"):
        fetch(f"{server}/slow-headers", policy)


def test_host_names_are_sent_as_idna(server: str) -> None:
    port = server.rsplit(":", 1)[1]
    body = fetch(f"http://bücher.example:{port}/host", LOOPBACK,
                 resolve=lambda host, p: ["127.0.0.1"])
    assert body == f"xn--bcher-kva.example:{port}".encode()
    with pytest.raises(FetchError, match="not a valid internationalized name"):
        fetch("http://a..b/x.png", FetchPolicy(), resolve=lambda host, p: ["93.184.216.34"])
