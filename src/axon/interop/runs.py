"""``axon convert``: Hugging Face directories <-> Axon run directories.

A converted run is an ordinary run directory (config.yaml, tokenizer.json, one checkpoint at
step 0 with the weights and no optimizer state), so ``axon sample``, ``axon eval`` and
fine-tuning (``axon train --config RUN/config.yaml --train.init_from RUN``) work on it as on a
run trained here. Its data section points at the converted tokenizer, so ``axon eval RUN``
measures the model on the bundled corpus tokenised its own way.
"""

from __future__ import annotations

from pathlib import Path

import torch

from axon.config import RunConfig, dump_config
from axon.errors import check_output_dir
from axon.interop.hf import from_hf, to_hf

CONVERTED_STEP = 0


def hf_to_run(hf_dir: str | Path, run_dir: str | Path, dtype: torch.dtype = torch.float32) -> dict:
    """Write the Hugging Face model in ``hf_dir`` as the Axon run ``run_dir``; returns a summary."""
    from axon.train.checkpoint import save_checkpoint

    run = Path(run_dir)
    check_output_dir("run_dir", run, empty=True)
    model, tokenizer = from_hf(hf_dir, dtype=dtype)
    cfg = RunConfig()
    cfg.model = model.config
    cfg.out_dir, cfg.name = str(run.parent), run.name
    run.mkdir(parents=True, exist_ok=True)
    if tokenizer is not None:
        tok_file = tokenizer.save(run / "tokenizer.json")
        cfg.data.tokenizer = str(tok_file.resolve())
        cfg.data.vocab_size = None
    (run / "config.yaml").write_text(dump_config(cfg))
    save_checkpoint(run / "checkpoints", CONVERTED_STEP, model, [], {"step": CONVERTED_STEP, "converted_from": str(hf_dir)})
    return {"run_dir": str(run), "params": model.num_params(), "tokenizer": tokenizer is not None}


def run_to_hf(run_dir: str | Path, out_dir: str | Path) -> Path:
    """Write the newest checkpoint of the Axon run ``run_dir`` as a Hugging Face directory (of a
    PPO run: its policy, without the value head)."""
    from axon.train.run import load_run

    check_output_dir("out_dir", out_dir, empty=True)  # before the run is loaded
    from axon.models.actor_critic import ActorCritic

    _, model, tokenizer = load_run(run_dir, device="cpu")
    if isinstance(model, ActorCritic):  # a PPO run: the policy alone, a plain decoder
        model = model.policy()
    return to_hf(model, out_dir, tokenizer)
