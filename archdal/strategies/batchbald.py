"""BatchBALD (Kirsch, van Amersfoort & Gal 2019): the batch that greedily maximises the
mutual information between its points' joint labels and the model, I(y₁…y_B; w), with
the T dropout samples of `mc_joint` as the posterior's draws (one mask per sample for
the whole pool, so sample t is one model for every point).

Greedy step n adds the point x maximising H(y₁…y_{n−1}, y_x) − E_w H(y_x | w); the
batch's own conditional entropies are a constant. The joint entropy is kept through
configurations c of the chosen points' labels, each with a weight π_c and a posterior
over the T samples, W_c,t ∝ Π_i p(y_i = c_i | w_t):

    H(y₁…y_{n−1}, y_x) = H(y₁…y_{n−1}) + Σ_c π_c H(Σ_t W_c,t p(y_x | w_t)),

so a candidate's score is a weighted entropy of mixtures, and no product of n
probabilities (which would underflow) is ever formed. While C^(n−1) ≤ M (`configs`)
every configuration is enumerated (π_c its probability: exact); beyond, M configurations
are drawn from p(y₁…y_{n−1}) (π_c = 1/M) and each greedy step extends every one by a
label drawn from its conditional p(y_x | c), an ancestral sample of the grown batch.

Cost per step: K·N·T·C for K ≤ M configurations and N candidates, in chunks of the pool
so at most `BLOCK_ELEMENTS` mixture entries (float64, 128 MiB) exist at once; `candidates`
restricts the pool to its top BALD points first (0: the whole pool).
"""

from __future__ import annotations

import torch

from archdal.pool import MC_JOINT, PoolView, entropy
from archdal.strategies.base import REGISTRY, Strategy, top_n

BLOCK_ELEMENTS = 1 << 24


class Configurations:
    """Label configurations of the points chosen so far: weights π (K) and posteriors
    over the T samples W (K×T, rows sum to 1). Starts as the empty batch."""

    def __init__(self, samples: int, device: torch.device):
        self.weights = torch.ones(1, dtype=torch.float64, device=device)
        self.posterior = torch.full((1, samples), 1 / samples, dtype=torch.float64, device=device)
        self.sampled = False
        # the mixture block, reused by every step: a fresh 128 MiB block each step costs
        # more in page faults than the scoring itself
        self.scratch = torch.empty(0, dtype=torch.float64, device=device)

    def conditional_entropy(self, probs: torch.Tensor) -> torch.Tensor:
        """Σ_c π_c H(y_x | c) for each candidate x of `probs` (N×T×C), in bounded blocks."""
        k, classes = len(self.weights), probs.shape[2]
        rows = max(1, BLOCK_ELEMENTS // (k * classes))
        need = min(rows, len(probs)) * k * classes
        if len(self.scratch) < need:
            self.scratch = torch.empty(need, dtype=torch.float64, device=probs.device)
        out = torch.empty(len(probs), dtype=torch.float64, device=probs.device)
        for s in range(0, len(probs), rows):
            block = probs[s : s + rows].double()  # n×T×C
            mixture = self.scratch[: len(block) * k * classes].view(len(block), k, classes)
            torch.matmul(self.posterior, block, out=mixture)  # p(y_x | c) = Σ_t W_c,t p(y_x | w_t)
            torch.special.entr(mixture, out=mixture)  # −p log p, 0 at p = 0
            out[s : s + rows] = mixture.sum(dim=2) @ self.weights
        return out

    def extend(self, probs: torch.Tensor, limit: int, rng: torch.Generator) -> None:
        """Add a chosen point with per-sample probabilities `probs` (T×C): every
        configuration × every label while there are at most `limit`, else `limit`
        sampled configurations (each existing sample extended by a label drawn from its
        conditional; a first overflow draws `limit` from the exact enumeration)."""
        probs = probs.double()
        k, classes = len(self.weights), probs.shape[1]
        joint = self.posterior[:, :, None] * probs[None]  # K×T×C: π-free p(c, y | w_t)
        label_given_c = joint.sum(dim=1)  # K×C: p(y | c)
        if not self.sampled and k * classes <= limit:  # exact enumeration
            weights = (self.weights[:, None] * label_given_c).flatten()
            posterior = joint.permute(0, 2, 1).reshape(k * classes, -1)
        elif not self.sampled:  # first overflow: draw `limit` configurations of the exact joint
            exact = (self.weights[:, None] * label_given_c).flatten()
            draws = torch.multinomial(exact.cpu(), limit, replacement=True, generator=rng)
            draws = draws.to(probs.device)
            posterior = joint.permute(0, 2, 1).reshape(k * classes, -1)[draws]
            weights = torch.full((limit,), 1 / limit, dtype=torch.float64, device=probs.device)
            self.sampled = True
        else:  # extend each sampled configuration by a label from its conditional
            labels = torch.multinomial(label_given_c.cpu(), 1, generator=rng).squeeze(1)
            posterior = joint[torch.arange(k, device=probs.device), :, labels.to(probs.device)]
            weights = self.weights
        self.weights = weights
        # an impossible configuration (π = 0) keeps an all-zero row, which adds nothing
        self.posterior = posterior / posterior.sum(dim=1, keepdim=True).clamp_min(1e-300)


def mean_sample_entropy(probs: torch.Tensor) -> torch.Tensor:
    """E_w H(y_x | w) per point of `probs` (N×T×C)."""
    return entropy(probs.flatten(0, 1).double()).view(probs.shape[:2]).mean(dim=1)


def joint_entropy(probs: torch.Tensor, configs: int, rng: torch.Generator) -> float:
    """H(y₁…y_n) of the points of `probs` (n×T×C), added in order as the greedy adds them."""
    state = Configurations(probs.shape[1], probs.device)
    total = 0.0
    for i in range(len(probs)):
        total += float(state.conditional_entropy(probs[i : i + 1])[0])
        state.extend(probs[i], configs, rng)
    return total


def batchbald(
    probs: torch.Tensor, n: int, rng: torch.Generator, configs: int = 1000
) -> torch.Tensor:
    """Greedy BatchBALD on per-sample probabilities `probs` (N×T×C): n positions."""
    own = mean_sample_entropy(probs)
    state = Configurations(probs.shape[1], probs.device)
    chosen = torch.zeros(len(probs), dtype=torch.bool, device=probs.device)
    picks = torch.empty(n, dtype=torch.long, device=probs.device)
    for step in range(n):
        gain = state.conditional_entropy(probs) - own
        pick = int(gain.masked_fill(chosen, -torch.inf).argmax())
        picks[step], chosen[pick] = pick, True
        if step + 1 < n:
            state.extend(probs[pick], configs, rng)
    return picks


def select_batchbald(
    view: PoolView,
    n: int,
    rng: torch.Generator,
    batchbald_configs: int = 1000,
    batchbald_candidates: int = 0,
) -> torch.Tensor:
    probs = view.mc_joint
    pool = torch.arange(len(probs), device=probs.device)
    if 0 < batchbald_candidates < len(probs):
        mean = probs.mean(dim=1)
        bald = entropy(mean.double()) - mean_sample_entropy(probs)
        pool = top_n(bald, max(batchbald_candidates, n))
    return pool[batchbald(probs[pool], n, rng, batchbald_configs)]


REGISTRY.register(
    Strategy(
        "batchbald",
        frozenset({MC_JOINT}),
        select_batchbald,
        ("batchbald_configs", "batchbald_candidates"),
    )
)
