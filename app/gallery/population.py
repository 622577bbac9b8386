"""The gallery as a population: every enrolled face scored against every identity.

The gallery audit (``app.gallery.audit``) and the calibration check on the enrolled
people (``app.gallery.calibration_check``) both need, for each face, its *identity score*
against every enrolled identity, computed the way ``/identify`` scores a probe (the card's
aggregation: the cosine with the identity's centroid, or with its best face), and its score
against its own identity without itself (leave-one-out). ``identity_scores`` yields those
in blocks of faces: one matrix product per block, never a Python loop over pairs, so a
10,000-face gallery is scored in a few seconds.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from faces.model_contract import Aggregation

# Upper bound on the floats of one (faces × identities or faces) score block: 64 MiB.
_MAX_BLOCK_FLOATS = 1 << 24


@dataclass(frozen=True)
class Population:
    """Faces (ids, L2-normalised embeddings) and the identity each belongs to:
    ``codes[i]`` indexes ``names``."""

    face_ids: list[str]
    names: list[str]
    codes: np.ndarray  # int64, one per face
    embeddings: np.ndarray  # float32, faces × dim, unit rows

    @classmethod
    def of(
        cls, face_ids: Sequence[str], identities: Sequence[str], embeddings: np.ndarray
    ) -> Population:
        """From parallel lists (an index snapshot); embeddings are normalised here."""
        emb = np.asarray(embeddings, dtype=np.float32)
        if emb.ndim != 2 or len(emb) != len(face_ids) or len(identities) != len(face_ids):
            raise ValueError("face ids, identities and embedding rows must match in number")
        norms = np.linalg.norm(emb, axis=1, keepdims=True)
        if not np.allclose(norms, 1.0, atol=1e-4):  # an index snapshot already is: no copy
            norms[norms == 0] = 1.0
            emb = (emb / norms).astype(np.float32)
        names, codes = np.unique(np.asarray(identities, dtype=object), return_inverse=True)
        return cls(list(face_ids), [str(n) for n in names], codes.astype(np.int64).reshape(-1), emb)

    @property
    def faces(self) -> int:
        return len(self.face_ids)

    @property
    def identities(self) -> int:
        return len(self.names)

    def counts(self) -> np.ndarray:
        """Faces per identity (by code)."""
        return np.bincount(self.codes, minlength=self.identities)


@dataclass(frozen=True)
class ScoreBlock:
    """Scores of the faces ``rows`` (face indices): ``scores[i, j]`` is face ``rows[i]``
    against identity ``j``, with its own identity's column at -inf;
    ``own[i]`` is its score against its own identity without itself (NaN when it is that
    identity's only face)."""

    rows: np.ndarray
    scores: np.ndarray
    own: np.ndarray


def identity_scores(
    population: Population,
    aggregation: Aggregation,
    probes: np.ndarray | None = None,
    max_block_floats: int = _MAX_BLOCK_FLOATS,
) -> Iterator[ScoreBlock]:
    """Every face (or only the face indices ``probes``) against every identity, block by
    block (see the module docstring)."""
    n, m = population.faces, population.identities
    if n == 0:
        return
    wanted = np.arange(n) if probes is None else np.asarray(probes, dtype=np.int64)
    emb, codes = population.embeddings, population.codes
    counts = population.counts()
    if aggregation == "centroid":
        sums = np.zeros((m, emb.shape[1]), dtype=np.float64)
        np.add.at(sums, codes, emb)
        sum_norms = np.linalg.norm(sums, axis=1)
        centroids = (sums / np.where(sum_norms == 0, 1.0, sum_norms)[:, None]).astype(np.float32)
        block = max(1, max_block_floats // max(m, 1))
        for start in range(0, len(wanted), block):
            rows = wanted[start : start + block]
            e, own_code = emb[rows], codes[rows]
            scores = e @ centroids.T
            # Leave-one-out own score: (S - e) · e / |S - e|, from S · e = |S| × centroid · e
            dot = scores[np.arange(len(e)), own_code].astype(np.float64) * sum_norms[own_code]
            rest = np.sqrt(np.maximum(sum_norms[own_code] ** 2 - 2 * dot + 1.0, 0.0))
            alone = counts[own_code] < 2
            own = np.where(alone, np.nan, (dot - 1.0) / np.where(rest > 1e-9, rest, 1.0))
            scores[np.arange(len(e)), own_code] = -np.inf
            yield ScoreBlock(rows, scores, own.astype(np.float64))
        return
    # Best face: face-to-face products, reduced to a maximum per identity (columns grouped
    # by identity once, so one ``maximum.reduceat`` per block).
    order = np.argsort(codes, kind="stable")
    grouped, grouped_codes = emb[order], codes[order]
    starts = np.flatnonzero(np.r_[True, grouped_codes[1:] != grouped_codes[:-1]])
    position = np.empty(n, dtype=np.int64)
    position[order] = np.arange(n)
    block = max(1, max_block_floats // n)
    for start in range(0, len(wanted), block):
        rows = wanted[start : start + block]
        e, own_code = emb[rows], codes[rows]
        faces = e @ grouped.T
        faces[np.arange(len(e)), position[rows]] = -np.inf  # not against itself
        scores = np.maximum.reduceat(faces, starts, axis=1)
        own = scores[np.arange(len(e)), own_code].astype(np.float64)
        own[~np.isfinite(own)] = np.nan
        scores[np.arange(len(e)), own_code] = -np.inf
        yield ScoreBlock(rows, scores, own)


def sample_probes(population: Population, max_products: int, seed: int = 0) -> np.ndarray | None:
    """Face indices of whole identities drawn at random so that probes × identities stays
    under ``max_products`` (None: every face fits). Used by the calibration check, whose
    unit is the identity, on very large galleries."""
    m = max(population.identities, 1)
    if population.faces * m <= max_products:
        return None
    budget = max(1, max_products // m)
    counts = population.counts()
    order = np.random.default_rng(seed).permutation(population.identities)
    chosen = order[: max(2, int(np.searchsorted(np.cumsum(counts[order]), budget)))]
    return np.flatnonzero(np.isin(population.codes, chosen))
