"""LogME: how well frozen features suit a labelled task, without training anything.

You, Liu, Wang and Long, "LogME: Practical Assessment of Pre-trained Models for Transfer
Learning", ICML 2021. Each class becomes a one-vs-rest target ``t`` (1 for the class, 0
otherwise), modelled as a Bayesian linear regression on the features ``F``::

    t = F w + noise,   w ~ N(0, I / alpha),   noise ~ N(0, 1 / beta)

The log marginal likelihood of ``t`` (the evidence) is maximised over ``alpha`` and ``beta``
by a fixed-point iteration that, after one SVD of ``F``, costs only O(k) per step
(k = min(N, D)). The score is the maximised evidence divided by N, averaged over the classes:
higher means the features explain the labels better with a simpler linear model. It is
unit-free: it ranks backbones on one dataset, and cannot be read as an accuracy.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

# The authors' code stops after 11 steps. When a class is unrelated to the features the
# evidence keeps rising as alpha grows without bound, and 11 steps stop well short of it; each
# step costs O(k), so iterate longer.
MAX_ITERATIONS = 100
TOLERANCE = 1e-3


@dataclass(frozen=True)
class Evidence:
    """The maximised evidence of one target.

    Attributes:
        alpha: Precision of the prior on the weights.
        beta: Precision of the noise.
        log_evidence: log p(t | F, alpha, beta) at the optimum, not divided by N.
    """

    alpha: float
    beta: float
    log_evidence: float


@dataclass(frozen=True)
class FeatureSpectrum:
    """The SVD of a feature matrix, shared by every class's target.

    Attributes:
        u: Left singular vectors, N x k.
        sigma: Squared singular values (eigenvalues of F^T F), length k.
        num_samples: N.
        dim: D, the feature dimension.
    """

    u: np.ndarray
    sigma: np.ndarray
    num_samples: int
    dim: int

    @classmethod
    def of(cls, features: np.ndarray) -> FeatureSpectrum:
        features = np.asarray(features, dtype=np.float64)
        u, singular, _ = np.linalg.svd(features, full_matrices=False)
        return cls(u=u, sigma=singular**2, num_samples=features.shape[0], dim=features.shape[1])


def maximise_evidence(spectrum: FeatureSpectrum, target: np.ndarray) -> Evidence:
    """Finds alpha and beta that maximise the evidence of ``target`` by fixed-point iteration.

    With ``x = U^T t`` (the target in the features' principal directions), the posterior mean
    ``m = beta A^-1 F^T t`` for ``A = alpha I + beta F^T F`` has, along direction i, squared
    length ``(beta s_i x_i / (alpha + beta sigma_i))^2``; the fit ``F m`` shrinks ``x_i`` by
    ``beta sigma_i / (alpha + beta sigma_i)``. So every quantity is a sum over k terms.
    """
    n, dim, sigma = spectrum.num_samples, spectrum.dim, spectrum.sigma
    target = np.asarray(target, dtype=np.float64)
    x = spectrum.u.T @ target
    x2 = x**2
    # The part of t outside the span of F: no choice of w can fit it.
    outside = max(float(target @ target - x2.sum()), 0.0)

    alpha, beta = 1.0, 1.0
    for _ in range(MAX_ITERATIONS):
        m_norm2, residual2 = _fit(alpha, beta, sigma, x2, outside)
        gamma = float((beta * sigma / (alpha + beta * sigma)).sum())
        # Floors keep a perfectly fitted or an all-zero target from dividing by zero.
        new_alpha = gamma / max(m_norm2, 1e-12)
        new_beta = (n - gamma) / max(residual2, 1e-12)
        converged = abs((new_alpha / new_beta) / (alpha / beta) - 1) < TOLERANCE
        alpha, beta = new_alpha, new_beta
        if converged:
            break

    m_norm2, residual2 = _fit(alpha, beta, sigma, x2, outside)
    # log|A| over all D directions: the D - k directions F does not span contribute alpha.
    log_det = float(np.log(alpha + beta * sigma).sum()) + (dim - len(sigma)) * math.log(alpha)
    log_evidence = (
        dim / 2 * math.log(alpha)
        + n / 2 * math.log(beta)
        - alpha / 2 * m_norm2
        - beta / 2 * residual2
        - log_det / 2
        - n / 2 * math.log(2 * math.pi)
    )
    return Evidence(alpha=alpha, beta=beta, log_evidence=log_evidence)


def _fit(
    alpha: float, beta: float, sigma: np.ndarray, x2: np.ndarray, outside: float
) -> tuple[float, float]:
    """Squared norms of the posterior mean ``m`` and of the residual ``t - F m``."""
    denominator = (alpha + beta * sigma) ** 2
    m_norm2 = float((beta**2 * sigma * x2 / denominator).sum())
    residual2 = float((alpha**2 * x2 / denominator).sum()) + outside
    return m_norm2, residual2


def logme_score(features: np.ndarray, labels: np.ndarray) -> float:
    """LogME of ``features`` for classification ``labels``: mean over classes of evidence / N.

    Args:
        features: N x D frozen features.
        labels: N class indices (any integers; each distinct value is a class).

    Returns:
        The score; higher means a better fit. Comparable between backbones on the same
        images, not between datasets.
    """
    labels = np.asarray(labels)
    spectrum = FeatureSpectrum.of(features)
    scores = [
        maximise_evidence(spectrum, (labels == c).astype(np.float64)).log_evidence
        / spectrum.num_samples
        for c in np.unique(labels)
    ]
    return float(np.mean(scores))
