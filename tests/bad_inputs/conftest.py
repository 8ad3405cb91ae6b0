import pytest

from axon.cli import main

TINY = ["--model.preset=tiny", "--train.max_steps=20", "--train.checkpoint_interval=10", "--train.batch_size=4",
        "--train.eval_batches=2", "--train.sample_tokens=0", "--log.progress=false", "--train.threads=1"]


@pytest.fixture(scope="session")
def axon_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("bad-inputs-cache")


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory, axon_cache):
    """The audit's tiny run: 20 steps, checkpoints at 10 and 20 (runs/tiny of issue 16)."""
    root = tmp_path_factory.mktemp("bad-inputs-run")
    assert main(["train", *TINY, f"--out_dir={root / 'runs'}", "--name=tiny", f"--data.cache_dir={axon_cache}"]) == 0
    return root / "runs" / "tiny"
