"""An index named by one string, a FAISS factory string (`Flat`, `HNSW32`,
`OPQ32_128,IVF4096,PQ32,RFlat`), parsed and checked once; settings and indexes both read it."""

from __future__ import annotations

import re
from dataclasses import dataclass

from semsearch.errors import ConfigError

REFINE_SUFFIX = ",RFlat"

@dataclass(frozen=True)
class IndexSpec:
    """An index named by a factory string; "Flat" is the exact index."""

    factory: str

    @classmethod
    def parse(cls, text: str) -> IndexSpec:
        """Gives the spec a factory string names, checked by FAISS; ConfigError otherwise."""
        cleaned = re.sub(r"\s+", "", text)
        if not cleaned:
            raise ConfigError("an index needs a FAISS factory string, e.g. Flat, HNSW32 or "
                              "IVF4096,PQ32")
        if cleaned.lower() == "flat":
            return cls("Flat")
        core = cleaned[:-len(REFINE_SUFFIX)] if cleaned.endswith(REFINE_SUFFIX) else cleaned
        if "IDMap" in core or "Refine" in core or "RFlat" in core:
            raise ConfigError(f"index {text!r}: ids and re-ranking are managed by semsearch; "
                              "drop IDMap/Refine and end the string with ,RFlat to re-rank "
                              "from the full vectors on disk")
        import faiss

        try:
            faiss.index_factory(8 if "PQ" not in core else 64, core)
        except RuntimeError as exc:
            # FAISS's message about the dimension check is not about the string itself.
            if "multiple" not in str(exc) and "divisible" not in str(exc):
                first = str(exc).strip().splitlines()[-1] if str(exc).strip() else ""
                raise ConfigError(f"index {text!r} is not a FAISS factory string FAISS can "
                                  f"build ({first}); examples: Flat, HNSW32, IVF4096,Flat, "
                                  "OPQ32_128,IVF4096,PQ32,RFlat") from None
        return cls(cleaned)

    @property
    def exact(self) -> bool:
        return self.factory == "Flat"

    @property
    def refine(self) -> bool:
        return self.factory.endswith(REFINE_SUFFIX)

    @property
    def core(self) -> str:
        return self.factory[:-len(REFINE_SUFFIX)] if self.refine else self.factory

    @property
    def nlist(self) -> int:
        """Gives the IVF list count the string names (0 if it is not an IVF index)."""
        match = re.search(r"IVF(\d+)", self.core)
        return int(match.group(1)) if match else 0

    @property
    def tag(self) -> str:
        """Gives a file-name-safe form of the string."""
        return re.sub(r"[^A-Za-z0-9]+", "_", self.factory).strip("_")

    def __str__(self) -> str:
        return self.factory
