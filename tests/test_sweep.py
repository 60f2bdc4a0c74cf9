"""`semsearch compare`: layer choice, one forward pass per image for every layer, scores that
match a direct evaluation, stored results and the files written."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from tests.conftest import dataset, labeled_folder, make_image

from semsearch.errors import EvaluationError, FeatureSetError, UnknownLayerError
from semsearch.evaluate.leaderboard import write_outputs
from semsearch.evaluate.sweep import run_sweep
from semsearch.featureset import FeatureSet
from semsearch.models.layers import LayerInfo, auto_layers, choose_layers
from semsearch.ranking import evaluate
from semsearch.session import Session


def _conv(name: str, params: int = 10, height: int = 8) -> LayerInfo:
    return LayerInfo(name, "Conv2d", 4, height, height, 2, params)


def test_auto_layers_spread_over_the_depth_first_and_last_included() -> None:
    table = [_conv(f"c{i}") if i % 2 == 0 else LayerInfo(f"bn{i}", "BatchNorm2d", 4, 8, 8, 2, 8)
             for i in range(40)]
    table.append(_conv("no_weights", params=0))
    table.append(LayerInfo("fc", "Linear", 10, 0, 0, 0, 50))
    picked = auto_layers(table)
    assert len(picked) == 8 and picked[0] == "c0" and picked[-1] == "c38"
    positions = [int(name[1:]) for name in picked]
    assert positions == sorted(positions)
    gaps = np.diff(positions)
    assert gaps.max() - gaps.min() <= 2  # evenly spread
    assert auto_layers(table[:6]) == ["c0", "c2", "c4"]  # fewer than 8: all of them


def test_auto_layers_of_lite0_are_its_convolutions() -> None:
    from semsearch.models.registry import default_registry
    from semsearch.models.summary import layers

    table = layers(default_registry(), "lite0")
    picked = auto_layers(table, feature_layer="_head_act")
    assert len(picked) == 8 and picked[0] == "_conv_stem" and picked[-2:] == [
        "_conv_head", "_head_act"]
    kinds = {layer.name: layer.type for layer in table}
    assert all(kinds[name].startswith("Conv2d") for name in picked[:-1])


def test_choose_layers_expands_auto_and_checks_names() -> None:
    table = [_conv("a"), _conv("b"), LayerInfo("fc", "Linear", 10, 0, 0, 0, 50)]
    assert choose_layers(table, ["b", "auto"], "m") == ["a", "b"]  # network order, once
    with pytest.raises(UnknownLayerError, match="no layer 'zz'"):
        choose_layers(table, ["zz"], "m")
    with pytest.raises(EvaluationError, match="no spatial map"):
        choose_layers(table, ["fc"], "m")


@pytest.fixture
def labeled(tmp_path: Path) -> Path:
    return labeled_folder(tmp_path / "labeled", 15)


def test_sweep_embeds_once_and_scores_every_combination(tiny_session: Session,
                                                        labeled: Path) -> None:
    stages: list[str] = []
    result = run_sweep(tiny_session, str(labeled), models=["tiny"], layers=["auto"],
                       poolings=["avg", "gem"], metrics=["cosine", "euclidean", "minkowski"],
                       k=5, progress=lambda stage, done, total: stages.append(stage))
    assert result.layers == {"tiny": ["stem", "block", "head", "head_act"]}
    assert len(result.rows) == 4 * 2 * 3 and result.images == 15 and result.classes == 3
    assert "embedding tiny" in stages and stages[-1] == "scoring"
    # One pass per image wrote all eight feature sets.
    (report,) = result.reports
    assert report.embedded == 15 and len(report.feature_sets) == 8
    scores = [row.overall.weighted_p15 for row in result.rows]
    assert scores == sorted(scores, reverse=True)

    # Each row is what a direct evaluation of that feature set's vectors gives, and the
    # vectors are what the single-layer extractor gives for the same images.
    row = next(r for r in result.rows if (r.layer, r.pooling, r.metric) == ("block", "gem",
                                                                           "euclidean"))
    fs = FeatureSet("tiny", "block", "gem")
    record = tiny_session.store.feature_set(fs)
    ids, vectors = tiny_session.store.vectors(record.id)
    images = tiny_session.store.images(ids)
    single = tiny_session.extractor(fs)
    again = np.stack([single.embed_image(images[int(i)].path) for i in ids])
    np.testing.assert_allclose(vectors, again, rtol=1e-4, atol=1e-5)
    direct = evaluate(vectors, [images[int(i)].label for i in ids],
                      tiny_session.metric("euclidean"), k=5)
    assert row.overall == direct.overall and row.per_class == direct.per_class

    # A second run embeds nothing and scores the same; both runs are stored.
    second = run_sweep(tiny_session, str(labeled), models=["tiny"],
                       layers=["auto"], poolings=["avg", "gem"],
                       metrics=["cosine", "euclidean", "minkowski"], k=5)
    assert second.reports[0].embedded == 0 and second.reports[0].unchanged == 15
    assert [r.overall for r in second.rows] == [r.overall for r in result.rows]
    runs = tiny_session.store.sweeps(result.root)
    assert [s.id for s in runs] == [second.sweep.id, result.sweep.id]
    assert json.loads(runs[0].settings)["layers"] == result.layers
    stored = tiny_session.store.sweep_rows(result.sweep.id)
    assert len(stored) == 24
    kept = next(s for s in stored if s.feature_set == str(fs) and s.metric == "euclidean")
    assert kept.image_ids.tolist() == ids.tolist()
    np.testing.assert_allclose(kept.per_query, direct.weighted_p15, rtol=1e-6)
    assert json.loads(kept.scores)["overall"]["map"] == pytest.approx(direct.overall.map)


def test_sweep_vectors_serve_index_and_search(tiny_session: Session, labeled: Path) -> None:
    run_sweep(tiny_session, str(labeled), models=["tiny"], layers=["head_act"],
              poolings=["gem"], metrics=["cosine"])
    # `index` with the same feature set finds every vector already there.
    session = Session(tiny_session.config.__class__(**{**tiny_session.config.__dict__,
                                                       "pool": "gem", "expand_k": 0}),
                      registry=tiny_session.registry, store=tiny_session.store)
    report = session.index(str(labeled))
    assert report.embedded == 0 and report.unchanged == 15
    hits = session.search(str(labeled / "class0" / "img00.png")).hits
    assert hits and all(hit.path != str(labeled / "class0" / "img00.png") for hit in hits)


def test_sweep_refuses_what_it_cannot_score(tiny_session: Session, labeled: Path,
                                            tmp_path: Path) -> None:
    flat = labeled_folder(tmp_path / "flat", 4, classes=1)
    with pytest.raises(EvaluationError, match="in 1 class folder.*at least two"):
        run_sweep(tiny_session, str(flat), models=["tiny"], layers=["head"])
    with pytest.raises(EvaluationError, match="is not a folder"):
        run_sweep(tiny_session, str(flat / "class0" / "img00.png"), models=["tiny"])
    assert tiny_session.store.count_images() == 0  # refused before any embedding
    with pytest.raises(EvaluationError, match="composite"):
        run_sweep(tiny_session, str(labeled), models=["tiny+tiny2"])
    with pytest.raises(FeatureSetError, match="unknown pooling"):
        run_sweep(tiny_session, str(labeled), models=["tiny"], poolings=["median"])
    with pytest.raises(EvaluationError, match="k must be"):
        run_sweep(tiny_session, str(labeled), models=["tiny"], k=0)
    assert tiny_session.store.sweeps() == []


def test_bad_files_are_skipped_and_the_rest_scored(tiny_session: Session, labeled: Path) -> None:
    (labeled / "class1" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really")
    result = run_sweep(tiny_session, str(labeled), models=["tiny"], layers=["head"],
                       poolings=["avg"], metrics=["cosine"])
    assert result.images == 15
    assert [item.path for item in result.reports[0].failed] == [
        str(labeled / "class1" / "broken.jpg")]


def test_outputs_are_written(tiny_session: Session, labeled: Path, tmp_path: Path) -> None:
    result = run_sweep(tiny_session, str(labeled), models=["tiny", "tiny2"],
                       layers=["block", "head_act"], poolings=["avg", "gem"],
                       metrics=["cosine"])
    paths = write_outputs(result, tmp_path / "out")
    assert [p.name for p in paths] == ["leaderboard.json", "leaderboard.csv", "layers.png",
                                       "best.png"]
    data = json.loads(paths[0].read_text())
    assert data["sweep_id"] == result.sweep.id and data["embedded"] == {"tiny": 15, "tiny2": 15}
    assert len(data["leaderboard"]) == 8 and set(data["leaderboard"][0]["per_class"]) == {
        "class0", "class1", "class2"}
    with paths[1].open() as f:
        table = list(csv.DictReader(f))
    assert [int(r["rank"]) for r in table] == list(range(1, 9))
    assert float(table[0]["weighted_p15"]) == pytest.approx(result.rows[0].overall.weighted_p15)
    for png in paths[2:]:
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000


def test_cli_compare_refuses_mistakes_before_any_work(
        capsys: pytest.CaptureFixture[str], tmp_path: Path, no_config_file: None) -> None:
    from semsearch.cli import main

    code = main(["compare", str(tmp_path / "missing"), "--db", str(tmp_path / "c.db"),
                 "--models", "lite0", "--out", str(tmp_path / "out")])
    assert code == 1 and "no such file or folder" in capsys.readouterr().err
    code = main(["compare", ".", "--models", " , ", "--db", str(tmp_path / "c.db")])
    assert code == 1 and "--models must name" in capsys.readouterr().err
    (tmp_path / "taken").write_text("a file")
    labeled_folder(tmp_path / "photos", 4, classes=2)
    code = main(["compare", str(tmp_path / "photos"), "--models", "lite0", "--db",
                 str(tmp_path / "c.db"), "--out", str(tmp_path / "taken")])
    assert code == 1 and "cannot use" in capsys.readouterr().err
    from semsearch.store import Store

    with Store.open(tmp_path / "c.db") as store:  # nothing embedded, nothing stored
        assert store.count_images() == 0 and store.sweeps() == []


@pytest.mark.real
def test_sweep_on_a_real_subset(tmp_path: Path, cache_dir: Path,
                                capsys: pytest.CaptureFixture[str],
                                no_config_file: None) -> None:
    from semsearch.cli import main

    source = dataset("iconic200")
    root = tmp_path / "subset"
    classes = sorted(p.name for p in source.iterdir() if p.is_dir())[:5]
    for name in classes:
        for path in sorted((source / name).iterdir())[:8]:
            (root / name).mkdir(parents=True, exist_ok=True)
            shutil.copy(path, root / name / path.name)
    out = tmp_path / "out"
    code = main(["compare", str(root), "--models", "lite0", "--layers", "auto",
                 "--pool", "avg,gem", "--metrics", "cosine,euclidean", "--db",
                 str(tmp_path / "c.db"), "--cache-dir", str(cache_dir), "--out", str(out),
                 "--json"])
    assert code == 0
    data = json.loads(capsys.readouterr().out)
    board = data["leaderboard"]
    assert len(board) == 8 * 2 * 2 and data["images"] == 40 and data["classes"] == 5
    # As in the original's charts: deep layers separate classes, the first conv does not.
    # (With 7 relevant images per query, weighted precision at 15 tops out at 70.)
    best, stem = board[0], [r for r in board if r["layer"] == "_conv_stem"]
    assert best["layer"] in ("_conv_head", "_head_act") and best["map"] >= 0.85
    assert max(r["map"] for r in stem) < best["map"] - 0.3
    assert (out / "layers.png").stat().st_size > 10_000


def test_classes_are_the_top_sub_folders(tiny_session: Session, tmp_path: Path) -> None:
    root = tmp_path / "nested"
    for i in range(8):
        make_image(root / f"class{i % 2}" / "deeper" / f"{i}.png", seed=i)
    make_image(root / "loose.png", seed=99)  # in no class
    result = run_sweep(tiny_session, str(root), models=["tiny"], layers=["head"],
                       poolings=["avg"], metrics=["cosine"])
    assert result.classes == 2 and result.images == 8 and result.unlabeled == 1
    assert set(result.rows[0].per_class) == {"class0", "class1"}


def test_images_without_every_vector_are_left_out(tiny_session: Session, labeled: Path,
                                                  tmp_path: Path) -> None:
    # An image indexed before, whose file is now unreadable, keeps its row but gets no
    # vectors for the sweep's new feature sets: no configuration scores it.
    target = labeled / "class0" / "img00.png"
    tiny_session.index(str(labeled))
    target.chmod(0o000)
    try:
        import os

        if os.access(target, os.R_OK):  # root reads anything: make it undecodable instead
            target.chmod(0o644)
            target.write_bytes(b"not an image any more")
        result = run_sweep(tiny_session, str(labeled), models=["tiny"], layers=["block"],
                           poolings=["avg", "gem"], metrics=["cosine"])
    finally:
        target.chmod(0o644)
    assert result.images == 14
    assert all(row.overall.queries == 14 for row in result.rows)


def test_charts_take_any_folder_name(tiny_session: Session, tmp_path: Path) -> None:
    root = labeled_folder(tmp_path / "m$^$x {a}_%", 6, classes=2)
    result = run_sweep(tiny_session, str(root), models=["tiny"], layers=["head"],
                       poolings=["avg"], metrics=["cosine"])
    paths = write_outputs(result, tmp_path / "out")
    assert all(path.stat().st_size > 0 for path in paths)
