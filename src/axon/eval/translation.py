"""Translation with an encoder-decoder run, and its scores: BLEU, chrF and exact match.

Decoding reuses ``axon.generate``: the model encodes a batch of sources once
(``model.conditioned``) and ``generate`` (greedy, batched) or ``beam_search`` (one source at a
time) decodes the conditioned decoder from BOS until EOS. Scores are corpus-level and computed
by ``sacrebleu`` with its defaults, the numbers papers quote:

- BLEU (Papineni et al. 2002): geometric mean of 1- to 4-gram precisions times a brevity
  penalty, on sacrebleu's 13a tokenisation, 0-100;
- chrF (Popovic 2015): F-score (beta = 2) of character 1- to 6-grams, 0-100; kinder than BLEU to
  near misses on short outputs;
- exact match: the share of translations equal to their reference, character for character.

``axon translate RUN --eval FILE.tsv`` and the seq2seq task's metrics (``axon eval``, the final
result of ``axon train``) call :func:`evaluate_translation`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from axon.errors import DataError, check_count


def translation_metrics(hypotheses: Sequence[str], references: Sequence[str]) -> dict[str, float]:
    """Corpus BLEU and chrF (sacrebleu) and exact match of ``hypotheses`` against one reference each."""
    import sacrebleu

    if len(hypotheses) != len(references):
        raise ValueError(f"{len(hypotheses)} hypotheses for {len(references)} references")
    if not references:
        raise DataError("no references to score against")
    return {
        "bleu": sacrebleu.corpus_bleu(list(hypotheses), [list(references)]).score,
        "chrf": sacrebleu.corpus_chrf(list(hypotheses), [list(references)]).score,
        "exact_match": sum(h == r for h, r in zip(hypotheses, references)) / len(references),
    }


def _encode_sources(tokenizer, special, sources: Sequence[str], block_size: int) -> list[list[int]]:
    from axon.data.pairs import encode_checked

    out = []
    for i, text in enumerate(sources, 1):
        if not text.strip():
            raise DataError(f"input {i} is empty")
        out.append(encode_checked(tokenizer, text, block_size, f"input {i}").tolist() + [special.eos])
    return out


@torch.no_grad()
def check_translate_options(beams=1, max_new_tokens=None, batch_size=128, length_penalty=1.0) -> None:
    """The settings of :func:`translate`: ``beams`` >= 1, ``max_new_tokens`` None or >= 1,
    ``batch_size`` >= 1, a finite ``length_penalty``; an OptionError otherwise (which `axon
    translate` words with its flags, before it loads the run)."""
    from axon.generate.options import check_length_penalty

    check_count("beams", beams, 1, meaning="(1: greedy)")
    check_count("max_new_tokens", max_new_tokens, 1, optional=True)
    check_count("batch_size", batch_size, 1)
    check_length_penalty(length_penalty)


def translate(model: nn.Module, tokenizer, sources: Sequence[str], *, beams: int = 1, max_new_tokens: int | None = None,
              batch_size: int = 128, length_penalty: float = 1.0) -> list[str]:
    """Translate each source text; greedy when ``beams`` is 1, else beam search with ``beams`` beams.

    ``max_new_tokens`` caps each translation (default: the model's block_size, the EOS included).
    A source longer than the model's block_size or with characters its tokenizer lacks is a
    DataError naming it.
    """
    from axon.data.pairs import SpecialIds

    check_translate_options(beams, max_new_tokens, batch_size, length_penalty)
    special = SpecialIds.for_tokenizer(tokenizer)
    block = model.config.block_size
    max_new = min(max_new_tokens or block, block)
    encoded = _encode_sources(tokenizer, special, sources, block)
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()  # the encoder too: no dropout while translating
    try:
        out = _decode(model, special, encoded, beams, max_new, batch_size, length_penalty, device)
    finally:
        model.train(was_training)
    return [tokenizer.decode(special.strip(toks)) for toks in out]


def _decode(model, special, encoded, beams, max_new, batch_size, length_penalty, device) -> list[list[int]]:
    from axon.generate import beam_search, generate

    out: list[list[int]] = [[] for _ in encoded]
    # Similar lengths batch together (less padding); results go back to input order.
    order = sorted(range(len(encoded)), key=lambda i: len(encoded[i]))
    step = batch_size if beams == 1 else 1
    for start in range(0, len(order), step):
        rows = order[start : start + step]
        S = max(len(encoded[i]) for i in rows)
        src = torch.full((len(rows), S), special.pad, dtype=torch.long, device=device)
        for b, i in enumerate(rows):
            src[b, : len(encoded[i])] = torch.tensor(encoded[i], device=device)
        decoder = model.conditioned(src, src != special.pad)  # (B, S, C) memory, encoded once
        if beams == 1:
            gen = generate(decoder, [[special.bos]] * len(rows), max_new, temperature=0.0, stop_tokens=[special.eos])
            for i, toks in zip(rows, gen.tokens):
                out[i] = toks
        else:
            hyp = beam_search(decoder, [special.bos], max_new, num_beams=beams, eos_token_id=special.eos,
                              length_penalty=length_penalty)
            out[rows[0]] = hyp[0].tokens
    return out


def evaluate_translation(model: nn.Module, tokenizer, sources: Sequence[str], references: Sequence[str], *,
                         beams: int = 1, max_new_tokens: int | None = None, batch_size: int = 128) -> dict:
    """BLEU, chrF, exact match (see :func:`translation_metrics`) and the ``translations`` themselves."""
    hyps = translate(model, tokenizer, sources, beams=beams, max_new_tokens=max_new_tokens, batch_size=batch_size)
    return {**translation_metrics(hyps, references), "translations": hyps}


def format_examples(pairs, translations: Sequence[str]) -> str:
    """Lines of ``source -> translation`` with the reference when they differ."""
    lines = []
    for p, h in zip(pairs, translations):
        mark = "" if h == p.target else f"   (reference: {p.target})"
        lines.append(f"{p.source} -> {h}{mark}")
    return "\n".join(lines)
