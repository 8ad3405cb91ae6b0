"""Axon: an open research lab for language models."""

__version__ = "0.1.0"

from axon.errors import AxonError, CheckpointError, ConfigError, DataError  # noqa: E402

__all__ = ["AxonError", "ConfigError", "DataError", "CheckpointError", "from_hf", "to_hf", "__version__"]


def __getattr__(name: str):
    # axon.from_hf / axon.to_hf without importing torch and the interop package on `import axon`
    if name in ("from_hf", "to_hf"):
        from axon import interop

        return getattr(interop, name)
    raise AttributeError(f"module 'axon' has no attribute {name!r}")
