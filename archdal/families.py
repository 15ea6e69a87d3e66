"""Model families, and the dispatch from a config to its data and its models.

A trajectory asks two things of its config: the data (`load_data`, through the dataset
registry) and one `ModelAdapter`, chosen once from the family that builds the config's
arch. The loop only calls the adapter: a fresh model, each round's model (which a Focus 2
family builds from its pre-optimized architecture, or searches anew), and a
pre-optimization when the arch mode asks for one.

To add a model family:
1. write its models as `archdal.models.ALModel`s (trunk → neck → classifier) in a module;
2. write a `ModelAdapter` subclass whose `__init__(config, data)` reads what every round
   needs once, and whose `new_model()` builds an untrained model on the CPU;
3. register it: `registry.MODEL_FAMILIES.register(registry.ModelFamily("name", "image",
   ("arch1", "arch2"), YourAdapter))` below (or in your own module named in
   `$ARCHDAL_PLUGINS`); `--arch arch1` then builds it. A family whose models read something
   other than the dataset's images or tokens gives its own `load` (the frozen family's
   cached embeddings, `archdal.representations`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from archdal import frozen, registry
from archdal.archopt import build as focus2
from archdal.config import FROZEN, PRE_OPTIMIZED, RunConfig, Runtime
from archdal.data import ImageData, Split
from archdal.errors import ConfigError
from archdal.models import IMAGE_ARCHS, ALModel, build_model
from archdal.representations import FeatureData, load_features
from archdal.textdata import TextData
from archdal.textmodels import TEXT_ARCHS, TextModelFactory


def load_data(config: RunConfig, runtime: Runtime) -> ImageData | TextData:
    """The config's dataset, images or text (tokenized by the config's model), or what its
    model family reads instead (frozen: cached embeddings), on the CPU."""
    family = registry.arch_family(config.arch)
    if family.load is not None:
        return family.load(config, runtime)
    return registry.DATASETS.get(config.dataset).load(config, runtime)


class ModelAdapter:
    """How the loop gets the models of one config on `data` (built on the CPU)."""

    def __init__(self, config: RunConfig, data: Any):
        self.config = config

    def new_model(self) -> ALModel:
        """An untrained model, built under the caller's torch seed."""
        raise NotImplementedError

    def round_model(
        self,
        data: Any,
        pre_optimized: dict[str, Any] | None,
        labeled: torch.Tensor,
        val: torch.Tensor,
        seed: int,
    ) -> ALModel:
        """The untrained model of one round (`data` and indices on the training device)."""
        return self.new_model()

    def pre_optimize(
        self, data: Any, split: Split, device: torch.device, eval_batch_size: int
    ) -> dict[str, Any]:
        """Architecture and weights optimized once before active learning (spo/upo)."""
        raise ConfigError(f"arch {self.config.arch!r} has no architecture to pre-optimize")

    def load_pre_optimized(self, path: str | Path) -> dict[str, Any]:
        raise ConfigError(f"arch {self.config.arch!r} loads no pre-optimized architecture")


class ImageAdapter(ModelAdapter):
    """CIFAR-style VGG and ResNet, normalised by the training images' channel statistics."""

    def __init__(self, config: RunConfig, data: ImageData):
        super().__init__(config, data)
        self.shape = (data.num_classes, data.channels)
        self.mean, self.std = data.channel_stats()

    def new_model(self) -> ALModel:
        c = self.config
        return build_model(c.arch, *self.shape, c.width, c.dropout, self.mean, self.std)


class TextAdapter(ModelAdapter):
    """Pretrained transformers, their weights read once, a freshly seeded head per round."""

    def __init__(self, config: RunConfig, data: TextData):
        super().__init__(config, data)
        self.factory = TextModelFactory(config, data.num_classes, data.pad_id, data.tokenizer)

    def new_model(self) -> ALModel:
        return self.factory()


class Focus2Adapter(ModelAdapter):
    """Focus 2 CNNs: fixed, or optimized jointly every round, or once (spo/upo) and frozen."""

    def __init__(self, config: RunConfig, data: ImageData):
        super().__init__(config, data)
        self.data = data
        self.build = focus2.cnn_builder(config, data)

    def new_model(self) -> ALModel:
        return self.build()

    def round_model(self, data, pre_optimized, labeled, val, seed) -> ALModel:
        return focus2.round_model(self.config, data, self.build, pre_optimized, labeled, val, seed)

    def pre_optimize(self, data, split, device, eval_batch_size) -> dict[str, Any]:
        if self.config.arch_mode not in PRE_OPTIMIZED:
            return super().pre_optimize(data, split, device, eval_batch_size)
        return focus2.pre_optimize(self.config, data, split, self.build, device, eval_batch_size)

    def load_pre_optimized(self, path: str | Path) -> dict[str, Any]:
        return focus2.load_result(path, self.config)


class FrozenAdapter(ModelAdapter):
    """A fresh, seeded head per round on the encoder's embeddings (`archdal.frozen`)."""

    def __init__(self, config: RunConfig, data: FeatureData):
        super().__init__(config, data)
        if not isinstance(data, FeatureData):
            raise ConfigError(
                f"arch frozen trains on embeddings, not {type(data).__name__}; load the data "
                "with archdal.representations (load_features, image_features, text_features)"
            )
        self.shape = (data.dim, data.num_classes)
        self.mean = data.train_x.mean(dim=0)
        self.std = data.train_x.std(dim=0).clamp_min(1e-6)

    def new_model(self) -> ALModel:
        c = self.config
        return frozen.FrozenHead(*self.shape, c.head, c.head_hidden, c.dropout, self.mean,
                                 self.std)  # fmt: skip


for _family in (
    registry.ModelFamily("cnn", "image", IMAGE_ARCHS, ImageAdapter),
    registry.ModelFamily(
        "focus2",
        "image",
        focus2.FIXED_CNNS + focus2.OPTIMIZED_ARCHS,
        Focus2Adapter,
        optimized=focus2.OPTIMIZED_ARCHS,
    ),
    registry.ModelFamily("transformer", "text", TEXT_ARCHS, TextAdapter),
    registry.ModelFamily(
        "frozen",
        registry.ANY_MODALITY,
        (FROZEN,),
        FrozenAdapter,
        load=load_features,
        protocol=frozen.PROTOCOL,
    ),
):
    registry.MODEL_FAMILIES.register(_family)


def model_adapter(config: RunConfig, data: Any) -> ModelAdapter:
    """The adapter of the family that builds `config.arch`, for `data` (on the CPU)."""
    return registry.arch_family(config.arch).adapter(config, data)
