"""Vectors for benchmarks/ann.py: real lite0 features of the shared images and their
augmented crops, a synthetic model of them to reach a million, and a memory-mapped
`VectorSource` over the result.

Real part: every image of ../shared/datasets/{iconic200,fashion200,caltech101} (3,430) is
embedded by the product's bundled model lite0 (`lite0@_head_act/gem`, 1280-d) through
`Session.extractor`, once as it is and `crops` times as a random resized crop (area 35-100 %,
aspect 3:4 to 4:3, mirrored half the time, re-encoded as JPEG q95), the way a query or a
near-duplicate of a gallery picture would look. Some images are held out entirely: their
views are the queries, and nothing derived from them is in the database.

Synthetic part: a synthetic vector is a real database vector (original or crop, picked at
random) plus noise fitted to real pairs (see `NoiseModel`): crop minus original for "views"
(one more view of a picture the database holds), or a picture minus its nearest other
picture for "pictures" (a new picture near one it holds). What neither can do is invent
genuinely new subjects: a million vectors here are ~3,200 pictures and their surroundings.
`compare` prints how real and synthetic sets of the same size differ."""

from __future__ import annotations

import io
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import numpy.typing as npt

Array = npt.NDArray[np.float32]
DATASETS = Path(__file__).resolve().parents[1].parent / "shared" / "datasets"
SOURCES = ("iconic200", "fashion200", "caltech101")
DIM = 1280
BATCH = 32


@dataclass(frozen=True)
class RealViews:
    """Real feature vectors: row i is view `view[i]` (0 = the image as it is, 1.. = crops)
    of image `image[i]`."""

    vectors: Array
    image: npt.NDArray[np.int64]
    view: npt.NDArray[np.int64]


def _crop(im: object, rng: np.random.Generator) -> bytes:
    """Gives JPEG bytes of a random resized crop of a PIL image, mirrored half the time."""
    from PIL import Image, ImageOps

    assert isinstance(im, Image.Image)
    w, h = im.size
    for _ in range(10):
        area = w * h * rng.uniform(0.35, 1.0)
        aspect = np.exp(rng.uniform(np.log(3 / 4), np.log(4 / 3)))
        cw, ch = round(np.sqrt(area * aspect)), round(np.sqrt(area / aspect))
        if 0 < cw <= w and 0 < ch <= h:
            break
    else:
        cw, ch = w, h
    x0, y0 = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
    out = im.crop((x0, y0, x0 + cw, y0 + ch))
    if rng.random() < 0.5:
        out = ImageOps.mirror(out)
    buf = io.BytesIO()
    out.save(buf, "JPEG", quality=95)
    return buf.getvalue()


def real_views(cache: Path, crops: int, seed: int = 0) -> RealViews:
    """Gives the real vectors (extracting them once, then reading `cache`)."""
    if cache.exists():
        with np.load(cache) as f:
            return RealViews(f["vectors"], f["image"], f["view"])
    from semsearch.config import resolve
    from semsearch.images import open_image
    from semsearch.session import Session

    paths = [p for name in SOURCES for p in sorted((DATASETS / name).rglob("*.jpg"))]
    if not paths:
        raise SystemExit(f"no images under {DATASETS}; the benchmark needs the shared datasets")
    rng = np.random.default_rng(seed)
    cache.parent.mkdir(parents=True, exist_ok=True)
    vectors = np.empty((len(paths) * (1 + crops), DIM), np.float32)
    image = np.repeat(np.arange(len(paths)), 1 + crops)
    view = np.tile(np.arange(1 + crops), len(paths))
    settings = {"db": str(cache.parent / "extract.db"), "model": "lite0",
                "cache_dir": str(cache.parent / "model-cache")}
    started = time.perf_counter()
    with Session(resolve(settings, env={})) as session:
        ex = session.extractor(session.feature_set())
        assert ex.dim == DIM, ex.feature_set
        pending: list[object] = []
        row = 0
        for i, path in enumerate(paths):
            pending.append(ex.decode(str(path))[0])
            im = open_image(str(path), max_pixels=120_000_000).image
            pending += [ex.decode(_crop(im, rng))[0] for _ in range(crops)]
            if len(pending) >= BATCH or i == len(paths) - 1:
                vectors[row:row + len(pending)] = ex.embed_many(pending)
                row += len(pending)
                pending = []
            if (i + 1) % 500 == 0:
                rate = row / (time.perf_counter() - started)
                print(f"  extracted {row:,} of {len(vectors):,} views ({rate:.0f}/s)",
                      flush=True)
    np.savez(cache, vectors=vectors, image=image, view=view)
    return RealViews(vectors, image, view)


ZERO = 1e-3  # below this a coordinate counts as off (GeM of an all-zero ReLU map is ~1e-6)


@dataclass(frozen=True)
class NoiseModel:
    """Noise fitted to real differences between pairs of vectors (a view minus its original,
    or a picture minus its nearest other picture): Gaussian with their covariance (zero mean),
    times a per-vector scale drawn from their relative norms (so some views stray far and
    some stay close, as real ones do), with a coordinate that is off in the base kept off
    with the probability that brings P(off | off in the base) to the real pairs' figure (a
    ReLU map that is empty in one view mostly stays empty in another, which clipping alone
    does not give), clipped below at the smallest real coordinate."""

    basis: Array  # (d, d): row j is principal direction j scaled by its standard deviation
    scales: Array  # relative norms of the real differences (mean square 1)
    keep_off: float
    floor: float

    @classmethod
    def fit(cls, bases: Array, others: Array, seed: int = 0) -> NoiseModel:
        """Gives the model of others - bases (pairs of real vectors, row by row). Clipping
        and the kept-off coordinates remove part of the Gaussian's energy, so the noise is
        then scaled until the median base-to-synthetic cosine distance is the real pairs'."""
        diff = (others - bases).astype(np.float64)
        norms = np.linalg.norm(diff, axis=1)
        scales = (norms / np.sqrt(np.mean(norms ** 2))).astype(np.float32)
        diff -= diff.mean(axis=0)
        values, vectors = np.linalg.eigh(diff.T @ diff / (len(diff) - 1))
        basis = (vectors * np.sqrt(np.maximum(values, 0.0))).T.astype(np.float32)
        floor = float(min(bases.min(), others.min()))
        probe = np.random.default_rng(seed).choice(len(bases), min(len(bases), 3000),
                                                   replace=False)
        b, o = bases[probe], others[probe]
        off = b < ZERO
        real_off = float((o[off] < ZERO).mean())
        real_cos = float(np.median(1.0 - np.einsum("ij,ij->i", _unit(b), _unit(o))))
        model = cls(basis, scales, 0.0, floor)
        for _ in range(3):  # the two fits interact a little; a few rounds settle them
            clipped = replace(model, keep_off=0.0).views(b, np.random.default_rng(seed))
            clip_off = float((clipped[off] < ZERO).mean())  # P(off | off in the base), k = 0
            keep = (real_off - clip_off) / (1.0 - clip_off)
            model = cls(model.basis, scales, float(np.clip(keep, 0.0, 1.0)), floor)
            lo, hi = 0.1, 10.0
            for _ in range(20):
                mid = math.sqrt(lo * hi)
                fake = replace(model, basis=model.basis * mid).views(
                    b, np.random.default_rng(seed))
                cos = float(np.median(1.0 - np.einsum("ij,ij->i", _unit(b), _unit(fake))))
                lo, hi = (mid, hi) if cos < real_cos else (lo, mid)
            model = replace(model, basis=model.basis * math.sqrt(lo * hi))
        return model

    def views(self, bases: Array, rng: np.random.Generator) -> Array:
        """Gives one synthetic vector per base vector."""
        z = rng.standard_normal((len(bases), len(self.basis)), dtype=np.float32)
        z *= rng.choice(self.scales, size=len(bases))[:, None]
        out = bases + z @ self.basis
        if self.keep_off > 0:
            stay = (bases < ZERO) & (rng.random(bases.shape, dtype=np.float32) < self.keep_off)
            out[stay] = self.floor
        return np.maximum(out, np.float32(self.floor))


def crop_pairs(real: RealViews, images: npt.NDArray[np.int64]) -> tuple[Array, Array]:
    """Gives (originals, crops) row by row, for every crop of the given images."""
    originals = real.vectors[real.view == 0]  # rows are in image order
    crops = (real.view > 0) & np.isin(real.image, images)
    return originals[real.image[crops]], real.vectors[crops]


def neighbour_pairs(real: RealViews, images: npt.NDArray[np.int64]) -> tuple[Array, Array]:
    """Gives (original, its nearest other original by cosine) for the given images."""
    originals = real.vectors[real.view == 0][images]
    unit = _unit(originals)
    sims = unit @ unit.T
    np.fill_diagonal(sims, -np.inf)
    return originals, originals[np.argmax(sims, axis=1)]


@dataclass(frozen=True)
class Split:
    """Which real views are queries and which go into the database."""

    queries: Array
    db_real: Array
    db_images: npt.NDArray[np.int64]


def split(real: RealViews, n_queries: int, per_image: int, seed: int = 0) -> Split:
    """Gives n_queries views (the original and per_image - 1 crops of each of
    n_queries / per_image images picked at random) and the views of all other images."""
    rng = np.random.default_rng(seed + 1)
    images = np.unique(real.image)
    held = rng.choice(images, size=-(-n_queries // per_image), replace=False)
    is_held = np.isin(real.image, held)
    pick = is_held & (real.view < per_image)
    return Split(real.vectors[pick][:n_queries].copy(), real.vectors[~is_held].copy(),
                 np.setdiff1d(images, held))


def write_database(path: Path, n: int, db_real: Array, noise: NoiseModel, seed: int = 0,
                   chunk: int = 50_000) -> npt.NDArray[np.bool_]:
    """Writes (once) n vectors to a .npy file: all real database views (or n of them) at
    random rows, synthetic vectors everywhere else; gives which rows are real."""
    rng = np.random.default_rng(seed + 2)
    n_real = min(n, len(db_real))
    real_rows = np.sort(rng.choice(n, size=n_real, replace=False))
    real_pick = rng.permutation(len(db_real))[:n_real]
    is_real = np.zeros(n, bool)
    is_real[real_rows] = True
    if not path.exists():
        tmp = path.with_suffix(".partial.npy")
        out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=(n, DIM))
        for lo in range(0, n, chunk):
            hi = min(n, lo + chunk)
            bases = db_real[rng.integers(len(db_real), size=hi - lo)]
            block = noise.views(bases, rng)
            rows = np.arange(lo, hi)
            mine = is_real[lo:hi]
            block[mine] = db_real[real_pick[np.searchsorted(real_rows, rows[mine])]]
            out[lo:hi] = block
        out.flush()
        del out
        tmp.rename(path)
    return is_real


class MemmapVectors:
    """A `VectorSource` over the first `count` rows of an (n, d) float32 .npy file; ids are
    row numbers. Chunks are read with plain file reads and samples through a short-lived
    memory map, so the file's pages sit in the page cache, not in this process's memory."""

    def __init__(self, path: Path, count: int | None = None) -> None:
        self.path = path
        data = np.load(path, mmap_mode="r")
        self._offset, self._dim = int(data.offset), int(data.shape[1])
        self._count = len(data) if count is None else count
        del data

    @property
    def count(self) -> int:
        return self._count

    @property
    def dim(self) -> int:
        return self._dim

    def chunks(self, size: int) -> Iterator[tuple[npt.NDArray[np.int64], Array]]:
        with open(self.path, "rb") as f:
            for lo in range(0, self._count, size):
                hi = min(self._count, lo + size)
                f.seek(self._offset + lo * self._dim * 4)
                x = np.fromfile(f, np.float32, (hi - lo) * self._dim).reshape(hi - lo, -1)
                yield np.arange(lo, hi, dtype=np.int64), x

    def sample(self, n: int, seed: int = 0) -> Array:
        rng = np.random.default_rng(seed)
        rows = np.sort(rng.choice(self._count, size=min(n, self._count), replace=False))
        data = np.load(self.path, mmap_mode="r")
        out = np.array(data[rows], np.float32)
        del data
        return out


def _unit(x: Array) -> Array:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def neighbour_distances(queries: Array, base: Array, k: int = 10) -> tuple[Array, Array]:
    """Gives the cosine distance of each query to its 1st and k-th nearest base vector."""
    sims = _unit(queries) @ _unit(base).T
    top = -np.partition(-sims, k - 1, axis=1)[:, :k]
    top.sort(axis=1)
    return 1.0 - top[:, -1], 1.0 - top[:, 0]


def compare(split_: Split, noise: NoiseModel, pairs: tuple[Array, Array], pair_label: str,
            seed: int = 0) -> list[str]:
    """Gives lines comparing a real set with a synthetic set of the same size and make-up:
    the second vectors of the real pairs the noise was fitted to, against synthetic vectors
    made from the first ones: (a) the held-out queries' 1st and 10th neighbour distances in
    each set, (b) the distance within the pairs, (c) the share of coordinates that are off."""
    bases, others = pairs
    fake = noise.views(bases, np.random.default_rng(seed + 3))
    lines = [f"  {'cosine distance, p10 / p50 / p90':<44}{'real':>22}{'synthetic':>22}"]

    def row(label: str, a: Array, b: Array) -> None:
        fa, fb = (" / ".join(f"{v:.3f}" for v in np.percentile(x, [10, 50, 90])) for x in (a, b))
        lines.append(f"  {label:<44}{fa:>22}{fb:>22}")

    r1, r10 = neighbour_distances(split_.queries, others)
    s1, s10 = neighbour_distances(split_.queries, fake)
    row(f"query to 1st neighbour (of {len(others):,})", r1, s1)
    row(f"query to 10th neighbour (of {len(others):,})", r10, s10)
    row(pair_label, 1.0 - np.einsum("ij,ij->i", _unit(others), _unit(bases)),
        1.0 - np.einsum("ij,ij->i", _unit(fake), _unit(bases)))
    off = [float((x < ZERO).mean()) for x in (others, fake)]
    lines.append(f"  {f'share of coordinates < {ZERO:g}':<44}{off[0]:>22.3f}{off[1]:>22.3f}")
    return lines


def views_database(work: Path, n: int, n_queries: int, crops: int, per_image: int,
                   seed: int = 0) -> tuple[Path, Array, Path]:
    """Gives (database file, held-out queries, ground-truth file name) of benchmarks/ann.py's
    default data: n vectors, real views plus the 'views' synthetic model, written once."""
    real = real_views(work / f"real_lite0_c{crops}_s{seed}.npz", crops, seed)
    split_ = split(real, n_queries, per_image, seed)
    stem = f"views_n{n}_s{seed}"
    path = work / f"db_{stem}.npy"
    if not path.exists():
        noise = NoiseModel.fit(*crop_pairs(real, split_.db_images), seed=seed)
        write_database(path, n, split_.db_real, noise, seed)
    return path, split_.queries, work / f"truth_{stem}_q{n_queries}.npy"


def latencies(search: Callable[[Array, int], tuple[Array, npt.NDArray[np.int64]]],
              queries: Array, k: int, warmup: int = 5
              ) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.int64]]:
    """Gives per-query seconds and the first k ids found, one query per call (as the API
    asks), after `warmup` untimed queries."""
    for q in queries[:warmup]:
        search(q[None], k)
    times, found = [], []
    for q in queries:
        t0 = time.perf_counter()
        _, ids = search(q[None], k)
        times.append(time.perf_counter() - t0)
        found.append(ids[0][:k])
    return np.array(times), np.array(found)
