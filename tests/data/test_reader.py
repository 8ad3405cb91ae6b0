"""What a reader reads (axon.data.reader): the loss only on the answer, long prompts cut at the front, one
source per passage for Fusion-in-Decoder."""

from __future__ import annotations

import torch

from axon.data.pairs import SpecialIds
from axon.data.reader import IGNORE_INDEX, ConcatAnswers, FusedAnswers, concat_prompt, fid_sources
from axon.data.tokenizers import build_tokenizer

TEXTS = ["Ada was born in Rome.", "Bo played the harp.", "question: Where was Ada born?\nanswer: Rome context:"]


def setup():
    tok = build_tokenizer("char", TEXTS)
    return tok, SpecialIds.for_tokenizer(tok)


def test_the_loss_is_on_the_answer_and_its_end_only():
    tok, sp = setup()
    data = ConcatAnswers(tok, sp, ["Where was Ada born?"], [["Ada was born in Rome."]], ["Rome"], block_size=128)
    x, y = data.batch([0])
    prompt = tok.encode(concat_prompt("Where was Ada born?", ["Ada was born in Rome."]))
    assert x[0, : len(prompt)].tolist() == prompt
    targets = y[0][y[0] != IGNORE_INDEX].tolist()
    assert targets == tok.encode("Rome") + [sp.eos]
    assert (y[0, : len(prompt) - 1] == IGNORE_INDEX).all()  # no loss on predicting the prompt


def test_a_long_prompt_loses_its_front_and_keeps_the_question():
    tok, sp = setup()
    passages = ["Bo played the harp."] * 20
    data = ConcatAnswers(tok, sp, ["Where was Ada born?"], [passages], ["Rome"], block_size=64)
    x, y = data.batch([0])
    assert x.shape[1] <= 64 and data.cut == 1
    assert tok.decode(x[0].tolist()).rstrip(tok.decode([])).endswith("answer: Rome") or \
        "question: Where was Ada born?\nanswer: " in tok.decode([t for t in x[0].tolist() if t < sp.pad])


def test_closed_book_reads_only_the_question():
    assert concat_prompt("Q?", []) == "question: Q?\nanswer: "
    assert fid_sources("Q?", []) == ["question: Q?"]


def test_fid_batches_hold_one_source_per_passage():
    tok, sp = setup()
    data = FusedAnswers(tok, sp, ["Where was Ada born?", "Who?"], [["Ada was born in Rome.", "Bo played the harp."],
                                                                   ["Bo played the harp."]], ["Rome", "Bo"], block_size=64)
    src, tgt_in, tgt_out = data.batch([0, 1])
    assert src.shape[:2] == (2, 2)
    first = [t for t in src[0, 1].tolist() if t != sp.pad]
    assert first == tok.encode("question: Where was Ada born? context: Bo played the harp.") + [sp.eos]
    assert src[1, 1, 0] == sp.eos and (src[1, 1, 1:] == sp.pad).all()  # a missing passage: one EOS
    assert tgt_in[0, 0] == sp.bos and tgt_out[0, : 5].tolist() == tok.encode("Rome") + [sp.eos]
    a, b = data.get_batch(3, 2, 64, seed=1), data.get_batch(3, 2, 64, seed=1)
    assert all(torch.equal(u, v) for u, v in zip(a, b))
