"""archdal: deep active learning experiments across strategies and architectures.

The core (this package's top level and `archdal.archopt`) runs and tests a trajectory
without Ray; `archdal.sweep` is the only place Ray is imported; `archdal.analysis` reads
plain result files into tables, metrics, figures and a report. Importing archdal loads
every built-in strategy, dataset and model family into `archdal.registry` (the modules
named in `$ARCHDAL_PLUGINS` follow at the first look-up).
"""

from archdal import families, strategies
from archdal.config import ArchOptions, CsvOptions, PretrainConfig, RunConfig, Runtime
from archdal.data import ImageData, load_dataset, make_split, make_synthetic
from archdal.errors import ArchdalError, ConfigError, DataError
from archdal.families import load_data
from archdal.loop import Trajectory, run, strip_timing
from archdal.textdata import TextData

STRATEGY_REGISTRY = strategies.REGISTRY

__all__ = [
    "STRATEGY_REGISTRY",
    "ArchOptions",
    "ArchdalError",
    "ConfigError",
    "CsvOptions",
    "DataError",
    "ImageData",
    "PretrainConfig",
    "RunConfig",
    "Runtime",
    "TextData",
    "Trajectory",
    "families",
    "load_data",
    "load_dataset",
    "make_split",
    "make_synthetic",
    "run",
    "strip_timing",
]
