"""archdal: deep active learning experiments across strategies and architectures."""

from archdal.config import CsvOptions, PretrainConfig, RunConfig, Runtime
from archdal.data import ImageData, load_data, load_dataset, make_split, make_synthetic
from archdal.errors import ArchdalError, ConfigError, DataError
from archdal.loop import Trajectory, run, strip_timing
from archdal.strategies import REGISTRY as STRATEGY_REGISTRY
from archdal.textdata import TextData

__all__ = [
    "STRATEGY_REGISTRY",
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
    "load_data",
    "load_dataset",
    "make_split",
    "make_synthetic",
    "run",
    "strip_timing",
]
