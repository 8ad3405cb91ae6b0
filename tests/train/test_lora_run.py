"""LoRA runs end to end: a frozen base trained through adapters, exact resume, load_run/sample,
the adapter file, `axon lora merge|export|apply`, and `axon finetune` with LoRA."""

import json
import shutil
from pathlib import Path

import pytest
import torch
from numerics import assert_close_orders
from safetensors import safe_open
from safetensors.torch import load_file

from axon.cli import main
from axon.config import load_config
from axon.nn.lora import LoRALinear, lora_layers
from axon.train.checkpoint import list_checkpoints
from axon.train.logging import read_metrics
from axon.train.run import load_run, train

TINY = ["--model.preset=tiny", "--model.block_size=32", "--model.dropout=0.0", "--train.batch_size=4",
        "--train.log_interval=1", "--train.eval_interval=10", "--train.eval_batches=2", "--train.checkpoint_interval=10",
        "--train.sample_tokens=0", "--train.threads=1", "--schedule.warmup_steps=2", "--log.progress=false"]
LORA = ['--lora.targets=["*.qkv", "*.attn.proj", "lm_head"]', "--lora.rank=4", "--lora.alpha=8",
        "--lora.dropout=0.1", "--optim.name=adamw", "--optim.lr=1e-2"]


def args(root, name, *extra):
    return [*TINY, f"--out_dir={root}", f"--name={name}", f"--data.cache_dir={root / 'cache'}", *extra]


def losses(run_dir):
    return {r["step"]: r["train_loss"] for r in read_metrics(Path(run_dir) / "metrics.jsonl") if "train_loss" in r}


def newest_weights(run_dir):
    return load_file(str(list_checkpoints(Path(run_dir) / "checkpoints")[0] / "model.safetensors"))


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return tmp_path_factory.mktemp("lora")


@pytest.fixture(scope="module")
def base(root):
    train(load_config(None, args(root, "base", "--train.max_steps=10")))
    return root / "base"


@pytest.fixture(scope="module")
def lora_run(root, base):
    result = train(load_config(None, args(root, "lora", "--train.max_steps=20", f"--train.init_from={base}", *LORA)))
    return Path(result["run_dir"]), result


def test_lora_run_trains_adapters_only(base, lora_run):
    run, result = lora_run
    before, after = newest_weights(base), newest_weights(run)
    adapters = {k for k in after if k.endswith(("lora_A", "lora_B"))}
    assert len(adapters) == 2 * 5  # 2 qkv + 2 attn.proj + lm_head
    for k, v in before.items():  # every base tensor bit-identical after training
        assert torch.equal(after[k], v), k
    assert any(k.endswith("lora_B") and after[k].abs().sum() > 0 for k in adapters)
    assert result["trainable_params"] == sum(after[k].numel() for k in adapters) < result["params"]
    assert result["step"] == 20 and result["val_loss"] < 4.0  # from ln 65 = 4.17 at the base's loss
    # the adapter file: the adapters alone, with the lora config in its metadata
    with safe_open(result["adapters"], framework="pt") as f:
        assert set(f.keys()) == adapters
        meta = json.loads(f.metadata()["lora"])
    assert meta == {"targets": ["*.qkv", "*.attn.proj", "lm_head"], "rank": 4, "alpha": 8.0, "dropout": 0.1, "train_also": []}
    assert result["adapter_bytes"] < (list_checkpoints(run / "checkpoints")[0] / "model.safetensors").stat().st_size / 4


def test_lora_run_resumes_exactly(root, lora_run):
    """Lose the last checkpoint (as a kill after step 10 would), resume: identical losses and weights."""
    run, _result = lora_run
    copy = root / "lora-resumed"
    shutil.copytree(run, copy)
    newest = list_checkpoints(copy / "checkpoints")[0]
    assert newest.name == "step_00000020"
    shutil.rmtree(newest)
    (copy / "config.yaml").write_text((copy / "config.yaml").read_text().replace(str(run), str(copy)))
    resumed = train(resume=copy)
    assert resumed["step"] == 20
    assert losses(copy) == losses(run)
    a, b = newest_weights(run), newest_weights(copy)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_load_run_rebuilds_lora_and_sample_works(lora_run, capsys):
    run, _ = lora_run
    _cfg, model, _tok = load_run(run, device="cpu")
    assert len(lora_layers(model)) == 5 and isinstance(model.lm_head, LoRALinear)
    assert main(["sample", str(run), "--max-new-tokens", "5", "--seed", "1"]) == 0
    assert capsys.readouterr().out.strip()


@pytest.mark.numerics
def test_merge_export_apply(root, base, lora_run, capsys):
    run, _ = lora_run
    _, adapted, _ = load_run(run, device="cpu")
    idx = torch.randint(0, 65, (2, 16))
    with torch.no_grad():
        expected = adapted(idx)
    assert main(["lora", "merge", str(run), "--out", str(root / "merged")]) == 0
    cfg, merged, _ = load_run(root / "merged", device="cpu")
    assert not lora_layers(merged) and cfg.lora.targets == []
    assert cfg.model.tie_embeddings is False  # lm_head was adapted: its merged matrix is no longer wte's
    with torch.no_grad():  # W + s B A folded in against x W^T + s (x A^T) B^T: other sums, tiny (2 blocks, MLP 256) + head
        assert_close_orders(merged(idx), expected, n=256, depth=3)
    assert main(["eval", str(root / "merged"), "--json"]) == 0

    assert main(["lora", "export", str(run), "--out", str(root / "ad.safetensors")]) == 0
    assert main(["lora", "apply", str(base), str(root / "ad.safetensors"), "--out", str(root / "applied")]) == 0
    _, applied, _ = load_run(root / "applied", device="cpu")
    with torch.no_grad():
        assert torch.equal(applied(idx), merged(idx))
    capsys.readouterr()
    assert main(["lora", "merge", str(base), "--out", str(root / "x")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "is not a LoRA run" in err


def test_bad_target_pattern_is_one_line(root, base, capsys):
    rc = main(["train", *args(root, "bad", "--train.max_steps=2", f"--train.init_from={base}", "--lora.targets=[nope]")])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1
    assert "'nope' matches no module; linear layers: blocks.0.attn.qkv" in err


def test_finetune_with_lora_keeps_the_new_head_trainable(root, capsys):
    """A tiny BERT pretrained a few steps, then `axon finetune --lora.targets=...`: the encoder is frozen,
    the new classifier head trains, and it is recorded in lora.train_also and in the adapter file."""
    cfg = Path(__file__).resolve().parents[2] / "configs"
    small = ["--model.n_layer=2", "--model.n_embd=32", "--model.n_head=2", "--model.block_size=32", "--train.batch_size=8",
             "--log.progress=false", "--train.threads=1", "--schedule.warmup_steps=2", "--train.eval_batches=2",
             f"--out_dir={root}", f"--data.cache_dir={root / 'cache'}", "--data.vocab_size=256"]
    assert main(["train", "--config", str(cfg / "bert_tiny_mlm.yaml"), *small, "--train.max_steps=4", "--name=mlm"]) == 0
    small.remove("--model.n_layer=2")
    small.remove("--model.n_embd=32")
    small.remove("--model.n_head=2")
    small.remove("--data.vocab_size=256")
    rc = main(["finetune", str(root / "mlm"), "--config", str(cfg / "lora_tiny.yaml"), *small, "--train.max_steps=6",
               "--train.eval_interval=6", "--name=ft-lora"])
    out, err = capsys.readouterr()
    assert rc == 0, err
    assert "lora: rank" in err and "val accuracy" in out
    run = root / "ft-lora"
    assert "classifier.weight" in load_config(run / "config.yaml").lora.train_also
    pre, ft = newest_weights(root / "mlm"), newest_weights(run)
    for k, v in ft.items():
        if k.startswith("classifier."):
            continue
        if k.endswith(("lora_A", "lora_B")):
            continue
        assert torch.equal(v, pre[k]), k  # the pretrained encoder is untouched
    with safe_open(str(run / "adapters.safetensors"), framework="pt") as f:
        assert {"classifier.weight", "classifier.bias"} <= set(f.keys())
    assert main(["lora", "merge", str(run), "--out", str(root / "ft-merged")]) == 0
    assert main(["eval", str(root / "ft-merged"), "--json"]) == 0
    assert 0 <= json.loads(capsys.readouterr().out.splitlines()[-1])["accuracy"] <= 1


def test_adapters_only_under_muon_is_one_line_and_leaves_no_run_directory(root, capsys):
    """Nothing is left for Muon when only LoRA factors train: the error says so, and the refused
    run leaves no directory behind, so the same --name works once the setting is fixed."""
    bad = [a for a in args(root, "muon-lora", "--train.max_steps=2", *LORA) if not a.startswith("--optim.name")]
    assert main(["train", *bad, "--optim.name=muon"]) == 2
    assert "LoRA factors, which take AdamW); use adamw" in capsys.readouterr().err
    assert not (root / "muon-lora").exists()
    assert main(["train", *bad, "--optim.name=adamw"]) == 0
    assert (root / "muon-lora" / "adapters.safetensors").is_file()


@pytest.mark.parametrize("lora, message", [
    ('{"targets": ["*.qkv"], "rank": ', "its lora metadata is not valid JSON"),
    ('{"targets": ["*.qkv"]}', "its lora metadata lacks targets, rank or alpha"),
    ('{"targets": ["*.qkv"], "rank": 0, "alpha": 8}', "its lora metadata: lora.rank: must be >= 1, got 0"),
    ('{"targets": "*.qkv", "rank": 4, "alpha": 8}', "its lora metadata: lora.targets"),
])
def test_an_adapter_files_metadata_is_checked_as_the_lora_section_is(tmp_path, lora, message):
    """Before the base run is loaded: a DataError naming the file (issue 16)."""
    from axon.errors import DataError
    from axon.train.lora import adapter_config, apply_adapters

    meta = {"format": "axon-lora", "family": "decoder", "lora": lora}
    with pytest.raises(DataError, match=f"^ad.safetensors: {message}"):
        adapter_config("ad.safetensors", meta)
    from safetensors.torch import save_file

    save_file({"x.lora_A": torch.zeros(1)}, str(tmp_path / "ad.safetensors"), metadata=meta)
    with pytest.raises(DataError, match=message):  # the base run does not exist: never opened
        apply_adapters(tmp_path / "no-such-run", tmp_path / "ad.safetensors", tmp_path / "out")
    assert not (tmp_path / "out").exists()
