"""Axon tokenizers as Hugging Face tokenizer files (``tokenizer.json`` + ``tokenizer_config.json``).

A BPE (or any loaded Hugging Face) tokenizer is written as it is. Axon's character tokenizer
becomes an equivalent ``tokenizers`` pipeline: every character is its own piece
(``Split`` on ``[\\s\\S]``, isolated), a ``WordLevel`` vocabulary maps it to the same id, and the
``Fuse`` decoder joins the pieces without spaces; the unknown-character policy carries over
(``unk_token`` is the replacement character, or none to refuse). ``transformers.AutoTokenizer``
then loads the directory as a ``PreTrainedTokenizerFast``.
"""

from __future__ import annotations

import json
from pathlib import Path

from axon.data.tokenizers import AnyTokenizer, CharTokenizer, HFTokenizer


def as_hf_tokenizer(tokenizer: AnyTokenizer):
    """A ``tokenizers.Tokenizer`` that gives the same ids as ``tokenizer``."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers

    if isinstance(tokenizer, HFTokenizer):
        return tokenizer.tokenizer
    if isinstance(tokenizer, CharTokenizer):
        vocab = {c: i for i, c in enumerate(tokenizer.chars)}
        tok = Tokenizer(models.WordLevel(vocab, unk_token=tokenizer.unk_char))
        tok.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
        tok.decoder = decoders.Fuse()
        return tok
    raise TypeError(f"cannot export a {type(tokenizer).__name__}")


def save_hf_tokenizer(tokenizer: AnyTokenizer, out_dir: str | Path, model_max_length: int | None = None) -> list[Path]:
    """Write ``tokenizer.json`` and ``tokenizer_config.json`` into ``out_dir``."""
    out = Path(out_dir)
    tok = as_hf_tokenizer(tokenizer)
    tok.save(str(out / "tokenizer.json"))
    config = {"tokenizer_class": "PreTrainedTokenizerFast", "clean_up_tokenization_spaces": False}
    if tokenizer.eot_id is not None:
        eot = tok.id_to_token(tokenizer.eot_id)
        config.update(eos_token=eot, bos_token=eot)
    if isinstance(tokenizer, CharTokenizer) and tokenizer.unk_char is not None:
        config["unk_token"] = tokenizer.unk_char
    if model_max_length is not None:
        config["model_max_length"] = model_max_length
    (out / "tokenizer_config.json").write_text(json.dumps(config, indent=2) + "\n")
    return [out / "tokenizer.json", out / "tokenizer_config.json"]
