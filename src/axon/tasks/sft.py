"""The ``sft`` task: supervised fine-tuning of a causal language model on prompt/response pairs
and chats, with the loss on the responses only (InstructGPT's first step, Ouyang et al. 2022
sec. 3.5: "We fine-tune GPT-3 on our labeler demonstrations using supervised learning").

    JSONL pairs / chats --chat template--> ids, trained mask --> (x, y = -100 off the answers)
                           (axon.data.chat)                       --ResponseLM--> loss on answers

Data (``data.train_file``, ``data.val_file``; without a validation file every 10th example is
held out, as classify does): the two JSONL forms, the template and its end marker ``$``, the
length rules (``data.truncate``) and the batches are ``axon.data.chat``'s.

Tokenizer: with ``train.init_from`` the pretrained run's ``tokenizer.json`` (a character that it
cannot encode is an error naming the file and line); otherwise ``data.tokenizer``: ``char`` (the
characters of both files in the template), ``bpe`` (trained on the training file's text) or a
path to a ``tokenizer.json``.

Starting weights: ``train.init_from`` loads strictly (``axon.train.run.init_weights``), so the
run's model must be the pretrained run's; a config whose model differs is refused here, naming
the fields. ``axon finetune PRETRAINED_RUN --task=sft --data.train_file=...`` takes the model and
the tokenizer from the run (``axon.tasks.finetune.finetune_config``).

Metrics: the validation loss is the mean cross-entropy per response token (end markers
included); ``summarize`` adds its perplexity. When every example of a split is one user prompt
that a gold judge of ``axon.feedback`` reads -- every prompt an instruction (the bundled
instruction files) or every prompt an arithmetic problem (the bundled arithmetic files) --
``result.json`` and ``axon eval`` also give that judge's mean score of greedy answers to those
prompts (``gold``: 1 = followed; for arithmetic, the exact-match accuracy of the final answers;
at most ``GOLD_TOKENS`` tokens each, fewer if the split's longest prompt leaves less of the
context; also as ``greedy_gold``, the name the rollout tasks give their greedy figure) and the share
that wrote the end marker (``ended``). samples.txt: greedy
answers to the first validation prompts, stopped at the end marker, beside the reference
answers. ``axon sample`` on an sft run wraps ``--prompt`` in the template and stops at the marker.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable

import torch

from axon.data.chat import END, encode_conversations, encode_pieces, pieces, read_conversations, render
from axon.data.files import read_splits
from axon.errors import ConfigError
from axon.tasks.base import TaskSetup, set_vocab_size
from axon.tasks.finetune import check_pretrained_model, init_run_dir

SAMPLES = 3  # validation prompts answered in samples.txt at each evaluation
GOLD_TOKENS = 64  # longest greedy answer the gold score reads (the bundled references are <= 52 characters)
GOLD_BATCH = 64  # prompts answered at once for the gold score
EXAMPLE = "a JSONL file of {\"prompt\": ..., \"response\": ...} or {\"messages\": [...]} lines"


def pretrained_tokenizer(source: str):
    from axon.data.tokenizers import load_tokenizer

    file = init_run_dir(source) / "tokenizer.json"
    if not file.is_file():
        raise ConfigError(f"train.init_from: {file} not found; fine-tuning encodes text with the pretrained run's "
                          "tokenizer (copy the model's tokenizer.json into the run)")
    return load_tokenizer(file)


def built_tokenizer(cfg, train_convs, val_convs):
    from axon.data.tokenizers import KINDS, build_tokenizer, check_tokenizer_choice

    kind = cfg.data.tokenizer
    check_tokenizer_choice(kind, KINDS)
    convs = [*train_convs, *val_convs] if kind == "char" else train_convs  # char: every character there is
    return build_tokenizer(kind, (render(c.messages) for c in convs), cfg.data.vocab_size)


def sft_task(cfg, device: torch.device) -> TaskSetup:
    from axon.objectives import ResponseLM

    data, block = cfg.data, cfg.model.block_size
    tokenizer = None
    if cfg.train.init_from:  # the pretrained run's tokenizer and model, checked before any data is read
        tokenizer = pretrained_tokenizer(cfg.train.init_from)
        set_vocab_size(cfg, tokenizer.vocab_size)
        check_pretrained_model(cfg, cfg.train.init_from)
    train_convs, train_file, val_convs, val_file = read_splits(data, read_conversations, example=EXAMPLE)
    if tokenizer is None:
        tokenizer = built_tokenizer(cfg, train_convs, val_convs)
        set_vocab_size(cfg, tokenizer.vocab_size)
    train, cut_train = encode_conversations(train_convs, tokenizer, block, data.truncate, str(train_file))
    val, cut_val = encode_conversations(val_convs, tokenizer, block, data.truncate, str(val_file))
    if cut_train or cut_val:
        print(f"sft: cut the end of {cut_train} of {len(train)} training and {cut_val} of {len(val)} validation "
              f"examples to block_size={block} (data.truncate)", file=sys.stderr)

    def summarize(loss: float, split: str) -> dict:  # loss: mean cross-entropy per response token
        return {"perplexity": math.exp(loss)}

    golds = {"train": judged_prompts(train_convs), "val": judged_prompts(val_convs)}

    def model_metrics(model, split: str) -> dict:
        judged = golds.get(split)
        if judged is None:
            return {}
        figures = gold_figures(model, tokenizer, *judged, cfg.model.block_size)
        # gold is greedy here; greedy_gold names it as the rollout tasks do (their gold is sampled)
        return {**figures, **({"greedy_gold": figures["gold"]} if "gold" in figures else {})}

    return TaskSetup(train_data=train, val_data=val, objective=ResponseLM(z_loss=cfg.train.z_loss),
                     tokenizer=tokenizer, sample_fn=make_answerer(tokenizer, val_convs[:SAMPLES], cfg, device),
                     summarize=summarize, model_metrics=model_metrics if golds["val"] is not None else None)


def judged_prompts(convs) -> tuple[list[str], Callable[[str, str], float]] | None:
    """(prompts, gold judge) of ``convs`` when each is one user message that one gold judge of
    ``axon.feedback`` reads (every prompt an instruction, or every prompt an arithmetic problem:
    ``feedback.prompt_setup``), else None."""
    from axon.feedback import gold_for, prompt_setup

    if not convs or any([r for r, _ in c.messages] != ["user", "assistant"] for c in convs):
        return None
    prompts = [c.messages[0][1] for c in convs]
    setup = prompt_setup(prompts)
    return None if setup is None else (prompts, gold_for(setup))


@torch.no_grad()
def gold_figures(model, tokenizer, prompts: list[str], gold: Callable[[str, str], float], block_size: int) -> dict:
    """``gold``: the mean score by ``gold`` of greedy answers to ``prompts`` (in the chat
    template, stopped at the end marker); ``ended``: the share that wrote the marker.

    Every answer may take the same number of tokens: GOLD_TOKENS, or fewer when the longest
    prompt leaves less of the context. (A batch of prompts is generated in one cache, which stops
    every row when the longest prompt fills the context; one limit for the whole split keeps an
    answer independent of the prompts it was batched with.)"""
    from axon.data.chat import prompt_ids
    from axon.tasks.ppo import sample_answers

    ids = [prompt_ids(tokenizer, p)[1] for p in prompts]
    new = min(GOLD_TOKENS, block_size - max(len(x) for x in ids))
    if new < 1:
        return {}
    was_training = model.training
    model.eval()
    score = ended = 0.0
    for s in range(0, len(prompts), GOLD_BATCH):
        answers = sample_answers(model, tokenizer, ids[s : s + GOLD_BATCH], new, 0.0, None)
        score += sum(gold(p, a) for p, a in zip(prompts[s : s + GOLD_BATCH], answers.texts))
        ended += float(answers.ended.sum())
    model.train(was_training)
    return {"gold": score / len(prompts), "ended": ended / len(prompts)}


def make_answerer(tokenizer, convs, cfg, device: torch.device):
    """sample_fn(model, step) -> text: each conversation's last answer generated greedily after the
    rest of it (stopped at the end marker), with the reference answer below it."""
    from axon.generate import cut_at_stop, generate

    prompts = []
    for c in convs:
        context = c.messages[:-1]
        parts = pieces(context, c.fields[:-1], generation=True)
        ids = encode_pieces(tokenizer, parts, "a validation prompt")[0].tolist()
        prompts.append(("".join(p.text for p in parts), ids[-cfg.model.block_size:], c.messages[-1][1]))

    def sample(model, step: int) -> str:
        out = []
        for text, ids, reference in prompts:
            gen = generate(model, [ids], cfg.train.sample_tokens, temperature=0.0, stop_strings=[END],
                           decode=tokenizer.decode, vocab_limit=tokenizer.vocab_size)
            answer = tokenizer.decode(gen.tokens[0])
            ended = END in answer
            out.append(f"{text}{cut_at_stop(answer, [END])}{END if ended else ' [no end marker]'}\n"
                       f"  (reference: {reference})")
        return "\n".join(out)

    return sample
