"""Fetching an image from a URL that a client gave, without letting the client reach what
only the server can reach.

Only http and https. Every address the host name resolves to must be a public one (not
loopback, private, link-local, carrier-grade NAT, multicast, reserved or a cloud metadata
address); the connection goes to the address that was checked, so a second DNS answer cannot
swap it. Redirects are followed by hand, each one checked the same way. Connect and read
timeouts, an overall deadline and a size cap bound what one request can cost."""

from __future__ import annotations

import http.client
import ipaddress
import socket
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple
from urllib.parse import urljoin, urlsplit

from semsearch.errors import QueryError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
Resolver = Callable[[str, int], Sequence[str]]

_CHUNK = 64 * 1024


class FetchError(QueryError):
    """A URL that is refused or cannot be fetched; the message says which and why."""


@dataclass(frozen=True)
class FetchPolicy:
    max_bytes: int = 20 * 1024 * 1024
    connect_timeout: float = 5.0
    read_timeout: float = 5.0
    deadline: float = 15.0  # seconds for the whole fetch, redirects included
    max_redirects: int = 5
    # Non-public networks let through anyway (a test server on loopback; never by default).
    allow: tuple[IPNetwork, ...] = field(default=())


def _resolve(host: str, port: int) -> list[str]:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise FetchError(f"cannot resolve host {host!r}: {exc}") from None
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


# NAT64 prefixes and IPv4-translated addresses: the IPv4 address is the last 32 bits.
_NAT64 = (ipaddress.ip_network("64:ff9b::/96"), ipaddress.ip_network("64:ff9b:1::/48"),
          ipaddress.ip_network("::ffff:0:0:0/96"))
_IPV4_COMPATIBLE = ipaddress.ip_network("::/96")


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """Gives the IPv4 address an IPv6 transition address carries (mapped, 6to4, NAT64)."""
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if any(address in net for net in _NAT64):
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def is_public(address: IPAddress) -> bool:
    """Gives whether an address is on the public internet. An IPv6 address that carries an
    IPv4 one (mapped, 6to4, NAT64) is judged by that too; IPv4-compatible, site-local and
    Teredo addresses are refused outright."""
    if isinstance(address, ipaddress.IPv6Address):
        if (address in _IPV4_COMPATIBLE or address.is_site_local
                or address.teredo is not None):
            return False
        inner = _embedded_ipv4(address)
        if inner is not None and not is_public(inner):
            return False
        if address.ipv4_mapped is not None:
            return True  # judged by its IPv4 address alone
    return address.is_global and not address.is_multicast


def check_address(text: str, policy: FetchPolicy) -> IPAddress:
    """Gives the parsed address if fetching from it is allowed, else raises FetchError."""
    address = ipaddress.ip_address(text.split("%")[0])
    if is_public(address) or any(address in net for net in policy.allow):
        return address
    raise FetchError(f"refusing to fetch from {address}: not a public internet address "
                     "(loopback, private, link-local and metadata addresses are refused)")


def _ascii_host(host: str) -> str:
    try:
        return host.encode("idna").decode("ascii")
    except UnicodeError:
        raise FetchError(f"the host name {host!r} is not a valid internationalized name"
                         ) from None


class _Watchdog:
    """Shuts a connection's socket when the deadline passes, so a server that trickles its
    headers or body cannot hold the fetch beyond it."""

    def __init__(self, conn: object, seconds: float) -> None:
        self.fired = False
        self._conn = conn
        self._timer = threading.Timer(max(0.0, seconds), self._fire)
        self._timer.daemon = True
        self._timer.start()

    def _fire(self) -> None:
        self.fired = True
        sock = getattr(self._conn, "sock", None)
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def cancel(self) -> None:
        self._timer.cancel()


def fetch(url: str, policy: FetchPolicy | None = None,
          resolve: Resolver = _resolve) -> bytes:
    """Gives the body of a URL (following checked redirects), or raises FetchError."""
    policy = policy or FetchPolicy()
    deadline = time.monotonic() + policy.deadline
    current = url.strip()
    for _ in range(policy.max_redirects + 1):
        target = _Target.of(current)
        addresses = [check_address(a, policy) for a in resolve(target.host, target.port)]
        if not addresses:
            raise FetchError(f"host {target.host!r} has no address")
        # Connect to the address that was checked, never to a fresh DNS answer.
        location, body = _get(target, str(addresses[0]), policy, deadline)
        if location is None:
            return body
        current = urljoin(current, location)
    raise FetchError(f"more than {policy.max_redirects} redirects")


class _Target(NamedTuple):
    """A URL that may be fetched, in the parts a request needs."""

    url: str
    scheme: str
    host: str  # ASCII (IDNA)
    port: int
    host_header: str
    path: str  # with the query

    @classmethod
    def of(cls, url: str) -> _Target:
        """Gives the URL's parts; raises FetchError for a scheme other than http(s), no
        host, credentials in the URL, or a bad host name or port."""
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https"):
            scheme = f"{parts.scheme}:" if parts.scheme else "a URL without a scheme"
            raise FetchError(f"only http and https URLs can be fetched, not {scheme}")
        if not parts.hostname:
            raise FetchError(f"the URL {url!r} has no host")
        if parts.username or parts.password:
            raise FetchError("URLs with a user name or password are refused")
        host = _ascii_host(parts.hostname)
        try:
            port = parts.port or (443 if parts.scheme == "https" else 80)
        except ValueError:
            raise FetchError(f"the URL {url!r} has an invalid port") from None
        shown_host = f"[{host}]" if ":" in host else host
        host_header = shown_host if parts.port is None else f"{shown_host}:{parts.port}"
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        return cls(url, parts.scheme, host, port, host_header, path)


def _get(target: _Target, address: str, policy: FetchPolicy, deadline: float
         ) -> tuple[str | None, bytes]:
    """Gives (the Location of a redirect, b"") or (None, the body) of one GET from address,
    all of it within the deadline; raises FetchError otherwise."""
    import urllib3
    from urllib3.connection import HTTPConnection, HTTPSConnection

    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise FetchError("the fetch took too long")
    # Each blocking connect or read waits at most this long; the watchdog bounds them all.
    timeout = min(max(policy.connect_timeout, policy.read_timeout), remaining)
    conn: HTTPConnection
    if target.scheme == "https":
        conn = HTTPSConnection(address, target.port, timeout=timeout,
                               server_hostname=target.host, assert_hostname=target.host,
                               cert_reqs="CERT_REQUIRED")
    else:
        conn = HTTPConnection(address, target.port, timeout=timeout)
    watchdog = _Watchdog(conn, remaining)
    try:
        try:
            conn.request("GET", target.path, headers={"Host": target.host_header,
                                                      "User-Agent": "semsearch",
                                                      "Accept": "image/*"},
                         preload_content=False, decode_content=False)
            response = conn.getresponse()
        except (urllib3.exceptions.HTTPError, OSError, http.client.HTTPException) as exc:
            if watchdog.fired:
                raise FetchError("the fetch took too long") from None
            raise FetchError(f"cannot fetch {target.url}: {exc}") from None
        if watchdog.fired:  # the socket was shut mid-headers: what came is incomplete
            raise FetchError("the fetch took too long")
        if response.status in (301, 302, 303, 307, 308):
            location = response.headers.get("Location")
            if not location:
                raise FetchError(f"{target.url} redirects without a Location")
            return location, b""
        if response.status != 200:
            raise FetchError(f"{target.url} answered HTTP {response.status}")
        try:
            body = _read_capped(response, policy, deadline)
        except FetchError:
            if watchdog.fired:
                raise FetchError("the fetch took too long") from None
            raise
        if watchdog.fired:
            raise FetchError("the fetch took too long")
        return None, body
    finally:
        watchdog.cancel()
        conn.close()


def _read_capped(response: object, policy: FetchPolicy, deadline: float) -> bytes:
    import urllib3

    assert isinstance(response, urllib3.BaseHTTPResponse)
    length = response.headers.get("Content-Length")
    if length and length.isdigit() and int(length) > policy.max_bytes:
        raise FetchError(f"the image is {int(length):,} bytes, more than the "
                         f"{policy.max_bytes:,} allowed")
    body = bytearray()
    try:
        while True:
            # read1 gives what has arrived, so a slow sender meets the deadline check.
            chunk = response.read1(_CHUNK)
            if not chunk:
                return bytes(body)
            body.extend(chunk)
            if len(body) > policy.max_bytes:
                raise FetchError(f"the image is more than the {policy.max_bytes:,} bytes "
                                 "allowed")
            if time.monotonic() > deadline:
                raise FetchError("the fetch took too long")
    except (urllib3.exceptions.HTTPError, OSError) as exc:
        raise FetchError(f"the download failed: {exc}") from None
