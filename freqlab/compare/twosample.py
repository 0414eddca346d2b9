"""Two-sample tests on feature vectors, each with a null that says how far two samples of the same data lie apart.

* :func:`mmd_test`: the unbiased MMD² (the KID form) with a Gaussian kernel (bandwidth: the median squared
  distance of the pooled sample) and its permutation null; ``p = (1 + #{null ≥ observed}) / (1 + permutations)``.
* :func:`classifier_test`: a classifier two-sample test (Lopez-Paz & Oquab 2017): a small MLP trained on half of
  each set, its accuracy on the other halves, and the exact one-sided binomial p-value against chance (0.5).
* :func:`fidelity_diversity_test`: improved precision and recall (Kynkäänniemi et al. 2019, k-NN balls) of a
  candidate against a reference half ``r1``, each beside what a second reference half ``r2`` scores: precision
  by Fisher's exact test (two independent samples), recall by McNemar's exact test (paired on ``r1``'s points).
* :func:`holm`: Holm's step-down adjustment of a family of p-values.

Pure torch and scipy; every function takes its device and dtype from its inputs and a ``torch.Generator`` for
whatever it draws.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

__all__ = ["standardize", "MMDResult", "mmd_test", "ClassifierResult", "classifier_test", "FidelityDiversity",
           "fidelity_diversity_test", "holm"]


def standardize(*sets: torch.Tensor) -> list[torch.Tensor]:
    """Every set minus the mean of all of them pooled, over their pooled standard deviation (features that do not
    vary get scale 1). Pooled, not one set's: a map that depends on one group's data only breaks the exchangeability
    the permutation null and the classifier's held-out score rely on (measured: held-out splits of dead leaves were
    called different on 4 of 20 seeds with the reference's own statistics)."""
    pooled = torch.cat(sets)
    mean = pooled.mean(dim=0)
    std = pooled.std(dim=0)
    std = torch.where(std > 1e-9, std, torch.ones_like(std))
    return [(s - mean) / std for s in sets]


def _sq_dists(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return torch.cdist(a, b).square()


class MMDResult(NamedTuple):
    mmd2: float          # the unbiased MMD² of the two samples
    null_mean: float     # the mean of its permutation null
    null_sd: float
    p: float             # permutation p-value, (1 + #{null >= observed}) / (1 + permutations)


def mmd_test(x: torch.Tensor, y: torch.Tensor, *, permutations: int, generator: torch.Generator) -> MMDResult:
    """Unbiased MMD² of ``x`` (m, d) and ``y`` (n, d) with a Gaussian kernel, and its permutation p-value.

    The kernel matrix of the pooled sample is computed once; each permutation relabels it (``a^T K a`` and ``a^T
    K 1`` for the indicator ``a`` of the first group), so the null costs one ``(permutations × N) @ (N × N)``
    product.
    """
    z = torch.cat([x, y]).to(torch.float64)
    m, n = len(x), len(y)
    if m < 2 or n < 2:
        raise ValueError(f"the MMD needs at least 2 samples a set, got {m} and {n}")
    d2 = _sq_dists(z, z)
    off = d2[~torch.eye(len(z), dtype=torch.bool, device=z.device)]
    scale = torch.median(off)
    kernel = torch.exp(-d2 / torch.where(scale > 0, scale, torch.ones_like(scale)))
    rows = kernel.sum(dim=1)
    total = rows.sum()

    def statistic(a: torch.Tensor) -> torch.Tensor:  # a: (B, N) indicators of the first group
        aka = ((a @ kernel) * a).sum(dim=1)
        ar = a @ rows
        bkb = total - 2 * ar + aka
        akb = ar - aka
        return (aka - m) / (m * (m - 1)) + (bkb - n) / (n * (n - 1)) - 2 * akb / (m * n)

    first = torch.zeros(1, m + n, dtype=z.dtype, device=z.device)
    first[0, :m] = 1
    observed = statistic(first)[0]
    order = torch.stack([torch.randperm(m + n, generator=generator) for _ in range(permutations)]).to(z.device)
    perm = torch.zeros(permutations, m + n, dtype=z.dtype, device=z.device)
    perm.scatter_(1, order[:, :m], 1.0)
    null = torch.cat([statistic(chunk) for chunk in perm.split(128)])
    p = (1 + int((null >= observed).sum())) / (1 + permutations)
    return MMDResult(float(observed), float(null.mean()), float(null.std()), p)


class ClassifierResult(NamedTuple):
    accuracy: float      # held-out accuracy of telling the two sets apart
    n_test: int          # held-out samples it was measured on
    p: float             # exact one-sided binomial p-value against 0.5


def classifier_test(x: torch.Tensor, y: torch.Tensor, *, generator: torch.Generator, hidden: int = 64,
                    steps: int = 300, lr: float = 1e-2, weight_decay: float = 1e-3) -> ClassifierResult:
    """A classifier two-sample test: an MLP (one hidden layer of ``hidden`` ReLU units) learns to tell ``x`` from
    ``y`` on half of each (equal numbers, full-batch Adam, ``steps`` steps), and is scored on the other halves.
    Under the null its held-out accuracy is Binomial(n, 0.5)/n."""
    from scipy.stats import binomtest

    n = min(len(x), len(y))
    if n < 4:
        raise ValueError(f"the classifier test needs at least 4 samples a set, got {len(x)} and {len(y)}")
    x = x[torch.randperm(len(x), generator=generator)[:n]].to(torch.float32)
    y = y[torch.randperm(len(y), generator=generator)[:n]].to(torch.float32)
    half = n // 2
    train = torch.cat([x[:half], y[:half]])
    labels = torch.cat([torch.zeros(half), torch.ones(half)]).to(train.device)
    test = torch.cat([x[half:], y[half:]])
    truth = torch.cat([torch.zeros(n - half), torch.ones(n - half)]).to(test.device)
    seed = int(torch.randint(0, 2**31 - 1, (1,), generator=generator))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = torch.nn.Sequential(torch.nn.Linear(x.shape[1], hidden), torch.nn.ReLU(),
                                  torch.nn.Linear(hidden, 1)).to(train.device)
    opt = torch.optim.Adam(net.parameters(), lr=lr, weight_decay=weight_decay)
    threads = torch.get_num_threads()
    if train.device.type == "cpu":
        torch.set_num_threads(1)  # matrices this small: a second thread costs more than it gives (10x, measured)
    try:
        with torch.enable_grad():
            for _ in range(steps):
                opt.zero_grad(set_to_none=True)
                loss = torch.nn.functional.binary_cross_entropy_with_logits(net(train)[:, 0], labels)
                loss.backward()
                opt.step()
        with torch.no_grad():
            correct = int(((net(test)[:, 0] > 0).float() == truth).sum())
    finally:
        torch.set_num_threads(threads)
    p = binomtest(correct, len(test), 0.5, alternative="greater").pvalue
    return ClassifierResult(correct / len(test), len(test), float(p))


class FidelityDiversity(NamedTuple):
    precision: float            # share of the candidate inside the reference's k-NN balls
    precision_reference: float  # the same share for a second reference sample (what the data itself scores)
    precision_p: float          # Fisher's exact test, one-sided: the candidate lower
    recall: float               # share of the reference inside the candidate's k-NN balls
    recall_reference: float     # the same share inside the second reference sample's balls
    recall_p: float             # McNemar's exact test (paired on the reference's points), one-sided: lower


def _radii(points: torch.Tensor, k: int) -> torch.Tensor:
    """Distance of each point to its k-th nearest neighbour among the others."""
    d = torch.cdist(points, points)
    return d.kthvalue(k + 1, dim=1).values  # +1: the point itself, at distance 0


def _inside(queries: torch.Tensor, centres: torch.Tensor, radii: torch.Tensor) -> torch.Tensor:
    """Whether each query lies in at least one ball (centre, radius)."""
    return (torch.cdist(queries, centres) <= radii[None, :]).any(dim=1)


def fidelity_diversity_test(r1: torch.Tensor, r2: torch.Tensor, c: torch.Tensor, *, k: int = 5) -> FidelityDiversity:
    """Precision and recall of ``c`` against the reference ``r1``, beside those of ``r2`` (a second reference
    sample of the same size), with one-sided exact tests that the candidate scores lower."""
    from scipy.stats import binomtest, fisher_exact

    r1, r2, c = (t.to(torch.float64) for t in (r1, r2, c))
    ref_radii = _radii(r1, k)
    in_ref_c = _inside(c, r1, ref_radii)
    in_ref_r2 = _inside(r2, r1, ref_radii)
    covered_c = _inside(r1, c, _radii(c, k))
    covered_r2 = _inside(r1, r2, _radii(r2, k))
    a, b = int(in_ref_c.sum()), int(in_ref_r2.sum())
    p_precision = fisher_exact([[a, len(c) - a], [b, len(r2) - b]], alternative="less").pvalue
    # McNemar: of the reference points covered by one sample and not the other, how many by the candidate only
    only_c, only_r2 = int((covered_c & ~covered_r2).sum()), int((~covered_c & covered_r2).sum())
    p_recall = binomtest(only_c, only_c + only_r2, 0.5, alternative="less").pvalue if only_c + only_r2 else 1.0
    return FidelityDiversity(a / len(c), b / len(r2), float(p_precision), float(covered_c.float().mean()),
                             float(covered_r2.float().mean()), float(p_recall))


def holm(pvalues: list[float]) -> list[float]:
    """Holm's step-down adjusted p-values (reject where adjusted ≤ α: the family-wise error stays ≤ α)."""
    order = sorted(range(len(pvalues)), key=lambda i: pvalues[i])
    adjusted = [0.0] * len(pvalues)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (len(pvalues) - rank) * pvalues[i]))
        adjusted[i] = running
    return adjusted
