"""Axon: an open research lab for language models."""

__version__ = "0.1.0"

from axon.errors import AxonError, CheckpointError, ConfigError, DataError  # noqa: E402

__all__ = ["AxonError", "ConfigError", "DataError", "CheckpointError", "__version__"]
