"""Everyday commands start without torch: `--help`, `info` and a search by an indexed image
run on ONNX Runtime and FAISS, so none of them may import torch (2 s of start-up) or another
heavy library it does not use. Each runs in a fresh interpreter, as from a user's shell."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from tests.conftest import dataset, labeled_folder
from tests.faults import export_tiny_onnx

# Libraries that only other commands need (export, channels, words, maps, Ray, PostgreSQL,
# the web app); `transformers` comes with sentence-transformers.
HEAVY = ("torch", "sentence_transformers", "transformers", "umap", "matplotlib", "ray",
         "psycopg", "fastapi", "uvicorn")

# Runs the command in-process and then reports which of HEAVY it left in sys.modules.
_PROBE = f"""
import json, sys
from semsearch.cli import main
try:
    code = main(sys.argv[1:])
except SystemExit as exc:  # --help
    code = exc.code
print(json.dumps({{"code": code, "loaded": [m for m in {HEAVY!r} if m in sys.modules]}}))
"""


def _run(env: dict[str, str], *argv: str) -> tuple[int, list[str], str]:
    """Gives the exit code, the heavy libraries loaded and the output of one command."""
    done = subprocess.run([sys.executable, "-c", _PROBE, *argv], env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    *output, report = done.stdout.splitlines()
    result = json.loads(report)
    return result["code"], result["loaded"], "\n".join(output)


def _env(tmp_path: Path, **settings: str) -> dict[str, str]:
    (tmp_path / "none.toml").write_text("")
    env = {**os.environ, "SEMSEARCH_CONFIG": str(tmp_path / "none.toml"),
           "SEMSEARCH_DB": str(tmp_path / "cat.db")}
    env.update({f"SEMSEARCH_{name.upper()}": value for name, value in settings.items()})
    return env


def _check_commands(env: dict[str, str], root: Path) -> None:
    code, loaded, out = _run(env, "--help")
    assert code == 0 and "usage: semsearch" in out and loaded == []
    code, loaded, out = _run(env, "info")
    assert code == 0 and "images" in out and loaded == []
    code, loaded, out = _run(env, "search", "id:1", "-k", "3", "--json")
    assert code == 0 and loaded == []
    hits = json.loads(out)["hits"]
    assert len(hits) == 3 and all(Path(hit["path"]).is_relative_to(root) for hit in hits)


def test_everyday_commands_do_not_import_torch(tmp_path: Path) -> None:
    onnx = export_tiny_onnx(tmp_path / "tiny.onnx")
    root = labeled_folder(tmp_path / "photos", 8)
    env = _env(tmp_path, model=f"onnx:{onnx}", onnx_mean="127,127,127",
               onnx_std="128,128,128", cache_dir=str(tmp_path / "cache"))
    # Indexing writes the model's graph into the cache, as a user's first `index` does.
    done = subprocess.run([sys.executable, "-m", "semsearch", "index", str(root), "-q"],
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    _check_commands(env, root.resolve())


@pytest.mark.real
def test_everyday_commands_do_not_import_torch_with_the_bundled_models(
        tmp_path: Path, cache_dir: Path) -> None:
    root = tmp_path / "photos"
    for image in sorted(dataset("iconic200").glob("banana/*.jpg"))[:4]:
        (root / image.name).parent.mkdir(parents=True, exist_ok=True)
        (root / image.name).write_bytes(image.read_bytes())
    env = _env(tmp_path, cache_dir=str(cache_dir))  # the default feature set, all three models
    done = subprocess.run([sys.executable, "-m", "semsearch", "index", str(root), "-q"],
                          env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    _check_commands(env, root.resolve())
