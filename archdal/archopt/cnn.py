"""Fixed CNN baselines and the two Bayesian architecture-inference CNNs (paper, section 4).

Depth-Dropout (KC et al., 2021) infers depth and per-layer width from a beta-process prior
over layers; BBDropout (Lee et al., 2018) infers the width of each layer from a
beta-Bernoulli prior over its filters. Both keep the `ALModel` split: gated convolutions,
global average pooling and a residual MLP are the `trunk`, one dropout layer is the `neck`
(the only thing MC dropout samples), then the linear `classifier`.

A mask multiplies the output of a whole conv unit (conv → LeakyReLU → GroupNorm), and every
unit after the stem is residual, h_l = z_l ⊙ unit_l(h_{l-1}) + h_{l-1}, so a masked-off
layer is exactly the identity. LeakyReLU is positively homogeneous, so masking before or
after it is the same: this is eq. 6 and eq. 7 of the paper with the GroupNorm counted in σ.
The norm comes before the mask so that a dropped filter stays exactly zero.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.distributions import Beta, RelaxedBernoulli

from archdal.models import ImageModel

_EULER_GAMMA = 0.5772156649015329
_TINY = 1e-6  # keeps stick proportions and uniforms off 0 and 1 before taking logs


def _log_beta_function(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    return torch.lgamma(p) + torch.lgamma(q) - torch.lgamma(p + q)


def _inverse_softplus(y: float) -> float:
    return math.log(math.expm1(y))


def beta_kl(
    a: torch.Tensor, b: torch.Tensor, alpha: float | torch.Tensor, beta: float | torch.Tensor
) -> torch.Tensor:
    """KL(Beta(a, b) ‖ Beta(alpha, beta)), elementwise, in closed form."""
    alpha = torch.as_tensor(alpha, dtype=a.dtype, device=a.device)
    beta = torch.as_tensor(beta, dtype=a.dtype, device=a.device)
    return (
        _log_beta_function(alpha, beta)
        - _log_beta_function(a, b)
        + (a - alpha) * torch.digamma(a)
        + (b - beta) * torch.digamma(b)
        + (alpha - a + beta - b) * torch.digamma(a + b)
    )


def kumaraswamy_beta_kl(a: torch.Tensor, b: torch.Tensor, alpha: float) -> torch.Tensor:
    """KL(Kumaraswamy(a, b) ‖ Beta(alpha, 1)), elementwise: the general Kumaraswamy–Beta
    formula, whose infinite series vanishes when the prior's second parameter is 1."""
    return (
        (1 - alpha / a) * (-_EULER_GAMMA - torch.digamma(b) - 1 / b)
        + torch.log(a * b)
        - math.log(alpha)
        - (b - 1) / b
    )


def kumaraswamy_mean(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """E[π] for π ~ Kumaraswamy(a, b), i.e. b·B(1 + 1/a, b); in float64 because 1/a reaches
    10⁴ and float32 lgamma differences would lose the small means."""
    a64, b64 = a.double(), b.double()
    return (torch.log(b64) + _log_beta_function(1 + 1 / a64, b64)).exp().to(a.dtype)


def depth_from_masks(masks: torch.Tensor, threshold: float) -> int:
    """The deepest layer (1-based) with a filter above `threshold` in any of the S×K×M
    structure samples; 0 when none is."""
    layer_on = (masks > threshold).any(dim=2)  # S×K
    index = torch.arange(1, masks.shape[1] + 1, device=masks.device)
    return int((layer_on * index).max())


def active_filters(masks: torch.Tensor, threshold: float) -> list[int]:
    """Per layer, the most filters above `threshold` in any of the S×K×M structure samples."""
    return (masks > threshold).sum(dim=2).amax(dim=0).tolist()


def _conv_unit(in_channels: int, out_channels: int, kernel_size: int) -> nn.Sequential:
    """conv → LeakyReLU → GroupNorm(1, ·) (ArchDAL's order); spatial size kept."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2),
        nn.LeakyReLU(),
        nn.GroupNorm(1, out_channels),
    )


def _row_mask(masks: torch.Tensor, layer: int, rows_per_group: int) -> torch.Tensor:
    return masks[:, layer].repeat_interleave(rows_per_group, dim=0)[:, :, None, None]


class _ImageCNN(ImageModel):
    """A 5×5 stem shared by every model; one dropout layer as the neck; plain cross-entropy
    and no architecture parameters unless overridden."""

    def __init__(
        self,
        num_classes: int,
        in_channels: int,
        mean: torch.Tensor,
        std: torch.Tensor,
        filters: int,
        dropout: float,
    ):
        super().__init__(filters, mean, std)
        self.stem = nn.Sequential(_conv_unit(in_channels, filters, 5), nn.AvgPool2d(2))
        self.neck = nn.Dropout(dropout)
        self.classifier = nn.Linear(filters, num_classes)

    def _stem_output(self, images: torch.Tensor) -> torch.Tensor:
        return self.stem(self.normalize(images))


class FixedCNN(_ImageCNN):
    """The paper's pre-defined baselines (1, 5 or 9 layers): the stem, then `layers - 1`
    plain 3×3 units, global average pooling. The reference puts Dropout2d in every unit;
    here the trunk stays deterministic and the one dropout is the neck."""

    def __init__(
        self,
        num_classes: int,
        in_channels: int,
        mean: torch.Tensor,
        std: torch.Tensor,
        *,
        layers: int,
        filters: int = 64,
        dropout: float = 0.5,
    ):
        super().__init__(num_classes, in_channels, mean, std, filters, dropout)
        self.layers = layers
        self.body = nn.Sequential(*(_conv_unit(filters, filters, 3) for _ in range(layers - 1)))

    def trunk(self, images: torch.Tensor) -> torch.Tensor:
        return self.body(self._stem_output(images)).mean(dim=(2, 3))

    def architecture_record(self) -> dict:
        return {"depth": self.layers, "active_filters": [self.embedding_dim] * self.layers}


class _GatedResidualCNN(_ImageCNN):
    """The stem and `layers - 1` residual 3×3 units, each output multiplied by a per-filter
    mask, then global average pooling and a residual MLP (KC et al.'s output block)."""

    def __init__(
        self,
        num_classes: int,
        in_channels: int,
        mean: torch.Tensor,
        std: torch.Tensor,
        layers: int,
        filters: int,
        dropout: float,
    ):
        super().__init__(num_classes, in_channels, mean, std, filters, dropout)
        self.layers = layers
        self.blocks = nn.ModuleList(_conv_unit(filters, filters, 3) for _ in range(layers - 1))
        self.mlp = nn.Linear(filters, filters)

    def _gated_features(self, stem: torch.Tensor, masks: torch.Tensor, depth: int) -> torch.Tensor:
        """Pooled features of the N stem rows under G×K×M masks (G divides N; row i takes
        group i // (N/G)), running layers 1..depth only: exact when deeper masks are zero."""
        rows_per_group = len(stem) // len(masks)
        h = stem * _row_mask(masks, 0, rows_per_group)
        for layer in range(1, depth):
            h = h + _row_mask(masks, layer, rows_per_group) * self.blocks[layer - 1](h)
        pooled = h.mean(dim=(2, 3))
        return pooled + F.leaky_relu(self.mlp(pooled))


class DepthDropoutCNN(_GatedResidualCNN):
    """Depth-Dropout: ν_k ~ Beta(α, β), π_l = ∏_{k≤l} ν_k, z_ml ~ Bernoulli(π_l) for each of
    the M filters of layer l, with q(ν_k) = Beta(a_k, b_k) fitted by the ELBO.

    Training samples S structures per minibatch (reparameterised Beta ν, relaxed Bernoulli z
    at `temperature`, one mask for the whole batch) from torch's global RNG, like dropout.
    Evaluation draws S hard structures from q with a NumPy generator seeded by the
    `structure_seed` buffer: while q is unchanged every batch, row and call sees the same
    structures, and torch's global RNG is left untouched. Both run only layers 1..L, L being
    the deepest layer any sample has a mask above `threshold` in (`depth_from_masks`): exact
    for the hard evaluation masks; in training, as in the reference, it drops relaxed masks
    that are all below `threshold`.
    """

    def __init__(
        self,
        num_classes: int,
        in_channels: int,
        mean: torch.Tensor,
        std: torch.Tensor,
        *,
        truncation: int = 20,
        filters: int = 64,
        structure_samples: int = 2,
        prior_alpha: float = 1.0,
        prior_beta: float = 10.0,
        temperature: float = 0.5,
        threshold: float = 0.01,
        dropout: float = 0.5,
        structure_seed: int | None = None,
    ):
        super().__init__(num_classes, in_channels, mean, std, truncation, filters, dropout)
        self.structure_samples = structure_samples
        self.prior_alpha, self.prior_beta = prior_alpha, prior_beta
        self.temperature, self.threshold = temperature, threshold
        # q(ν_k) starts at Beta(1.11, 1.01) for every k, ArchDAL's starting point (we read the
        # paper's "U(0, 1.1), U(0, 1.0)" as naming these two values); no RNG used.
        self.a_raw = nn.Parameter(torch.full((truncation,), _inverse_softplus(1.1)))
        self.b_raw = nn.Parameter(torch.full((truncation,), _inverse_softplus(1.0)))
        if structure_seed is None:  # from the global RNG, like the weights: seeded by the caller
            structure_seed = int(torch.randint(0, 2**62, (1,)))
        self.register_buffer("structure_seed", torch.tensor(structure_seed))

    def variational_params(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(a, b) of q(ν_k) = Beta(a_k, b_k), each of length K."""
        return F.softplus(self.a_raw) + 0.01, F.softplus(self.b_raw) + 0.01

    def architecture_parameters(self) -> list[nn.Parameter]:
        return [self.a_raw, self.b_raw]

    def _relaxed_masks(self) -> torch.Tensor:
        a, b = self.variational_params()
        nu = Beta(a, b).rsample((self.structure_samples,)).clamp(_TINY, 1.0)
        pi = torch.cumsum(torch.log(nu), dim=1).exp()  # S×K
        probs = pi[:, :, None].expand(-1, -1, self.embedding_dim)
        return RelaxedBernoulli(self.temperature, probs=probs).rsample()

    @torch.no_grad()
    def _eval_masks(self) -> torch.Tensor:
        a, b = (p.double().cpu().numpy() for p in self.variational_params())
        rng = np.random.default_rng(int(self.structure_seed))
        shape = (self.structure_samples, self.layers)
        pi = np.cumprod(rng.beta(a, b, size=shape), axis=1)
        on = rng.random((*shape, self.embedding_dim)) < pi[:, :, None]
        return torch.from_numpy(on).to(self.a_raw.device, self.a_raw.dtype)

    def _sampled_features(self, images: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        """S×B×M features, one slice per structure sample."""
        samples = len(masks)
        depth = max(1, depth_from_masks(masks, self.threshold))
        stem = self._stem_output(images).repeat(samples, 1, 1, 1)  # sample-major rows
        return self._gated_features(stem, masks, depth).view(samples, len(images), -1)

    def trunk(self, images: torch.Tensor) -> torch.Tensor:
        """The mean over the S structure samples of their features. The classifier is linear
        and the neck is the identity in eval mode, so the logits are the mean of the S
        samples' logits, the reference's prediction."""
        masks = self._relaxed_masks() if self.training else self._eval_masks()
        return self._sampled_features(images, masks).mean(dim=0)

    def training_loss(
        self, inputs: torch.Tensor, labels: torch.Tensor, n_train: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Negative ELBO per example: cross-entropy averaged over S relaxed structures and
        the batch, plus KL(q(ν) ‖ p(ν)) / n_train; the logits are the mean over samples."""
        logits = self.classifier(self.neck(self._sampled_features(inputs, self._relaxed_masks())))
        loss = F.cross_entropy(logits.flatten(0, 1), labels.repeat(len(logits)))
        a, b = self.variational_params()
        kl = beta_kl(a, b, self.prior_alpha, self.prior_beta).sum()
        return loss + kl / n_train, logits.mean(dim=0)

    @torch.no_grad()
    def architecture_record(self) -> dict:
        """The evaluation structures' depth and per-layer active filters (max over samples),
        and E_q[π_l] = ∏_{k≤l} a_k / (a_k + b_k) for every layer."""
        masks = self._eval_masks()
        a, b = self.variational_params()
        return {
            "depth": depth_from_masks(masks, self.threshold),
            "active_filters": active_filters(masks, self.threshold),
            "layer_probs": torch.cumprod(a / (a + b), dim=0).tolist(),
        }


class BBDropoutCNN(_GatedResidualCNN):
    """BBDropout: π_k ~ Beta(α, 1) for every filter k of every layer, z_k ~ Bernoulli(π_k),
    with q(π_k) = Kumaraswamy(a_k, b_k); the depth is fixed, the widths are inferred.

    Training samples π once per minibatch and a relaxed Bernoulli mask per example; evaluation
    uses z_k = E[π_k]·1[E[π_k] ≥ threshold], deterministic.

    q starts at the paper's a = 1.3133 = softplus(1), b = 1.000 = softplus(0.5413), so
    E[π] ≈ 0.57. The released code starts at softplus(-1) ≈ 0.313 (E[π] ≈ 0.24) and scales
    the KL by a fixed 1/60000; with the KL divided by the labelled-set size instead, that
    start pruned nearly every filter of a 4-layer, 64-filter net on 200 digits within 150
    Adam steps (20% training accuracy), where the paper's start reached 99%.
    """

    def __init__(
        self,
        num_classes: int,
        in_channels: int,
        mean: torch.Tensor,
        std: torch.Tensor,
        *,
        layers: int = 20,
        filters: int = 64,
        prior_alpha: float = 1e-4,
        temperature: float = 0.1,
        threshold: float = 0.1,
        dropout: float = 0.5,
    ):
        super().__init__(num_classes, in_channels, mean, std, layers, filters, dropout)
        self.prior_alpha, self.temperature, self.threshold = prior_alpha, temperature, threshold
        self.a_raw = nn.Parameter(torch.full((layers, filters), 1.0))
        self.b_raw = nn.Parameter(torch.full((layers, filters), _inverse_softplus(1.0)))

    def variational_params(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(a, b) of q(π) = Kumaraswamy(a, b), each layers×filters; clamped as the reference."""
        return F.softplus(self.a_raw.clamp(min=-10)), F.softplus(self.b_raw.clamp(-10, 50))

    def architecture_parameters(self) -> list[nn.Parameter]:
        return [self.a_raw, self.b_raw]

    def expected_masks(self) -> torch.Tensor:
        """layers×filters evaluation masks E[π]·1[E[π] ≥ threshold]."""
        mean = kumaraswamy_mean(*self.variational_params())
        return mean * (mean >= self.threshold)

    def _sampled_masks(self, batch: int) -> torch.Tensor:
        a, b = self.variational_params()
        u = torch.rand_like(a).clamp(_TINY, 1 - _TINY)
        pi = torch.exp(torch.log(-torch.expm1(torch.log(u) / b)) / a)  # (1 - u^{1/b})^{1/a}
        return RelaxedBernoulli(self.temperature, probs=pi).rsample((batch,))

    def trunk(self, images: torch.Tensor) -> torch.Tensor:
        masks = self._sampled_masks(len(images)) if self.training else self.expected_masks()[None]
        return self._gated_features(self._stem_output(images), masks, self.layers)

    def training_loss(
        self, inputs: torch.Tensor, labels: torch.Tensor, n_train: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Cross-entropy under per-example masks plus Σ KL(q(π) ‖ Beta(α, 1)) / n_train."""
        logits = self(inputs)
        a, b = self.variational_params()
        kl = kumaraswamy_beta_kl(a, b, self.prior_alpha).sum()
        return F.cross_entropy(logits, labels) + kl / n_train, logits

    @torch.no_grad()
    def architecture_record(self) -> dict:
        return {
            "depth": self.layers,
            "active_filters": (self.expected_masks() > 0).sum(dim=1).tolist(),
            "filter_probs_mean": kumaraswamy_mean(*self.variational_params()).mean(dim=1).tolist(),
        }
