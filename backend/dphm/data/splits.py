"""Training / held-out split of the synthetic ICT-FaceKit data, shared by training and evaluation.

ICT-FaceKit is a linear model, so "subjects" are identity weight vectors and "scans" are
(identity, expression-weight) pairs. The split is defined by construction, not by a list:

- **Identities.** Training identities are the rows of a seeded N(0,1) draw with
  :data:`TRAIN_IDENTITY_SEED`; held-out identities come from an independent stream
  (:data:`HELDOUT_IDENTITY_SEED`). Continuous draws never coincide, and the held-out stream is
  never used by training. Mirrored training identities (augmentation) are training data only.
- **Expressions.** An expression is a sparse ARKit-style combination of 1–4 active ICT shapes
  (often with their left/right partner, often with some ``jawOpen``), weights in [0.25, 1].
  Its *combination* is the set of active shape names (sides merged). A combination with ≥ 2
  members is **held out** when ``crc32(sorted names) % HELDOUT_MODULUS == 0``: training never
  draws it (rejection sampling), held-out expressions are drawn only from it. Single shapes are
  always training vocabulary. Held-out weights come from their own seed stream too.

Every evaluation (``dphm.train.evaluate``, benchmarks) draws its heads with the ``heldout_*``
functions, so numbers are always on unseen identities and unseen expression combinations.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence

import numpy as np

TRAIN_IDENTITY_SEED = 1_000
TRAIN_EXPRESSION_SEED = 2_000
HELDOUT_IDENTITY_SEED = 9_001
HELDOUT_EXPRESSION_SEED = 9_002
HELDOUT_MODULUS = 5


def _base_name(name: str) -> str:
    return name[:-2] if name.endswith(("_L", "_R")) else name


def combination_key(active: Sequence[str]) -> tuple[str, ...]:
    """The combination of an expression: sorted set of active shape names with sides merged."""
    return tuple(sorted({_base_name(n) for n in active}))


def is_heldout_combination(active: Sequence[str]) -> bool:
    key = combination_key(active)
    return len(key) >= 2 and zlib.crc32("|".join(key).encode()) % HELDOUT_MODULUS == 0


def identity_weights(n: int, seed: int, n_modes: int = 100) -> np.ndarray:
    """(n, n_modes) float32 N(0,1) identity weights of one seed stream."""
    return np.random.default_rng(seed).standard_normal((n, n_modes)).astype(np.float32)


def training_identity_weights(n: int, n_modes: int = 100) -> np.ndarray:
    return identity_weights(n, TRAIN_IDENTITY_SEED, n_modes)


def heldout_identity_weights(n: int, n_modes: int = 100) -> np.ndarray:
    return identity_weights(n, HELDOUT_IDENTITY_SEED, n_modes)


def _one_expression(names: Sequence[str], index: dict[str, int], rng: np.random.Generator) -> np.ndarray:
    w = np.zeros(len(names), np.float32)
    k = rng.choice([1, 2, 3, 4], p=[0.35, 0.35, 0.2, 0.1])
    for j in rng.choice(len(names), size=k, replace=False):
        w[j] = rng.uniform(0.25, 1.0)
        name = names[j]
        if name.endswith(("_L", "_R")) and rng.random() < 0.6:  # symmetric expression
            partner = name[:-1] + ("R" if name.endswith("L") else "L")
            if partner in index:
                w[index[partner]] = np.clip(w[j] * rng.uniform(0.8, 1.1), 0.0, 1.0)
    if "jawOpen" in index and rng.random() < 0.25:
        w[index["jawOpen"]] = max(w[index["jawOpen"]], rng.uniform(0.1, 0.8))
    return w


def expression_weights(n: int, names: Sequence[str], seed: int, heldout: bool) -> np.ndarray:
    """(n, E) float32 expression weights from one stream, restricted to one side of the split."""
    rng = np.random.default_rng(seed)
    index = {nm: i for i, nm in enumerate(names)}
    out = np.zeros((n, len(names)), np.float32)
    i = 0
    while i < n:
        w = _one_expression(names, index, rng)
        active = [names[j] for j in np.flatnonzero(w)]
        if is_heldout_combination(active) == heldout:
            out[i] = w
            i += 1
    return out


def training_expression_weights(n: int, names: Sequence[str]) -> np.ndarray:
    return expression_weights(n, names, TRAIN_EXPRESSION_SEED, heldout=False)


def heldout_expression_weights(n: int, names: Sequence[str]) -> np.ndarray:
    return expression_weights(n, names, HELDOUT_EXPRESSION_SEED, heldout=True)
