"""BAIT (Ash, Goel, Krishnamurthy & Kakade 2021, "Gone Fishing: Neural Active Learning
with Fisher Embeddings"): the batch S minimising tr((M_S)⁻¹ F), the last layer's
Fisher information of the pool F against that of the labelled set, found greedily
forward to 2B points and backward to B.

The Fisher of a point is I(x) = (diag p − p pᵀ) ⊗ h hᵀ for softmax probabilities p and
penultimate embedding h, i.e. V Vᵀ with V = A ⊗ h and A's columns √p_y (e_y − p). F is its
mean over labelled and pool points; M_S = λI + (Σ_{x ∈ L} I(x) + B·Σ_{x ∈ S} I(x)) / (|L| +
B), regularised by λ: as in the authors' code (`bait_sampling.py`), a pick weighs B times a
labelled point (the paper's plain mean over L ∪ S would give both the same weight, which
lets λ and the labelled set swamp the picks as B grows). Each greedy step scores every point
by Woodbury, tr((M + σVVᵀ)⁻¹F) = tr(M⁻¹F) − tr((σI + Vᵀ M⁻¹ V)⁻¹ Vᵀ M⁻¹ F M⁻¹ V) (σ = +1 to
add, −1 to remove), and keeps per point only the small matrices Vᵀ M⁻¹ V and Vᵀ M⁻¹ F M⁻¹ V,
updated at each step from M⁻¹'s rank-k change: no N×(C·D) matrix. M⁻¹ and M⁻¹FM⁻¹ are
updated in place, and the backward steps score only the 2B forward picks.

Bounds: F and M⁻¹ are P×P with P = C·d. When C·D exceeds `dim` (default 2048; 10 classes
× 512 dims is 5120), embeddings are projected onto their top ⌊dim / C⌋ principal
directions (of the uncentred second moment, what h hᵀ sums), so P ≤ dim and the three
P×P float64 matrices take at most 96 MiB; with C·D ≤ dim the computation is exact.
`classes` keeps, per point, only the columns of A for its k most probable classes (the
top-k approximation of "Fast Fishing", Huseljic et al. 2024), so the per-point matrices
are k×k (exact when k ≥ C). Memory beyond the inputs: 3·P² + 2·N·k² + N·d floats (64-bit).
"""

from __future__ import annotations

import torch

from archdal.pool import EMBEDDINGS, LABELED_EMBEDDINGS, LABELED_PROBS, PROBS, PoolView
from archdal.strategies.base import REGISTRY, Strategy

BLOCK_ELEMENTS = 1 << 23


def principal_projection(blocks: list[torch.Tensor], dim: int) -> torch.Tensor:
    """D×dim: the top eigenvectors of Σ h hᵀ over the rows of `blocks`."""
    second = sum(b.T @ b for b in blocks)
    _, vectors = torch.linalg.eigh(second)
    return vectors[:, -dim:].flip(1)


def fisher_factors(probs: torch.Tensor, classes: int) -> torch.Tensor:
    """A (N×C×k) with A Aᵀ = Σ_{y in the k most probable} p_y (e_y − p)(e_y − p)ᵀ,
    which is diag p − p pᵀ, the whole Fisher factor, when k = C."""
    top = probs.topk(classes, dim=1).indices if classes < probs.shape[1] else None
    cols = probs if top is None else probs.gather(1, top)  # N×k: p_y of kept classes
    eye = torch.eye(probs.shape[1], dtype=probs.dtype, device=probs.device)
    onehot = eye[None].expand(len(probs), -1, -1) if top is None else eye[top].transpose(1, 2)
    return (onehot - probs[:, :, None]) * cols.sqrt()[:, None, :]


def summed_fisher(factors: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    """Σ_x (A_x A_xᵀ) ⊗ h_x h_xᵀ as a P×P matrix (P = C·d), in row blocks."""
    n, c, _ = factors.shape
    d = h.shape[1]
    out = torch.zeros(c, c, d, d, dtype=h.dtype, device=h.device)
    rows = max(1, BLOCK_ELEMENTS // (c * c * d))
    for s in range(0, n, rows):
        b = factors[s : s + rows] @ factors[s : s + rows].transpose(1, 2)  # n×C×C
        hs = h[s : s + rows]
        z = (b[:, :, :, None] * hs[:, None, None, :]).flatten(1)  # n×(C·C·d)
        out += (z.T @ hs).view(c, c, d, d)
    return out.permute(0, 2, 1, 3).reshape(c * d, c * d)


def quadratic_forms(mat: torch.Tensor, factors: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    """V_xᵀ mat V_x (N×k×k) for V_x = A_x ⊗ h_x, in row blocks."""
    n, c, k = factors.shape
    d = h.shape[1]
    blocks = mat.view(c, d, c, d).permute(1, 0, 2, 3).reshape(d, c * c * d)
    out = torch.empty(n, k, k, dtype=h.dtype, device=h.device)
    rows = max(1, BLOCK_ELEMENTS // (c * c * d))
    for s in range(0, n, rows):
        hs = h[s : s + rows]
        q = ((hs @ blocks).view(len(hs), c, c, d) * hs[:, None, None, :]).sum(3)  # h G_ab h
        a = factors[s : s + rows]
        out[s : s + rows] = a.transpose(1, 2) @ q @ a
    return out


def cross_forms(cols: torch.Tensor, factors: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    """V_xᵀ cols (N×k×m) for a P×m matrix `cols`."""
    c, d = factors.shape[1], h.shape[1]
    per_class = cols.view(c, d, -1).permute(1, 0, 2).reshape(d, -1)  # d×(C·m)
    return factors.transpose(1, 2) @ (h @ per_class).view(len(h), c, -1)


def bait(
    probs: torch.Tensor,
    h: torch.Tensor,
    labeled_probs: torch.Tensor,
    labeled_h: torch.Tensor,
    n: int,
    lam: float = 1.0,
    classes: int = 10,
) -> torch.Tensor:
    """n positions of the pool (probabilities N×C, embeddings N×d, float64) by forward
    greedy to 2n then backward greedy to n on tr(M_S⁻¹ F)."""
    k = min(classes, probs.shape[1])
    factors = fisher_factors(probs, k)
    weight = 1.0 / (len(labeled_h) + n)  # a labelled point's share; a pick weighs n times it
    fisher = summed_fisher(factors, h)
    size = fisher.shape[0]
    m0 = torch.eye(size, dtype=h.dtype, device=h.device) * lam
    if len(labeled_h):
        labeled_fisher = summed_fisher(fisher_factors(labeled_probs, k), labeled_h)
        fisher += labeled_fisher
        m0 += labeled_fisher * weight
    fisher /= len(h) + len(labeled_h)
    inverse = torch.cholesky_inverse(torch.linalg.cholesky(m0))
    target = inverse @ fisher @ inverse  # M⁻¹ F M⁻¹
    factors = factors * (n * weight) ** 0.5  # V_x = √(n·weight) · A_x ⊗ h_x
    own = quadratic_forms(inverse, factors, h)  # V_xᵀ M⁻¹ V_x
    gain = quadratic_forms(target, factors, h)  # V_xᵀ M⁻¹ F M⁻¹ V_x
    eye = torch.eye(k, dtype=h.dtype, device=h.device)

    def step(sign: float, allowed: torch.Tensor) -> int:
        """Add (sign +1) or remove (−1) the best allowed row; update M⁻¹, M⁻¹FM⁻¹ in place
        (rank 2k) and every row's k×k forms."""
        scores = torch.linalg.solve(sign * eye + own, gain).diagonal(dim1=1, dim2=2).sum(1)
        pick = int(scores.masked_fill(~allowed, -torch.inf).argmax())
        v = (factors[pick][:, None, :] * h[pick][None, :, None]).reshape(size, k)  # P×k
        ab = torch.cat([inverse @ v, target @ v], 1)  # [M⁻¹V, M⁻¹FM⁻¹V]
        a = ab[:, :k]
        core = torch.linalg.inv(sign * eye + v.T @ a)
        core = (core + core.T) / 2
        r = v.T @ ab[:, k:]
        crc = core @ r @ core
        # target − a C bᵀ − b C aᵀ + a C r C aᵀ, as [a b] W [a b]ᵀ
        w = torch.cat([torch.cat([crc, -core], 1), torch.cat([-core, torch.zeros_like(core)], 1)])
        inverse.addmm_(a @ core, a.T, alpha=-1.0)
        target.addmm_(ab @ w, ab.T)
        alpha, beta = cross_forms(ab, factors, h).split(k, dim=2)
        ac = alpha @ core
        own.baddbmm_(ac, alpha.transpose(1, 2), alpha=-1.0)
        acb = ac @ beta.transpose(1, 2)
        gain.baddbmm_(ac @ r, ac.transpose(1, 2)).sub_(acb).sub_(acb.transpose(1, 2))
        return pick

    chosen = torch.zeros(len(h), dtype=torch.bool, device=h.device)
    order: list[int] = []
    for _ in range(min(2 * n, len(h))):
        pick = step(1.0, ~chosen)
        chosen[pick] = True
        order.append(pick)
    # Backward: only the forward picks can be removed, so `step` (which reads these names)
    # sees only their rows from here on.
    forward = torch.tensor(order, dtype=torch.long, device=h.device)
    factors, h, own, gain = factors[forward], h[forward], own[forward], gain[forward]
    kept = torch.ones(len(order), dtype=torch.bool, device=h.device)
    for _ in range(len(order) - n):
        kept[step(-1.0, kept)] = False
    return forward[kept]


def select_bait(
    view: PoolView,
    n: int,
    rng: torch.Generator,
    bait_lambda: float = 1.0,
    bait_dim: int = 2048,
    bait_classes: int = 10,
) -> torch.Tensor:
    h, labeled = view.embeddings.double(), view.labeled_embeddings.double()
    classes = view.probs.shape[1]
    if classes * h.shape[1] > bait_dim:
        basis = principal_projection([h, labeled], max(1, bait_dim // classes))
        h, labeled = h @ basis, labeled @ basis
    return bait(
        view.probs.double(), h, view.labeled_probs.double(), labeled, n, bait_lambda, bait_classes
    )


REGISTRY.register(
    Strategy(
        "bait",
        frozenset({PROBS, EMBEDDINGS, LABELED_EMBEDDINGS, LABELED_PROBS}),
        select_bait,
        ("bait_lambda", "bait_dim", "bait_classes"),
    )
)
