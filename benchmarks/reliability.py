"""Reliability under hostile files, crashes, load and hostile requests, with real components.

1. Fuzz: mutated JPEG/PNG/GIF/WebP/TIFF/BMP files (bytes flipped, cut, inserted, repeated,
   truncated; headers claiming huge sizes) through the image loader; every one must open
   or be refused with a reason. Then a folder of them is indexed, and every file must be
   accounted for (indexed, or skipped with a reason). Baseline: opening the valid files.
2. Kills: `semsearch index` runs as its own process on a real collection (iconic200; with
   --long the 3,030 Caltech-101 photos and the real lite0 model) and is killed with SIGKILL
   at random moments while files are edited, moved, copied, deleted and cut short between
   runs; then a run finishes and the catalogue, vectors and index must agree with the disk.
   Baseline: one uninterrupted run of the same collection.
3. Load: a real `semsearch serve` on loopback, N client threads searching by id and by
   upload; errors, p50/p99 latency, and the server's memory over the run. Baseline: the
   same requests from one client.
4. Hostile requests: SSRF URLs, paths, model names naming files, upload and body bombs,
   other sites' requests, forged Host names (tests/hostile.py), and requests without the
   token to a server on 0.0.0.0; each must be refused with the right status, leaking
   nothing.

Run:  python benchmarks/reliability.py          (about a minute on 2 cores)
      python benchmarks/reliability.py --long   (50,000 fuzzed files, 300 kills with lite0
                                                 on Caltech-101, 10,000 requests; about 15 min)
Last line: `fuzzed=<n> kills_survived=<n> load_errors=<n> p99_ms=<x> hostile_refused=<n>/<total>`.
"""

from __future__ import annotations

import argparse
import http.client
import io
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the fault harness lives beside the tests

from tests.faults import (  # noqa: E402
    CLI,
    Collection,
    check_agreement,
    copy_images,
    export_tiny_onnx,
    images_in,
    kill_rounds,
    mutate,
    tiny_collection,
)
from tests.hostile import hostile_requests, run_hostile  # noqa: E402
from tests.load import (  # noqa: E402
    collection_id,
    free_port,
    hammer,
    image_bytes,
    image_ids,
    search_while_indexing,
    serve,
)

from semsearch.errors import BadImageError  # noqa: E402
from semsearch.images import open_image  # noqa: E402

DATASETS = ROOT.parent / "shared" / "datasets"
FORMATS = ("JPEG", "PNG", "GIF", "WEBP", "TIFF", "BMP")


def seed_files() -> list[bytes]:
    """Gives small valid files of every format, cut from real photos."""
    photos = images_in(DATASETS / "iconic200")[:4]
    out = []
    for i, photo in enumerate(photos):
        with Image.open(photo) as im:
            small = im.convert("RGB").resize((96, 72))
        for fmt in FORMATS:
            buf = io.BytesIO()
            small.save(buf, format=fmt)
            out.append(buf.getvalue())
        del i
    return out


def mutated(seed: bytes, rng: np.random.Generator) -> bytes:
    """Gives seed with a few random bytes flipped, runs cut, inserted or repeated, or the
    end cut off."""
    data = bytearray(seed)
    for _ in range(int(rng.integers(1, 7))):
        at = int(rng.integers(0, max(len(data), 1)))
        kind = int(rng.integers(0, 5))
        if kind == 0 and data:
            data[at] = int(rng.integers(0, 256))
        elif kind == 1:
            del data[at:at + int(rng.integers(1, 65))]
        elif kind == 2:
            data[at:at] = rng.bytes(int(rng.integers(1, 65)))
        elif kind == 3:
            data[at:at] = data[at:at + 32] * int(rng.integers(1, 50))
        else:
            data = data[:at]
    return bytes(data)


def fuzz(count: int, work: Path) -> tuple[int, int, int, float, float]:
    """Opens count mutated files; gives (fuzzed, opened, refused, slowest s, valid mean s),
    raising if any fails otherwise. Indexes a folder of them and checks the accounting."""
    rng = np.random.default_rng(0)
    seeds = seed_files()
    started = time.perf_counter()
    for data in seeds:
        open_image(data, max_pixels=40_000_000, min_short_side=224)
    valid = (time.perf_counter() - started) / len(seeds)
    opened = refused = 0
    slowest = 0.0
    folder = work / "fuzz"
    for i in range(count):
        data = mutated(seeds[int(rng.integers(len(seeds)))], rng)
        began = time.perf_counter()
        try:
            open_image(data, max_pixels=40_000_000, min_short_side=224, name=f"fuzz{i}")
            opened += 1
        except BadImageError as exc:
            if not exc.reason:
                raise AssertionError(f"fuzz{i}: refused without a reason") from None
            refused += 1
        slowest = max(slowest, time.perf_counter() - began)
        if i < 500:
            path = folder / f"c{i % 5}" / f"fuzz{i}.{('jpg', 'png', 'gif', 'webp', 'tif')[i % 5]}"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
    _index_and_account(folder, work)
    return count, opened, refused, slowest, valid


def _index_and_account(folder: Path, work: Path) -> None:
    from tests.conftest import TINY
    from tests.test_hostile_folder import assert_accounted

    from semsearch.config import resolve
    from semsearch.indexing.local import index_folder
    from semsearch.models.registry import default_registry
    from semsearch.session import Session

    registry = default_registry()
    registry.register(TINY)
    config = resolve({"db": str(work / "fuzz.db"), "cache_dir": str(work / "onnx-cache"),
                      "model": "tiny"}, env={})
    with Session(config, registry=registry) as session:
        report = index_folder(session.store, session.extractor(session.feature_set()), folder)
        assert_accounted(session, folder, report)
        print(f"  indexed a folder of {report.found} fuzzed files: {report.embedded} indexed, "
              f"{len(report.failed)} skipped with a reason, none unaccounted")


def kills(count: int, long: bool, work: Path) -> tuple[int, dict[str, int]]:
    """Kills the indexer count times; gives the kills and the final agreement's counts."""
    work.mkdir(parents=True, exist_ok=True)
    root = work / "photos"
    reserve_dirs = [DATASETS / "fashion200"]
    if long:
        copy_images([DATASETS / "caltech101"], root)
        reserve_dirs.append(DATASETS / "iconic200")
        collection = Collection(root, work / "crash.db",
                                {"model": "lite0", "cache_dir": str(work / "onnx-cache"),
                                 "workers": "1", "batch_size": "16"})
        (work / "no-config.toml").write_text("")
    else:
        copy_images([DATASETS / "iconic200"], root)
        collection = tiny_collection(root, work / "crash.db",
                                     export_tiny_onnx(work / "tiny.onnx"))
    reserve = [p for d in reserve_dirs for p in images_in(d)]
    # Baseline: one uninterrupted run on a copy (the first run also exports the model).
    scratch = Collection(work / "clean", work / "clean.db", collection.settings)
    shutil.copytree(root, scratch.root)
    scratch.run_index()
    shutil.rmtree(scratch.root)
    shutil.copytree(root, scratch.root)
    scratch.db.unlink()
    clean = scratch.run_index()
    rng = np.random.default_rng(7)
    report = kill_rounds(collection, count, rng, reserve, work=clean)
    mutate(collection.root, reserve, rng)
    resume = collection.run_index()
    counts = check_agreement(collection)
    print(f"  {report.kills} kills (SIGKILL at {np.median(report.delays):.2f} s median after "
          f"the catalogue opened), {report.finished} runs ended before their kill, "
          f"{report.mutations} changes to the collection, {report.seconds:.0f} s")
    print(f"  final run {resume:.1f} s, against {clean:.1f} s for one uninterrupted run "
          f"(baseline): ratio {resume / clean:.2f}")
    print(f"  agreement: {counts['images']} images and {counts['vectors']} vectors match the "
          f"disk and the index; {counts['unusable']} cut-short files skipped")
    return report.kills, counts


def served_collection(work: Path) -> Collection:
    """Gives iconic200, indexed with the tiny network, for the server parts."""
    root = work / "photos"
    copy_images([DATASETS / "iconic200"], root)
    collection = tiny_collection(root, work / "cat.db", export_tiny_onnx(work / "tiny.onnx"))
    collection.run_index()
    return collection


def load(requests: int, clients: int, collection: Collection, work: Path) -> tuple[int, float]:
    """Hammers a real server; gives (errors, p99 ms), errors during indexing included."""
    photos = images_in(collection.root)
    uploads = image_bytes(photos)
    with serve(collection) as server:
        cid = collection_id(server.base_url, collection.root)
        ids = image_ids(server.base_url, cid)
        base = hammer(server.base_url, 1, 400, ids, uploads, cid=cid, pid=server.pid)
        report = hammer(server.base_url, clients, requests, ids, uploads, cid=cid,
                        pid=server.pid, budget=max(300.0, requests * 0.2))
        print(f"  one client (baseline): p50 {base.p50_ms:.1f} ms, p99 {base.p99_ms:.1f} ms")
        print(f"  {clients} clients: {report.completed} requests ({dict(report.by_kind)}), "
              f"{report.errors} errors, {report.timeouts} timeouts; p50 {report.p50_ms:.1f} "
              f"ms, p99 {report.p99_ms:.1f} ms (ratio {report.p99_ms / base.p99_ms:.2f}), "
              f"max {report.max_ms:.0f} ms")
        print(f"  server memory {report.rss_start_mb:.1f} MB after warm-up, "
              f"{report.rss_end_mb:.1f} MB at the end ({report.rss_growth_mb:+.1f} MB)")
        new_root = work / "more"
        copy_images([DATASETS / "fashion200"], new_root)
        during = search_while_indexing(server, collection, new_root, ids, uploads, clients=2,
                                       index_settings={"batch_size": "2"})
        print(f"  while indexing {during.new_images} more images ({during.indexer_seconds:.1f}"
              f" s): {during.during.completed} searches, {during.during.errors} errors; "
              f"{during.new_found}/{during.new_searched} new images found afterwards")
        faults = server.faults()
    problems = (len(during.watch_problems) + len(during.problems) + len(faults)
                + (during.indexer_returncode != 0))
    errors = report.errors + report.timeouts + during.during.errors + problems
    errors += report.completed != requests
    return errors, report.p99_ms


def _send_to(port: int) -> Any:
    def send(method: str, path: str, headers: dict[str, str], body: Any) -> tuple[int, bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        try:
            chunked = body is not None and not isinstance(body, bytes)
            conn.request(method, path, body=body, headers=headers, encode_chunked=chunked)
            response = conn.getresponse()
            return response.status, response.read()
        finally:
            conn.close()
    return send


def hostile(collection: Collection) -> tuple[int, int]:
    """Sends the hostile requests to a real server, and token-less ones to a server on
    0.0.0.0; gives (refused, total)."""
    with serve(collection) as server:
        cid = collection_id(server.base_url, collection.root)
        image_id = image_ids(server.base_url, cid)[0]
        outcomes = run_hostile(_send_to(server.port),
                               hostile_requests(cid, image_id, upload_max=20 * 1024 * 1024))
        faults = server.faults()
    refused = sum(o.refused for o in outcomes)
    for o in outcomes:
        if not o.refused:
            print(f"  NOT REFUSED {o.hostile.name}: {o.why}")
    token = "reliability-" + os.urandom(12).hex()
    port = free_port()
    guarded = Collection(collection.root, collection.db,
                         {**collection.settings, "host": "0.0.0.0", "token": token})
    process = subprocess.Popen([*CLI, "serve", *guarded.flags(),
                                "--port", str(port)], env=guarded.env(),
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    send = _send_to(port)
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                send("GET", "/static/app.js", {}, None)
                break
            except OSError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise
                time.sleep(0.2)
        bearer = {"Authorization": f"Bearer {token}"}
        checks = [send("GET", "/api/collections", {}, None)[0] == 401,
                  send("GET", "/", {}, None)[0] == 401,
                  send("GET", "/api/collections", {"Authorization": "Bearer wrong-token-x"},
                       None)[0] == 401,
                  send("GET", f"/api/collections?token={token}", {}, None)[0] == 401]
        works = send("GET", "/api/collections", {**bearer, "Host": "photos.lan"}, None)[0]
    finally:
        process.terminate()
        process.wait(30)
    print(f"  {refused}/{len(outcomes)} hostile requests refused with the right status, "
          f"nothing leaked; {sum(checks)}/{len(checks)} requests without the token refused "
          f"(with it: {works}); server faults: {len(faults)}")
    return refused + sum(checks) - (works != 200) - len(faults), len(outcomes) + len(checks)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--long", action="store_true", help="the long runs")
    parser.add_argument("--fuzz", type=int, default=None, help="files to fuzz")
    parser.add_argument("--kills", type=int, default=None, help="indexer kills")
    parser.add_argument("--requests", type=int, default=None, help="requests under load")
    parser.add_argument("--clients", type=int, default=4, help="concurrent clients")
    args = parser.parse_args()
    n_fuzz = args.fuzz or (50_000 if args.long else 3_000)
    n_kills = args.kills or (300 if args.long else 30)
    n_requests = args.requests or (10_000 if args.long else 2_000)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    warnings.filterwarnings("ignore", module="PIL")  # mangled TIFF tags, by design
    logging.getLogger("semsearch").setLevel(logging.ERROR)  # skipped files are counted

    with tempfile.TemporaryDirectory(prefix="semsearch-reliability-") as tmp:
        work = Path(tmp)
        print(f"1. fuzzing {n_fuzz} mutated files")
        fuzzed, opened, refused, slowest, valid = fuzz(n_fuzz, work)
        print(f"  {opened} opened, {refused} refused with a reason, 0 crashes; slowest "
              f"{slowest * 1000:.1f} ms against {valid * 1000:.2f} ms for a valid file "
              f"(baseline): ratio {slowest / valid:.1f}")
        print(f"2. killing the indexer {n_kills} times")
        survived, _ = kills(n_kills, args.long, work / "kills")
        print(f"3. {n_requests} requests from {args.clients} clients")
        (work / "serve").mkdir()
        collection = served_collection(work / "serve")
        load_errors, p99 = load(n_requests, args.clients, collection, work / "serve")
        print("4. hostile requests")
        refused_n, total = hostile(collection)
    print(f"fuzzed={fuzzed} kills_survived={survived} load_errors={load_errors} "
          f"p99_ms={p99:.1f} hostile_refused={refused_n}/{total}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
