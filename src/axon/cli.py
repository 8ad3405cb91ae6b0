"""Command line: each subcommand parses its flags and calls one plain function.

User errors (AxonError) end with one line on stderr and exit status 2; programming errors keep
their traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import warnings
from pathlib import Path

from axon.errors import AxonError, ConfigError, DataError, OptionError, os_error_line

TRAIN_EPILOG = """\
Any config value can be set as --section.key=value (sections: model, data, optim, schedule,
train, log; top level: out_dir, name). Precedence: defaults < --config recipe < overrides.
Examples:
  axon train                                   # the default job: char-level tiny Shakespeare
  axon train --config configs/gpt2_shakespeare_char.yaml --train.max_steps=500
  axon train --model.preset=tiny --model.n_kv_head=1 --optim.name=adamw --optim.lr=3e-3
  axon train --resume runs/20261122-101500    # continue a killed or finished run
  axon train --nproc 2 --train.parallel=fsdp   # 2 processes through torchrun (DDP by default)
Run `axon config` to print every key with its default.
"""


def launch_torchrun(args, overrides: list[str]) -> int:
    """``axon train --nproc N ...``: the same command under torchrun (``--standalone``: N processes
    on this machine; several machines: call torchrun yourself, see docs/distributed.md). This process is
    torchrun's agent; a failed worker ends in one line naming it instead of torchrun's traceback."""
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import get_args_parser, run

    os.environ.setdefault("OMP_NUM_THREADS", "1")  # torchrun's own default, without its warning
    argv = ["--standalone", f"--nproc_per_node={args.nproc}", "-m", "axon", "train"]
    argv += ["--config", args.config] if args.config else []
    argv += ["--resume", args.resume] if args.resume else []
    try:
        run(get_args_parser().parse_args([*argv, *overrides]))
    except ChildFailedError as e:
        rank, failure = e.get_first_failure()
        code = failure.exitcode
        print(f"axon train: process {rank} of {args.nproc} failed (exit code {code}); its error is above", file=sys.stderr)
        return code if 0 < code < 128 else 1
    except SignalException as e:  # Ctrl-C / SIGTERM: torchrun passed it on; the workers checkpointed and stopped
        print(f"axon train: stopped by signal {int(e.sigval)}; continue the run with axon train --resume RUN_DIR", file=sys.stderr)
        return 128 + int(e.sigval)
    return 0


def cmd_train(args, overrides: list[str]) -> int:
    from axon.config import load_config
    from axon.eval import train_line
    from axon.train.distributed import launched_by_torchrun
    from axon.train.run import train

    if args.nproc is not None:
        if args.nproc < 1:
            raise AxonError(f"--nproc must be >= 1, got {args.nproc}")
        if launched_by_torchrun():
            raise AxonError("--nproc launches torchrun itself; under torchrun drop --nproc")
        if args.nproc > 1:
            return launch_torchrun(args, overrides)
    if args.resume:
        if args.config:
            raise AxonError("--resume continues a run with its own config.yaml; drop --config")
        result = train(resume=args.resume, overrides=overrides)
    else:
        result = train(load_config(args.config, overrides))
    main_rank = int(os.environ.get("RANK", 0)) == 0  # a torchrun worker: rank 0 reports
    if result.get("interrupted"):
        return _stopped(result, "train", main_rank)
    if main_rank:
        print(train_line(result))
    return 0


def _stopped(result: dict, command: str, main_rank: bool = True) -> int:
    """A run stopped by a signal and checkpointed is not finished, so not exit 0: say which step
    is saved and how to continue; exit 128 + the signal."""
    sig = int(result["signal"])
    if main_rank:
        print(f"axon {command}: stopped by {signal.Signals(sig).name} at step {result['step']}, which is saved; "
              f"continue the run with axon train --resume {result['run_dir']}", file=sys.stderr)
    return 128 + sig


def cmd_config(args, overrides: list[str]) -> int:
    from axon.config import dump_config, load_config

    print(dump_config(load_config(args.config, overrides)), end="")
    return 0


# The command that reads a run of a task, for a refusal of another command (axon sample, axon tag).
USE_INSTEAD = {"seq2seq": "; use axon translate RUN_DIR --input TEXT", "word2vec": "; use axon embed RUN_DIR --neighbors WORD",
               "glove": "; use axon embed RUN_DIR --neighbors WORD", "fasttext": "; use axon embed RUN_DIR --neighbors WORD",
               "tag": "; use axon tag RUN_DIR --input TEXT"}


def cmd_sample(args, overrides: list[str]) -> int:
    import torch

    from axon.config import run_config_file
    from axon.errors import reading
    from axon.generate import cut_at_stop, generate
    from axon.generate.cache import context_limit
    from axon.generate.options import check_stop_tokens
    from axon.generate.stream import StreamPrinter
    from axon.train.run import load_run
    from axon.tasks import CHAT_TASKS, task_name

    options = _sampling_options(args)  # every flag, then every file, before any model is loaded
    if args.draft:
        run_config_file(args.draft, "--draft")
    if args.prompt_file:
        with reading(args.prompt_file, "--prompt-file"):
            prompt = Path(args.prompt_file).read_text(encoding="utf-8")
    else:
        prompt = args.prompt
    pairs = _scored_pairs(args, prompt)  # --response / --responses-file: texts for a reward run to score
    cfg, model, tokenizer = load_run(args.run_dir, args.device)
    task = task_name(cfg)
    if task == "reward":
        return _print_scores(args, model, tokenizer, pairs)
    if task == "diffusion":
        return _sample_images(args, cfg, model)
    if task == "detect":
        return _sample_detections(args, cfg, model)
    if task == "vq":
        return _sample_reconstructions(args, cfg, model)
    if task == "mixed_modal":
        return _sample_mixed_modal(args, cfg, model, tokenizer, prompt)
    if args.image:
        raise ConfigError(f"--image: only a mixed_modal run captions images; {args.run_dir} is a {task!r} run")
    if pairs:
        raise ConfigError(f"--response and --responses-file are scored by a reward run; {args.run_dir} is a {task!r} run")
    prompt = "\n" if prompt is None else prompt
    if task not in ("lm", *CHAT_TASKS):  # only a language model continues text
        raise ConfigError(f"{args.run_dir} is a {cfg.model.family} run trained for {task!r}: it does not continue text"
                          + USE_INSTEAD.get(task, ""))
    if tokenizer is None:
        raise ConfigError(f"{args.run_dir} has no tokenizer.json; copy the model's tokenizer.json into it")
    check_stop_tokens("stop_tokens", args.stop_token, tokenizer.vocab_size)  # the vocabulary is known now
    if task in CHAT_TASKS:  # an assistant: the prompt in the chat template
        prompt, ids = _chat_prompt(args, tokenizer, prompt)
    else:
        ids = tokenizer.encode(prompt) if prompt else [0]
    limit = context_limit(model)  # None: a recurrent model reads prompts of any length
    if limit is not None and len(ids) > limit:
        raise ConfigError(
            f"prompt is {len(ids)} tokens but the model's context is {limit}; shorten it"
        )
    if args.beams:
        return _print_beams(args, model, tokenizer, prompt, ids)
    if args.draft:
        return _print_speculative(args, model, tokenizer, prompt, ids)
    device = next(model.parameters()).device
    gen = torch.Generator(device=device).manual_seed(args.seed)
    printer = StreamPrinter(tokenizer.decode, args.stop) if args.num_samples == 1 and not args.no_stream else None
    if printer:
        print(prompt, end="", flush=True)
    result = generate(
        model, [ids], options=options, stop_tokens=args.stop_token, stop_strings=args.stop, decode=tokenizer.decode,
        generator=gen, vocab_limit=tokenizer.vocab_size, on_token=printer,
    )
    if printer:
        printer.finish()
        print()
        return 0
    for i, toks in enumerate(result.tokens):
        text = tokenizer.decode(toks)
        if args.stop:
            text = cut_at_stop(text, args.stop)
        if args.num_samples > 1:
            print(f"--- sample {i + 1} ({result.finish_reasons[i]}) ---")
        print(prompt + text)
    return 0


def _scored_pairs(args, prompt: str | None) -> list[tuple[str, str]]:
    """The (prompt, response) pairs a reward run scores: each ``--response`` with ``--prompt``, or
    the lines of ``--responses-file`` (JSONL of {"prompt", "response"}), read before any run is loaded."""
    from axon.feedback import read_jsonl

    if args.response and args.responses_file:
        raise ConfigError("give --response TEXT (repeatable, with --prompt) or --responses-file FILE, not both")
    if args.responses_file:
        rows = read_jsonl(args.responses_file, ("prompt", "response"), "--responses-file")
        for n, r in enumerate(rows, 1):
            if not (isinstance(r["prompt"], str) and isinstance(r["response"], str)):
                raise DataError(f"--responses-file {args.responses_file}: object {n}: prompt and response must be strings")
        if not rows:
            raise DataError(f"--responses-file {args.responses_file}: no {{\"prompt\", \"response\"}} lines")
        return [(r["prompt"], r["response"]) for r in rows]
    return [(prompt or "", r) for r in args.response]


def _print_scores(args, model, tokenizer, pairs: list[tuple[str, str]]) -> int:
    """A reward run: one score per (prompt, response), as PPO reads it (axon.tasks.ppo.RunReward:
    ``prompt + response`` as written, its last block_size tokens); ``--responses-file``: JSON lines."""
    from axon.tasks.ppo import RunReward

    if not pairs:
        raise ConfigError(f"{args.run_dir} is a reward model: it scores responses; give --prompt P --response R "
                          "(repeatable) or --responses-file FILE.jsonl")
    if tokenizer is None:
        raise ConfigError(f"{args.run_dir} has no tokenizer.json to encode the responses with")
    scores = RunReward(model, tokenizer).score([p for p, _ in pairs], [r for _, r in pairs]).tolist()
    for (p, r), score in zip(pairs, scores):
        if args.responses_file:
            print(json.dumps({"prompt": p, "response": r, "score": score}, ensure_ascii=False))
        else:
            print(f"{score:.4f}\t{r}")
    return 0


def _chat_prompt(args, tokenizer, prompt: str) -> tuple[str, list[int]]:
    """An sft run answers: ``prompt`` as the user's message in the chat template, ready for the
    assistant's answer (axon.data.chat), and sampling stops at the end marker (``args.stop``)."""
    from axon.data.chat import END, prompt_ids

    if not prompt.strip():
        raise ConfigError("an sft run answers a prompt: give --prompt TEXT (it is wrapped in the chat template)")
    args.stop = [*args.stop, END]
    return prompt_ids(tokenizer, prompt)


def _sampling_options(args):
    """The sampling flags as SamplingOptions, checked before any run is loaded, and the beam, draft
    and stop-token flags by the checks beam_search, speculative_generate and generate apply to
    their keywords: a refused value is an OptionError that main() words with its flag
    (``--top-p must be in (0, 1], got 2.0``)."""
    from axon.errors import OptionError
    from axon.generate import SamplingOptions
    from axon.generate.options import check_beam_options, check_length_penalty, check_num_draft, check_stop_tokens

    options = SamplingOptions(
        max_new_tokens=args.max_new_tokens, temperature=args.temperature, top_k=args.top_k, top_p=args.top_p,
        min_p=args.min_p, repetition_penalty=args.repetition_penalty, num_samples=args.num_samples,
    )
    if args.beams < 0:  # --beams 0 (the default) samples instead
        raise OptionError("num_beams", "must be an integer >= 0 (0: sampling, no beam search)", args.beams)
    if args.beams:
        check_beam_options(args.max_new_tokens, args.beams, args.length_penalty, args.num_samples)
    check_length_penalty(args.length_penalty)
    check_num_draft(args.num_draft)
    check_stop_tokens("stop_tokens", args.stop_token)
    if args.draft and not args.beams and (args.num_samples != 1 or args.min_p is not None or args.repetition_penalty != 1.0):
        raise ConfigError("--draft supports one sample with temperature, top-k and top-p only")
    return options


def _png_out(args, default: Path | None, what: str, example: str) -> Path:
    """``axon sample``'s --out for a run that draws pictures: a PNG path (``default`` when --out is
    not given; None: --out is required), with --num-samples >= 1; otherwise one line naming the flag."""
    out = Path(args.out) if args.out else default
    if out is None or out.suffix.lower() != ".png":
        raise ConfigError(f"--out: {what}; name the PNG to write, e.g. --out {example}" + (f", got {out}" if out else ""))
    if args.num_samples < 1:
        raise ConfigError(f"--num-samples: must be >= 1, got {args.num_samples}")
    return out


def _sample_detections(args, cfg, model) -> int:
    """A detection run: the predicted (and true) boxes of validation images drawn into a PNG
    (--out, default RUN_DIR/detections.png); --num-samples images (default detect.samples)."""
    from axon.tasks.detect import draw_run

    out = _png_out(args, Path(args.run_dir) / "detections.png", "a detection run draws boxes on images", "boxes.png")
    draw_run(cfg, model, out, "val", args.num_samples if args.num_samples > 1 else None)
    print(f"wrote {out}: predicted boxes (colour, score >= detect.score_threshold={cfg.detect.score_threshold}) and "
          "true boxes (white) on validation images")
    return 0


def _sample_reconstructions(args, cfg, model) -> int:
    """A vq run (image tokenizer): the first --num-samples validation images (default: the 16 each
    evaluation draws) above their reconstructions through the codebook, as one PNG (--out, default
    RUN_DIR/reconstructions.png)."""
    from axon.tasks.image_classify import load_images
    from axon.tasks.vq import SHOWN, reconstruction_picture

    out = _png_out(args, Path(args.run_dir) / "reconstructions.png", "a vq run draws images and their reconstructions",
                   "recon.png")
    images = load_images(cfg)[2][:args.num_samples if args.num_samples > 1 else SHOWN]  # the validation images
    reconstruction_picture(model, images, out)
    print(f"wrote {out}: {len(images)} validation images above their reconstructions", file=sys.stderr)
    return 0


def _sample_mixed_modal(args, cfg, model, tokenizer, prompt: str | None) -> int:
    """A mixed_modal run: --image FILE (repeatable) prints a caption of each image; otherwise --prompt, a
    caption, draws --num-samples images (early fusion) into --out (default RUN_DIR/drawn.png)."""
    import numpy as np
    import torch

    from axon.data.images import read_image
    from axon.tasks.diffusion import save_grid
    from axon.tasks.mixed_modal import caption_tokens, decode_codes, draw_codes, encode_images, load_run_layout

    layout, vq = load_run_layout(args.run_dir, cfg)
    if args.image:
        size, channels = ((cfg.model.vision_image_size, cfg.model.vision_in_channels) if vq is None else
                          (vq.config.image_size, vq.config.in_channels))
        images = torch.from_numpy(np.stack([read_image(Path(f), size, channels) for f in args.image]))
        src = {"images": images} if vq is None else {"codes": encode_images(vq, images)}
        room = cfg.model.block_size - (1 if vq is None else layout.tokens_per_image + 2)
        for file, ids in zip(args.image, caption_tokens(model, layout, room, **src)):
            print(f"{file}: {tokenizer.decode(ids)}")
        return 0
    if vq is None:
        raise ConfigError(f"{args.run_dir} is a late-fusion run: it writes captions of images; give --image FILE")
    if not prompt or not prompt.strip():
        raise ConfigError('--prompt: a mixed_modal run draws the image a caption asks for; give one, e.g. '
                          '--prompt "a handwritten seven, drawn thin, upright" (or --image FILE for a caption)')
    out = _png_out(args, Path(args.run_dir) / "drawn.png", "a mixed_modal run draws images", "drawn.png")
    ids = tokenizer.encode(prompt.strip())  # a character outside the captions' alphabet: one line naming it
    if len(ids) + layout.tokens_per_image + 2 > cfg.model.block_size:
        raise ConfigError(f"--prompt: {len(ids)} characters leave no room for an image in the model's "
                          f"{cfg.model.block_size} positions")
    codes = draw_codes(model, layout, [ids] * args.num_samples, args.temperature, args.seed)
    images, _ = decode_codes(vq, codes)
    save_grid(images, out)
    print(f"wrote {out}: {len(images)} images drawn for {prompt.strip()!r} (temperature {args.temperature})",
          file=sys.stderr)
    return 0


def _sample_images(args, cfg, model) -> int:
    """A diffusion run: --num-samples images (or 2-D points) to --out (a PNG grid or scatter) and
    the raw tensor beside it (.safetensors), sampled with the EMA's weights; --strip: x_T -> x_0."""
    import torch
    from safetensors.torch import save_file
    from tqdm import tqdm

    from axon.atomic import written_aside
    from axon.tasks.diffusion import draw_samples, is_points, load_data, save_picture, save_strip

    d = cfg.diffusion
    out = _png_out(args, None, "a diffusion run draws images", "grid.png")
    sampler = args.sampler or d.sampler
    if sampler == "ddpm" and args.steps is not None and args.steps != d.timesteps:
        raise ConfigError(f"--steps: ddpm takes all diffusion.timesteps={d.timesteps} steps; use --sampler ddim")
    if args.steps is not None and not 1 <= args.steps <= d.timesteps:
        raise ConfigError(f"--steps: must be in [1, {d.timesteps}], got {args.steps}")
    if args.eta is not None and not 0.0 <= args.eta <= 1.0:
        raise ConfigError(f"--eta: must be in [0, 1], got {args.eta}")
    if args.guidance is not None and args.guidance < 0:
        raise ConfigError(f"--guidance: must be >= 0, got {args.guidance}")
    classes = None
    if args.class_ is not None:
        if cfg.model.num_classes is None:
            raise ConfigError(f"--class: {args.run_dir} is unconditional (model.num_classes is null)")
        if not 0 <= args.class_ < cfg.model.num_classes:
            raise ConfigError(f"--class: must be in [0, {cfg.model.num_classes}), got {args.class_}")
        classes = torch.full((args.num_samples,), args.class_, dtype=torch.long)
    if args.strip and is_points(cfg):
        raise ConfigError("--strip: a denoising strip shows images; this run samples 2-D points")
    steps = d.timesteps if sampler == "ddpm" else (args.steps or d.sample_steps)
    bar = tqdm(total=steps, desc=f"{sampler} {steps} steps", unit="step", disable=args.no_stream, dynamic_ncols=True)
    try:
        with model.averaged():
            got = draw_samples(model, cfg, args.num_samples, classes=classes, seed=args.seed, sampler=sampler,
                               steps=args.steps, eta=args.eta, guidance=args.guidance,
                               keep=min(8, steps + 1) if args.strip else 0, progress=lambda done, total: bar.update(1))
    finally:
        bar.close()
    samples, classes = got[0], got[1]
    reference = load_data(cfg)[2] if is_points(cfg) else None
    save_picture(cfg, samples, reference, out, title=f"{args.num_samples} samples, {sampler} {steps} steps")
    raw = out.with_suffix(".safetensors")
    tensors = {"samples": samples.contiguous()}
    if classes is not None:
        tensors["classes"] = classes.contiguous()
    with written_aside(raw) as tmp:
        save_file(tensors, str(tmp))
    if args.strip:
        rows = min(args.num_samples, 8)
        save_strip([(t, x[:rows]) for t, x in got[2]], Path(args.strip))
    guidance = d.guidance if args.guidance is None else args.guidance
    print(f"wrote {out} and {raw}: {args.num_samples} samples, {sampler} {steps} steps"
          + ("" if cfg.model.num_classes is None else f", guidance {guidance:g}")
          + ("" if args.strip is None else f"; strip {args.strip}"))
    return 0


def _print_beams(args, model, tokenizer, prompt: str, ids: list[int]) -> int:
    """Beam search: the n best continuations with their scores, best first."""
    from axon.generate import beam_search, cut_at_stop

    hyps = beam_search(model, ids, args.max_new_tokens, num_beams=args.beams, length_penalty=args.length_penalty,
                       eos_token_id=args.stop_token or None, num_return=args.num_samples, vocab_limit=tokenizer.vocab_size)
    for i, h in enumerate(hyps):
        text = tokenizer.decode(h.tokens)
        if args.stop:
            text = cut_at_stop(text, args.stop)
        print(f"--- beam {i + 1}: score {h.score:.4f} (log-prob {h.logprob:.4f}, {len(h.tokens)} tokens) ---")
        print(prompt + text)
    return 0


def _print_speculative(args, model, tokenizer, prompt: str, ids: list[int]) -> int:
    """Speculative decoding with a small draft run: the target's distribution, fewer target calls."""
    import torch

    from axon.generate import cut_at_stop, speculative_generate
    from axon.train.run import load_run

    _, draft, draft_tok = load_run(args.draft, args.device)
    if draft_tok is None:
        raise ConfigError(f"--draft: {args.draft} has no tokenizer.json")
    if draft_tok.vocab_size != tokenizer.vocab_size:
        raise ConfigError(f"--draft: its tokenizer has {draft_tok.vocab_size} tokens, the target's {tokenizer.vocab_size}")
    gen = torch.Generator(device=next(model.parameters()).device).manual_seed(args.seed)
    result = speculative_generate(model, draft, ids, args.max_new_tokens, num_draft=args.num_draft,
                                  temperature=args.temperature, top_k=args.top_k, top_p=args.top_p, generator=gen,
                                  eos_token_id=args.stop_token or None, vocab_limit=tokenizer.vocab_size)
    text = tokenizer.decode(result.tokens)
    print(prompt + (cut_at_stop(text, args.stop) if args.stop else text))
    print(f"speculative: {result.accepted}/{result.proposed} draft tokens accepted "
          f"({result.acceptance_rate:.1%}), {result.target_calls} target forward passes", file=sys.stderr)
    return 0


def cmd_eval(args, overrides: list[str]) -> int:
    from axon.eval import metrics_line
    from axon.train.run import evaluate_run

    if args.tasks is not None:
        return _eval_tasks(args)
    given = [f for f, v in (("--shots", args.shots), ("--limit", args.limit), ("--seed", args.seed),
                            ("--log-samples", args.log_samples)) if v is not None]
    if given:
        raise ConfigError(f"{given[0]} needs --tasks: it sets up prompted evaluation (axon eval RUN --tasks NAME)")
    split = args.split or "val"
    if split not in ("train", "val"):
        raise ConfigError(f"--split must be train or val, got {split!r}")
    batch_size = 32 if args.batch_size is None else args.batch_size
    metrics = evaluate_run(args.run_dir, split, batch_size=batch_size, max_batches=args.max_batches, device=args.device,
                           data_dir=args.data)
    print(json.dumps(metrics) if args.json else metrics_line(metrics))
    _draw_detections(args.run_dir, split, args.device)
    return 0


def _draw_detections(run_dir, split: str, device: str) -> None:
    """A detection run's ``axon eval`` also draws its boxes on the split's first images:
    RUN_DIR/detections_<split>.png (named on stderr); other runs: nothing."""
    from axon.config import load_config, run_config_file
    from axon.tasks import task_name

    if task_name(load_config(run_config_file(run_dir))) != "detect":
        return
    from axon.tasks.detect import draw_run
    from axon.train.run import load_run

    cfg, model, _ = load_run(run_dir, device)
    out = draw_run(cfg, model, Path(run_dir) / f"detections_{split}.png", split)
    print(f"wrote {out}: predicted (colour) and true (white) boxes", file=sys.stderr)


def _eval_tasks(args) -> int:
    """``axon eval RUN --tasks ...``: prompted evaluation (axon.eval.prompting), a table or JSON."""
    from axon.errors import check_count, check_new_file
    from axon.eval.prompting import LMScorer, evaluate_tasks, resolve_tasks, results_table
    from axon.eval.prompting.harness import check_harness_options

    for flag, value in (("--data", args.data), ("--split", args.split), ("--max-batches", args.max_batches)):
        if value is not None:
            raise ConfigError(f"{flag} is for the run's own data; --tasks evaluates on the tasks' records "
                              "(see --limit)")
    seed = 1234 if args.seed is None else args.seed
    check_harness_options(args.shots, args.limit, seed)
    check_count("batch_size", args.batch_size, 1, optional=True)
    if args.log_samples is not None:
        check_new_file("log_samples", args.log_samples)
    tasks = resolve_tasks(args.tasks)  # every task file read and checked before the run is loaded
    batch_size = 8 if args.batch_size is None else args.batch_size
    scorer = LMScorer.from_run(args.run_dir, args.device, batch_size=batch_size, seed=seed)
    results = evaluate_tasks(scorer, tasks, shots=args.shots, limit=args.limit, seed=seed,
                             log_samples=args.log_samples, progress=not args.json)
    print(json.dumps(results) if args.json else results_table(results))
    return 0


def cmd_lm_eval(args, overrides: list[str]) -> int:
    """``axon lm-eval ARGS``: EleutherAI's lm-evaluation-harness command line with the ``axon``
    model registered (axon.eval.prompting.lm_eval_adapter); ARGS go to it unchanged."""
    try:  # lm-eval is optional: only this command and the adapter import it
        from axon.eval.prompting.lm_eval_adapter import cli
    except ImportError as e:
        why = "" if (e.name or "").partition(".")[0] == "lm_eval" else f" (installed, but importing it failed: {e})"
        raise ConfigError(f"axon lm-eval needs lm-evaluation-harness{why}: pip install 'axon-lab[eval]'") from None
    return cli(args.lm_eval_args)


def cmd_prepare(args, overrides: list[str]) -> int:
    from axon.data.prepare import prepare

    if not args.inputs and not args.hf_dataset:
        raise ConfigError("give input files (.txt, .jsonl) or --hf-dataset NAME")
    meta = prepare(
        args.inputs, args.out, tokenizer=args.tokenizer, vocab_size=args.vocab_size, val_fraction=args.val_fraction,
        text_field=args.text_field, hf_dataset=args.hf_dataset, hf_split=args.hf_split, hf_config=args.hf_config,
        max_docs=args.max_docs,
    )
    splits = meta["splits"]
    print(f"wrote {args.out}: vocab {meta['vocab_size']}, " + ", ".join(f"{k} {v['num_tokens']:,} tokens" for k, v in splits.items()))
    return 0


def cmd_convert(args, overrides: list[str]) -> int:
    import torch

    from axon.errors import check_output_dir
    from axon.interop.runs import hf_to_run, run_to_hf

    if bool(args.from_hf) == bool(args.to_hf):
        raise ConfigError("give exactly one of --from-hf HF_DIR or --to-hf RUN_DIR")
    check_output_dir("out_dir", args.out, empty=True)  # before anything is read
    if args.from_hf:
        dtype = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[args.dtype]
        info = hf_to_run(args.from_hf, args.out, dtype=dtype)
        print(f"wrote run {info['run_dir']}: {info['params']:,} parameters"
              + ("" if info["tokenizer"] else " (no tokenizer.json in the source: sample and eval need one)"))
    else:
        out = run_to_hf(args.to_hf, args.out)
        print(f"wrote {out}: load it with transformers.AutoModelForCausalLM.from_pretrained({str(out)!r})")
    return 0


def cmd_finetune(args, overrides: list[str]) -> int:
    from axon.eval import finetune_line
    from axon.tasks.finetune import finetune_config
    from axon.train.run import train

    result = train(finetune_config(args.pretrained, args.config, overrides))
    if result.get("interrupted"):
        return _stopped(result, "finetune")
    print(finetune_line(result))
    return 0


def cmd_baseline(args, overrides: list[str]) -> int:
    from axon.config import load_config
    from axon.lab.baseline import baseline_line, tfidf_baseline

    result = tfidf_baseline(load_config(args.config, overrides))
    print(json.dumps(result, indent=1) if args.json else baseline_line(result))
    return 0


def cmd_translate(args, overrides: list[str]) -> int:
    """Decode new sources with a seq2seq run, or score it on a TSV of pairs (BLEU, chrF, exact match)."""
    from axon.errors import reading
    from axon.eval.translation import check_translate_options, evaluate_translation, translate
    from axon.tasks.seq2seq import ENCODER_DECODERS, encoder_decoder
    from axon.train.run import load_run

    if sum(map(bool, (args.input, args.input_file, args.eval))) != 1:
        raise ConfigError("give one of --input TEXT (repeatable), --input-file FILE or --eval FILE.tsv")
    check_translate_options(args.beams, args.max_new_tokens, args.batch_size)
    pairs = sources = None  # the files are read before the run is loaded
    if args.eval:
        from axon.data.files import read_pairs

        pairs = read_pairs(args.eval)
    elif args.input_file:
        with reading(args.input_file, "--input-file"):
            text = Path(args.input_file).read_text(encoding="utf-8")
        sources = [s.removesuffix("\r") for s in text.removesuffix("\n").split("\n")]  # one per line; empty ones are errors
    else:
        sources = args.input
    cfg, model, tokenizer = load_run(args.run_dir, args.device)
    if not encoder_decoder(cfg.model):  # seq2seq, rnn_seq2seq: a config that declares the contract
        raise ConfigError(f"{args.run_dir} is a {cfg.model.family} run; translate needs a seq2seq run, an encoder-decoder "
                          f"(model.family={' or '.join(ENCODER_DECODERS)}; axon sample continues text)")
    if tokenizer is None:
        raise ConfigError(f"{args.run_dir} has no tokenizer.json")
    options = dict(beams=args.beams, max_new_tokens=args.max_new_tokens, batch_size=args.batch_size)
    if pairs is not None:
        m = evaluate_translation(model, tokenizer, [p.source for p in pairs], [p.target for p in pairs], **options)
        scores = {"bleu": m["bleu"], "chrf": m["chrf"], "exact_match": m["exact_match"], "pairs": len(pairs)}
        if args.json:
            print(json.dumps(scores))
        else:
            print(f"{args.eval}: {len(pairs)} pairs | BLEU {m['bleu']:.2f} | chrF {m['chrf']:.2f} | "
                  f"exact match {m['exact_match']:.4f}")
        return 0
    for line in translate(model, tokenizer, sources, **options):
        print(line)
    return 0


def cmd_embed(args, overrides: list[str]) -> int:
    """A word2vec, glove or fasttext run's vectors: nearest neighbours, analogies, export in the word2vec
    text format. A fasttext run answers for words outside its vocabulary too (from their n-grams)."""
    from axon.errors import check_count, check_new_file
    from axon.models.word2vec import nearest, save_word2vec_format
    from axon.tasks.word2vec import load_embeddings

    if not (args.neighbors or args.analogy or args.export):
        raise ConfigError("give --neighbors WORD, --analogy A B C or --export FILE")
    check_count("k", args.k, 1)
    if args.export:
        check_new_file("export", args.export)  # before the vectors are loaded and the queries answered
    emb = load_embeddings(args.run_dir)
    vocab, vectors = emb.vocab, emb.vectors
    queries = [emb.query(w) for w in args.neighbors + (args.analogy or [])]  # unknown: an error first
    for word, (i, v) in zip(args.neighbors, queries):
        print(f"nearest to {word!r}:" + ("" if i is not None else " (not in the vocabulary: its vector from its n-grams)"))
        for j, sim in nearest(vectors, v, args.k, exclude=[] if i is None else [i]):
            print(f"  {vocab.words[j]:<20} {sim:.4f}")
    if args.analogy:
        (a, va), (b, vb), (c, vc) = queries[len(args.neighbors):]
        from torch.nn.functional import normalize as unit

        print(f"{args.analogy[0]} : {args.analogy[1]} :: {args.analogy[2]} : ?")
        # b - a + c on unit vectors, the query words excluded: axon.models.word2vec.analogy's 3CosAdd
        for i, sim in nearest(vectors, unit(vb, dim=0) - unit(va, dim=0) + unit(vc, dim=0), args.k,
                              exclude=[x for x in (a, b, c) if x is not None]):
            print(f"  {vocab.words[i]:<20} {sim:.4f}")
    if args.export:
        save_word2vec_format(args.export, vocab.words, vectors)
        print(f"wrote {args.export}: {len(vocab):,} words x {vectors.size(1)} dimensions (word2vec text format)")
    return 0


def cmd_tag(args, overrides: list[str]) -> int:
    """Tag new sentences with a tag run (rnn_tagger, or bert with head: tag), or score it on a CoNLL file."""
    from axon.config import load_config, run_config_file
    from axon.data.conll import read_conll
    from axon.data.files import BUNDLED, resolve_file
    from axon.data.ner import tokenize
    from axon.errors import reading
    from axon.tasks import CHAT_TASKS, task_name
    from axon.tasks.tag import entities, load_tagger, score_conll, tag_sentences

    if sum(map(bool, (args.input, args.input_file, args.eval))) != 1:
        raise ConfigError("give one of --input TEXT (repeatable), --input-file FILE or --eval FILE.conll")
    source = "--input"
    if args.input_file:  # the text is read before the run is loaded
        with reading(args.input_file, "--input-file"):
            text = Path(args.input_file).read_text(encoding="utf-8")
        lines = [s.removesuffix("\r") for s in text.removesuffix("\n").split("\n")] if text else []
        source = f"--input-file {args.input_file} line"
        if not lines:
            raise DataError(f"--input-file {args.input_file}: no sentences (the file is empty)")
    else:
        lines = args.input
    sentences = [tokenize(line) for line in lines]
    for i, words in enumerate(sentences):
        if not words:
            raise DataError(f"{source} {i + 1}: no words to tag (an empty sentence)")
    bundled = bool(args.eval) and args.eval.startswith(BUNDLED)  # in the run's cache: read once its config is
    conll = read_conll(resolve_file(args.eval, "--eval")).sentences if args.eval and not bundled else None
    cfg = load_config(run_config_file(args.run_dir))  # the task, before any weights are read
    task = task_name(cfg)
    if task != "tag":
        hint = USE_INSTEAD.get(task, "; use axon sample RUN_DIR" if task in ("lm", *CHAT_TASKS) else "")
        raise ConfigError(f"{args.run_dir} is a {cfg.model.family} run trained for {task!r}; axon tag reads tag runs "
                          f"(model.family=rnn_tagger, or bert with model.head=tag){hint}")
    if args.eval:
        path = resolve_file(args.eval, "--eval", cfg.data)
        conll = read_conll(path).sentences if bundled else conll
        scores = score_conll(load_tagger(args.run_dir, args.device), path, conll)
        if args.json:
            print(json.dumps(scores))
        else:
            print(f"{args.eval}: {scores['sentences']} sentences | precision {scores['precision']:.4f} | recall "
                  f"{scores['recall']:.4f} | F1 {scores['f1']:.4f} | token accuracy {scores['token_accuracy']:.4f}")
        return 0
    tagger = load_tagger(args.run_dir, args.device)
    tagged = tag_sentences(tagger, sentences, source)
    if args.json:
        print(json.dumps([{"words": w, "tags": t, "entities": [list(e) for e in entities(w, t)]}
                          for w, t in zip(sentences, tagged)], ensure_ascii=False))
    else:
        for words, tags in zip(sentences, tagged):
            print(" ".join(f"{w}/{t}" for w, t in zip(words, tags)))
    return 0


def cmd_index(args, overrides: list[str]) -> int:
    """axon index build | query: a passage collection searched by BM25 or a dpr run's encoders."""
    from axon.errors import check_count
    from axon.tasks.dpr import IndexSearch, build_index

    if args.action == "build":
        if not args.passages or not args.out:
            raise ConfigError("axon index build needs --passages FILE.jsonl and --out DIR")
        record = build_index(args.passages, args.out, args.retriever, args.kind, args.device)
        what = "BM25" if record["retriever"] == "bm25" else f"{record['kind']} index of {args.retriever}'s vectors"
        print(f"wrote {args.out}: {record['passages']:,} passages, {what}")
        return 0
    if not args.question:
        raise ConfigError("axon index query needs --question TEXT (repeatable)")
    check_count("k", args.k, 1)
    search = IndexSearch(args.out or args.folder, args.device)
    for q, hits in zip(args.question, search.search(args.question, args.k)):
        print(f"question: {q}")
        for rank, (key, text, score) in enumerate(hits, 1):
            print(f"  {rank:>2}. [{key}] {text}   ({score:.3f})")
    return 0


def cmd_rag(args, overrides: list[str]) -> int:
    """axon rag RUN --question ...: the passages a rag reader reads and its answer."""
    from axon.tasks.rag import ask

    if not args.question:
        raise ConfigError("give --question TEXT (repeatable)")
    for r in ask(args.run_dir, args.question, args.passages, args.k, args.retriever, args.device):
        print(f"question: {r['question']}")
        for rank, (key, text) in enumerate(r["passages"], 1):
            print(f"  read {rank}. [{key}] {text}")
        if not r["passages"]:
            print("  read nothing (closed-book)")
        print(f"answer: {r['answer']}\n")
    return 0


def cmd_lora(args, overrides: list[str]) -> int:
    """LoRA runs -> plain runs or adapter files (axon.train.lora)."""
    from axon.train.lora import apply_adapters, export_adapters, merge_run

    if (args.action == "apply") != (args.adapters is not None):
        raise ConfigError("axon lora apply takes BASE_RUN ADAPTERS; merge and export take one RUN_DIR")
    if args.action == "export":
        info = export_adapters(args.run_dir, args.out)
        print(f"wrote {info['path']}: {info['bytes']:,} bytes")
        return 0
    info = merge_run(args.run_dir, args.out) if args.action == "merge" else apply_adapters(args.run_dir, args.adapters, args.out)
    print(f"wrote run {info['run_dir']}: {info['params']:,} parameters, adapters merged (works with sample, eval, convert)")
    return 0


def cmd_label(args, overrides: list[str]) -> int:
    """Comparisons (or rankings) of a chat run's own samples by simulated labellers (axon.lab.labels)."""
    from axon.lab.labels import label_line, label_samples

    info = label_samples(args.run_dir, args.prompts, args.out, gold=args.gold, k=args.k, labellers=args.labellers,
                         rankings=args.rankings, max_prompts=args.max_prompts, max_new_tokens=args.max_new_tokens,
                         temperature=args.temperature, seed=args.seed, batch_size=args.batch_size, device=args.device,
                         progress=not args.no_progress)
    print(label_line(info))
    return 0


def cmd_pipeline(args, overrides: list[str]) -> int:
    """InstructGPT's steps in order, each an ordinary run, resumable (axon.lab.pipeline)."""
    from axon.lab.pipeline import run_pipeline

    result = run_pipeline(args.recipe, args.name, out_dir=args.out_dir, base=args.base, overrides=overrides,
                          device=args.device, progress=not args.no_progress)
    return result["exit_code"]


def cmd_iterated_dpo(args, overrides: list[str]) -> int:
    """Rounds of dpo on comparisons of the last round's samples, labelled by a reward (axon.lab.iterated_dpo)."""
    from axon.lab.iterated_dpo import iterated_dpo, summary_lines

    summary = iterated_dpo(args.start, args.rounds, name=args.name, out_dir=args.out_dir, pairs=args.pairs,
                           overrides=overrides)
    if summary.get("interrupted"):
        return _stopped(summary, "iterated-dpo")
    for line in summary_lines(summary):
        print(line)
    return 0


SCALING_EPILOG = """\
examples:
  axon scaling plan --config configs/shakespeare_char.yaml --budgets 1e12,3e12,1e13 --sizes 32,64,96,128
  axon scaling run  --config configs/shakespeare_char.yaml --budgets 1e12,3e12,1e13 --sizes 32,64,96,128 --out scaling/shakespeare
  axon scaling run  ... --tokens 1e6,4e6 --sizes 2x64,4x128 --out scaling/grid   # a grid of N and D instead of IsoFLOP budgets
  axon scaling fit scaling/shakespeare            # refit its sweep.csv (or any CSV with columns N, D, loss)
  axon scaling predict scaling/shakespeare --flops 1e15,1e16   # loss-optimal N and D with 95% intervals
Sizes: n_embd, or n_layer x n_embd (depth defaults to the recipe's; heads keep the recipe's head width).
plan/run also take the recipe's --section.key=value overrides (write them with '='). Re-running `run`
redoes no finished run and resumes killed ones.
"""


def cmd_scaling(args, overrides: list[str]) -> int:
    """Scaling-law sweeps: plan, run, fit, predict (axon.lab.scaling, fits in axon.lab.fit)."""
    from axon.errors import check_output_dir
    from axon.lab import scaling as S
    from axon.lab.runner import check_parallelism

    if overrides and args.action not in ("plan", "run"):
        raise ConfigError(f"unknown option {overrides[0]}; see axon scaling --help")
    flops = S.parse_numbers(args.flops, "--flops") if args.flops else []
    S.check_fit_options(args.bootstrap, args.seed)  # every flag before a sweep is planned, run or fitted
    if args.out:
        check_output_dir("out", args.out)
    if args.action in ("plan", "run"):
        if args.source:
            raise ConfigError(f"axon scaling {args.action} takes no positional argument (got {args.source!r}); the sweep goes to --out")
        if not args.sizes:
            raise ConfigError(f"axon scaling {args.action} needs --sizes (e.g. --sizes 32,64,96 or 2x64,4x128)")
        if args.action == "run" and not args.out:
            raise ConfigError("axon scaling run needs --out DIR (the sweep directory; re-running it resumes)")
        check_parallelism(args.workers, args.threads, "threads")
        runs, notes = S.plan_sweep(args.config, overrides, args.sizes, args.budgets, args.tokens, args.head_dim, args.min_steps)
        print(S.plan_table(runs))
        for note in notes:
            print(note)
        if args.action == "plan":
            return 0
        out = Path(args.out)
        rows = S.run_sweep(runs, out, workers=args.workers, threads=args.threads, progress=not args.no_progress)
    elif args.action == "fit":
        if not args.source:
            raise ConfigError("axon scaling fit needs a sweep directory or a CSV with columns N, D, loss")
        src = Path(args.source)
        out = Path(args.out) if args.out else (src if src.is_dir() else src.parent)
        rows = S.read_csv(src)
    else:  # predict
        if not args.source or not flops:
            raise ConfigError("axon scaling predict needs a sweep directory (or fits.json) and --flops, e.g. --flops 1e15")
        fits = S.load_fits(args.source)
        predictions = [S.predict(fits, f) for f in flops]
        if args.json:
            print(json.dumps(predictions, indent=1))
        else:
            S.echo(line for p in predictions for line in S.prediction_lines(p))
        return 0
    fits, predictions = S.fit_and_report(rows, out, bootstrap=args.bootstrap, seed=args.seed, flops=flops, progress=True)
    S.echo(S.summary_lines(fits))
    for p in predictions:
        S.echo(S.prediction_lines(p))
    print(f"wrote {out / 'fits.json'}, {out / 'scaling.png'}, {out / 'report.html'}")
    return 0


COMPARE_EPILOG = """\
examples:
  # two recipes, 3 seeds each, equal training FLOPs (the baseline's own: its steps x tokens x FLOPs/token)
  axon compare configs/gpt2_shakespeare_char.yaml configs/shakespeare_char.yaml --seeds 3 --budget flops
  # one recipe, named override lists; overrides after the options apply to every variant
  axon compare configs/shakespeare_char.yaml --variant "llama:" \\
      --variant "gpt2: --model.pos=learned --model.norm=layernorm --model.mlp=gelu" \\
      --seeds 0,1,2 --budget tokens --train.max_steps=300 --out runs/cmp
  # also score each run on prompted tasks: the cloze and the speakers, 4-shot (extra columns)
  axon compare configs/shakespeare_char.yaml --variant "a:" --variant "b: --model.n_layer=4" \\
      --eval-tasks cloze,speakers --eval-shots 4
Write overrides as --section.key=value (with '='). Running the same command again continues: no
finished run is redone. The report (results.md, results.csv, report.html) goes into --out.
"""


def cmd_frontier(args, overrides: list[str]) -> int:
    """Gold reward against KL of policy runs and best-of-n, pooled over seeds (axon.lab.frontier)."""
    from axon.data.files import resolve_file
    from axon.data.prompts import read_prompts
    from axon.lab.frontier import frontier, frontier_lines

    from axon.errors import ConfigError
    from axon.feedback import GOLDS

    if args.gold not in GOLDS:
        raise ConfigError(f"--gold: {args.gold!r} is not a gold judge; choose one of: {', '.join(GOLDS)}")
    try:
        best_of = [int(n) for n in args.best_of_n.split(",")] if args.best_of_n else []
    except ValueError:
        raise ConfigError(f"--best-of-n: {args.best_of_n!r} is not a comma-separated list of integers") from None
    if any(n < 1 for n in best_of):
        raise ConfigError(f"--best-of-n: n must be >= 1, got {args.best_of_n}")
    for run in [args.reference, *(spec.rpartition("=")[2] for spec in args.runs)]:
        if not (Path(run) / "config.yaml").is_file():
            raise ConfigError(f"{run} is not a run directory (no config.yaml)")
    labels, runs = {}, []
    for spec in args.runs:
        label, eq, run = spec.rpartition("=")
        runs.append(run)
        if eq:
            labels[run] = label
    prompts = [p for p, _ in read_prompts(resolve_file(args.prompts, "--prompts"))]
    if args.max_prompts is not None:
        prompts = prompts[: args.max_prompts]
    result = frontier(runs, args.reference, prompts, args.gold, args.out, reward=args.reward, best_of=best_of,
                      labels=labels, max_new_tokens=args.max_new_tokens, temperature=args.temperature, seed=args.seed,
                      batch_size=args.batch_size, device=args.device, fit=args.fit, progress=not args.no_progress,
                      checkpoints=args.checkpoints)
    print("\n".join(frontier_lines(result)))
    print(f"wrote {Path(args.out) / 'frontier.json'}, {Path(args.out) / 'frontier.png'}")
    return 0


def cmd_compare(args, overrides: list[str]) -> int:
    import shlex

    from axon.lab.compare import compare

    words = [*args.recipes, *(w for v in args.variant for w in ("--variant", v)), "--seeds", args.seeds, "--budget", args.budget]
    for flag, value in (("--budget-value", args.budget_value), ("--baseline", args.baseline), ("--workers", args.workers),
                        ("--threads-per-run", args.threads_per_run), ("--metric", args.metric),
                        ("--eval-tasks", args.eval_tasks), ("--eval-shots", args.eval_shots), ("--out", args.out)):
        if value is not None:
            words += [flag, f"{value:g}" if isinstance(value, float) else str(value)]
    command = "axon compare " + " ".join(shlex.quote(w) for w in [*words, *overrides])  # recorded in the report
    report = compare(args.recipes, args.variant, overrides, args.out, seeds=args.seeds, budget=args.budget,
                     budget_value=args.budget_value, baseline=args.baseline, workers=args.workers,
                     threads_per_run=args.threads_per_run, progress=not args.no_progress, command=command,
                     metric=args.metric, eval_tasks=args.eval_tasks, eval_shots=args.eval_shots)
    print(report["markdown"])
    print(f"report: {Path(report['out']) / 'report.html'} (also results.md, results.csv)")
    return 0


def build_parser() -> argparse.ArgumentParser:
    from axon import __version__

    p = argparse.ArgumentParser(prog="axon", description="Axon: an open research lab for language models.")
    p.add_argument("--version", action="version", version=f"axon {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    t = sub.add_parser("train", help="train a model (default: char-level tiny Shakespeare on CPU)",
                       epilog=TRAIN_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    t.add_argument("--config", help="YAML recipe (see configs/)")
    t.add_argument("--resume", metavar="RUN_DIR", help="continue a run from its newest valid checkpoint")
    t.add_argument("--nproc", type=int, metavar="N", help="train data-parallel on N processes of this machine (runs "
                   "torchrun; one per GPU, or CPU processes with gloo); train.parallel picks ddp or fsdp")
    t.set_defaults(func=cmd_train)

    c = sub.add_parser("config", help="print the resolved config (every key, with its value)",
                       epilog="Takes the same --config and --section.key=value overrides as train.")
    c.add_argument("--config", help="YAML recipe")
    c.set_defaults(func=cmd_config)

    s = sub.add_parser("sample", help="generate text from a trained run")
    s.add_argument("run_dir", metavar="RUN_DIR")
    s.add_argument("--prompt", default=None, help="prompt text (default: a newline)")
    s.add_argument("--prompt-file", help="read the prompt from this file")
    s.add_argument("--max-new-tokens", type=int, default=500)
    s.add_argument("--temperature", type=float, default=0.8, help="0 = greedy")
    s.add_argument("--top-k", type=int, default=None)
    s.add_argument("--top-p", type=float, default=None, help="nucleus sampling mass, in (0, 1]")
    s.add_argument("--min-p", type=float, default=None, help="keep tokens with p >= min_p * p_max")
    s.add_argument("--repetition-penalty", type=float, default=1.0, help="CTRL's penalty on seen tokens (1 = off)")
    s.add_argument("--stop", action="append", default=[], metavar="TEXT", help="stop at this text (repeatable)")
    s.add_argument("--stop-token", action="append", type=int, default=[], metavar="ID", help="stop at this token id (repeatable)")
    s.add_argument("--no-stream", action="store_true", help="print when done instead of token by token")
    s.add_argument("--num-samples", type=int, default=1, help="independent samples, generated as one batch (with --beams: "
                   "the n best); a detection run: the validation images to draw (default detect.samples); a vq run: the "
                   "validation images to show above their reconstructions (default 16); a mixed_modal run: the images to draw")
    s.add_argument("--beams", type=int, default=0, metavar="N", help="beam search with N beams instead of sampling")
    s.add_argument("--draft", metavar="RUN_DIR", help="speculative decoding with this smaller run as the draft model")
    s.add_argument("--num-draft", type=int, default=4, help="draft tokens proposed per target pass")
    s.add_argument("--length-penalty", type=float, default=1.0, help="beam score = log-prob / length ** penalty")
    s.add_argument("--seed", type=int, default=1337)
    s.add_argument("--device", default="auto")
    s.add_argument("--response", action="append", default=[], metavar="TEXT",
                   help="a reward run: score --prompt + this response (repeatable); one score per line")
    s.add_argument("--responses-file", metavar="FILE", help='a reward run: score each {"prompt", "response"} line; '
                   'prints JSON lines with "score"')
    s.add_argument("--out", metavar="FILE.png", help="a diffusion run: the PNG grid of the samples to write (the "
                   "raw tensor goes beside it as .safetensors); a detection run: the PNG of predicted and true boxes "
                   "(default RUN_DIR/detections.png); a vq run: validation images above their reconstructions "
                   "(default RUN_DIR/reconstructions.png); a mixed_modal run: the images drawn for --prompt "
                   "(default RUN_DIR/drawn.png)")
    s.add_argument("--image", action="append", default=[], metavar="FILE", help="a mixed_modal run: write a caption "
                   "of this image (repeatable); without it the run draws the image --prompt describes into --out")
    s.add_argument("--sampler", choices=("ddpm", "ddim"), help="a diffusion run: the sampler (default: the run's "
                   "diffusion.sampler)")
    s.add_argument("--steps", type=int, default=None, help="a diffusion run: DDIM's steps (default: diffusion.sample_steps)")
    s.add_argument("--eta", type=float, default=None, help="a diffusion run: DDIM's noise, 0 (deterministic) to 1")
    s.add_argument("--guidance", type=float, default=None, help="a diffusion run: classifier-free guidance scale "
                   "(1: plain conditional; default: diffusion.guidance)")
    s.add_argument("--class", dest="class_", type=int, default=None, metavar="N",
                   help="a class-conditional diffusion run: sample this class (default: the classes in turn)")
    s.add_argument("--strip", metavar="FILE.png", help="a diffusion run: also a denoising strip x_T -> x_0 "
                   "(the first 8 samples, 8 steps)")
    s.set_defaults(func=cmd_sample)

    e = sub.add_parser("eval", help="validation loss, perplexity and bits per character/byte of a run; with --tasks: "
                                    "prompted tasks (few-shot, multiple choice, generation), lm-eval style",
                       epilog="Examples:\n  axon eval runs/X\n"
                              "  axon eval runs/X --tasks arithmetic_2da --shots 4 --limit 200\n"
                              "  axon eval runs/X --tasks my_tasks/ --log-samples samples.jsonl --json\n"
                              "Task files: docs/prompting.md.",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    e.add_argument("run_dir", metavar="RUN_DIR")
    e.add_argument("--data", help="prepared data directory (default: the run's own data)")
    e.add_argument("--split", default=None, help="train or val (default: val)")
    e.add_argument("--batch-size", type=int, default=None, help="default: 32 sequences; with --tasks: 8 requests")
    e.add_argument("--max-batches", type=int, default=None, help="default: the whole split")
    e.add_argument("--device", default="auto")
    e.add_argument("--json", action="store_true", help="print one JSON object")
    e.add_argument("--tasks", metavar="NAME[,NAME]", help="prompted tasks: bundled names, task YAML files or folders")
    e.add_argument("--shots", type=int, default=None, help="examples in each prompt (default: each task's num_fewshot)")
    e.add_argument("--limit", type=int, default=None, help="the first N records of each task (default: all)")
    e.add_argument("--seed", type=int, default=None,
                   help="of the shots' draw and of sampled generations (default: 1234)")
    e.add_argument("--log-samples", metavar="FILE.jsonl", help="write one JSON line per example: doc, prompt, "
                   "requests, responses, metrics")
    e.set_defaults(func=cmd_eval)

    le = sub.add_parser("lm-eval", add_help=False,
                        help="EleutherAI's lm-evaluation-harness with Axon runs as its model `axon` "
                             "(ARGS: lm-eval's own)",
                        epilog="Example:\n  axon lm-eval --model axon --model_args run=runs/X,batch_size=8 "
                               "--tasks my_task --include_path my_tasks/\n"
                               "Every argument goes to lm-eval unchanged (axon lm-eval --help: its flags). "
                               "Needs pip install 'axon-lab[eval]'. docs/prompting.md.",
                        formatter_class=argparse.RawDescriptionHelpFormatter)
    le.add_argument("lm_eval_args", nargs=argparse.REMAINDER, metavar="ARGS", help="lm-eval's arguments")
    le.set_defaults(func=cmd_lm_eval)

    r = sub.add_parser("prepare", help="tokenise text/JSONL files (or a HF dataset) into token shards")
    r.add_argument("inputs", nargs="*", metavar="INPUT", help=".txt or .jsonl files")
    r.add_argument("--out", required=True, help="output directory")
    r.add_argument("--tokenizer", default="char", help="char, bpe, or a path to a tokenizer.json")
    r.add_argument("--vocab-size", type=int, default=None, help="BPE vocabulary size")
    r.add_argument("--val-fraction", type=float, default=0.1)
    r.add_argument("--text-field", default="text", help="JSONL / dataset field holding the text")
    r.add_argument("--hf-dataset", help="Hugging Face dataset name, streamed (needs `datasets` and a network)")
    r.add_argument("--hf-split", default="train")
    r.add_argument("--hf-config", default=None)
    r.add_argument("--max-docs", type=int, default=None)
    r.set_defaults(func=cmd_prepare)

    v = sub.add_parser("convert", help="Hugging Face model directory <-> Axon run directory",
                       epilog="Examples:\n  axon convert --from-hf ./gpt2 --out runs/gpt2\n"
                              "  axon convert --to-hf runs/20261122-101500 --out ./exported\n"
                              "A converted run works with sample, eval and train --train.init_from RUN.",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    v.add_argument("--from-hf", metavar="HF_DIR", help="a directory with config.json and *.safetensors (gpt2, llama)")
    v.add_argument("--to-hf", metavar="RUN_DIR", help="an Axon run; its newest checkpoint is written")
    v.add_argument("--out", required=True, help="the run directory (--from-hf) or Hugging Face directory (--to-hf) to write")
    v.add_argument("--dtype", choices=["fp32", "bf16", "fp16"], default="fp32", help="weights of the converted run (--from-hf)")
    v.set_defaults(func=cmd_convert)
    f = sub.add_parser("finetune", help="fine-tune a pretrained run: an encoder (BERT) as a text classifier, "
                                        "or a causal LM on prompt/response pairs (--task=sft) or against a reward "
                                        "with PPO (--task=ppo)",
                       epilog="The model is the pretrained run's (with a classification head for classify, a "
                              "per-token one for tag); its "
                              "tokenizer is used.\n"
                              "Examples:\n  axon finetune runs/bert-mlm --config configs/bert_tiny_speakers.yaml\n"
                              "  axon finetune runs/bert-mlm --data.train_file=reviews.jsonl --model.pooling=mean\n"
                              "  axon finetune runs/bert-mlm --config configs/tag_bert.yaml  # NER tags, head: tag\n"
                              "  axon finetune runs/shakespeare --task=sft --data.train_file=chats.jsonl  # docs/rlhf.md\n"
                              "  axon finetune runs/instruct --task=ppo --ppo.reward=gold:instructions  # docs/rlhf.md, PPO\n"
                              "  axon finetune runs/instruct --task=online_dpo  # docs/rlhf.md, online DPO\n"
                              "Other keys as for train (--section.key=value); data files: JSONL or TSV (see classify), "
                              "JSONL for sft.",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    f.add_argument("pretrained", metavar="PRETRAINED_RUN", help="a run directory (e.g. masked-LM pretraining)")
    f.add_argument("--config", help="YAML recipe: data, optim, schedule, train (of its model section only "
                                    "head, num_labels, pooling, dropout, attn_impl are read)")
    f.set_defaults(func=cmd_finetune)
    b = sub.add_parser("baseline", help="the TF-IDF + logistic-regression baseline on a classify config's train/val data",
                       epilog="Takes the same --config and --section.key=value overrides as train; prints validation "
                              "accuracy, macro F1 and the majority baseline (axon.lab.baseline).")
    b.add_argument("--config", help="YAML recipe of a classify task")
    b.add_argument("--json", action="store_true", help="print every figure as JSON")
    b.set_defaults(func=cmd_baseline)

    tr = sub.add_parser("translate", help="translate with a seq2seq run (greedy or beam search), or score it (BLEU, chrF)",
                        epilog="Examples:\n  axon translate runs/dates --input \"the 3rd of May, 1999\" --input \"7/4/1976\"\n"
                               "  axon translate runs/dates --input-file sources.txt --beams 4\n"
                               "  axon translate runs/dates --eval pairs.tsv        # BLEU, chrF, exact match\n",
                        formatter_class=argparse.RawDescriptionHelpFormatter)
    tr.add_argument("run_dir", metavar="RUN_DIR")
    tr.add_argument("--input", action="append", default=[], metavar="TEXT", help="a source to translate (repeatable)")
    tr.add_argument("--input-file", help="translate each line of this file, one translation per line")
    tr.add_argument("--eval", metavar="FILE.tsv", help="score against source<TAB>reference pairs")
    tr.add_argument("--beams", type=int, default=1, metavar="N", help="beam search with N beams (1 = greedy)")
    tr.add_argument("--max-new-tokens", type=int, default=None, help="longest translation (default: the model's block_size)")
    tr.add_argument("--batch-size", type=int, default=128, help="sources decoded together (greedy)")
    tr.add_argument("--json", action="store_true", help="--eval: print one JSON object")
    tr.add_argument("--device", default="auto")
    tr.set_defaults(func=cmd_translate)

    em = sub.add_parser("embed", help="nearest neighbours, analogies and export of a word2vec, glove or fasttext run's vectors",
                        epilog="examples:\n"
                               "  axon embed runs/w2v --neighbors king --neighbors romeo --k 5\n"
                               "  axon embed runs/w2v --analogy man king woman      # king - man + woman\n"
                               "  axon embed runs/w2v --export vectors.txt          # header 'V D', then 'word v1 ... vD'\n"
                               "  axon embed runs/ft --neighbors kingly             # fasttext: unseen words from their n-grams\n",
                        formatter_class=argparse.RawDescriptionHelpFormatter)
    em.add_argument("run_dir", metavar="RUN_DIR")
    em.add_argument("--neighbors", action="append", default=[], metavar="WORD", help="the k words nearest by cosine (repeatable)")
    em.add_argument("--analogy", nargs=3, metavar=("A", "B", "C"), help="A is to B as C is to ?: nearest to B - A + C, excluding A, B, C")
    em.add_argument("--k", type=int, default=10, help="how many words to list")
    em.add_argument("--export", metavar="FILE", help="write every vector in the word2vec text format")
    em.set_defaults(func=cmd_embed)
    tg = sub.add_parser("tag", help="tag words (named entities, or any tag set) with a tag run, or score it on a CoNLL file",
                        description="Text is split into words with axon.data.ner.tokenize (runs of letters, an\n"
                                    "apostrophe with the letters after it, every other non-space character alone),\n"
                                    "one sentence per --input or per line of --input-file; each word gets one tag\n"
                                    "(argmax, or Viterbi for a CRF run; a bert run reads a word at its first piece).",
                        epilog="examples:\n"
                               "  axon tag runs/tag --input \"Romeo is gone to Mantua\"   # Romeo/B-PER is/O gone/O to/O Mantua/B-LOC\n"
                               "  axon tag runs/tag --input-file lines.txt --json      # [{words, tags, entities: [[type, text]]}]\n"
                               "  axon tag runs/tag --eval val.conll                   # entity P/R/F1 (seqeval), token accuracy\n",
                        formatter_class=argparse.RawDescriptionHelpFormatter)
    tg.add_argument("run_dir", metavar="RUN_DIR", help="a tag run: rnn_tagger (vocab.txt), or bert with head: tag (tokenizer.json)")
    tg.add_argument("--input", action="append", default=[], metavar="TEXT", help="a sentence to tag (repeatable)")
    tg.add_argument("--input-file", help="tag each line of this file, one tagged line out per line")
    tg.add_argument("--eval", metavar="FILE.conll", help="score against a CoNLL file's tags (word ... tag per line; "
                                                          "bundled:ner/val.conll is the bundled set's)")
    tg.add_argument("--json", action="store_true", help="one JSON list of {words, tags, entities}; with --eval, one object")
    tg.add_argument("--device", default="auto")
    tg.set_defaults(func=cmd_tag)
    ix = sub.add_parser("index", help="index a passage collection (BM25, or a dpr run's vectors in faiss) and query it",
                        epilog="examples:\n"
                               "  axon index build --passages passages.jsonl --out idx            # BM25\n"
                               "  axon index build --passages passages.jsonl --retriever runs/dpr --kind hnsw --out idx\n"
                               "  axon index query idx --question 'Where was Vorani Teldak born?' --k 5\n",
                        formatter_class=argparse.RawDescriptionHelpFormatter)
    ix.add_argument("action", choices=["build", "query"])
    ix.add_argument("folder", nargs="?", metavar="INDEX_DIR", help="query: the index folder (or --out)")
    ix.add_argument("--passages", metavar="FILE", help="build: a JSONL of {\"id\", \"text\"} rows")
    ix.add_argument("--out", metavar="DIR", help="build: the index folder to write")
    ix.add_argument("--retriever", default="bm25", help="build: bm25 (default) or a dpr run directory")
    ix.add_argument("--kind", default="exact", choices=["exact", "hnsw", "ivf"],
                    help="build, dense: exact inner products, or faiss's approximate HNSW / IVF (needs axon-lab[rag])")
    ix.add_argument("--question", action="append", default=[], metavar="TEXT", help="query: a question (repeatable)")
    ix.add_argument("--k", type=int, default=5, help="query: passages to list")
    ix.add_argument("--device", default="cpu")
    ix.set_defaults(func=cmd_index)
    rg = sub.add_parser("rag", help="ask a rag run: the passages it reads and its answer",
                        epilog="examples:\n"
                               "  axon rag runs/reader --question 'Where was Vorani Teldak born?'\n"
                               "  axon rag runs/reader --question '...' --passages edited.jsonl   # an edited collection\n",
                        formatter_class=argparse.RawDescriptionHelpFormatter)
    rg.add_argument("run_dir", metavar="RUN_DIR")
    rg.add_argument("--question", action="append", default=[], metavar="TEXT", help="a question (repeatable)")
    rg.add_argument("--passages", metavar="FILE", help="search this passages JSONL instead of the run's collection")
    rg.add_argument("--k", type=int, help="passages to read (default: the run's rag.read_passages)")
    rg.add_argument("--retriever", help="bm25, none or a dpr run (default: the run's rag.retriever)")
    rg.add_argument("--device", default="cpu")
    rg.set_defaults(func=cmd_rag)
    lo = sub.add_parser("lora", help="merge a LoRA run into a plain run, export its adapters, or apply adapters to a base",
                        epilog="examples:\n"
                               "  axon lora merge runs/lora --out runs/lora-merged       # W0 + (alpha/r) B A, a plain run\n"
                               "  axon lora export runs/lora --out adapters.safetensors  # adapters (+ train_also tensors)\n"
                               "  axon lora apply runs/base adapters.safetensors --out runs/merged\n"
                               "Train adapters with --lora.targets='[\"*.qkv\"]' (see the lora config section).\n",
                        formatter_class=argparse.RawDescriptionHelpFormatter)
    lo.add_argument("action", choices=["merge", "export", "apply"])
    lo.add_argument("run_dir", metavar="RUN_DIR", help="a LoRA run (merge, export) or the base run (apply)")
    lo.add_argument("adapters", nargs="?", metavar="ADAPTERS", help="apply: an adapters.safetensors file")
    lo.add_argument("--out", required=True, help="the run directory (merge, apply) or file (export) to write")
    lo.set_defaults(func=cmd_lora)
    sc = sub.add_parser("scaling", help="scaling laws: plan and run a sweep, fit Kaplan and Chinchilla laws, predict N and D",
                        epilog=SCALING_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    sc.add_argument("action", choices=["plan", "run", "fit", "predict"])
    sc.add_argument("source", nargs="?", metavar="SWEEP", help="fit: a sweep directory or CSV (N, D, loss); predict: a sweep directory or fits.json")
    sc.add_argument("--config", help="plan/run: the base recipe (YAML) whose model is scaled")
    sc.add_argument("--budgets", help="plan/run: training FLOPs per run, comma-separated (IsoFLOP profiles)")
    sc.add_argument("--tokens", help="plan/run: training tokens per run, comma-separated (a grid of N and D)")
    sc.add_argument("--sizes", help="plan/run: model sizes, n_embd or n_layer x n_embd, comma-separated")
    sc.add_argument("--head-dim", type=int, default=None, help="head width for the sizes (default: the recipe's)")
    sc.add_argument("--min-steps", type=int, default=10, help="leave out runs shorter than this (default 10)")
    sc.add_argument("--out", help="run: the sweep directory; fit: where fits and report go (default: beside the CSV)")
    sc.add_argument("--workers", type=int, default=None, help="runs at once (default: cores / threads)")
    sc.add_argument("--threads", type=int, default=1, help="torch threads per run (default 1)")
    sc.add_argument("--no-progress", action="store_true", help="no progress bar")
    sc.add_argument("--bootstrap", type=int, default=200, help="bootstrap resamples for the intervals (default 200)")
    sc.add_argument("--seed", type=int, default=0, help="seed of the bootstrap")
    sc.add_argument("--flops", help="compute budget(s) to predict N_opt, D_opt and the loss for, comma-separated")
    sc.add_argument("--json", action="store_true", help="predict: print JSON")
    sc.set_defaults(func=cmd_scaling)
    la = sub.add_parser("label", help="comparisons of a chat run's own samples by simulated labellers, for the reward task",
                        epilog="examples:\n"
                               "  axon label runs/sft --prompts bundled:sentiment/train.jsonl --gold sentiment --k 4 "
                               "--max-prompts 300 --out prefs.jsonl\n"
                               "  axon label runs/sft --prompts prompts.jsonl --gold instructions --labellers a:0.1,b:0.3,adv:0.85 "
                               "--rankings --out ranks.jsonl\n"
                               "  axon label runs/sft --prompts bundled:sentiment/val.jsonl --labellers gold:0 --out val.jsonl"
                               "   # gold comparisons\n"
                               "Then: axon finetune runs/sft --task=reward --data.train_file=prefs.jsonl (docs/rlhf.md).\n",
                        formatter_class=argparse.RawDescriptionHelpFormatter)
    la.add_argument("run_dir", metavar="RUN_DIR", help="an sft (or ppo) run: answers in the chat template")
    la.add_argument("--prompts", required=True, metavar="FILE", help='JSONL of {"prompt"} lines (an SFT file works), or bundled:NAME')
    la.add_argument("--out", required=True, metavar="FILE", help="the comparisons (or rankings) JSONL to write")
    la.add_argument("--gold", default="sentiment",
                    help="the gold judge: sentiment (VADER), instructions or arithmetic (default sentiment)")
    la.add_argument("--k", type=int, default=4, help="answers sampled and compared per prompt (default 4)")
    la.add_argument("--labellers", metavar="ID:FLIP,...", help="labellers and their flip rates (default: axon.feedback's "
                    "l0:0.05,l1:0.1,l2:0.2,l3:0.3,l4:0.85)")
    la.add_argument("--rankings", action="store_true", help="one ranking of the K answers per prompt instead of comparisons")
    la.add_argument("--max-prompts", type=int, default=None, help="label the first N prompts of the file (default: all)")
    la.add_argument("--max-new-tokens", type=int, default=48)
    la.add_argument("--temperature", type=float, default=1.0)
    la.add_argument("--seed", type=int, default=0, help="seed of the samples and the labels (default 0)")
    la.add_argument("--batch-size", type=int, default=64, help="answers sampled together")
    la.add_argument("--device", default="auto")
    la.add_argument("--no-progress", action="store_true", help="no progress bar")
    la.set_defaults(func=cmd_label)
    pl = sub.add_parser("pipeline", help="InstructGPT in one command: SFT -> comparisons of its samples -> reward model "
                                         "-> PPO, each an ordinary run, resumable",
                        epilog="examples:\n"
                               "  axon train --name=base --train.max_steps=400          # a pretrained language model\n"
                               "  axon pipeline configs/instructgpt/sentiment.yaml --name=senti --base=runs/base\n"
                               "  axon pipeline configs/instructgpt/sentiment.yaml --name=senti   # again: skips finished "
                               "stages, resumes an interrupted one\n"
                               "Stages go to OUT_DIR/NAME/{sft,label,reward,ppo}; each stage's recipe is an ordinary YAML "
                               "file (docs/rlhf.md).\n--section.key=value overrides apply to every training stage "
                               "(e.g. --train.threads=1).\n",
                        formatter_class=argparse.RawDescriptionHelpFormatter)
    pl.add_argument("recipe", metavar="RECIPE", help="a pipeline recipe (configs/instructgpt/*.yaml)")
    pl.add_argument("--name", required=True, help="the pipeline's directory under --out-dir")
    pl.add_argument("--out-dir", default="runs", help="where the pipeline's directory goes (default runs)")
    pl.add_argument("--base", metavar="RUN_DIR", help="the pretrained run SFT starts from (default: the recipe's base)")
    pl.add_argument("--device", default="auto")
    pl.add_argument("--no-progress", action="store_true", help="no progress bars")
    pl.set_defaults(func=cmd_pipeline)
    fr = sub.add_parser("frontier", help="gold reward against KL(policy || reference) of fine-tuned runs and best-of-n, "
                                         "pooled over seeds (the DPO paper's Figure 2; Gao et al.'s fits)",
                        epilog="examples:\n"
                               "  axon frontier runs/ppo-a runs/ppo-b runs/dpo-0.1 --reference runs/sft "
                               "--prompts bundled:sentiment/heldout.jsonl --gold sentiment --best-of-n 1,2,4,8,16 --out frontier\n"
                               "  axon frontier PPO=runs/ppo --reference runs/sft --prompts p.jsonl --gold sentiment "
                               "--reward runs/rm --best-of-n 1,4,16,64 --fit --out overopt   # proxy RM: Gao et al.\n"
                               "Each run is one point (its own seed); runs of one method and setting are pooled over "
                               "their seeds (docs/rlhf.md).\n",
                        formatter_class=argparse.RawDescriptionHelpFormatter)
    fr.add_argument("runs", nargs="*", metavar="[LABEL=]RUN", help="policy runs (ppo, grpo, dpo, ...); LABEL as "
                    "METHOD:SETTING names its point (default: from the run's config)")
    fr.add_argument("--reference", required=True, metavar="RUN_DIR", help="the run the policies started from (SFT): "
                    "KL is measured against it and best-of-n samples it")
    fr.add_argument("--prompts", required=True, metavar="FILE", help='JSONL of {"prompt"} lines, or bundled:NAME')
    fr.add_argument("--gold", required=True, help="the gold judge: sentiment, instructions, ...")
    fr.add_argument("--reward", metavar="RUN_DIR|gold:NAME", help="the proxy reward best-of-n picks by and each point "
                    "reports (default: best-of-n picks by the gold judge)")
    fr.add_argument("--best-of-n", metavar="N,N,...", help="best-of-n of the reference at these n")
    fr.add_argument("--fit", action="store_true", help="fit Gao et al.'s forms to each method with 3+ points")
    fr.add_argument("--checkpoints", action="store_true", help="a point for every kept checkpoint of each run, not "
                    "only its last (setting '... step=N'): an RL run's curve along training, as Gao et al. fit it; "
                    "train with --train.keep_checkpoints high enough to keep them")
    fr.add_argument("--max-prompts", type=int, default=None)
    fr.add_argument("--max-new-tokens", type=int, default=48)
    fr.add_argument("--temperature", type=float, default=1.0)
    fr.add_argument("--seed", type=int, default=0, help="seed of the sampled answers (default 0)")
    fr.add_argument("--batch-size", type=int, default=64)
    fr.add_argument("--device", default="cpu")
    fr.add_argument("--out", default="frontier", help="where frontier.json and frontier.png go (default ./frontier)")
    fr.add_argument("--no-progress", action="store_true", help="no progress bar")
    fr.set_defaults(func=cmd_frontier)
    it = sub.add_parser("iterated-dpo", help="iterated DPO: rounds of dpo, each on comparisons of the previous round's "
                                             "samples labelled by a reward (online_dpo.reward)",
                        epilog="examples:\n"
                               "  axon iterated-dpo runs/sft --rounds=3 --pairs=256 --name=it "
                               "--online_dpo.reward=gold:sentiment --train.max_steps=50\n"
                               "  axon iterated-dpo runs/sft --rounds=3 --pairs=256 --name=it ...   # again: skips "
                               "finished rounds, resumes an interrupted one\n"
                               "Rounds go to OUT_DIR/NAME/round_K (their data to round_K-data), figures to "
                               "OUT_DIR/NAME/summary.json (docs/rlhf.md).\n--section.key=value overrides: online_dpo.* "
                               "samples and labels, the rest makes each round's dpo run.\n",
                        formatter_class=argparse.RawDescriptionHelpFormatter)
    it.add_argument("start", metavar="START_RUN", help="the run round 1 starts from (an sft run)")
    it.add_argument("--rounds", type=int, default=3, help="rounds of sampling and dpo (default 3)")
    it.add_argument("--pairs", type=int, default=None, help="training prompts answered twice per round (default: all)")
    it.add_argument("--name", required=True, help="the directory of the rounds under --out-dir")
    it.add_argument("--out-dir", default="runs", help="where that directory goes (default runs)")
    it.set_defaults(func=cmd_iterated_dpo)
    cp = sub.add_parser("compare", help="train variants x seeds under a matched budget; results table, significance, report",
                        epilog=COMPARE_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    cp.add_argument("recipes", nargs="*", metavar="RECIPE", help="YAML recipes, one variant each (or one recipe for --variant)")
    cp.add_argument("--variant", action="append", default=[], metavar='"NAME: --k=v ..."',
                    help="a named list of overrides of the recipe (repeatable; may hold its own --config)")
    cp.add_argument("--baseline", help="the variant the others are tested against (default: the first)")
    cp.add_argument("--seeds", default="1", help="a count (3 = seeds 0,1,2) or a list (0,5,7); default 1")
    cp.add_argument("--budget", default="steps", choices=["steps", "tokens", "flops", "time"], help="what is matched (default steps)")
    cp.add_argument("--budget-value", type=float, default=None,
                    help="steps, tokens, FLOPs or seconds per run (default: the baseline recipe's own)")
    cp.add_argument("--workers", type=int, default=None, help="runs at once (default: cores / threads per run)")
    cp.add_argument("--threads-per-run", type=int, default=1, help="torch threads per run (default 1)")
    cp.add_argument("--metric", default="loss", metavar="NAME[:max|:min]",
                    help="what the table and Welch's test rank by: loss (default; the test loss) or a final figure "
                         "val_NAME of every run's result.json, e.g. greedy_gold (higher is better unless :min)")
    cp.add_argument("--eval-tasks", metavar="NAME[,NAME]", default=None,
                    help="also score every run on these prompted tasks (as axon eval --tasks: bundled names, task "
                         "YAML files or folders); their metrics become extra columns")
    cp.add_argument("--eval-shots", type=int, default=None, metavar="K",
                    help="examples in each prompt of --eval-tasks (default: each task's num_fewshot)")
    cp.add_argument("--out", default="compare", help="report directory, also the runs' home (resumable; default ./compare)")
    cp.add_argument("--no-progress", action="store_true", help="no progress bar")
    cp.set_defaults(func=cmd_compare)
    return p


# Subcommands whose unrecognised arguments are config overrides (--section.key=value), passed on to
# the command; any other subcommand refuses them in main(), before it runs.
TAKE_OVERRIDES = ("train", "config", "finetune", "baseline", "scaling", "compare", "pipeline", "iterated-dpo")


_PYTHON_FORMATWARNING = warnings.formatwarning


def _short_warnings(command: str) -> None:
    """Axon's own warnings (a damaged checkpoint skipped, a metrics line skipped) as one line
    "axon <command>: warning: ...", like its errors; other libraries' keep Python's format."""
    default = _PYTHON_FORMATWARNING

    def formatwarning(message, category, filename, lineno, line=None):
        if category is UserWarning and f"{os.sep}axon{os.sep}" in filename:
            return f"axon {command}: warning: {message}\n"
        return default(message, category, filename, lineno, line)

    warnings.formatwarning = formatwarning


def _sigterm_exit(command: str):
    """SIGTERM outside training (which checkpoints on it and exits 143 itself): one line, exit 143.
    At once, with os._exit: an exception raised from a signal handler can land inside an import
    that swallows it and leave a module half made. Nothing is lost by not unwinding: every file
    axon writes is written aside and renamed, and a run stopped before its first checkpoint is
    continued with --resume (from step 0)."""

    def on_sigterm(signum, frame):
        after = ": nothing after the last checkpoint is kept" if command == "train" else ""
        os.write(2, f"axon {command}: stopped by SIGTERM{after}\n".encode())
        os._exit(128 + signum)

    return on_sigterm


# The flag that feeds a Python keyword, where it is not the keyword spelled --like-this.
FLAG_OF_KEYWORD = {"num_beams": "--beams", "num_return": "--num-samples", "stop_tokens": "--stop-token",
                   "eos_token_id": "--stop-token", "out_dir": "--out", "threads_per_job": "--threads",
                   "data_dir": "--data", "prompts": "--prompts"}


def flag_of(parser: argparse.ArgumentParser, command: str, keyword: str) -> str | None:
    """The flag of ``axon <command>`` that feeds the Python keyword ``keyword`` (``top_p`` ->
    ``--top-p``, ``num_beams`` -> ``--beams``), or None when no flag of the command does."""
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices[command]
    flags = sub._option_string_actions  # argparse keeps no public list of a parser's flags
    for flag in (FLAG_OF_KEYWORD.get(keyword), "--" + keyword.replace("_", "-")):
        if flag in flags:
            return flag
    return None


def error_line(parser: argparse.ArgumentParser, command: str, e: BaseException) -> str:
    """What ``axon <command>: error: ...`` says of a user error: an OptionError names the flag the
    user typed instead of the Python keyword (when the command has one); an OSError its path and
    the OS's reason."""
    if isinstance(e, OptionError):
        return e.message_for(flag_of(parser, command, e.field) or e.field)
    return os_error_line(e) if isinstance(e, OSError) else str(e)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["lm-eval"]:  # every argument is lm-eval's (argparse's REMAINDER drops a leading --flag)
        args, rest = parser.parse_known_args(["lm-eval"])
        args.lm_eval_args = argv[1:]
    else:
        args, rest = parser.parse_known_args(argv)  # rest: the --section.key=value overrides
    _short_warnings(args.command)
    try:
        old_sigterm = signal.signal(signal.SIGTERM, _sigterm_exit(args.command))
    except ValueError:  # not the main thread
        old_sigterm = None
    try:
        if rest and args.command not in TAKE_OVERRIDES:
            raise ConfigError(f"unrecognized arguments: {' '.join(rest)}; see axon {args.command} --help")
        return args.func(args, rest)
    except (AxonError, OSError) as e:
        # OSError: the outside world refused (an unwritable directory, a full disk, a missing file
        # no reader wrapped): one line with the path and the OS's reason, like any user error.
        message = error_line(parser, args.command, e)
        rank = os.environ.get("RANK", "0") if "WORLD_SIZE" in os.environ else "0"  # a torchrun worker names itself
        print(f"axon {args.command}: error{f' (rank {rank})' if rank != '0' else ''}: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        after = ": nothing after the last checkpoint is kept" if args.command == "train" else ""
        print(f"axon {args.command}: stopped by Ctrl-C{after}", file=sys.stderr)
        return 130
    finally:
        if old_sigterm is not None:
            signal.signal(signal.SIGTERM, old_sigterm)


if __name__ == "__main__":
    sys.exit(main())
