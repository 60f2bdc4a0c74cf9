"""What comparisons, adapters and the web app keep in the catalogue beside the vectors:
comparison runs and their rows, adapters with their weights, collections (the folders people
index and browse) and cached 2-D maps. A part of `Store`, on its connection."""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from semsearch.errors import NotIndexedError
from semsearch.featureset import FeatureSet
from semsearch.store.records import (
    AdaptedVectors,
    AdapterRecord,
    FeatureSetRecord,
    SweepRecord,
    SweepRow,
)
from semsearch.store.sql import PUT_VECTOR, StorePart, prefix_bounds


class SavedResults(StorePart):
    """Comparison runs, adapters, collections and maps: the Store methods that keep them."""

    # -- sweeps -------------------------------------------------------------------------------

    def save_sweep(self, root: str, settings: str, rows: Sequence[SweepRow]) -> SweepRecord:
        """Stores a comparison run and its rows in one transaction; gives its record."""
        now = time.time()
        with self._transaction() as conn:
            sweep_id = int(conn.execute(
                "INSERT INTO sweeps(root, settings, created_at) VALUES (?, ?, ?) RETURNING id",
                (root, settings, now)).fetchone()[0])
            conn.executemany(
                "INSERT INTO sweep_results(sweep_id, feature_set, preprocessing, metric, scores,"
                " image_ids, per_query) VALUES (?, ?, ?, ?, ?, ?, ?)",
                [(sweep_id, row.feature_set, row.preprocessing, row.metric, row.scores,
                  np.ascontiguousarray(row.image_ids, np.int64).tobytes(),
                  np.ascontiguousarray(row.per_query, np.float32).tobytes()) for row in rows])
        return SweepRecord(sweep_id, root, settings, now)

    def sweeps(self, root: str | None = None) -> list[SweepRecord]:
        """Gives the stored comparison runs, newest first (of one folder, if given)."""
        where, args = ("WHERE root = ?", (root,)) if root is not None else ("", ())
        rows = self._read(
            f"SELECT id, root, settings, created_at FROM sweeps {where} ORDER BY id DESC", args)
        return [SweepRecord(*row) for row in rows]

    def sweep_rows(self, sweep_id: int) -> list[SweepRow]:
        """Gives a stored comparison run's rows, or raises NotIndexedError."""
        if not self._read("SELECT 1 FROM sweeps WHERE id = ?", (sweep_id,)):
            raise NotIndexedError(f"no comparison run with id {sweep_id} in the catalogue")
        rows = self._read(
            "SELECT feature_set, preprocessing, metric, scores, image_ids, per_query"
            " FROM sweep_results WHERE sweep_id = ? ORDER BY feature_set, metric", (sweep_id,))
        return [SweepRow(r[0], r[1], r[2], r[3], np.frombuffer(r[4], np.int64).copy(),
                         np.frombuffer(r[5], np.float32).copy()) for r in rows]

    # -- adapters -----------------------------------------------------------------------------

    def save_adapter(self, name: str, base: FeatureSet, preprocessing: str,
                     weights: npt.NDArray[np.float32], info: str,
                     adapted: AdaptedVectors | None = None) -> AdapterRecord:
        """Stores an adapter, and the vectors it gives (if given), in one transaction. An
        adapter of the same name is replaced, and the feature sets its other weights made
        are removed with their vectors; gives the record."""
        matrix = np.ascontiguousarray(weights, np.float32)
        if matrix.ndim != 2 or not np.isfinite(matrix).all():
            raise ValueError("adapter weights must be a finite 2-D matrix")
        now = time.time()
        record = AdapterRecord(name, base, preprocessing, matrix, info, now)
        with self._transaction() as conn:
            # The set made by these very weights (a retrain that changed nothing) stays.
            keep = adapted.preprocessing if adapted is not None else None
            stale = [r.id for r in self._feature_set_rows_in(conn)
                     if r.feature_set.adapter == name and r.preprocessing != keep]
            conn.executemany("DELETE FROM feature_sets WHERE id = ?", [(i,) for i in stale])
            conn.execute(
                "INSERT INTO adapters(name, base, preprocessing, dim_in, dim_out,"
                " weights, info, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT(name) DO UPDATE SET base = excluded.base,"
                " preprocessing = excluded.preprocessing, dim_in = excluded.dim_in,"
                " dim_out = excluded.dim_out, weights = excluded.weights, info = excluded.info,"
                " created_at = excluded.created_at",
                (name, str(base), preprocessing, matrix.shape[0], matrix.shape[1],
                 matrix.tobytes(), info, now))
            if adapted is not None:
                fs = adapted.feature_set
                conn.execute(
                    "INSERT INTO feature_sets(name, model, layer, pooling,"
                    " preprocessing, dim, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)"
                    " ON CONFLICT(name, preprocessing) DO NOTHING",
                    (str(fs), fs.model, fs.layer, fs.pooling, adapted.preprocessing,
                     matrix.shape[1], now))
                fs_id = conn.execute(
                    "SELECT id FROM feature_sets WHERE name = ? AND preprocessing = ?",
                    (str(fs), adapted.preprocessing)).fetchone()[0]
                conn.executemany(
                    PUT_VECTOR,
                    [(fs_id, int(i), self._vector_param(np.ascontiguousarray(v, np.float32)))
                     for i, v in zip(adapted.image_ids, adapted.vectors, strict=True)])
                self._bump(conn, [fs_id])
        return record

    def _feature_set_rows_in(self, conn: sqlite3.Connection) -> list[FeatureSetRecord]:
        rows = conn.execute("SELECT id, name, preprocessing, dim, version FROM feature_sets"
                            " ORDER BY id").fetchall()
        return [FeatureSetRecord(r[0], FeatureSet.parse(r[1]), r[2], r[3], r[4]) for r in rows]

    def adapter(self, name: str) -> AdapterRecord:
        """Gives the named adapter, or raises NotIndexedError naming the known ones."""
        rows = self._read(
            "SELECT name, base, preprocessing, dim_in, dim_out, weights, info, created_at"
            " FROM adapters WHERE name = ?", (name,))
        if not rows:
            known = ", ".join(self.adapter_names()) or "none yet"
            raise NotIndexedError(f"no adapter named {name!r} in the catalogue (known: "
                                  f"{known}); train one with `semsearch adapt FOLDER`")
        r = rows[0]
        weights = np.frombuffer(r[5], np.float32).reshape(r[3], r[4]).copy()
        return AdapterRecord(r[0], FeatureSet.parse(r[1]), r[2], weights, r[6], r[7])

    def adapter_created(self, name: str) -> float | None:
        """Gives when the named adapter was saved (None if there is none): a cheap check
        that a loaded adapter is still current."""
        rows = self._read("SELECT created_at FROM adapters WHERE name = ?", (name,))
        return float(rows[0][0]) if rows else None

    def adapter_names(self) -> list[str]:
        return [str(r[0]) for r in self._read("SELECT name FROM adapters ORDER BY name")]

    def adapters(self) -> list[AdapterRecord]:
        return [self.adapter(name) for name in self.adapter_names()]

    # -- collections and maps -----------------------------------------------------------------

    def add_collection(self, root: str) -> int:
        """Registers an indexed folder as a collection (once); gives its id."""
        with self._transaction() as conn:
            conn.execute("INSERT INTO collections(root, created_at) VALUES (?, ?)"
                         " ON CONFLICT(root) DO NOTHING", (root, time.time()))
            return int(conn.execute("SELECT id FROM collections WHERE root = ?",
                                    (root,)).fetchone()[0])

    def collection_root(self, cid: int) -> str | None:
        rows = self._read("SELECT root FROM collections WHERE id = ?", (cid,))
        return str(rows[0][0]) if rows else None

    def has_vectors_under(self, fs_id: int, root: str) -> bool:
        """Gives whether any image at or below root has the feature set's vector (cheap)."""
        low, high = prefix_bounds(root)
        return bool(self._read(
            "SELECT 1 FROM vectors v JOIN images i ON i.id = v.image_id"
            " WHERE v.feature_set_id = ? AND (i.path = ? OR (i.path >= ? AND i.path < ?))"
            " LIMIT 1", (fs_id, root.rstrip(os.sep), low, high)))

    def collections(self) -> list[tuple[int, str]]:
        """Gives (id, root) of every collection, oldest first."""
        return [(int(r[0]), str(r[1]))
                for r in self._read("SELECT id, root FROM collections ORDER BY id")]

    def save_map(self, fs_id: int, root: str, version: int, image_ids: npt.NDArray[np.int64],
                 coords: npt.NDArray[np.float32]) -> None:
        """Stores a 2-D map of a collection's vectors, made at the feature set's version."""
        with self._transaction() as conn:
            conn.execute(
                "INSERT INTO maps(feature_set_id, root, version, image_ids, coords)"
                " VALUES (?, ?, ?, ?, ?) ON CONFLICT(feature_set_id, root) DO UPDATE SET"
                " version = excluded.version, image_ids = excluded.image_ids,"
                " coords = excluded.coords",
                (fs_id, root, version, np.ascontiguousarray(image_ids, np.int64).tobytes(),
                 np.ascontiguousarray(coords, np.float32).tobytes()))

    def load_map(self, fs_id: int, root: str
                 ) -> tuple[int, npt.NDArray[np.int64], npt.NDArray[np.float32]] | None:
        """Gives (version, image ids, n x 2 coordinates) of a stored map, or None."""
        rows = self._read("SELECT version, image_ids, coords FROM maps"
                          " WHERE feature_set_id = ? AND root = ?", (fs_id, root))
        if not rows:
            return None
        ids = np.frombuffer(rows[0][1], np.int64).copy()
        return int(rows[0][0]), ids, np.frombuffer(rows[0][2], np.float32).reshape(-1, 2).copy()
