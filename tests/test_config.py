"""Settings: one table, resolved from flags, environment and a config file; all documented."""

from __future__ import annotations

from pathlib import Path

import pytest

from semsearch.config import Config, resolve, settings, settings_markdown
from semsearch.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]


def test_precedence_is_flag_env_file_default(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text('k = 7\nbatch_size = 8\nmetric = "ip"\n')
    env = {"SEMSEARCH_BATCH_SIZE": "16", "SEMSEARCH_METRIC": "euclidean"}
    config = resolve({"metric": "minkowski"}, env=env, config_file=cfg)
    assert (config.metric, config.batch_size, config.k, config.model) == (
        "minkowski", 16, 7, "lite0+lite1+lite2")


def test_bad_values_name_their_source(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"\$SEMSEARCH_K"):
        resolve({}, env={"SEMSEARCH_K": "many"})
    with pytest.raises(ConfigError, match="--batch-size"):
        resolve({"batch_size": "0"}, env={})
    with pytest.raises(ConfigError, match="onnx, torch"):
        resolve({"runtime": "tf"}, env={})


def test_unknown_config_file_keys_are_listed(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text("modle = 'lite1'\n")
    with pytest.raises(ConfigError, match="modle"):
        resolve({}, env={}, config_file=cfg)
    cfg.write_text("k = [")
    with pytest.raises(ConfigError, match="cannot be read"):
        resolve({}, env={}, config_file=cfg)


def test_defaults() -> None:
    assert resolve({}, env={}) == Config()


def test_docs_list_every_setting() -> None:
    text = (ROOT / "docs" / "settings.md").read_text()
    assert settings_markdown() in text, "regenerate docs/settings.md from settings_markdown()"
    for setting in settings():
        assert f"`{setting.name}`" in text, setting.name
        assert setting.env_var in text, setting.env_var
        assert setting.flag in text, setting.flag
