"""Fault injection shared by the reliability tests and benchmarks/reliability.py: a real
`semsearch index` process, killed with SIGKILL at random points while its collection keeps
changing, and a check that the catalogue, its vectors and its index agree with the disk."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
import warnings
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from semsearch.config import resolve
from semsearch.errors import BadImageError
from semsearch.images import is_supported
from semsearch.session import Session

# Runs the command-line tool in a fresh interpreter, as a user's shell would.
CLI = [sys.executable, "-c", "import sys; from semsearch.cli import main; sys.exit(main())"]


def export_tiny_onnx(path: Path) -> Path:
    """Writes the tests' tiny random-weight network as an ONNX file (a model any process can
    load as onnx:PATH) and gives its path."""
    import torch
    from tests.conftest import tiny_net

    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(tiny_net(), (torch.zeros(1, 3, 32, 32),), str(path), dynamo=False,
                          input_names=["input"], output_names=["out"],
                          dynamic_axes={"input": {0: "n"}, "out": {0: "n"}}, opset_version=17)
    return path


@dataclass
class Collection:
    """A folder of images indexed into its own catalogue by the command-line tool."""

    root: Path
    db: Path  # the SQLite file; with `url`, where the config file and logs go
    settings: dict[str, str]  # semsearch settings, as flags
    url: str | None = None  # a PostgreSQL catalogue instead of the SQLite file

    def flags(self) -> list[str]:
        out = ["--db", self.url or str(self.db)]
        for name, value in self.settings.items():
            out += ["--" + name.replace("_", "-"), value]
        return out

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["SEMSEARCH_CONFIG"] = str(self.db.parent / "no-config.toml")
        env["OMP_NUM_THREADS"] = "1"
        return env

    def index_command(self) -> list[str]:
        return [*CLI, "index", str(self.root), *self.flags(), "--quiet"]

    def run_index(self) -> float:
        """Indexes the folder to the end; gives the seconds it took."""
        started = time.monotonic()
        done = subprocess.run(self.index_command(), env=self.env(), capture_output=True,
                              text=True, timeout=600)
        if done.returncode != 0:
            raise AssertionError(f"semsearch index failed:\n{done.stdout}\n{done.stderr}")
        return time.monotonic() - started

    def session(self) -> Session:
        config = resolve({"db": self.url or str(self.db), **self.settings}, env={})
        return Session(config)

    def opened_by(self, pid: int) -> bool:
        """Gives whether process pid has the catalogue open: the SQLite file, or for
        PostgreSQL a socket (the tool opens no other)."""
        target = os.path.realpath(self.db)
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                link = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if link == target or (self.url is not None and link.startswith("socket:")):
                return True
        return False


def tiny_collection(root: Path, db: Path, onnx: Path, **settings: str) -> Collection:
    (db.parent / "no-config.toml").write_text("")
    base = {"model": f"onnx:{onnx}", "onnx_mean": "127,127,127", "onnx_std": "128,128,128",
            "cache_dir": str(db.parent / "onnx-cache"), "workers": "1", "batch_size": "8"}
    return Collection(root, db, {**base, **settings})


def copy_images(sources: list[Path], root: Path) -> list[Path]:
    """Copies image folders (class sub-folders kept) into root; gives the copies."""
    copied = []
    for source in sources:
        for path in sorted(source.rglob("*")):
            if path.is_file() and is_supported(path):
                target = root / path.relative_to(source)
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(path, target)
                copied.append(target)
    return copied


def images_in(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file() and is_supported(p))


def mutate(root: Path, reserve: list[Path], rng: np.random.Generator, count: int = 3
           ) -> list[str]:
    """Changes the collection as a user might between runs: edits, deletions, moves,
    copies, touches, additions and files cut short. Gives what was done."""
    done = []
    for _ in range(count):
        files = images_in(root)
        if not files:
            break
        victim = files[int(rng.integers(len(files)))]
        kind = str(rng.choice(["edit", "delete", "move", "copy", "touch", "add", "cut"]))
        fresh = reserve[int(rng.integers(len(reserve)))]
        tag = f"r{int(rng.integers(1 << 30))}"
        if kind == "edit":  # other content at the same path
            victim.write_bytes(fresh.read_bytes())
        elif kind == "delete":
            victim.unlink()
        elif kind == "move":
            folders = sorted({p.parent for p in files})
            target = folders[int(rng.integers(len(folders)))] / f"{tag}{victim.suffix}"
            victim.rename(target)
        elif kind == "copy":
            shutil.copy2(victim, victim.with_name(f"{tag}{victim.suffix}"))
        elif kind == "touch":
            stat = victim.stat()
            os.utime(victim, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
        elif kind == "add":
            shutil.copy(fresh, victim.parent / f"{tag}{fresh.suffix}")
        else:  # cut short: the old picture is gone, and so must its vector be
            data = victim.read_bytes()
            victim.write_bytes(data[: len(data) // 3])
        done.append(f"{kind} {victim.relative_to(root)}")
    return done


@dataclass
class KillReport:
    kills: int = 0
    finished: int = 0  # runs that ended before their kill came
    mutations: int = 0
    seconds: float = 0.0
    delays: list[float] = field(default_factory=list)


def _opened(collection: Collection, pid: int, timeout: float) -> bool:
    """Waits until process pid has the catalogue open (Linux /proc); gives False if the
    process ended first or the time ran out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if collection.opened_by(pid):
                return True
        except OSError:
            return False
        time.sleep(0.002)
    return False


def kill_rounds(collection: Collection, kills: int, rng: np.random.Generator,
                reserve: list[Path], changes: int = 8, work: float = 1.0) -> KillReport:
    """Starts `semsearch index` again and again, each time after changing the collection,
    and kills it (SIGKILL) at a random moment between its opening the catalogue and the
    end of its work (estimated from runs that finished). Gives the counts."""
    report = KillReport()
    started = time.monotonic()
    while report.kills < kills:
        report.mutations += len(mutate(collection.root, reserve, rng, changes))
        proc = subprocess.Popen(collection.index_command(), env=collection.env(),
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        opened = time.monotonic()
        delay = float(rng.uniform(0, work))
        if _opened(collection, proc.pid, timeout=120):
            opened = time.monotonic()
            try:
                proc.wait(timeout=delay)
            except subprocess.TimeoutExpired:
                proc.send_signal(signal.SIGKILL)
                proc.communicate()
                report.kills += 1
                report.delays.append(delay)
                continue
        err = proc.communicate()[1]
        if proc.returncode != 0:
            raise AssertionError(f"semsearch index failed: {err.decode(errors='replace')}")
        report.finished += 1
        work = max(0.1, time.monotonic() - opened)
    report.seconds = time.monotonic() - started
    return report


def check_agreement(collection: Collection) -> dict[str, int]:
    """Checks, after a run that finished, that the catalogue holds exactly the usable images
    on disk (none missing, none twice, none gone), each with the content hash of the file now
    at its path and the vector that content gives, and that the saved index is fresh and
    holds exactly those vectors. Raises AssertionError naming what disagrees; gives counts."""
    if collection.url is None:
        with sqlite3.connect(collection.db) as db:
            assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    with collection.session() as session:
        store = session.store
        extractor = session.extractor(session.feature_set())
        on_disk: dict[str, bytes] = {}
        unusable = 0
        for path in images_in(collection.root):
            data = path.read_bytes()
            try:
                extractor.decode(data, name=str(path))
            except BadImageError:
                unusable += 1
                continue
            on_disk[str(path)] = data
        rows = store.images_under(str(collection.root))
        missing = sorted(set(on_disk) - set(rows))
        extra = sorted(set(rows) - set(on_disk))
        assert not missing and not extra, f"missing {missing[:5]}, not on disk {extra[:5]}"
        assert store.count_images() == len(rows), "rows outside the collection"
        stored_shas = Counter(rec.sha256 for rec in rows.values())
        disk_shas = Counter(hashlib.sha256(d).hexdigest() for d in on_disk.values())
        assert stored_shas == disk_shas, "an image is stored twice, or content is lost"
        for path, rec in rows.items():
            assert rec.sha256 == hashlib.sha256(on_disk[path]).hexdigest(), f"stale row {path}"
            assert rec.size == len(on_disk[path]), f"stale size {path}"

        record = store.feature_set(extractor.feature_set, extractor.preprocessing)
        ids, vectors = store.vectors(record.id)
        by_id = {rec.id: path for path, rec in rows.items()}
        assert sorted(ids.tolist()) == sorted(by_id), "vectors and images disagree"
        paths = [by_id[int(i)] for i in ids]
        fresh = np.concatenate([  # in batches: a real model's activations are large
            extractor.embed_many([extractor.decode(on_disk[p], name=p)[0]
                                  for p in paths[at:at + 32]])
            for at in range(0, len(paths), 32)]) if paths else vectors
        stale = [p for p, a, b in zip(paths, vectors, fresh, strict=True)
                 if not np.allclose(a, b, atol=1e-5)]
        assert not stale, f"vectors of other content: {stale[:5]}"

        catalog = session.catalog
        metric = session.metric()
        spec = catalog.spec_for(record)
        if spec is None:  # pgvector: the index lives in the catalogue, over these vectors
            assert store.has_hnsw(record.id, metric.name), "no HNSW index in PostgreSQL"
            loaded = catalog.get(record, metric)
            for i in range(0, len(ids), max(1, len(ids) // 5)):
                _, found = loaded.index.search(vectors[i][None, :], 10)  # copies tie
                assert int(ids[i]) in found[0].tolist(), "the HNSW index misses a vector"
            return {"images": len(rows), "unusable": unusable, "vectors": len(ids)}
        expand = session.config.expand_k if spec is not None and spec.exact else 0
        expand = expand if metric.name == "cosine" and expand > 1 else 0
        manifest_path = catalog.manifest_path(record, metric, expand,
                                              None if spec is None or spec.exact else spec)
        manifest = json.loads(manifest_path.read_text())
        assert catalog.is_fresh(record, manifest), f"index not fresh: {manifest_path.name}"
        loaded = catalog.get(record, metric, session.config.expand_k)
        assert loaded.manifest.get("built_at") == manifest.get("built_at"), "index was rebuilt"
        index_ids = np.asarray(loaded.index.ids)
        assert sorted(index_ids.tolist()) == sorted(ids.tolist()), "index and catalogue differ"
        base = loaded.base or (loaded.index if spec is not None and spec.exact else None)
        if base is not None:
            order = np.argsort(ids)
            want = vectors[order] / np.linalg.norm(vectors[order], axis=1, keepdims=True)
            assert np.allclose(base.stored(ids[order]), want, atol=1e-5), "index vectors stale"
        referenced = {manifest_path.name, *_files_named(manifest)}
        leftovers = sorted(p.name for p in catalog.folder.iterdir()
                           if p.name not in referenced and p.name.startswith(
                               manifest_path.name.split(".")[0]))
        assert not leftovers, f"files no manifest refers to: {leftovers[:5]}"
        return {"images": len(rows), "unusable": unusable, "vectors": len(ids)}


def _files_named(manifest: dict[str, object]) -> list[str]:
    files = manifest.get("files")
    if isinstance(files, dict):
        return [str(v) for v in files.values() if v]
    return [str(manifest[k]) for k in ("file", "base_file") if manifest.get(k)]
