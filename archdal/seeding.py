"""Every random number of a trajectory descends from its config seed.

Independent streams (the data split, the trajectory's own generator) are derived from
the seed and a stream name, so the split does not depend on the strategy or the
architecture: trials that share dataset, seed and sizes share their initial pool.
"""

from __future__ import annotations

import contextlib
import zlib
from collections.abc import Iterator

import numpy as np
import torch


def derive_seed(seed: int, stream: str) -> int:
    """A 63-bit seed for the named stream, statistically independent of other streams."""
    state = np.random.SeedSequence([seed, zlib.crc32(stream.encode())]).generate_state(2, np.uint32)
    return (int(state[0]) << 31) ^ int(state[1])


def generator(seed: int) -> torch.Generator:
    """A CPU generator: the same stream whatever device the model runs on."""
    return torch.Generator().manual_seed(seed)


def draw_seed(rng: torch.Generator) -> int:
    """A fresh seed taken from `rng` (advances it)."""
    return int(torch.randint(0, 2**62, (1,), generator=rng).item())


@contextlib.contextmanager
def global_torch_seed(seed: int) -> Iterator[None]:
    """Seed torch's global RNG (weight init, dropout) inside, restore the caller's after.

    PyTorch layers draw their initial weights and dropout masks from the global RNG,
    which takes no generator argument; forking it keeps those draws a function of the
    trajectory's seed without disturbing anyone else's RNG state.
    """
    devices = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield
