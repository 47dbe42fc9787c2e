"""MobileID neuron selection: keep teacher neurons that carry identity, drop nuisance-driven and redundant ones.

Every (per-neuron standardised) teacher neuron is scored on the labelled part of the training pool:

* **identity discriminativeness** ``f_j``: Fisher ratio (between-identity variance of identity means over the
  mean within-identity variance) on CelebA identities with at least two images;
* **identity-related attributes (IA)** ``a_j``: the largest effect size (Cohen's d for binary attributes,
  |Pearson r| x 2 for age) over attributes that belong to the person (``IDENTITY_ATTRIBUTES``);
* **identity-non-related attributes (NA)** ``n_j``: the same over attributes a person changes from photo to
  photo: expression, pose/quality, make-up, accessories, hair style and facial hair (``NUISANCE_ATTRIBUTES``).

The selection maximises an energy with unary terms and a pairwise redundancy penalty over binary select
variables ``s``::

    E(s) = sum_j s_j (z(f_j) + alpha z(a_j) - beta z(n_j))  -  lambda sum_{j<k} s_j s_k rho_jk^2

where ``z`` standardises a score over neurons and ``rho`` is the correlation between two neurons. It is
solved greedily for a given number of neurons K (add the neuron with the best marginal gain, K times):
exact for the unary part and a standard approximation for the quadratic one.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from training.data.labels import PoolLabels

# Attributes of the person: stable across photos, so neurons that encode them help to tell people apart.
IDENTITY_ATTRIBUTES = {
    "Male": "sex",
    "utk_male": "sex",
    "Young": "age",
    "utk_age": "age",
    "Pale_Skin": "skin tone",
    "utk_race0": "ethnicity",
    "utk_race1": "ethnicity",
    "utk_race2": "ethnicity",
    "utk_race3": "ethnicity",
    "utk_race4": "ethnicity",
    "Big_Nose": "face shape",
    "Pointy_Nose": "face shape",
    "Narrow_Eyes": "face shape",
    "Oval_Face": "face shape",
    "Big_Lips": "face shape",
    "Bushy_Eyebrows": "face shape",
    "Arched_Eyebrows": "face shape",
    "High_Cheekbones": "face shape",
    "Chubby": "face shape",
    "Double_Chin": "face shape",
    "Bald": "hair loss (slow)",
    "Receding_Hairline": "hair loss (slow)",
}
# Attributes of the photo or of the day: they change for one person, so a neuron driven by them adds noise.
NUISANCE_ATTRIBUTES = {
    "Smiling": "expression",
    "Mouth_Slightly_Open": "expression",
    "Blurry": "photo quality",
    "Eyeglasses": "accessory",
    "Wearing_Hat": "accessory",
    "Wearing_Earrings": "accessory",
    "Wearing_Necklace": "accessory",
    "Wearing_Necktie": "accessory",
    "Heavy_Makeup": "make-up",
    "Wearing_Lipstick": "make-up",
    "Rosy_Cheeks": "make-up/lighting",
    "Bangs": "hair style",
    "Straight_Hair": "hair style",
    "Wavy_Hair": "hair style",
    "Black_Hair": "hair colour (dye)",
    "Blond_Hair": "hair colour (dye)",
    "Brown_Hair": "hair colour (dye)",
    "Gray_Hair": "hair colour (dye)",
    "5_o_Clock_Shadow": "facial hair (shaves)",
    "Goatee": "facial hair (shaves)",
    "Mustache": "facial hair (shaves)",
    "No_Beard": "facial hair (shaves)",
    "Sideburns": "facial hair (shaves)",
    "Bags_Under_Eyes": "fatigue/lighting",
    "Attractive": "subjective",
}


@dataclass
class SelectionConfig:
    size: int = 0  # neurons to keep; 0 = all
    alpha: float = 1.0  # weight of identity-related attributes
    beta: float = 0.5  # weight of nuisance attributes (subtracted)
    redundancy: float = 2.0  # lambda on squared correlations
    # energy | random | all; or pca: not neurons but the `size` leading whitened principal components of all of
    # them (training.neurons.whitened_components), the target lever of issue 13; or inherit: the neurons and
    # standardisation of the run train.init_from names (training.stages.select.inherit_selection)
    method: str = "energy"


def fisher_ratio(z: NDArray[np.float32], identity: NDArray[np.int64]) -> NDArray[np.float64]:
    """Between-identity over within-identity variance per neuron, on identities with >= 2 images."""
    ids, counts = np.unique(identity[identity >= 0], return_counts=True)
    keep = np.isin(identity, ids[counts >= 2])
    zk, ik = z[keep].astype(np.float64), identity[keep]
    _, inverse = np.unique(ik, return_inverse=True)
    sums = np.zeros((inverse.max() + 1, z.shape[1]))
    np.add.at(sums, inverse, zk)
    n = np.bincount(inverse)[:, None]
    means = sums / n
    within = np.sum((zk - means[inverse]) ** 2, axis=0) / (len(zk) - len(n))
    between = np.sum(n * (means - zk.mean(axis=0)) ** 2, axis=0) / (len(n) - 1)
    ratio: NDArray[np.float64] = between / np.maximum(within, 1e-12)
    return ratio


def attribute_effects(z: NDArray[np.float32], labels: PoolLabels) -> NDArray[np.float64]:
    """``(A, D)`` effect size of every attribute on every neuron (NaN-free; 0 if too few labels)."""
    effects = np.zeros((len(labels.attribute_names), z.shape[1]))
    for a, name in enumerate(labels.attribute_names):
        col = labels.attributes[:, a]
        known = ~np.isnan(col)
        if known.sum() < 50:
            continue
        zk, ck = z[known].astype(np.float64), col[known]
        if name == "utk_age":
            cc = (ck - ck.mean()) / ck.std()
            effects[a] = 2 * np.abs(np.mean(zk * cc[:, None], axis=0) / zk.std(axis=0))
            continue
        pos, neg = zk[ck > 0], zk[ck < 0]
        if len(pos) < 20 or len(neg) < 20:
            continue
        pooled = np.sqrt((pos.var(axis=0) + neg.var(axis=0)) / 2)
        effects[a] = np.abs(pos.mean(axis=0) - neg.mean(axis=0)) / np.maximum(pooled, 1e-12)
    return effects


def _standard(x: NDArray[np.float64]) -> NDArray[np.float64]:
    z: NDArray[np.float64] = (x - x.mean()) / (x.std() + 1e-12)
    return z


@dataclass
class NeuronScores:
    fisher: list[float]
    identity_attr: list[float]
    nuisance_attr: list[float]
    unary: list[float]
    top_identity_attr: list[str]
    top_nuisance_attr: list[str]


def score_neurons(
    z: NDArray[np.float32], labels: PoolLabels, cfg: SelectionConfig
) -> tuple[NeuronScores, NDArray[np.float64]]:
    """Per-neuron scores and the ``(A, D)`` attribute-effect matrix."""
    effects = attribute_effects(z, labels)
    names = labels.attribute_names
    ia = [i for i, n in enumerate(names) if n in IDENTITY_ATTRIBUTES]
    na = [i for i, n in enumerate(names) if n in NUISANCE_ATTRIBUTES]
    fisher = fisher_ratio(z, labels.identity)
    ia_max, na_max = effects[ia].max(axis=0), effects[na].max(axis=0)
    unary = _standard(np.log(fisher)) + cfg.alpha * _standard(ia_max) - cfg.beta * _standard(na_max)
    return NeuronScores(
        fisher=fisher.tolist(),
        identity_attr=ia_max.tolist(),
        nuisance_attr=na_max.tolist(),
        unary=unary.tolist(),
        top_identity_attr=[names[ia[k]] for k in effects[ia].argmax(axis=0)],
        top_nuisance_attr=[names[na[k]] for k in effects[na].argmax(axis=0)],
    ), effects


def greedy_select(unary: NDArray[np.float64], corr: NDArray[np.float64], size: int, redundancy: float) -> list[int]:
    """Greedy maximisation of ``sum unary - redundancy * sum_{pairs} corr^2`` over subsets of ``size``."""
    penalty = np.zeros_like(unary)
    chosen: list[int] = []
    available = np.ones(len(unary), dtype=bool)
    for _ in range(size):
        gain = np.where(available, unary - redundancy * penalty, -np.inf)
        best = int(np.argmax(gain))
        chosen.append(best)
        available[best] = False
        penalty += corr[best] ** 2
    return sorted(chosen)


def select(
    z: NDArray[np.float32], labels: PoolLabels, cfg: SelectionConfig, seed: int = 0
) -> tuple[list[int], NeuronScores, NDArray[np.float64]]:
    """Selected neuron indices (sorted), their scores and the attribute effects."""
    if cfg.method not in ("energy", "random", "all", "pca"):
        raise ValueError(f"selection.method must be energy, random, all or pca, not {cfg.method!r}")
    scores, effects = score_neurons(z, labels, cfg)
    d = z.shape[1]
    size = cfg.size or d
    if cfg.method == "all" or size >= d:
        chosen = list(range(d))
    elif cfg.method == "pca":
        chosen = list(range(size))  # component indices: the select stage builds the basis
    elif cfg.method == "random":
        chosen = sorted(np.random.default_rng(seed).choice(d, size, replace=False).tolist())
    else:
        # np.corrcoef is typed matrix-or-scalar; here d > size, so d >= 2 and it is the (D, D) matrix (asarray: no copy)
        corr = np.asarray(np.corrcoef(z.astype(np.float64), rowvar=False))
        np.fill_diagonal(corr, 0.0)
        chosen = greedy_select(np.array(scores.unary), corr, size, cfg.redundancy)
    return chosen, scores, effects


def save_selection(
    path: Path, chosen: list[int], scores: NeuronScores, cfg: SelectionConfig, teacher_dims: dict[str, int]
) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        json.dumps(
            {
                "config": asdict(cfg),
                "teacher_dims": teacher_dims,
                "selected": chosen,
                "count": len(chosen),
                "identity_attributes": IDENTITY_ATTRIBUTES,
                "nuisance_attributes": NUISANCE_ATTRIBUTES,
                "scores": asdict(scores),
            },
            indent=1,
        )
    )


def plot_selection(
    path: Path,
    chosen: list[int],
    scores: NeuronScores,
    effects: NDArray[np.float64],
    attribute_names: list[str],
    title: str,
) -> None:
    """Heat map of attribute effects, neurons ordered selected-then-dropped by unary score, plus score bars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    unary = np.array(scores.unary)
    selected = np.zeros(len(unary), dtype=bool)
    selected[chosen] = True
    order = np.concatenate(
        [
            np.flatnonzero(selected)[np.argsort(-unary[selected])],
            np.flatnonzero(~selected)[np.argsort(-unary[~selected])],
        ]
    )
    groups = [n for n in attribute_names if n in IDENTITY_ATTRIBUTES] + [
        n for n in attribute_names if n in NUISANCE_ATTRIBUTES
    ]
    rows = [attribute_names.index(n) for n in groups]
    fig, (ax0, ax1) = plt.subplots(2, 1, figsize=(14, 11), gridspec_kw={"height_ratios": [5, 1]}, sharex=True)
    ax0.imshow(effects[rows][:, order], aspect="auto", cmap="magma", vmin=0, vmax=np.percentile(effects, 99))
    ax0.set_yticks(
        range(len(groups)), [f"{'IA' if n in IDENTITY_ATTRIBUTES else 'NA'}  {n}" for n in groups], fontsize=7
    )
    ax0.axvline(selected.sum() - 0.5, color="cyan", lw=2)
    ax0.axhline(sum(n in IDENTITY_ATTRIBUTES for n in groups) - 0.5, color="white", lw=1)
    ax0.set_title(f"{title}: attribute effect size per neuron (left of cyan line: {selected.sum()} selected)")
    ax1.bar(range(len(order)), unary[order], color=np.where(selected[order], "tab:blue", "tab:gray"), width=1.0)
    ax1.plot(range(len(order)), np.log(np.array(scores.fisher))[order], "k.", ms=2, label="log Fisher (identity)")
    ax1.set_ylabel("unary score")
    ax1.set_xlabel("neurons (selected, then dropped; each by unary score)")
    ax1.legend(loc="upper right")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
