"""API latency of `semsearch serve` on a 10,000-image collection.

The collection is built from the Caltech-101 subset (3,030 real photos) and flipped and
cropped variants of them, written as JPEGs to a temporary folder, and indexed with the default
configuration (or --model). A real server (uvicorn) runs on loopback; requests go over HTTP
with a kept-alive connection:
* search by an indexed image's id (k=15), against the same search called in-process (the
  baseline, measured in the same run: the ratio is what HTTP and JSON add);
* search by an uploaded 1 MP JPEG, against embedding and searching it in-process.

Run:  python benchmarks/web.py                    (about 5 minutes on 2 cores, most of it indexing)
      python benchmarks/web.py --model lite0 --expand-k 0
Last line: `id_search_p50_ms=<x> upload_search_p50_ms=<y>`.
"""

from __future__ import annotations

import argparse
import http.client
import io
import json
import socket
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

from PIL import Image, ImageOps

from semsearch.config import resolve
from semsearch.images import find_images
from semsearch.query.collection import get_collection, search_collection
from semsearch.query.service import ImageQuery, KnownImageQuery
from semsearch.session import Session

DATASETS = Path(__file__).resolve().parents[1].parent / "shared" / "datasets"


def build_collection(folder: Path, count: int) -> None:
    """Writes count JPEGs: the Caltech-101 photos, then flipped and cropped variants."""
    sources = [f.path for f in find_images(DATASETS / "caltech101")]
    written = 0
    variant = 0
    while written < count:
        for path in sources:
            if written >= count:
                break
            with Image.open(path) as im:
                image = im.convert("RGB")
            if variant % 2 == 1:
                image = ImageOps.mirror(image)
            if variant >= 2:
                w, h = image.size
                cut = 0.06 * variant
                image = image.crop((int(w * cut / 2), int(h * cut / 2),
                                    int(w * (1 - cut / 2)), int(h * (1 - cut / 2))))
            label = Path(path).parent.name
            out = folder / label / f"v{variant}-{Path(path).stem}.jpg"
            out.parent.mkdir(parents=True, exist_ok=True)
            image.save(out, quality=90)
            written += 1
        variant += 1


def one_megapixel_jpeg() -> bytes:
    source = next(iter(find_images(DATASETS / "iconic200"))).path
    with Image.open(source) as im:
        image = im.convert("RGB").resize((1155, 866))  # 1.0 MP
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def map_frame_ms(url: str) -> float:
    """Gives the median time between frames while the map view zooms, in chromium."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", headless=True,
                                    args=["--no-sandbox", "--disable-background-networking"])
        page = browser.new_page(viewport={"width": 1400, "height": 900}, bypass_csp=True)
        page.goto(url)
        page.locator("#results .result").first.wait_for(timeout=120_000)
        page.click("#tabs button[data-view=map]")
        page.wait_for_function("document.querySelector('#map-title').textContent"
                               ".includes(' images')", timeout=300_000)
        box = page.locator("#map-canvas").bounding_box()
        page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
        page.evaluate("""() => { window.__frames = [];
            const tick = (t) => { window.__frames.push(t); if (window.__frames.length < 120)
              requestAnimationFrame(tick); }; requestAnimationFrame(tick); }""")
        for i in range(60):
            page.mouse.wheel(0, -120 if i < 30 else 120)
            page.mouse.move(box["x"] + box["width"] / 2 + i, box["y"] + box["height"] / 2)
        page.wait_for_function("window.__frames.length >= 120", timeout=60_000)
        frames = page.evaluate("window.__frames")
        browser.close()
    gaps = [b - a for a, b in zip(frames, frames[1:], strict=False)]
    return statistics.median(gaps)


def p50(values: list[float]) -> float:
    return statistics.median(values)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--images", type=int, default=10_000)
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--uploads", type=int, default=40)
    ap.add_argument("--model", default=None)
    ap.add_argument("--expand-k", default=None)
    ap.add_argument("--cache-dir", default=None, help="ONNX export cache to reuse")
    ap.add_argument("--browser", action="store_true",
                    help="also time the map's frames in Debian's chromium (Playwright)")
    ap.add_argument("--workdir", default=None,
                    help="keep the collection and catalogue here and reuse them next time")
    args = ap.parse_args()
    import uvicorn

    from semsearch.web.app import create_app

    with tempfile.TemporaryDirectory(prefix="semsearch-web-") as scratch:
        tmp = args.workdir or scratch
        folder = Path(tmp) / "collection"
        if not folder.is_dir():
            started = time.perf_counter()
            build_collection(folder, args.images)
            print(f"wrote {args.images} JPEGs in {time.perf_counter() - started:.0f} s")
        values = {"db": str(Path(tmp) / "web.db"),
                  "cache_dir": args.cache_dir or str(Path(tmp) / "cache")}
        if args.model:
            values["model"] = args.model
        if args.expand_k is not None:
            values["expand_k"] = args.expand_k
        config = resolve(values, env={})
        with Session(config) as session:
            report = session.index(str(folder))
            print(f"indexed {report.embedded} images with {session.feature_set()} in "
                  f"{report.seconds:.0f} s ({report.images_per_second:.0f} img/s)")
            collection = get_collection(session.store, session.store.collections()[0][0])
            ids = [r.id for r in session.store.images_under(collection.root).values()]
            queries = ids[:: max(1, len(ids) // args.queries)][:args.queries]
            upload = one_megapixel_jpeg()

            # Baselines: the same searches in-process.
            search_collection(session, collection, KnownImageQuery(queries[0]))  # warm up
            direct_id = []
            for image_id in queries:
                t = time.perf_counter()
                search_collection(session, collection, KnownImageQuery(image_id))
                direct_id.append((time.perf_counter() - t) * 1000)
            direct_upload = []
            for _ in range(args.uploads):
                t = time.perf_counter()
                search_collection(session, collection, ImageQuery(data=upload))
                direct_upload.append((time.perf_counter() - t) * 1000)

            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                port = s.getsockname()[1]
            server = uvicorn.Server(uvicorn.Config(create_app(config, session=session),
                                                   host="127.0.0.1", port=port,
                                                   log_level="warning"))
            thread = threading.Thread(target=server.run, daemon=True)
            thread.start()
            while not server.started:
                time.sleep(0.05)
            conn = http.client.HTTPConnection("127.0.0.1", port)

            def request(method: str, path: str, body: bytes | None = None) -> float:
                t = time.perf_counter()
                conn.request(method, path, body=body,
                             headers={"Content-Type": "image/jpeg"} if body else {})
                response = conn.getresponse()
                data = response.read()
                elapsed = (time.perf_counter() - t) * 1000
                if response.status != 200:
                    raise SystemExit(f"{path}: HTTP {response.status}: {data[:200]!r}")
                json.loads(data)
                return elapsed

            base = f"/api/collections/{collection.id}/search"
            request("GET", f"{base}?image_id={queries[0]}")
            api_id = [request("GET", f"{base}?image_id={i}&k=15") for i in queries]
            api_upload = [request("POST", f"{base}/upload?k=15", upload)
                          for _ in range(args.uploads)]
            started = time.perf_counter()
            request("GET", f"/api/collections/{collection.id}/map")
            map_seconds = time.perf_counter() - started
            frame_ms = map_frame_ms(f"http://127.0.0.1:{port}/") if args.browser else None
            server.should_exit = True
            thread.join(10)

    collection_size = len(ids)
    print(f"\ncollection: {collection_size} images; {report.feature_sets[0]}, "
          f"expand_k={config.expand_k}")
    print(f"{'':28} {'p50 ms':>8} {'p90 ms':>8}   baseline (in-process) p50   ratio")
    for name, api, direct in (("search by id (k=15)", api_id, direct_id),
                              ("search by 1 MP upload", api_upload, direct_upload)):
        q90 = statistics.quantiles(api, n=10)[-1]
        print(f"{name:<28} {p50(api):8.2f} {q90:8.2f}   {p50(direct):10.2f}"
              f"                {p50(api) / p50(direct):5.2f}x")
    print(f"2-D map of the collection: made in {map_seconds:.1f} s (then cached)")
    if frame_ms is not None:
        print(f"map in chromium, {collection_size} points: median frame {frame_ms:.1f} ms while "
              "zooming (60 frames/s needs <= 16.7 ms)")
    print("targets: <= 20 ms by id, <= 150 ms by upload")
    print(f"id_search_p50_ms={p50(api_id):.2f} upload_search_p50_ms={p50(api_upload):.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
