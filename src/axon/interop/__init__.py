"""Hugging Face <-> Axon: ``from_hf`` loads a transformers checkpoint, ``to_hf`` writes one.

One key map per family (``gpt2.py``, ``llama.py``); Hugging Face's parameter names appear only
in this package (design rule 8).
"""

from axon.interop.hf import HF_MODEL_TYPES, from_hf, read_hf_dir, to_hf

__all__ = ["HF_MODEL_TYPES", "from_hf", "read_hf_dir", "to_hf"]
