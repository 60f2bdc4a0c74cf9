"""Retrieval quality on ConvNet Playground's own datasets, side by side with its published
scores (../shared/datasets/reference/convnet_playground_scores.json).

For iconic200 and fashion200 (and the Caltech-101 subset, which has no published scores) it
prints, as weighted precision at 15 (the original's score, in percent) and mAP:
* the original's best configuration per Keras model (best layer and metric);
* our default configuration (what `semsearch index` / `search` use with no options);
* our label-free configurations, and the best of them chosen by the mean over the datasets
  (one configuration for all, not the best per dataset).
Every image is a query against all the others, exactly as the published scores were made.

Run:  python benchmarks/quality.py              (about 3 minutes on 2 cores)
      python benchmarks/quality.py --quick      (iconic200 and fashion200 only)
The last line is `iconic200_default=.. fashion200_default=..
iconic200_best_published=.. fashion200_best_published=..` (on one line).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import numpy.typing as npt

from semsearch.config import resolve
from semsearch.embed.pooling import pool
from semsearch.featureset import FeatureSet
from semsearch.images import find_images
from semsearch.index.manifest import EXPAND_ALPHA
from semsearch.index.metric import Metric
from semsearch.ranking import Scores, evaluate
from semsearch.session import Session
from semsearch.vectors import PCAWhitening, concatenate, database_augmentation

DATASETS = Path(__file__).resolve().parents[1].parent / "shared" / "datasets"
REFERENCE = DATASETS / "reference" / "convnet_playground_scores.json"
MODELS = ("lite0", "lite1", "lite2")
POOLINGS = ("avg", "max", "gem")
BATCH = 32


def published_best(dataset: str) -> dict[str, tuple[float, str]]:
    """Gives, per Keras model, its best published mean score and where it was reached."""
    scores = json.loads(REFERENCE.read_text())["scores"][dataset]
    best: dict[str, tuple[float, str]] = {}
    for model, by_metric in scores.items():
        for metric, by_layer in by_metric.items():
            for layer, entry in by_layer.items():
                if model not in best or entry["mean"] > best[model][0]:
                    best[model] = (float(entry["mean"]), f"{layer}, {metric}")
    return best


def embed(session: Session, dataset: Path, model: str) -> dict[str, npt.NDArray[np.float32]]:
    """Gives, per pooling, the model's `_head_act` vectors of every image of the dataset
    (one forward pass per batch; maps are pooled at once, never all kept)."""
    extractor = session.extractor(FeatureSet(model, "_head_act", "avg"))
    files = [f.path for f in find_images(dataset)]
    parts: dict[str, list[npt.NDArray[np.float32]]] = {p: [] for p in POOLINGS}
    for start in range(0, len(files), BATCH):
        pixels = np.stack([extractor.decode(path)[0] for path in files[start:start + BATCH]])
        maps = extractor.backbone.run(pixels)["_head_act"]
        for pooling in POOLINGS:
            parts[pooling].append(pool(maps, pooling))
    return {pooling: np.concatenate(chunks) for pooling, chunks in parts.items()}


def configurations(feats: dict[str, dict[str, npt.NDArray[np.float32]]]
                   ) -> dict[str, tuple[npt.NDArray[np.float32], Metric]]:
    """Gives the label-free configurations measured, by name."""
    out: dict[str, tuple[npt.NDArray[np.float32], Metric]] = {}
    for model, by_pooling in feats.items():
        for pooling, vectors in by_pooling.items():
            for metric in ("cosine", "euclidean"):
                out[f"{model}@_head_act/{pooling} {metric}"] = (vectors, Metric(metric))
    gem = [by_pooling["gem"] for by_pooling in feats.values()]
    both = concatenate(gem)
    out["lite0+lite1+lite2@_head_act/gem cosine"] = (both, Metric("cosine"))
    # Whitening learned on the gallery itself (no labels), kept to 128 dimensions.
    out["lite0+lite1+lite2@_head_act/gem cosine + PCA-whitening 128"] = (
        PCAWhitening.fit(both, dims=128).apply(both), Metric("cosine"))
    for k in (5, 10):
        out[f"lite0@_head_act/gem cosine + DBA k={k}"] = (
            database_augmentation(gem[0], k=k, alpha=EXPAND_ALPHA), Metric("cosine"))
        out[f"lite0+lite1+lite2@_head_act/gem cosine + DBA k={k}"] = (
            database_augmentation(both, k=k, alpha=EXPAND_ALPHA), Metric("cosine"))
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="skip the Caltech-101 subset")
    ap.add_argument("--cache-dir", default=None, help="ONNX export cache to reuse")
    args = ap.parse_args()
    names = ["iconic200", "fashion200"] + ([] if args.quick else ["caltech101"])
    for name in names:
        if not (DATASETS / name).is_dir():
            sys.exit(f"dataset folder {DATASETS / name} is missing")

    results: dict[str, dict[str, Scores]] = {}
    with tempfile.TemporaryDirectory(prefix="semsearch-quality-") as tmp:
        config = resolve({"db": str(Path(tmp) / "q.db"),
                          "cache_dir": args.cache_dir or str(Path(tmp) / "cache")}, env={})
        with Session(config) as session:
            # The configuration `semsearch index` / `search` use with no options.
            default_name = f"{session.feature_set()} {session.metric()}" + (
                f" + DBA k={config.expand_k}" if config.expand_k > 1 else "")
            for name in names:
                started = time.perf_counter()
                folder = DATASETS / name
                labels = [f.label for f in find_images(folder)]
                feats = {m: embed(session, folder, m) for m in MODELS}
                scored = {cfg: evaluate(vectors, labels, metric).overall
                          for cfg, (vectors, metric) in configurations(feats).items()}
                if default_name not in scored:
                    sys.exit(f"the default configuration {default_name!r} is not measured here")
                results[name] = scored
                print(f"\n== {name}: {len(labels)} images, {len(set(labels))} classes "
                      f"({time.perf_counter() - started:.0f} s)")
                if name != "caltech101":
                    print("   original (published), best per model:")
                    for model, (score, where) in sorted(published_best(name).items(),
                                                        key=lambda kv: -kv[1][0]):
                        print(f"     {score:6.2f}  {model:<15} {where}")
                print("   ours, label-free:               weighted P@15    mAP")
                for cfg, s in sorted(scored.items(), key=lambda kv: -kv[1].weighted_p15):
                    mark = "  <- default" if cfg == default_name else ""
                    print(f"     {cfg:<50} {s.weighted_p15:6.2f}  {s.map:6.3f}{mark}")
    _report(results, default_name)
    return 0


def _report(results: dict[str, dict[str, Scores]], default_name: str) -> None:
    names = list(results)
    mean = {cfg: np.mean([results[n][cfg].weighted_p15 for n in names])
            for cfg in results[names[0]]}
    best = max(mean, key=lambda cfg: mean[cfg])
    print(f"\nbest label-free configuration by mean over {', '.join(names)}: {best}")
    print(f"default configuration: {default_name}")
    for name in names:
        s, d = results[name][best], results[name][default_name]
        print(f"  {name:<11} best {s.weighted_p15:6.2f} (mAP {s.map:.3f})   "
              f"default {d.weighted_p15:6.2f} (mAP {d.map:.3f})")
    published = {n: max(v[0] for v in published_best(n).values())
                 for n in ("iconic200", "fashion200")}
    print("targets for the default: >= 97 on iconic200, >= 88 on fashion200")
    print(f"iconic200_default={results['iconic200'][default_name].weighted_p15:.2f} "
          f"fashion200_default={results['fashion200'][default_name].weighted_p15:.2f} "
          f"iconic200_best_published={published['iconic200']:.1f} "
          f"fashion200_best_published={published['fashion200']:.1f}")


if __name__ == "__main__":
    sys.exit(main())
