"""Shared by the lab tests: a tiny prepared character corpus and `axon train` arguments that
train a tiny decoder on it in a second or two."""

from pathlib import Path

from axon.data.corpus import __file__ as _corpus_init

CORPUS = Path(_corpus_init).parent / "tinyshakespeare.txt"


def tiny_data_dir(root: Path) -> Path:
    """The first 40,000 characters of tiny Shakespeare, prepared (char tokenizer, 10% val)."""
    from axon.data.prepare import prepare

    out = root / "data"
    if not (out / "meta.json").is_file():
        text = root / "tiny.txt"
        text.write_text(CORPUS.read_text()[:40_000])
        prepare([text], out, tokenizer="char")
    return out


def tiny_args(data_dir: Path, steps: int = 6) -> list[str]:
    return [f"--data.dir={data_dir}", "--model.preset=tiny", "--model.block_size=32", "--model.n_embd=32",
            "--model.n_layer=1", "--train.batch_size=4", f"--train.max_steps={steps}", "--train.eval_interval=3",
            "--train.eval_batches=2", "--train.log_interval=1", "--train.checkpoint_interval=3",
            "--train.sample_tokens=0", "--schedule.warmup_steps=1"]
