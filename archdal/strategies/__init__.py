"""Acquisition strategies: small functions of a `PoolView`, chosen by name from a registry.

Each `select(view, n, rng)` returns `n` distinct row positions of the pool. Scores are
"higher is more informative" and ties go to the lower position, so a selection is a
pure function of the view and the generator.

To add a strategy:
1. write `select_name(view, n, rng)`, reading only the `PoolView` fields it needs and
   drawing any randomness from `rng`;
2. register it: `REGISTRY.register(Strategy("name", frozenset({PROBS}), select_name))`,
   naming those fields (`archdal.pool.NEEDS`) so the round's one pool pass computes them,
   and, in `options`, the `RunConfig` fields it takes as keyword arguments (declared
   once in `archdal.config`); in a module of this package (imported below), or in your
   own module named in `$ARCHDAL_PLUGINS`;
3. `archdal run --strategy name` and a sweep's `--strategies name` now accept it.

Modules: `base` (the `Strategy` record, the registry, the exact lazy greedy engine),
`classic` (the paper's seven), `clustering` (seeded k-means and bounded neighbour helpers),
`typiclust`, `probcover` and `dropquery` (on the acquisition representation), `initial`
(the initial pools those choose), `stochastic` (PowerBALD, PowerMargin, PowerEntropy),
`batchbald` (BatchBALD), `bait` (BAIT). A new family of strategies is one module here that
registers its entries, and one import line below.
"""

# isort: off
from archdal.strategies import classic  # the paper's seven register first, in their order
from archdal.strategies import bait, batchbald, dropquery, probcover, stochastic, typiclust

# isort: on
from archdal.strategies.base import REGISTRY, Strategy, get_strategy

__all__ = ["REGISTRY", "Strategy", "bait", "batchbald", "classic", "dropquery", "get_strategy",
           "probcover", "stochastic", "typiclust"]  # fmt: skip
