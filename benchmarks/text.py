"""Text-to-image retrieval, zero-shot, on the shared labeled datasets.

Each class's name is the query (written as words: `eiffeltower` -> "eiffel tower",
`car_side` -> "car side"); the images of that class are the relevant ones. Images are
ranked by the cosine of the query's sentence embedding and each image's ConSE text vector
(its top classes' name embeddings weighted by probability), with the default model. The
baseline, measured in the same run, is a random ranking (its mAP is the classes' share of
the images). Then, for each dataset, a text adapter (`semsearch adapt --text`) learned from
70% of each class is measured against zero-shot on the held-out 30%.

Run:  python benchmarks/text.py                (about 2 minutes on 2 cores)
      python benchmarks/text.py --model lite0
Last line: `iconic200_text_map=<x> caltech101_text_map=<y>`.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from semsearch.config import resolve
from semsearch.evaluate.adapt import adapt
from semsearch.query.words import index_text, text_vectors
from semsearch.ranking import average_precision
from semsearch.session import Session

DATASETS = Path(__file__).resolve().parents[1].parent / "shared" / "datasets"
# Folder names of iconic200 and fashion200 written as the words a person would type.
WORDS = {"eiffeltower": "eiffel tower", "empirestatebuilding": "empire state building",
         "ferrariyellow": "yellow ferrari", "flipflops": "flip flops", "menjeans": "men's jeans",
         "menshirt": "men's shirt", "mentshirt": "men's t-shirt", "sportshoe": "sports shoe",
         "womenheels": "women's high heels", "womenjeans": "women's jeans",
         "womenshirt": "women's shirt", "womentshirt": "women's t-shirt",
         "water_lilly": "water lily", "Faces": "face", "Faces_easy": "face"}


def words(folder: str) -> str:
    return WORDS.get(folder, folder.replace("_", " ").lower())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--datasets", default="iconic200,fashion200,caltech101")
    ap.add_argument("--model", default=None)
    ap.add_argument("--cache-dir", default=None)
    args = ap.parse_args()
    summary = {}
    with tempfile.TemporaryDirectory(prefix="semsearch-text-") as tmp:
        values = {"db": str(Path(tmp) / "t.db"),
                  "cache_dir": args.cache_dir or str(Path(tmp) / "cache")}
        if args.model:
            values["model"] = args.model
        with Session(resolve(values, env={})) as session:
            model = session.text_model()
            for name in args.datasets.split(","):
                root = DATASETS / name
                started = time.perf_counter()
                index_text(session, str(root))
                ids, vectors = text_vectors(session, str(root))
                images = session.store.images(ids)
                labels = np.array([Path(images[int(i)].path).parent.name for i in ids])
                classes = sorted(set(labels))
                queries = model.embed([words(c) for c in classes])
                ranking = np.argsort(-(queries @ vectors.T), axis=1)
                rel = labels[ranking] == np.array(classes)[:, None]
                ap_ = average_precision(rel)
                p10 = rel[:, :10].mean(axis=1)
                chance = np.mean([np.mean(labels == c) for c in classes])
                worst = np.argsort(ap_)[:3]
                print(f"{name:<11} {len(ids):5d} images {len(classes):4d} class queries: "
                      f"mAP {ap_.mean():.3f} (random {chance:.3f}, {ap_.mean() / chance:.0f}x)"
                      f"  P@10 {p10.mean():.3f}   ({time.perf_counter() - started:.0f} s)")
                print("   hardest: " + ", ".join(f'"{words(classes[i])}" {ap_[i]:.2f}'
                                                  for i in worst))
                summary[name] = ap_.mean()
                # Adapted: a text adapter learned from 70% of each class, measured (with
                # zero-shot beside it) by the class names among the other 30%.
                learned = adapt(session, str(root), f"text-{name}", text=True)
                b, a = learned.before, learned.after
                assert a is not None
                zero = f"mAP {b.map:.3f} P@10 {b.precision_at_k:.3f}" if b else "n/a"
                print(f"   held out ({learned.measured} images): zero-shot {zero} -> adapted "
                      f"mAP {a.map:.3f} P@10 {a.precision_at_k:.3f} "
                      f"(trained in {learned.train_seconds:.0f} s)")
    print(f"{session.config.model}, zero-shot (ConSE over ImageNet class names)")
    print(" ".join(f"{name}_text_map={value:.3f}" for name, value in summary.items()
                   if name in ("iconic200", "caltech101")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
