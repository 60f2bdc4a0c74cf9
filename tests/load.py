"""Load on a real `semsearch serve`, shared by tests/test_load.py and
benchmarks/reliability.py: the server runs as its own process on a free loopback port;
client threads search by id and by upload over keep-alive HTTP connections, each request
with a client timeout; the server's memory (VmRSS) is sampled as the requests go by. Also:
searching through the API while a `semsearch index` process writes to the same catalogue."""

from __future__ import annotations

import http.client
import itertools
import json
import socket
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np
from tests.faults import CLI, Collection, images_in

CLIENT_TIMEOUT = 30.0  # seconds a client waits on one request before it counts as an error

# What in the server's output shows a fault a request may have hidden (a 5xx answered,
# an exception logged, SQLite refusing a reader or a writer).
SERVER_FAULTS = ("Traceback", "database is locked", "Exception in ASGI application")


def free_port() -> int:
    """Gives a TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def rss_kb(pid: int) -> int:
    """Gives the resident memory of process pid in kB (Linux /proc), 0 if it is gone."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


@dataclass
class Server:
    """A running `semsearch serve` process."""

    process: subprocess.Popen[bytes]
    port: int
    log: Path  # its stdout and stderr

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        return self.process.pid

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def faults(self) -> list[str]:
        """Gives the lines of the server's output that show a fault (see SERVER_FAULTS)."""
        return [line for line in self.output().splitlines()
                if any(mark in line for mark in SERVER_FAULTS)]


@contextmanager
def serve(collection: Collection, *, startup: float = 120.0, stop: float = 15.0
          ) -> Iterator[Server]:
    """Runs `semsearch serve` on the collection's catalogue on a free loopback port until
    the block ends; gives the server once it answers. Stops it with SIGTERM, then SIGKILL
    after `stop` seconds."""
    port = free_port()
    log = collection.db.parent / f"serve-{port}.log"
    with open(log, "wb") as out:
        process = subprocess.Popen([*CLI, "serve", *collection.flags(), "--port", str(port)],
                                   env=collection.env(), stdout=out, stderr=subprocess.STDOUT)
    server = Server(process, port, log)
    try:
        _wait_until_answering(server, startup)
        yield server
    finally:
        process.terminate()
        try:
            process.wait(stop)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(stop)


def _wait_until_answering(server: Server, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if server.process.poll() is not None:
            raise RuntimeError(f"semsearch serve ended ({server.process.returncode}) before "
                               f"answering:\n{server.output()}")
        try:
            status, _ = get_json(server.base_url, "/api/collections", timeout=5)
            if status == 200:
                return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"semsearch serve did not answer in {timeout:.0f} s:\n"
                               f"{server.output()}")
        time.sleep(0.2)


def get_json(base_url: str, path: str, timeout: float = CLIENT_TIMEOUT) -> tuple[int, Any]:
    """Gives the status and decoded JSON body (None if not JSON) of one GET."""
    conn = _connect(base_url, timeout)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        body = response.read()
    finally:
        conn.close()
    try:
        return response.status, json.loads(body)
    except ValueError:
        return response.status, None


def collection_id(base_url: str, root: Path) -> int:
    """Gives the id of the served collection whose folder is root."""
    status, body = get_json(base_url, "/api/collections")
    for item in body if status == 200 else []:
        if Path(item["root"]) == Path(root):
            return int(item["id"])
    raise LookupError(f"the server has no collection at {root} ({status}: {body})")


def image_ids(base_url: str, cid: int) -> list[int]:
    """Gives the ids of a collection's images, as the API lists them."""
    status, body = get_json(base_url, f"/api/collections/{cid}/images?limit=20000")
    if status != 200:
        raise LookupError(f"collection {cid}'s images: {status} {body}")
    return [int(image["id"]) for image in body["images"]]


def _send(base_url: str, request: Request, timeout: float) -> tuple[int, bytes]:
    """Gives the status and body of one request, on a connection of its own."""
    conn = _connect(base_url, timeout)
    try:
        conn.request(request.method, request.path, body=request.body, headers=request.headers)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def _connect(base_url: str, timeout: float) -> http.client.HTTPConnection:
    parts = urlsplit(base_url)
    if parts.hostname != "127.0.0.1":
        raise ValueError(f"load goes to 127.0.0.1 only, not {base_url}")
    return http.client.HTTPConnection("127.0.0.1", parts.port or 80, timeout=timeout)


@dataclass(frozen=True)
class Request:
    kind: str  # "id" or "upload"
    method: str
    path: str
    body: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)


def search_by_id(cid: int, image_id: int, k: int = 15) -> Request:
    return Request("id", "GET", f"/api/collections/{cid}/search?image_id={image_id}&k={k}")


def search_by_upload(base_url: str, cid: int, data: bytes, k: int = 15) -> Request:
    """Gives the upload as the page sends it: the file as the body, from the same origin
    (the server refuses a POST whose Origin is another site's)."""
    return Request("upload", "POST", f"/api/collections/{cid}/search/upload?k={k}", data,
                   {"Content-Type": "application/octet-stream", "Origin": base_url,
                    "Sec-Fetch-Site": "same-origin"})


@dataclass
class LoadReport:
    """What a run of requests gave: counts, errors, latencies and the server's memory."""

    planned: int
    clients: int
    completed: int = 0
    errors: int = 0
    timeouts: int = 0  # requests given up after the client timeout (counted in errors)
    by_kind: Counter[str] = field(default_factory=Counter)
    error_examples: list[str] = field(default_factory=list)  # the first few, for a report
    latencies_ms: list[float] = field(default_factory=list)
    rss_kb: list[tuple[int, int]] = field(default_factory=list)  # (requests done, kB)
    warmup: int = 0  # requests before the memory baseline
    seconds: float = 0.0

    def percentile_ms(self, q: float) -> float:
        return float(np.percentile(self.latencies_ms, q)) if self.latencies_ms else 0.0

    @property
    def p50_ms(self) -> float:
        return self.percentile_ms(50)

    @property
    def p99_ms(self) -> float:
        return self.percentile_ms(99)

    @property
    def max_ms(self) -> float:
        return max(self.latencies_ms, default=0.0)

    @property
    def rss_start_mb(self) -> float:
        """Gives the server's memory at the first sample after the warm-up."""
        after = [kb for done, kb in self.rss_kb if done >= self.warmup]
        return (after or [kb for _, kb in self.rss_kb] or [0])[0] / 1024

    @property
    def rss_end_mb(self) -> float:
        return (self.rss_kb[-1][1] if self.rss_kb else 0) / 1024

    @property
    def rss_growth_mb(self) -> float:
        return self.rss_end_mb - self.rss_start_mb

    def summary(self) -> str:
        kinds = ", ".join(f"{n} by {kind}" for kind, n in sorted(self.by_kind.items()))
        return (f"{self.completed}/{self.planned} requests ({kinds}) from {self.clients} "
                f"clients in {self.seconds:.1f} s: {self.errors} errors ({self.timeouts} "
                f"timeouts); p50 {self.p50_ms:.1f} ms, p99 {self.p99_ms:.1f} ms, max "
                f"{self.max_ms:.1f} ms; server RSS {self.rss_start_mb:.1f} MB after "
                f"{self.warmup} warm-up requests -> {self.rss_end_mb:.1f} MB (growth "
                f"{self.rss_growth_mb:+.1f} MB)")


def _check(request: Request, status: int, body: bytes, k: int) -> str | None:
    """Gives what is wrong with an answer, or None: a 2xx whose JSON holds 1 to k hits,
    each with an integer id."""
    if not 200 <= status < 300:
        return f"{status} {body[:300]!r}"
    try:
        hits = json.loads(body)["hits"]
    except (ValueError, KeyError, TypeError):
        return f"{status} without hits: {body[:300]!r}"
    if not isinstance(hits, list) or not 0 < len(hits) <= k or not all(
            isinstance(hit, dict) and isinstance(hit.get("id"), int) for hit in hits):
        return f"{status} with bad hits: {body[:300]!r}"
    return None


def run_clients(base_url: str, clients: int, next_request: Callable[[int], Request | None],
                *, pid: int | None = None, planned: int = 0, k: int = 15,
                timeout: float = CLIENT_TIMEOUT, sample_every: int = 250, warmup: int = 0,
                deadline: float | None = None) -> LoadReport:
    """Runs `clients` threads, each on its own keep-alive connection, sending
    next_request(n) for n = 0, 1, ... until it gives None or `deadline` (time.monotonic())
    passes; samples the memory of process pid every `sample_every` requests. Gives the
    report; a non-2xx answer, an answer without hits, an exception or a timeout is an
    error."""
    report = LoadReport(planned, clients, warmup=warmup)
    lock = threading.Lock()
    counter = itertools.count()

    def sample(done: int) -> None:
        if pid is not None:
            report.rss_kb.append((done, rss_kb(pid)))

    def fail(what: str) -> None:
        report.errors += 1
        if len(report.error_examples) < 10:
            report.error_examples.append(what)

    def client() -> None:
        conn = _connect(base_url, timeout)
        try:
            while deadline is None or time.monotonic() < deadline:
                with lock:
                    n = next(counter)
                request = next_request(n)
                if request is None:
                    return
                started = time.perf_counter()
                problem = None
                try:
                    conn.request(request.method, request.path, body=request.body,
                                 headers=request.headers)
                    response = conn.getresponse()
                    body = response.read()
                    problem = _check(request, response.status, body, k)
                    if response.will_close:
                        conn.close()
                except TimeoutError as exc:
                    problem = f"timeout after {timeout:.0f} s: {exc!r}"
                    conn.close()
                except (OSError, http.client.HTTPException) as exc:
                    problem = f"{type(exc).__name__}: {exc}"
                    conn.close()
                elapsed = (time.perf_counter() - started) * 1000
                with lock:
                    report.completed += 1
                    report.by_kind[request.kind] += 1
                    report.latencies_ms.append(elapsed)
                    if problem is not None:
                        fail(f"{request.kind} {request.path}: {problem}")
                        report.timeouts += problem.startswith("timeout")
                    if report.completed % sample_every == 0:
                        sample(report.completed)
        finally:
            conn.close()

    sample(0)
    started = time.monotonic()
    threads = [threading.Thread(target=client, name=f"load-client-{i}", daemon=True)
               for i in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        # A client finishes its request within the timeout, at worst, once the work is out.
        thread.join()
    report.seconds = time.monotonic() - started
    sample(report.completed)
    return report


def mixed_requests(base_url: str, cid: int, ids: Sequence[int], uploads: Sequence[bytes],
                   upload_share: float = 0.5, k: int = 15) -> Callable[[int], Request]:
    """Gives request n of a fixed mix: a share of uploads (cycling through `uploads`),
    the rest searches by id (cycling through `ids` in a scattered order)."""
    if not ids or (upload_share > 0 and not uploads):
        raise ValueError("need ids to search by, and images to upload")
    stride = 7919  # a prime: consecutive requests ask about images far apart

    def request(n: int) -> Request:
        if int((n + 1) * upload_share) > int(n * upload_share):
            return search_by_upload(base_url, cid, uploads[n % len(uploads)], k)
        return search_by_id(cid, ids[(n * stride) % len(ids)], k)

    return request


def hammer(base_url: str, clients: int, requests: int, ids: Sequence[int],
           upload_bytes: Sequence[bytes], *, cid: int, pid: int | None = None,
           upload_share: float = 0.5, k: int = 15, timeout: float = CLIENT_TIMEOUT,
           sample_every: int = 250, warmup: int | None = None,
           budget: float | None = None) -> LoadReport:
    """Sends `requests` searches from `clients` threads to collection cid, a mix of
    searches by id and by upload (see mixed_requests), and samples the memory of the
    server's process pid; the memory growth counts from after `warmup` requests (a tenth of
    them, 200 at least, by default). With `budget` (seconds), stops sending new requests
    after that long (the report then shows fewer completed than planned). Gives the
    report."""
    mix = mixed_requests(base_url, cid, ids, upload_bytes, upload_share, k)

    def next_request(n: int) -> Request | None:
        return mix(n) if n < requests else None

    warm = warmup if warmup is not None else min(requests // 2, max(200, requests // 10))
    return run_clients(base_url, clients, next_request, pid=pid, planned=requests, k=k,
                       timeout=timeout, sample_every=sample_every, warmup=warm,
                       deadline=None if budget is None else time.monotonic() + budget)


@dataclass
class IndexingReport:
    """Searches sent while `semsearch index` wrote to the served catalogue, and after."""

    during: LoadReport  # searches of the served collection while the indexer ran
    indexer_returncode: int
    indexer_stderr: str
    indexer_seconds: float
    new_images: int  # image files in the indexed folder
    new_listed: int  # of them, listed by the API afterwards
    new_searched: int  # searches by a new image's id made afterwards
    new_found: int  # of them, answered with hits
    server_faults: list[str]  # lines of the server's output that show a fault
    problems: list[str] = field(default_factory=list)  # what went wrong after the run
    # Searches by the newest listed image of the new collection while the indexer ran:
    # answers by status ("404" while it has no vectors yet is allowed; "error" is an
    # exception), and the first few answers that were neither 2xx with hits nor 404.
    watched: Counter[str] = field(default_factory=Counter)
    watch_problems: list[str] = field(default_factory=list)

    @property
    def errors(self) -> int:
        return (self.during.errors + len(self.server_faults) + len(self.problems)
                + len(self.watch_problems) + (self.indexer_returncode != 0))


def search_while_indexing(server: Server, collection: Collection, new_root: Path,
                          ids: Sequence[int], upload_bytes: Sequence[bytes], *,
                          clients: int = 2, after: float = 2.0, k: int = 15,
                          timeout: float = CLIENT_TIMEOUT, indexing_timeout: float = 600.0,
                          checks: int = 10, index_settings: dict[str, str] | None = None
                          ) -> IndexingReport:
    """With the server running on the collection's catalogue, indexes new_root into the
    same catalogue with a `semsearch index` process while `clients` threads search the
    served collection (by id and by upload) until the indexer has ended and `after`
    seconds more; meanwhile another thread searches by the newest image the API lists in
    the new collection. Then searches by `checks` of the new images' ids through the API.
    `index_settings` override the collection's settings for the indexer (a smaller batch
    size gives more write transactions). Gives the report: every error of the searches,
    the indexer's exit status and stderr, the server's faults, and how many new images
    were listed and found."""
    cid = collection_id(server.base_url, collection.root)
    other = Collection(new_root, collection.db, {**collection.settings, **(index_settings or {})})
    stop = threading.Event()
    mix = mixed_requests(server.base_url, cid, ids, upload_bytes, 0.5, k)

    def next_request(n: int) -> Request | None:
        return None if stop.is_set() else mix(n)

    outcome: dict[str, Any] = {}

    def load() -> None:
        outcome["report"] = run_clients(server.base_url, clients, next_request,
                                        pid=server.pid, k=k, timeout=timeout,
                                        sample_every=100)

    watched: Counter[str] = Counter()
    watch_problems: list[str] = []

    def watch() -> None:
        def problem(what: str) -> None:
            if len(watch_problems) < 10:
                watch_problems.append(what)
            time.sleep(0.05)

        while not stop.is_set():
            try:
                status, body = get_json(server.base_url, "/api/collections", timeout)
                if status != 200:
                    watched[str(status)] += 1
                    problem(f"/api/collections: {status} {body}")
                    continue
                new_cid = next((int(c["id"]) for c in body if Path(c["root"]) == new_root),
                               None)
                if new_cid is None:  # the indexer has not stored the collection yet
                    time.sleep(0.05)
                    continue
                path = f"/api/collections/{new_cid}/images?limit=20000"
                status, body = get_json(server.base_url, path, timeout)
                if status != 200:
                    watched[str(status)] += 1
                    problem(f"{path}: {status} {body}")
                    continue
                if not body["images"]:
                    continue
                request = search_by_id(new_cid, max(int(i["id"]) for i in body["images"]), k)
                status, answer = _send(server.base_url, request, timeout)
            except (OSError, http.client.HTTPException) as exc:
                watched["error"] += 1
                problem(f"watching the new collection: {exc!r}")
                continue
            watched[str(status)] += 1
            wrong = _check(request, status, answer, k)
            if wrong is not None and status != 404:
                problem(f"{request.path}: {wrong}")

    searching = threading.Thread(target=load, name="load-during-indexing", daemon=True)
    watching = threading.Thread(target=watch, name="watch-new-collection", daemon=True)
    searching.start()
    watching.start()
    time.sleep(0.5)  # the searches run before the indexer starts, as well as during it
    started = time.monotonic()
    indexer = subprocess.Popen(other.index_command(), env=other.env(),
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        _, stderr = indexer.communicate(timeout=indexing_timeout)
    except subprocess.TimeoutExpired:
        indexer.kill()
        _, stderr = indexer.communicate()
    seconds = time.monotonic() - started
    time.sleep(after)
    stop.set()
    searching.join()
    watching.join()
    during: LoadReport = outcome["report"]
    during.planned = during.completed

    problems: list[str] = []
    new_images = len(images_in(new_root))
    listed: list[int] = []
    found = searched = 0
    try:
        new_cid = collection_id(server.base_url, new_root)
        listed = image_ids(server.base_url, new_cid)
        picks = listed[:: max(1, len(listed) // checks)][:checks]
        for image_id in picks:
            request = search_by_id(new_cid, image_id, k)
            problem = _check(request, *_send(server.base_url, request, timeout), k)
            searched += 1
            if problem is None:
                found += 1
            else:
                problems.append(f"new image {image_id}: {problem}")
    except (LookupError, OSError, http.client.HTTPException) as exc:
        problems.append(f"the new images: {exc}")
    if len(listed) != new_images:
        problems.append(f"the API lists {len(listed)} of the {new_images} new images")
    return IndexingReport(during, indexer.returncode, stderr.decode(errors="replace"),
                          seconds, new_images, len(listed), searched, found,
                          server.faults(), problems, watched, watch_problems)


def image_bytes(paths: Sequence[Path], count: int = 8) -> list[bytes]:
    """Gives the bytes of `count` of the files, spread over the list (uploads to send)."""
    picks = list(paths)[:: max(1, len(paths) // count)][:count]
    return [path.read_bytes() for path in picks]
