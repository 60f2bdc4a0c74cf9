"""Fetching an image from a URL that a client gave, without letting the client reach what
only the server can reach.

Only http and https. Every address the host name resolves to must be a public one (not
loopback, private, link-local, carrier-grade NAT, multicast, reserved or a cloud metadata
address); the connection goes to the address that was checked, so a second DNS answer cannot
swap it. Redirects are followed by hand, each one checked the same way. Connect and read
timeouts, an overall deadline and a size cap bound what one request can cost."""

from __future__ import annotations

import ipaddress
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
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


def is_public(address: IPAddress) -> bool:
    """Gives whether an address is on the public internet (an IPv4-mapped IPv6 address is
    judged by its IPv4 address)."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_global and not address.is_multicast


def check_address(text: str, policy: FetchPolicy) -> IPAddress:
    """Gives the parsed address if fetching from it is allowed, else raises FetchError."""
    address = ipaddress.ip_address(text.split("%")[0])
    if is_public(address) or any(address in net for net in policy.allow):
        return address
    raise FetchError(f"refusing to fetch from {address}: not a public internet address "
                     "(loopback, private, link-local and metadata addresses are refused)")


def fetch(url: str, policy: FetchPolicy | None = None,
          resolve: Resolver = _resolve) -> bytes:
    """Gives the body of a URL (following checked redirects), or raises FetchError."""
    import urllib3

    policy = policy or FetchPolicy()
    deadline = time.monotonic() + policy.deadline
    current = url.strip()
    for _ in range(policy.max_redirects + 1):
        parts = urlsplit(current)
        if parts.scheme not in ("http", "https"):
            scheme = f"{parts.scheme}:" if parts.scheme else "a URL without a scheme"
            raise FetchError(f"only http and https URLs can be fetched, not {scheme}")
        host = parts.hostname
        if not host:
            raise FetchError(f"the URL {current!r} has no host")
        if parts.username or parts.password:
            raise FetchError("URLs with a user name or password are refused")
        try:
            port = parts.port or (443 if parts.scheme == "https" else 80)
        except ValueError:
            raise FetchError(f"the URL {current!r} has an invalid port") from None
        addresses = [check_address(a, policy) for a in resolve(host, port)]
        if not addresses:
            raise FetchError(f"host {host!r} has no address")
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise FetchError("the fetch took too long")
        timeout = urllib3.Timeout(connect=min(policy.connect_timeout, remaining),
                                  read=min(policy.read_timeout, remaining))
        target = str(addresses[0])
        host_header = host if parts.port is None else f"{host}:{parts.port}"
        pool: urllib3.HTTPConnectionPool
        if parts.scheme == "https":
            pool = urllib3.HTTPSConnectionPool(target, port, timeout=timeout, retries=False,
                                               server_hostname=host, assert_hostname=host,
                                               cert_reqs="CERT_REQUIRED")
        else:
            pool = urllib3.HTTPConnectionPool(target, port, timeout=timeout, retries=False)
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        try:
            response = pool.urlopen("GET", path, headers={"Host": host_header,
                                                          "User-Agent": "semsearch",
                                                          "Accept": "image/*"},
                                    redirect=False, preload_content=False,
                                    decode_content=False)
        except urllib3.exceptions.HTTPError as exc:
            raise FetchError(f"cannot fetch {current}: {exc}") from None
        try:
            if response.status in (301, 302, 303, 307, 308):
                location = response.headers.get("Location")
                if not location:
                    raise FetchError(f"{current} redirects without a Location")
                current = urljoin(current, location)
                continue
            if response.status != 200:
                raise FetchError(f"{current} answered HTTP {response.status}")
            return _read_capped(response, policy, deadline)
        finally:
            response.release_conn()
            pool.close()
    raise FetchError(f"more than {policy.max_redirects} redirects")


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
    except urllib3.exceptions.HTTPError as exc:
        raise FetchError(f"the download failed: {exc}") from None
