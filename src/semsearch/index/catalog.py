"""The indexes of one store: the catalog gives a feature set's index for a metric, loading
it from the files beside the catalogue when their manifest says they are fresh, else building
it from the store's vectors and saving it. Files are written whole and then renamed into
place, and the manifest last, so a crash never leaves a manifest pointing at half a file."""

from __future__ import annotations

import json
import logging
import os
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, NamedTuple, cast

import numpy as np
import numpy.typing as npt

from semsearch.atomic import process_alive, remove_stale_temporaries, write_atomically
from semsearch.errors import ConfigError
from semsearch.index import approx
from semsearch.index.approx import ApproximateIndex, BuiltFiles, SearchParams
from semsearch.index.exact import Calibration, ExactIndex, calibration
from semsearch.index.manifest import (
    EXPAND_ALPHA,
    EXPAND_MAX,
    files_of,
    identity,
    index_stem,
    is_fresh,
    read_manifest,
)
from semsearch.index.metric import Metric
from semsearch.index.pgvector import PGVECTOR, PgVectorIndex, check_metric
from semsearch.index.protocol import VectorIndex
from semsearch.index.source import StoreVectors, VectorSource
from semsearch.index.status import IndexStatus, index_statuses
from semsearch.indexspec import IndexSpec
from semsearch.store import FeatureSetRecord, Store
from semsearch.vectors import augment_query, database_augmentation

log = logging.getLogger(__name__)

# `--index auto` searches exactly up to this many vectors, approximately above.
EXACT_MAX = 200_000
# Recall of an approximate index is measured on this many of its own vectors as queries.
RECALL_QUERIES = 200


@dataclass(frozen=True)
class LoadedIndex:
    """An index in memory with its manifest and score calibration (read once). With query
    expansion on, `index` holds the DBA gallery and `base` the original vectors."""

    index: VectorIndex
    manifest: dict[str, Any]
    calibration: Calibration
    base: ExactIndex | None = None

    @property
    def expand_k(self) -> int:
        return int(self.manifest.get("expand_k_used", 0))

    def known_vector(self, image_id: int) -> npt.NDArray[np.float32]:
        """Gives an indexed image's vector as this index holds it (its DBA vector when
        augmentation is on); KeyError if the index does not hold it."""
        return self.index.stored(np.array([image_id], dtype=np.int64))[0]

    def expand(self, query: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        """Gives an outside query as it would be in the DBA gallery (see
        expansion.augment_query), using the original vectors; without DBA, the query."""
        if self.base is None:
            return query
        # The base index is a cosine index, so its stored vectors are unit length.
        return augment_query(query[None, :], self.base.vectors, self.expand_k, EXPAND_ALPHA,
                             gallery_normalized=True)[0]


def _physical_ram() -> int:
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return 8 << 30


class IndexCatalog:
    """Builds, saves, loads and checks the freshness of the indexes of one store."""

    def __init__(self, store: Store, folder: Path | None = None, *, index: str = "auto",
                 on_disk: str = "auto", params: SearchParams | None = None,
                 exact_max: int = EXACT_MAX) -> None:
        self.store = store
        self.folder = folder or store.index_folder()
        self.index = index if index in ("auto", PGVECTOR) else str(IndexSpec.parse(index))
        if index == PGVECTOR and not store.searches_vectors:
            raise ConfigError("--index pgvector needs a PostgreSQL catalogue (--db "
                              "postgresql://...)")
        self.on_disk = on_disk
        self.params = params or SearchParams()
        self.exact_max = exact_max

    def spec_for(self, record: FeatureSetRecord) -> IndexSpec | None:
        """Gives the FAISS index a feature set gets: the configured one, or by size for auto;
        None for pgvector's index inside PostgreSQL (auto picks it above exact_max when the
        catalogue is in PostgreSQL and pgvector can index vectors that long)."""
        if self.index == PGVECTOR:
            return None
        if self.index == "auto":
            count = self.store.count_vectors(record.id)
            if count > self.exact_max and self.store.searches_vectors:
                from semsearch.store.postgres import HNSW_MAX_DIM

                if record.dim <= HNSW_MAX_DIM:  # else pgvector could only scan them all
                    return None
            return approx.auto_spec(count, self.exact_max, record.dim)
        return IndexSpec(self.index)

    def manifest_path(self, record: FeatureSetRecord, metric: Metric, expand_k: int = 0,
                      spec: IndexSpec | None = None) -> Path:
        return self.folder / f"{index_stem(record, metric, expand_k, spec)}.json"

    def _read_manifest(self, path: Path) -> dict[str, Any] | None:
        return read_manifest(path)

    def is_fresh(self, record: FeatureSetRecord, manifest: dict[str, Any] | None) -> bool:
        return is_fresh(self.store, self.folder, record, manifest)

    def get(self, record: FeatureSetRecord, metric: Metric, expand_k: int = 0) -> LoadedIndex:
        """Gives the feature set's index for the metric, rebuilding it if stale or missing.
        expand_k > 1 asks for database-side augmentation over that many neighbours (outside
        queries are expanded to match); cosine only, and left out above EXPAND_MAX vectors."""
        spec = self.spec_for(record)
        if spec is None:
            return self._get_pgvector(record, metric)
        if not spec.exact:
            return self._get_approximate(record, metric, spec)
        expand_k = expand_k if metric.name == "cosine" and expand_k > 1 else 0
        manifest = read_manifest(self.manifest_path(record, metric, expand_k))
        if manifest is not None and self.is_fresh(record, manifest):
            try:
                index = ExactIndex.load(self.folder / manifest["file"], metric)
                base = (ExactIndex.load(self.folder / manifest["base_file"], metric)
                        if manifest.get("base_file") else None)
                calib = Calibration(**manifest["score_calibration"])
                if len(index) == manifest.get("count") and index.dim == record.dim:
                    return LoadedIndex(index, manifest, calib, base)
                log.warning("index %s does not match the catalogue; rebuilding",
                            manifest["file"])
            except Exception as exc:  # noqa: BLE001 - a damaged file is rebuilt, not fatal
                log.warning("index %s unreadable (%s); rebuilding", manifest["file"], exc)
        return self.build(record, metric, expand_k)

    def build(self, record: FeatureSetRecord, metric: Metric, expand_k: int = 0) -> LoadedIndex:
        """Builds the index from the store's vectors and saves it with its manifest."""
        started = time.perf_counter()
        remove_stale_temporaries(self.folder)
        ids, vectors = self.store.vectors(record.id)
        used = min(expand_k, len(ids)) if len(ids) <= EXPAND_MAX else 0
        if expand_k and not used:
            log.warning("%s has %d vectors, more than %d: built without query expansion",
                        record.name, len(ids), EXPAND_MAX)
        base = ExactIndex.build(vectors, ids, metric) if used else None
        gallery = database_augmentation(vectors, used, EXPAND_ALPHA) if used else vectors
        index = ExactIndex.build(gallery, ids, metric)
        calib = calibration(index, gallery)
        stem = index_stem(record, metric, expand_k)
        file_name = f"{stem}.v{record.version}.faiss"
        base_name = f"{stem}.v{record.version}.base.faiss" if base is not None else None
        manifest = {
            **identity(self.store, record, metric, len(ids)),
            "kind": "exact",
            "file": file_name,
            "base_file": base_name,
            "expand_k": expand_k,
            "expand_k_used": used,
            "expand_alpha": EXPAND_ALPHA,
            "score_calibration": asdict(calib),
            "built_at": time.time(),
        }
        self._save_exact(record, metric, expand_k, manifest, index, base)
        log.info("built %s index of %s (%d vectors) in %.2fs", metric, record.name, len(ids),
                 time.perf_counter() - started)
        return LoadedIndex(index, manifest, calib, base)

    def _save_exact(self, record: FeatureSetRecord, metric: Metric, expand_k: int,
                    manifest: dict[str, Any], index: ExactIndex, base: ExactIndex | None
                    ) -> None:
        """Writes an exact index's files, then its manifest, then removes older versions'
        files; a failure is logged, not raised (the index serves this process anyway)."""
        file_name, base_name = manifest["file"], manifest["base_file"]
        stem = index_stem(record, metric, expand_k)
        try:
            write_atomically(self.folder / file_name, index.save)
            if base is not None and base_name is not None:
                write_atomically(self.folder / base_name, base.save)
            write_atomically(self.manifest_path(record, metric, expand_k),
                             lambda tmp: Path(tmp).write_text(json.dumps(manifest, indent=2)))
            for old in self.folder.glob(f"{stem}.v*.faiss"):
                if old.name not in (file_name, base_name):
                    old.unlink(missing_ok=True)
        except OSError as exc:
            self._not_saved(exc)

    def _not_saved(self, exc: OSError) -> None:
        # The index still serves this process; it is rebuilt next time.
        log.warning("cannot save the index in %s (%s); it will be rebuilt on next use",
                    self.folder, exc.strerror or exc)

    def _get_pgvector(self, record: FeatureSetRecord, metric: Metric) -> LoadedIndex:
        """Gives pgvector's HNSW index of the feature set, built in PostgreSQL if missing
        (its recall@10 against exact search is measured then and kept in the catalogue)."""
        from semsearch.store.postgres import HNSW_MAX_DIM, PostgresStore

        store = cast(PostgresStore, self.store)  # spec_for chose pgvector: it searches
        check_metric(metric)
        source = StoreVectors(store, record.id)
        key = f"recall:{store.hnsw_index_name(record.id, metric.name)}"
        if not store.has_hnsw(record.id, metric.name):
            started = time.perf_counter()
            if store.ensure_hnsw(record.id, record.dim, metric.name):
                log.info("built pgvector HNSW index of %s in %.1fs", record.name,
                         time.perf_counter() - started)
                store.set_meta(key, "")
            else:
                log.warning("%s has %d dimensions, more than pgvector indexes (%d): searched "
                            "by an exact scan in PostgreSQL", record.name, record.dim,
                            HNSW_MAX_DIM)
        index = PgVectorIndex(store, record, metric, self.params.ef_search)
        sample = _Sample.of(source)
        if index.hnsw and not store.meta(key):
            store.set_meta(key, json.dumps({"recall_at_10": sample.recall(index.search, source,
                                                                          metric),
                                            "params": index.applied}))
        manifest = {"kind": PGVECTOR, "index": "pgvector HNSW" if index.hnsw else
                    "pgvector exact scan", "count": len(index), "metric": metric.name,
                    "expand_k_used": 0, "search_params": index.applied}
        return LoadedIndex(index, manifest, sample.calibration(metric))

    def _get_approximate(self, record: FeatureSetRecord, metric: Metric,
                         spec: IndexSpec) -> LoadedIndex:
        manifest = read_manifest(self.manifest_path(record, metric, spec=spec))
        if manifest is not None and self.is_fresh(record, manifest):
            try:
                files = BuiltFiles(**manifest["files"])
                index = ApproximateIndex.load(self.folder, files, spec, metric, self.params)
                if len(index) == manifest.get("count") and index.dim == record.dim:
                    return LoadedIndex(index, manifest,
                                       Calibration(**manifest["score_calibration"]))
                log.warning("index %s does not match the catalogue; rebuilding", files.index)
            except Exception as exc:  # noqa: BLE001 - a damaged file is rebuilt, not fatal
                log.warning("index %s unreadable (%s); rebuilding", manifest.get("files"), exc)
        return self.build_approximate(record, metric, spec)

    def _wants_disk(self, spec: IndexSpec, record: FeatureSetRecord, count: int) -> bool:
        if not spec.nlist or self.on_disk == "no":
            return False
        if self.on_disk == "yes":
            return True
        import faiss

        probe = faiss.index_factory(record.dim, spec.core, faiss.METRIC_L2)
        code_size = int(faiss.extract_index_ivf(probe).code_size)
        return count * (code_size + 8) > _physical_ram() // 4

    def build_approximate(self, record: FeatureSetRecord, metric: Metric,
                          spec: IndexSpec) -> LoadedIndex:
        """Builds an approximate index from the store's vectors, a chunk at a time, measures
        its recall@10 against exact search, and saves it with its manifest."""
        started = time.perf_counter()
        remove_stale_temporaries(self.folder)
        source = StoreVectors(self.store, record.id)
        count = source.count
        on_disk = self._wants_disk(spec, record, count)
        stem = index_stem(record, metric, spec=spec)
        # Each build writes files of its own: one killed half-way never overwrites files
        # a manifest points to, and the manifest, written last, is what makes a build count.
        # The process id in the names tells a killed build's leftovers from a live one's.
        version_stem = f"{stem}.v{record.version}.{os.getpid()}-{secrets.token_hex(4)}"
        index, files = approx.build(source, spec, metric, self.folder, version_stem,
                                    on_disk=on_disk, params=self.params)
        seconds = time.perf_counter() - started
        sample = _Sample.of(source)
        recall = sample.recall(index.search, source, metric)
        calib = sample.calibration(metric)
        manifest = {
            **identity(self.store, record, metric, count),
            "kind": "approximate",
            "index": spec.factory,
            "files": asdict(files),
            "on_disk": on_disk,
            "expand_k": 0,
            "expand_k_used": 0,
            "expand_alpha": EXPAND_ALPHA,
            "score_calibration": asdict(calib),
            "search_params": index.applied,
            "recall_at_10": recall,
            "recall_queries": len(sample.ids),
            "ram_bytes": index.ram_bytes(),
            "build_seconds": seconds,
            "built_at": time.time(),
        }
        self._save_approximate(self.manifest_path(record, metric, spec=spec), manifest,
                               files, stem)
        log.info("built %s %s index of %s (%d vectors) in %.1fs, recall@10 %.3f", spec,
                 metric, record.name, count, seconds, recall)
        return LoadedIndex(index, manifest, calib)

    def _save_approximate(self, manifest_path: Path, manifest: dict[str, Any],
                          files: BuiltFiles, stem: str) -> None:
        """Writes an approximate index's manifest (its files are written by then), then
        removes the files the replaced manifest named and those of killed builds; a failure
        is logged, not raised."""
        previous = read_manifest(manifest_path)
        try:
            write_atomically(manifest_path,
                             lambda tmp: Path(tmp).write_text(json.dumps(manifest, indent=2)))
            # Only the files the replaced manifest named, and those of killed builds: another
            # process may be writing a build of its own beside this one.
            mine = set(files.names())
            for name in files_of(previous) if previous else []:
                if name not in mine:
                    (self.folder / name).unlink(missing_ok=True)
            for path in self.folder.glob(f"{stem}.v*"):
                builder = re.fullmatch(r".*\.v\d+\.(\d+)-[0-9a-f]+\..*", path.name)
                if path.name not in mine and builder and not process_alive(int(builder[1])):
                    path.unlink(missing_ok=True)
        except OSError as exc:
            self._not_saved(exc)

    def remove_orphans(self) -> int:
        """Deletes index files whose feature set is no longer in the catalogue (an adapter's
        old weights, say); gives how many indexes went."""
        if not self.folder.is_dir():
            return 0
        known = {(r.name, r.preprocessing) for r in self.store.feature_sets()}
        removed = 0
        for path in self.folder.glob("*.json"):
            manifest = read_manifest(path)
            if manifest is None or manifest.get("catalogue_id") != self.store.catalogue_id:
                continue
            if (manifest.get("feature_set"), manifest.get("preprocessing")) in known:
                continue
            for name in files_of(manifest):
                (self.folder / name).unlink(missing_ok=True)
            path.unlink(missing_ok=True)
            removed += 1
        return removed

    def status(self, record: FeatureSetRecord) -> list[IndexStatus]:
        """Gives the saved indexes of a feature set and whether each is fresh."""
        return index_statuses(self.store, self.folder, record)


class _Sample(NamedTuple):
    """The catalogue's own vectors as queries (the same ones every time): an index's
    recall@10 against exact search is measured on them, and its scores calibrated."""

    ids: npt.NDArray[np.int64]
    queries: npt.NDArray[np.float32]

    @classmethod
    def of(cls, source: StoreVectors) -> _Sample:
        rng = np.random.default_rng(0)
        return cls(*source.sample_with_ids(min(RECALL_QUERIES, source.count), rng))

    def recall(self, search: Callable[[npt.NDArray[np.float32], int], Any],
               source: VectorSource, metric: Metric) -> float:
        """Gives the recall@10 of a search function on these queries."""
        truth = approx.exact_neighbours(self.queries, source, metric, 11)
        return approx.measure_recall(search, self.queries, self.ids, truth, 10)

    def calibration(self, metric: Metric) -> Calibration:
        """Gives the score calibration of these vectors under the metric."""
        return calibration(ExactIndex.build(self.queries, self.ids, metric), self.queries)
