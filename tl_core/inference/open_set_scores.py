"""Scores of how unlike the training images an input is (higher: more unlike), from the pooled
backbone features or the logits the model computes anyway.

The candidates measured in ``bench/open_set.py`` (which one a run keeps is in
:mod:`tl_core.inference.open_set`):
    knn          1 - cosine similarity to the k-th nearest training feature (Sun et al., 2022,
                 "Out-of-distribution detection with deep nearest neighbors").
    mahalanobis  the smallest Mahalanobis distance to a class mean, with one covariance shared
                 by the classes (Lee et al., 2018), shrunk towards a multiple of the identity
                 (Ledoit and Wolf, 2004) since there are fewer images than feature dimensions.
    energy       minus the log-sum-exp of the logits (Liu et al., 2020, "Energy-based
                 out-of-distribution detection").
    max_softmax  1 - the top softmax probability (Hendrycks and Gimpel, 2017): the baseline.

Each score also has *held-out* scores for the labelled images themselves: for each image, the
score it gets from statistics that never saw it (leave-one-out for knn, k-fold for mahalanobis).
A threshold chosen on those accepts the promised share of new images of the known classes; one
chosen on the images the statistics were fitted on would accept nearly every new unknown too.
"""

from __future__ import annotations

import torch

# Similarities are computed this many query rows at a time: (rows x bank) floats at the peak.
CHUNK_ROWS = 1024
MAHALANOBIS_FOLDS = 5


def normalized(features: torch.Tensor) -> torch.Tensor:
    """Rows scaled to unit length (cosine similarity is then a matrix product)."""
    return torch.nn.functional.normalize(features.float(), dim=1)


def kth_neighbour_distance(queries: torch.Tensor, bank: torch.Tensor, k: int) -> torch.Tensor:
    """1 - cosine similarity to the k-th nearest bank row, for unit-length ``queries``.

    Written with a matrix product and ``topk`` only, so the same lines export to ONNX and
    torch.export (see :class:`tl_core.inference.reliable_head.ReliableHead`).
    """
    return kth_distance(queries @ bank.T, min(k, bank.shape[0]))


def kth_distance(similarity: torch.Tensor, k: int) -> torch.Tensor:
    return 1.0 - similarity.topk(k, dim=1).values[:, -1]


def knn_scores(
    bank: torch.Tensor, features: torch.Tensor, k: int, exclude: torch.Tensor | None = None
) -> torch.Tensor:
    """1 - the cosine similarity of each row of ``features`` to its k-th nearest bank row.

    Args:
        bank: (M, D) unit-length training features.
        features: (N, D) features to score (any length; normalised here).
        k: Which neighbour (1: the nearest).
        exclude: (N,) for each row, the index of a bank row to leave out (its own, for
            leave-one-out scores), or -1 for none.
    """
    queries = normalized(features)
    out = torch.empty(len(queries))
    k = max(1, min(k, len(bank) - (exclude is not None)))
    for start in range(0, len(queries), CHUNK_ROWS):
        similarity = queries[start : start + CHUNK_ROWS] @ bank.T
        if exclude is not None:
            rows = torch.arange(len(similarity))
            own = exclude[start : start + CHUNK_ROWS]
            kept = own >= 0
            similarity[rows[kept], own[kept]] = -float("inf")
        out[start : start + CHUNK_ROWS] = kth_distance(similarity, k)
    return out


def knn_heldout_scores(features: torch.Tensor, bank_rows: torch.Tensor, k: int) -> torch.Tensor:
    """Each labelled image's knn score against the bank without itself (leave-one-out).

    Args:
        features: (N, D) every labelled image's features.
        bank_rows: The indices into ``features`` that make the bank, in bank order.
        k: As for :func:`knn_scores`.
    """
    bank = normalized(features[bank_rows])
    exclude = torch.full((len(features),), -1, dtype=torch.long)
    exclude[bank_rows] = torch.arange(len(bank_rows))
    return knn_scores(bank, features, k, exclude)


def shrunk_precision(centred: torch.Tensor) -> torch.Tensor:
    """The inverse of a Ledoit-Wolf shrunk covariance of ``centred`` rows (N, D)."""
    x = centred.double()
    n, d = x.shape
    covariance = x.T @ x / n
    mu = torch.trace(covariance) / d
    delta = ((covariance - mu * torch.eye(d, dtype=x.dtype)) ** 2).sum() / d
    # The spread of the sample covariance's estimate, per Ledoit and Wolf (2004):
    # sum_i ||x_i x_i' - S||^2 = sum_i ||x_i||^4 - n ||S||^2.
    beta = ((x * x).sum(dim=1) ** 2).sum() - n * (covariance**2).sum()
    beta = beta / (n * n * d)
    shrinkage = float(min(beta, delta) / delta) if delta > 0 else 1.0
    shrunk = (1 - shrinkage) * covariance + shrinkage * mu * torch.eye(d, dtype=x.dtype)
    return torch.linalg.pinv(shrunk, hermitian=True).float()


def fit_mahalanobis(
    features: torch.Tensor, labels: torch.Tensor, num_classes: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Class means (C, D) and the shared, shrunk precision matrix (D, D)."""
    features = features.float()
    means = torch.stack(
        [
            features[labels == c].mean(dim=0) if (labels == c).any() else features.mean(dim=0)
            for c in range(num_classes)
        ]
    )
    return means, shrunk_precision(features - means[labels])


def mahalanobis_scores(
    means: torch.Tensor, precision: torch.Tensor, features: torch.Tensor
) -> torch.Tensor:
    """The smallest Mahalanobis distance (squared) of each row to a class mean."""
    features = features.float()
    # (f - m)' P (f - m) = f'Pf - 2 f'Pm + m'Pm, for every class at once.
    projected = features @ precision
    own = (projected * features).sum(dim=1, keepdim=True)
    cross = projected @ means.T
    centre = ((means @ precision) * means).sum(dim=1)
    return (own - 2 * cross + centre).min(dim=1).values


def mahalanobis_heldout_scores(
    features: torch.Tensor, labels: torch.Tensor, num_classes: int, seed: int = 0
) -> torch.Tensor:
    """Each labelled image's score from class means and covariance fitted on the other folds."""
    order = torch.randperm(len(features), generator=torch.Generator().manual_seed(seed))
    scores = torch.empty(len(features))
    for fold in range(MAHALANOBIS_FOLDS):
        held = order[fold::MAHALANOBIS_FOLDS]
        kept = torch.ones(len(features), dtype=torch.bool)
        kept[held] = False
        means, precision = fit_mahalanobis(features[kept], labels[kept], num_classes)
        scores[held] = mahalanobis_scores(means, precision, features[held])
    return scores


def energy_scores(logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """Minus the free energy: -T log sum exp(logits / T), negated so that higher is more unlike."""
    return -temperature * torch.logsumexp(logits.float() / temperature, dim=1)


def max_softmax_scores(logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    return 1.0 - (logits.float() / temperature).softmax(dim=1).max(dim=1).values
