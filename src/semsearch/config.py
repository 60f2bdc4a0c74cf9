"""One table of settings. CLI flags, environment variables (SEMSEARCH_<NAME>) and a TOML
config file resolve into a frozen Config; precedence is flag > environment > file > default."""

from __future__ import annotations

import dataclasses
import math
import os
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from semsearch.errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

ENV_PREFIX = "SEMSEARCH_"
APP_NAME = "semsearch"


def _whole(value: Any) -> int:
    # TOML gives bools and floats; `true` or 2.9 is not a count of anything.
    if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
        raise ValueError("must be a whole number")
    return int(value)


def _positive_int(value: Any) -> int:
    number = _whole(value)
    if number <= 0:
        raise ValueError("must be a positive whole number")
    return number


def _non_negative_int(value: Any) -> int:
    number = _whole(value)
    if number < 0:
        raise ValueError("must be zero or a positive whole number")
    return number


def _expand_k(value: Any) -> int:
    number = _non_negative_int(value)
    if number > 100:
        raise ValueError("must be at most 100 neighbours")
    return number


def _triple(value: Any) -> str:
    parts = [float(p) for p in str(value).split(",")]
    if len(parts) != 3 or not all(math.isfinite(p) for p in parts):
        raise ValueError("must be three numbers separated by commas, e.g. 127.5,127.5,127.5")
    return ",".join(f"{p:g}" for p in parts)


def _positive_float(value: Any) -> float:
    if isinstance(value, bool):
        raise ValueError("must be a number")
    number = float(value)
    if not (number > 0 and math.isfinite(number)):
        raise ValueError("must be a finite positive number")
    return number


def _optional_str(value: Any) -> str | None:
    text = str(value).strip()
    return text or None


def _path(value: Any) -> str:
    # An empty value (say an unset $DB in a script) must not quietly mean "the default".
    text = str(value).strip()
    if not text:
        raise ValueError("must not be empty")
    return text


def _token(value: Any) -> str | None:
    text = str(value).strip()
    if not text:
        return None
    if len(text) < 16 or not text.isascii() or not text.isprintable() or " " in text:
        raise ValueError("must be at least 16 printable ASCII characters without spaces")
    return text


def _choice(*choices: str) -> Callable[[Any], str]:
    def parse(value: Any) -> str:
        text = str(value).strip().lower()
        if text not in choices:
            raise ValueError(f"must be one of {', '.join(choices)}")
        return text

    return parse


def _index_string(value: Any) -> str:
    text = str(value).strip()
    if text.lower() in ("auto", "pgvector"):
        return text.lower()
    from semsearch.indexspec import IndexSpec

    try:
        return str(IndexSpec.parse(text))
    except ConfigError as exc:
        raise ValueError(str(exc)) from None


def _setting(default: Any, help: str, parse: Callable[[Any], Any]) -> Any:
    return field(default=default, metadata={"help": help, "parse": parse})


@dataclass(frozen=True)
class Config:
    """Resolved settings; build it with `resolve`, not by hand, so values are parsed."""

    db: str | None = _setting(
        None, "the catalogue: an SQLite file (default: semsearch.db in the user data folder) "
        "or a PostgreSQL URL postgresql://user:password@host/database (needs pgvector)",
        _path
    )
    cache_dir: str | None = _setting(
        None, "folder for exported ONNX graphs; default: the user cache folder", _path
    )
    model: str = _setting(
        "lite0+lite1+lite2", "backbone model (see `semsearch models`), or several joined by + "
        "whose vectors are concatenated", str
    )
    layer: str | None = _setting(
        None, "layer to embed with, by module name; default: the model's feature layer",
        _optional_str,
    )
    pool: str = _setting(
        "gem", "pooling of a layer's map: avg, max, gem (p=3) or gemP such as gem4, or flat", str
    )
    adapter: str | None = _setting(
        None, "adapter learned by `semsearch adapt` whose projection of its base feature set "
        "to index and search with", _optional_str,
    )
    flat_max_dims: int = _setting(
        200_000, "largest vector `flat` pooling may produce", _positive_int
    )
    metric: str = _setting(
        "cosine", "distance: cosine, euclidean, sqeuclidean, minkowski or ip", str
    )
    minkowski_p: float = _setting(3.0, "exponent p of the minkowski distance", _positive_float)
    expand_k: int = _setting(
        10, "database-side augmentation over this many nearest neighbours, outside queries "
        "expanded to match (0 or 1: off; at most 100; cosine metric only; left out above "
        "20,000 images)", _expand_k
    )
    index: str = _setting(
        "auto", "search index as a FAISS factory string: Flat (exact), HNSW32, IVF4096,Flat, "
        "OPQ32_128,IVF4096,PQ32,RFlat (,RFlat re-ranks from the full vectors on disk); pgvector "
        "(HNSW inside a PostgreSQL catalogue); auto: exact up to 200,000 vectors, above that "
        "OPQ32_128,IVF<4 sqrt n>,PQ32,RFlat (or pgvector for a PostgreSQL catalogue)",
        _index_string
    )
    nprobe: int = _setting(
        0, "IVF lists an approximate search visits; 0: nlist/128, at least 16",
        _non_negative_int
    )
    ef_search: int = _setting(
        0, "HNSW candidate list length at search time; 0: 256 (40 for pgvector)", _non_negative_int
    )
    refine_k: int = _setting(
        0, "candidates an ,RFlat index re-ranks with the full vectors; 0: max(16 k, 256)",
        _non_negative_int
    )
    index_on_disk: str = _setting(
        "auto", "keep IVF inverted lists in a file on disk (memory-mapped): yes, no, or auto "
        "(when they would take over a quarter of the RAM)", _choice("auto", "yes", "no")
    )
    k: int = _setting(10, "number of results a search returns", _positive_int)
    batch_size: int = _setting(32, "images per inference batch and per store transaction",
                               _positive_int)
    workers: int = _setting(
        0, "image-decoding threads; 0 means one per CPU core", _non_negative_int
    )
    threads: int = _setting(
        0, "inference threads; 0 means one per CPU core", _non_negative_int
    )
    max_pixels: int = _setting(
        120_000_000, "largest image (width x height) that is decoded; guards against "
        "decompression bombs (Pillow refuses above about 179 MP whatever this says)",
        _positive_int
    )
    onnx_size: int = _setting(
        0, "input size of an onnx:PATH model; 0: the model's own, or 224 if it has none",
        _non_negative_int
    )
    onnx_mean: str = _setting(
        "123.675,116.28,103.53", "per-channel mean (0-255 units) subtracted for onnx:PATH "
        "models", _triple
    )
    onnx_std: str = _setting(
        "58.395,57.12,57.375", "per-channel std (0-255 units) divided by for onnx:PATH models",
        _triple
    )
    onnx_layout: str = _setting(
        "nchw", "input layout of onnx:PATH models: nchw (PyTorch) or nhwc (Keras/TensorFlow)",
        _choice("nchw", "nhwc")
    )
    onnx_channels: str = _setting(
        "rgb", "channel order onnx:PATH models expect: rgb, or bgr (Caffe-style models); "
        "onnx_mean and onnx_std are in that order", _choice("rgb", "bgr")
    )
    runtime: str = _setting(
        "onnx", "inference engine: onnx (fast) or torch (the reference)", _choice("onnx", "torch")
    )
    engine: str = _setting(
        "local", "where `semsearch index` decodes and embeds: local (threads in this process) "
        "or ray (a Ray Data job on the cluster at ray_address; needs semsearch[ray])",
        _choice("local", "ray")
    )
    ray_address: str | None = _setting(
        None, "Ray cluster for engine ray: its head as HOST:PORT (e.g. 10.0.0.5:6379), or "
        "auto (one started on this machine); default: a new local one with a CPU per core",
        _optional_str
    )

    host: str = _setting(
        "127.0.0.1", "address `semsearch serve` listens on; another than loopback (e.g. "
        "0.0.0.0) serves other machines, and then needs a token", _path
    )
    token: str | None = _setting(
        None, "secret that every request to `semsearch serve` must carry (Authorization: "
        "Bearer, or the cookie set by opening /?token=...); generated and printed when the "
        "host is not loopback and none is set", _token
    )

    def db_path(self) -> Path:
        """Gives the catalogue path, defaulting to the user data folder."""
        if self.db:
            return Path(self.db).expanduser()
        from platformdirs import user_data_dir

        return Path(user_data_dir(APP_NAME)) / "semsearch.db"

    def cache_path(self) -> Path:
        """Gives the folder where exported graphs are cached."""
        if self.cache_dir:
            return Path(self.cache_dir).expanduser()
        from platformdirs import user_cache_dir

        return Path(user_cache_dir(APP_NAME))



def cores_or(count: int) -> int:
    """Gives count, or for 0 ("automatic") the number of CPU cores."""
    return count or (os.cpu_count() or 1)


@dataclass(frozen=True)
class Setting:
    name: str
    default: Any
    help: str

    @property
    def env_var(self) -> str:
        return ENV_PREFIX + self.name.upper()

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")


def settings() -> list[Setting]:
    """Gives every setting with its default and help, in table order."""
    return [Setting(f.name, f.default, f.metadata["help"]) for f in dataclasses.fields(Config)]


def settings_markdown() -> str:
    """Gives the settings as the Markdown table docs/settings.md holds (regenerate it with
    `python -c "from semsearch.config import settings_markdown; print(settings_markdown())"`)."""
    rows = ["| setting | flag | environment variable | default | meaning |",
            "|---|---|---|---|---|"]
    for s in settings():
        default = "(none)" if s.default is None else f"`{s.default}`"
        rows.append(f"| `{s.name}` | `{s.flag}` | `{s.env_var}` | {default} | {s.help} |")
    return "\n".join(rows)


def _parse(name: str, raw: Any, source: str) -> Any:
    parser = {f.name: f.metadata["parse"] for f in dataclasses.fields(Config)}[name]
    try:
        return parser(raw)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"setting {name!r} from {source}: {raw!r} {exc}") from None


def default_config_file(env: Mapping[str, str]) -> Path | None:
    """Gives the config file to read: $SEMSEARCH_CONFIG, else config.toml in the user config
    folder if it exists."""
    explicit = env.get(ENV_PREFIX + "CONFIG")
    if explicit:
        return Path(explicit).expanduser()
    from platformdirs import user_config_dir

    candidate = Path(user_config_dir(APP_NAME)) / "config.toml"
    return candidate if candidate.is_file() else None


def read_config_file(path: Path) -> dict[str, Any]:
    """Gives the settings in a TOML file; unknown names are an error that lists the known."""
    try:
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"config file {path} cannot be read: {exc}") from None
    known = {s.name for s in settings()}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(
            f"config file {path}: unknown setting(s) {', '.join(unknown)}; "
            f"known: {', '.join(sorted(known))}"
        )
    return data


def resolve(
    flags: Mapping[str, Any] | None = None,
    env: Mapping[str, str] | None = None,
    config_file: Path | None = None,
) -> Config:
    """Gives the Config from flags (None means not given), environment and config file."""
    env = os.environ if env is None else env
    file_values = read_config_file(config_file) if config_file else {}
    values: dict[str, Any] = {}
    for setting in settings():
        name = setting.name
        if flags is not None and flags.get(name) is not None:
            values[name] = _parse(name, flags[name], f"flag {setting.flag}")
        elif setting.env_var in env:
            values[name] = _parse(name, env[setting.env_var], f"${setting.env_var}")
        elif name in file_values:
            values[name] = _parse(name, file_values[name], f"config file {config_file}")
    return Config(**values)
