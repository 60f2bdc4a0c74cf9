"""Shared fixtures: a tiny random-weight network registered like a real model, generated
images, and the paths of the real shared datasets."""

from __future__ import annotations

import itertools
import os
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from semsearch.config import resolve
from semsearch.images import real_path
from semsearch.models.preprocess import Preprocess
from semsearch.models.registry import ModelRegistry, ModelSpec, default_registry
from semsearch.session import Session

ROOT = Path(__file__).resolve().parents[1]
# Resolved as indexing resolves the folders it stores, so that the paths tests build from it
# are the catalogue's even when ../shared is a link.
DATASETS = Path(real_path(ROOT.parent / "shared" / "datasets"))


def tiny_net(seed: int = 0):  # type: ignore[no-untyped-def]
    import torch
    from torch import nn

    class TinyNet(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.stem = nn.Conv2d(3, 8, 3, stride=2, padding=1)
            self.stem_act = nn.ReLU6()
            self.block = nn.Conv2d(8, 16, 3, stride=2, padding=1)
            self.block_act = nn.ReLU6()
            self.head = nn.Conv2d(16, 32, 1)
            self.head_act = nn.ReLU6()
            self.pool = nn.AdaptiveAvgPool2d(1)
            self.fc = nn.Linear(32, 10)

        def forward(self, x):  # type: ignore[no-untyped-def]
            x = self.stem_act(self.stem(x))
            x = self.block_act(self.block(x))
            x = self.head_act(self.head(x))
            return self.fc(torch.flatten(self.pool(x), 1))

    torch.manual_seed(seed)
    return TinyNet().eval()


TINY = ModelSpec(
    name="tiny",
    description="random-weight test network",
    preprocess=Preprocess(32),
    build=tiny_net,
    weights_id=lambda: "tiny-seed0",
    default_layer="head_act",
    mean=127.0,
    std=128.0,
    classifier="fc",
)


# A second tiny model with another input size, for composite feature sets.
TINY2 = ModelSpec(**{**TINY.__dict__, "name": "tiny2", "preprocess": Preprocess(40),
                     "build": lambda: tiny_net(seed=1), "weights_id": lambda: "tiny-seed1"})


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One ONNX cache for the whole test session, so each graph is exported once."""
    return tmp_path_factory.mktemp("onnx-cache")


@pytest.fixture
def tiny_registry() -> ModelRegistry:
    registry = default_registry()
    registry.register(TINY)
    registry.register(TINY2)
    return registry


@pytest.fixture
def tiny_session(tmp_path: Path, cache_dir: Path, tiny_registry: ModelRegistry):  # type: ignore[no-untyped-def]
    config = resolve({"db": str(tmp_path / "cat.db"), "cache_dir": str(cache_dir),
                      "model": "tiny", "batch_size": 4, "workers": 2}, env={})
    with Session(config, registry=tiny_registry) as session:
        yield session


def make_image(path: Path, seed: int, size: tuple[int, int] = (64, 48), fmt: str | None = None,
               mode: str = "RGB") -> Path:
    """Writes a random but structured image (smooth colour blobs) and gives its path."""
    rng = np.random.default_rng(seed)
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w]
    arr = np.zeros((h, w, 3), dtype=np.float64)
    for _ in range(3):
        cx, cy, r = rng.uniform(0, w), rng.uniform(0, h), rng.uniform(5, max(w, h))
        arr += rng.uniform(0, 255, 3) * np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / r**2)[..., None]
    im = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), "RGB")
    if mode != "RGB":
        im = im.convert(mode)
    path.parent.mkdir(parents=True, exist_ok=True)
    im.save(path, format=fmt)
    return path


def labeled_folder(root: Path, count: int, classes: int = 3) -> Path:
    """Writes `count` small generated images into `classes` class folders; gives root."""
    for i in range(count):
        make_image(root / f"class{i % classes}" / f"img{i:02d}.png", seed=i)
    return root


@pytest.fixture
def gallery(tmp_path: Path) -> Path:
    """A labeled folder of 12 small generated images in 3 classes."""
    return labeled_folder(tmp_path / "gallery", 12)


@pytest.fixture
def no_config_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Keeps the user's own config file out of a CLI test."""
    monkeypatch.setenv("SEMSEARCH_CONFIG", str(tmp_path / "none.toml"))
    (tmp_path / "none.toml").write_text("")


@pytest.fixture(scope="session")
def pg_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real PostgreSQL 16 with pgvector (the `pgserver` package), one per test session;
    gives its URL."""
    pgserver = pytest.importorskip("pgserver")
    srv = pgserver.get_server(tmp_path_factory.mktemp("pg"), cleanup_mode="stop")
    try:
        yield str(srv.get_uri())
    finally:
        srv.cleanup()


_pg_names = itertools.count()


@pytest.fixture
def pg_url(pg_server: str) -> str:
    """A fresh, empty database on the shared PostgreSQL server."""
    import psycopg

    name = f"t{next(_pg_names)}_{int(time.time() * 1000) % 10**8}"
    with psycopg.connect(pg_server, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    return pg_server.replace("/postgres?", f"/{name}?")


def dataset(name: str) -> Path:
    path = DATASETS / name
    if not path.is_dir():
        pytest.skip(f"shared dataset {path} is absent")
    return path


def pytest_report_header(config: pytest.Config) -> str:
    return f"shared datasets: {DATASETS} ({'present' if DATASETS.is_dir() else 'ABSENT'}); " \
           f"cpus: {os.cpu_count()}"
