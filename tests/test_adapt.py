"""`semsearch adapt`: the per-class split, training that never sees held-out images, and the
adapter as a feature set that index and search use."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from tests.conftest import dataset, labeled_folder, make_image

import semsearch.evaluate.adapt as adapt_module
from semsearch.errors import EvaluationError, FeatureSetError, NotIndexedError
from semsearch.evaluate.adapt import TrainSettings, adapt, split_per_class
from semsearch.featureset import FeatureSet
from semsearch.session import Session
from semsearch.vectors import project

FAST = TrainSettings(dim=8, epochs=30)


def test_split_holds_out_a_fraction_of_every_class() -> None:
    labels = ["a"] * 10 + ["b"] * 4 + ["c"] * 2 + ["d"]
    paths = [f"/x/{label}/{i}.png" for i, label in enumerate(labels)]
    held = split_per_class(paths, labels, 0.3)
    counts = {c: int(sum(h for h, label in zip(held, labels, strict=True) if label == c))
              for c in "abcd"}
    # At least two where a class has four or more (a held-out query needs a match), at
    # least one otherwise, never all.
    assert counts == {"a": 3, "b": 2, "c": 1, "d": 0}
    # The same files in another order give the same split; another seed another one.
    order = np.random.default_rng(1).permutation(len(paths))
    shuffled = split_per_class([paths[i] for i in order], [labels[i] for i in order], 0.3)
    assert {paths[i] for i, h in zip(order, shuffled, strict=True) if h} == {
        p for p, h in zip(paths, held, strict=True) if h}
    assert not split_per_class(paths, labels, 0.0).any()
    assert (split_per_class(paths, labels, 0.3, seed=5) != held).any()
    # Copies of one image (same content) land on the same side.
    contents = [f"sha{i // 2}" for i in range(len(paths))]  # pairs of copies
    for seed in range(20):
        split = split_per_class(paths, labels, 0.3, seed=seed, contents=contents)
        assert all(split[i] == split[i ^ 1] for i in range(16) if labels[i] == labels[i ^ 1])


@pytest.fixture
def labeled(tmp_path: Path) -> Path:
    return labeled_folder(tmp_path / "labeled", 18)


def test_training_never_sees_held_out_images(tiny_session: Session, labeled: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[np.ndarray] = []
    real_train = adapt_module.train_projection

    def spy(vectors, classes, settings, targets=None):  # type: ignore[no-untyped-def]
        seen.append(vectors.copy())
        return real_train(vectors, classes, settings, targets)

    monkeypatch.setattr(adapt_module, "train_projection", spy)
    result = adapt(tiny_session, str(labeled), "mine", heldout=0.34, settings=FAST)
    info = json.loads(result.adapter.info)
    held = set(info["heldout_ids"])
    assert result.heldout == len(held) == 6 and result.trained_on == 12
    record = tiny_session.store.feature_set(FeatureSet("tiny", "head_act", "gem"))
    ids, vectors = tiny_session.store.vectors(record.id)
    held_rows = {tuple(v) for i, v in zip(ids, vectors, strict=True) if int(i) in held}
    assert len(seen) == 1 and len(seen[0]) == 12
    assert not held_rows & {tuple(v) for v in seen[0]}
    images = tiny_session.store.images(held)
    assert {r.label for r in images.values()} == {"class0", "class1", "class2"}

    # Changing every held-out image changes nothing the adapter learned.
    for image in images.values():
        make_image(Path(image.path), seed=1000 + image.id)
    again = adapt(tiny_session, str(labeled), "mine", heldout=0.34, settings=FAST)
    np.testing.assert_array_equal(again.adapter.weights, result.adapter.weights)
    assert again.report.embedded == 6


def test_adapter_is_a_feature_set_for_index_and_search(tiny_session: Session, labeled: Path,
                                                       tmp_path: Path) -> None:
    result = adapt(tiny_session, str(labeled), "mine", settings=FAST)
    assert str(result.feature_set) == "tiny@head_act/gem:mine"
    assert result.before is not None and result.after is not None
    # The trained folder's adapted vectors are stored at once.
    adapted = tiny_session.store.feature_set(result.feature_set)
    assert tiny_session.store.count_vectors(adapted.id) == 18
    config = replace(tiny_session.config, adapter="mine", expand_k=0)
    session = Session(config, registry=tiny_session.registry, store=tiny_session.store)
    assert session.feature_set() == result.feature_set
    query = labeled / "class1" / "img01.png"
    hits = session.search(str(query)).hits
    assert hits and hits[0].path != str(query)

    # A new folder indexed with the adapter gets the base vectors, projected.
    other = tmp_path / "other"
    for i in range(4):
        make_image(other / "x" / f"{i}.png", seed=500 + i)
    assert session.index(str(other)).embedded == 4
    base = tiny_session.extractor(FeatureSet("tiny", "head_act", "gem"))
    ids, vectors = tiny_session.store.vectors(adapted.id)
    paths = tiny_session.store.images(ids)
    mine = [(i, v) for i, v in zip(ids, vectors, strict=True)
            if paths[int(i)].path.startswith(str(other))]
    expected = project(np.stack([base.embed_image(paths[int(i)].path) for i, _ in mine]),
                       result.adapter.weights)
    np.testing.assert_allclose(np.stack([v for _, v in mine]), expected, rtol=1e-4, atol=1e-5)

    # A conflicting model or layer is refused; an unknown adapter is named.
    with pytest.raises(FeatureSetError, match="projects tiny@head_act/gem"):
        session.feature_set(layer="block")
    with pytest.raises(NotIndexedError, match="no adapter named 'nope'.*known: mine"):
        tiny_session.feature_set(adapter="nope")


def test_retraining_replaces_the_old_adapters_vectors(tiny_session: Session,
                                                      labeled: Path) -> None:
    first = adapt(tiny_session, str(labeled), "mine", settings=FAST)
    old = tiny_session.store.feature_set(first.feature_set)
    second = adapt(tiny_session, str(labeled), "mine", settings=replace(FAST, seed=3))
    assert second.adapter.digest != first.adapter.digest
    sets = [r for r in tiny_session.store.feature_sets() if r.feature_set.adapter == "mine"]
    assert len(sets) == 1 and sets[0].preprocessing != old.preprocessing
    assert sets[0].preprocessing.endswith(f"|adapter:{second.adapter.digest}")
    assert tiny_session.store.count_vectors(sets[0].id) == 18


def test_adapt_refuses_what_it_cannot_learn(tiny_session: Session, labeled: Path,
                                            tmp_path: Path) -> None:
    one = labeled_folder(tmp_path / "one", 3, classes=1)
    with pytest.raises(EvaluationError, match="in 1 class folder.*at least two"):
        adapt(tiny_session, str(one), "x", settings=FAST)
    with pytest.raises(EvaluationError, match="from 0 to 0.9"):
        adapt(tiny_session, str(labeled), "x", heldout=1.0, settings=FAST)
    with pytest.raises(FeatureSetError, match="adapter name"):
        adapt(tiny_session, str(labeled), "../evil", settings=FAST)
    assert tiny_session.store.adapters() == []
    result = adapt(tiny_session, str(labeled), "all", heldout=0.0, settings=FAST)
    assert result.before is None and result.trained_on == 18
    small = labeled_folder(tmp_path / "small", 12, classes=3)  # 4 per class: 2 held out
    result = adapt(tiny_session, str(small), "small", settings=FAST)
    assert result.heldout == result.measured == 6 and result.before is not None


def test_feature_set_names_with_adapters_round_trip() -> None:
    fs = FeatureSet("onnx:/m/x.onnx", "a/b:c", "gem", "shoes-2")
    assert FeatureSet.parse(str(fs)) == fs and fs.base == FeatureSet("onnx:/m/x.onnx",
                                                                     "a/b:c", "gem")
    with pytest.raises(FeatureSetError):
        FeatureSet("lite0", "x", "gem", "a/b")


@pytest.mark.real
def test_adapt_gains_on_held_out_real_images(tmp_path: Path, cache_dir: Path,
                                             capsys: pytest.CaptureFixture[str],
                                             no_config_file: None) -> None:
    from semsearch.cli import main

    root = dataset("fashion200")  # only read
    code = main(["adapt", str(root), "--name", "fashion", "--model", "lite0", "--db",
                 str(tmp_path / "a.db"), "--cache-dir", str(cache_dir), "--json"])
    assert code == 0
    data = json.loads(capsys.readouterr().out)
    assert data["heldout"] == 60 and data["trained_on"] == 140
    assert data["after"]["map"] >= data["before"]["map"] + 0.05
    code = main(["search", str(root / "flipflops" / "141.jpg"), "--adapter", "fashion",
                 "--db", str(tmp_path / "a.db"), "--cache-dir", str(cache_dir), "--json"])
    hits = json.loads(capsys.readouterr().out)["hits"]
    assert code == 0 and sum(hit["label"] == "flipflops" for hit in hits) >= 8


def test_retraining_never_leaves_a_stale_index_in_use(tiny_session: Session, labeled: Path,
                                                      tmp_path: Path) -> None:
    config = replace(tiny_session.config, adapter="r", expand_k=0)
    session = Session(config, registry=tiny_session.registry, store=tiny_session.store)
    adapt(session, str(labeled), "r", settings=FAST)
    more = labeled_folder(tmp_path / "more", 6)
    session.index(str(more))
    session.search(str(more / "class0" / "img00.png"))  # builds and saves the index
    folder = session.catalog.folder
    assert len(list(folder.glob("*.json"))) == 1
    # The same training again gives the same weights: the set and its vectors stay.
    adapt(session, str(labeled), "r", settings=FAST)
    assert tiny_session.store.count_vectors(
        tiny_session.store.feature_set(session.feature_set()).id) == 24
    newest = labeled_folder(tmp_path / "newest", 3, classes=1)
    session.index(str(newest))
    hits = session.search(str(newest / "class0" / "img01.png"), k=30).hits
    assert {hit.path for hit in hits} >= {str(newest / "class0" / "img00.png"),
                                          str(newest / "class0" / "img02.png")}
    # Other weights: the old set goes, and so do its index files.
    adapt(session, str(labeled), "r", settings=replace(FAST, seed=7))
    assert list(folder.glob("*.json")) == []


def test_text_adapter_maps_images_to_their_folder_names(tiny_session: Session,
                                                        labeled: Path) -> None:
    from semsearch.query.text_model import CLASSES  # noqa: F401 - the sentence model is needed

    result = adapt(tiny_session, str(labeled), "words", settings=replace(FAST, epochs=80),
                   text=True)
    assert result.adapter.weights.shape[1] == 384 and result.after is not None
    assert result.before is None  # the tiny network has no ImageNet classifier to compare
    from semsearch.query.words import search_text

    hits = search_text(tiny_session, "class1", k=6, adapter="words").hits
    assert len(hits) == 6
    with pytest.raises(FeatureSetError, match="not trained for words"):
        adapt(tiny_session, str(labeled), "plain", settings=FAST)
        search_text(tiny_session, "class1", adapter="plain")


def test_text_adapter_from_captions(tiny_session: Session, labeled: Path,
                                    tmp_path: Path) -> None:
    from semsearch.errors import ConfigError
    from semsearch.evaluate.adapt import read_captions

    rows = ["path,caption"] + [
        f"{p.relative_to(labeled)},a picture of {'sunny' if 'class0' in str(p) else 'rainy'} "
        f"weather number {i % 3}" for i, p in enumerate(sorted(labeled.glob("*/*.png")))]
    (tmp_path / "captions.csv").write_text("\n".join(rows) + "\n")
    captions = read_captions(str(tmp_path / "captions.csv"), str(labeled))
    assert len(captions) == 18 and all(Path(p).is_file() for p in captions)
    result = adapt(tiny_session, str(labeled), "captioned", settings=replace(FAST, epochs=40),
                   captions=captions)
    assert result.adapter.weights.shape[1] == 384
    assert result.heldout >= 4 and result.after is not None
    info = json.loads(result.adapter.info)
    assert info["text"] is True and len(info["heldout_ids"]) == result.heldout
    (tmp_path / "bad.csv").write_text("only-one-column\n")
    with pytest.raises(ConfigError, match="expected `path,caption`"):
        read_captions(str(tmp_path / "bad.csv"), str(labeled))
    with pytest.raises(ConfigError, match="cannot read captions"):
        read_captions(str(tmp_path / "missing.csv"), str(labeled))
