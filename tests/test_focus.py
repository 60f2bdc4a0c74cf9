"""Focused search: re-weighting the classifier's input channels by one class's weights turns
"similar" into "similar with respect to that class"."""

from __future__ import annotations

import glob
import json
from pathlib import Path

import pytest
from PIL import Image
from tests.conftest import dataset

from semsearch.errors import FeatureSetError
from semsearch.featureset import FeatureSet
from semsearch.query.focus import channel_weights, resolve_class
from semsearch.session import Session


def test_focus_needs_the_classifier_input(tiny_session: Session, gallery: Path) -> None:
    tiny_session.index(str(gallery), feature_set=FeatureSet("tiny", "block", "avg"))
    record = tiny_session.store.feature_set(FeatureSet("tiny", "block", "avg"))
    with pytest.raises(FeatureSetError, match="needs a feature set at head_act"):
        channel_weights(tiny_session, record, 3)
    tiny_session.index(str(gallery))
    record = tiny_session.store.feature_set(FeatureSet("tiny", "head_act", "gem"))
    weights = channel_weights(tiny_session, record, 3)
    assert weights.shape == (32,) and (weights >= 0).all() and weights.any()


def test_class_names_resolve_exactly() -> None:
    session = None  # an exact name needs no sentence model
    assert resolve_class(session, "  Tabby Cat ").name == "tabby cat"  # type: ignore[arg-type]
    assert resolve_class(session, "sport car").index == 817  # type: ignore[arg-type]


@pytest.mark.real
def test_focus_turns_the_ranking_towards_its_class(tmp_path: Path, cache_dir: Path,
                                                   capsys: pytest.CaptureFixture[str],
                                                   no_config_file: None) -> None:
    from semsearch.cli import main

    root = dataset("iconic200")
    # A real pair: a banana beside a tractor, in one square picture.
    banana = Image.open(root / "banana" / "191.jpg").convert("RGB").resize((160, 320))
    tractor_path = sorted(glob.glob(str(root / "tractor" / "*.jpg")))[0]
    tractor = Image.open(tractor_path).convert("RGB").resize((160, 320))
    pair = Image.new("RGB", (320, 320))
    pair.paste(banana, (0, 0))
    pair.paste(tractor, (160, 0))
    pair.save(tmp_path / "pair.jpg")
    common = ["--db", str(tmp_path / "f.db"), "--cache-dir", str(cache_dir), "--model",
              "lite0", "--expand-k", "0", "-q"]
    assert main(["index", str(root), *common]) == 0
    capsys.readouterr()

    def labels(*extra: str) -> list[str]:
        assert main(["search", str(tmp_path / "pair.jpg"), "--json", *common, *extra]) == 0
        return [hit["label"] for hit in json.loads(capsys.readouterr().out)["hits"]]

    plain = labels()
    on_banana = labels("--focus", "banana")
    on_tractor = labels("--focus", "tractor")
    assert on_banana.count("banana") >= 8 and on_banana.count("banana") > plain.count("banana")
    assert on_tractor.count("tractor") >= 8
    assert main(["search", "banana", "--focus", "tractor", *common]) == 1
    assert "--focus applies to an image query" in capsys.readouterr().err
