"""axon convert: a Hugging Face directory becomes a run that sample, eval and train use, and back."""

import json

import pytest
import torch
from hf_models import gpt2, transformers

from axon.cli import main
from axon.data.corpus import corpus_path
from axon.data.tokenizers import BPETokenizer
from axon.train.checkpoint import list_checkpoints
from safetensors.torch import load_file

SMALL = ["--train.batch_size=4", "--train.eval_interval=100", "--train.eval_batches=2", "--train.sample_tokens=5",
         "--log.progress=false", "--train.threads=1", "--schedule.warmup_steps=1"]


@pytest.fixture(scope="module")
def hf_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("hf")
    tok = BPETokenizer.train([corpus_path("shakespeare").read_text()[:50_000]], vocab_size=300)
    model = gpt2(vocab=tok.vocab_size, positions=64, n_embd=32, n_layer=2, n_head=2)
    model.save_pretrained(root)
    tok.save(root)
    return root


def test_convert_sample_eval_finetune_and_back(hf_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("AXON_CACHE", str(tmp_path / "cache"))
    run = tmp_path / "runs" / "converted"
    assert main(["convert", "--from-hf", str(hf_dir), "--out", str(run)]) == 0
    assert "wrote run" in capsys.readouterr().out

    # sample: greedy text equals transformers' greedy continuation of the same ids
    assert main(["sample", str(run), "--prompt", "ROMEO:", "--max-new-tokens", "12", "--temperature", "0", "--no-stream"]) == 0
    text = capsys.readouterr().out
    hf = transformers.AutoModelForCausalLM.from_pretrained(hf_dir).eval()
    from axon.data.tokenizers import load_tokenizer

    tok = load_tokenizer(hf_dir)
    ids = torch.tensor([tok.encode("ROMEO:")])
    with torch.no_grad():
        ref = hf.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=12, min_new_tokens=12,
                          do_sample=False, pad_token_id=0)[0, ids.size(1):].tolist()
    assert text == "ROMEO:" + tok.decode(ref) + "\n"

    # eval: the bundled corpus, tokenised with the converted tokenizer
    assert main(["eval", str(run), "--json", "--max-batches", "2", "--batch-size", "4"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert metrics["tokens"] > 0 and 4.0 < metrics["loss"] < 7.0  # random weights: about ln(300) = 5.7

    # --resume is refused (no training state); --train.init_from fine-tunes from the weights
    assert main(["train", "--resume", str(run)]) == 2
    assert "--train.init_from" in capsys.readouterr().err
    ft = tmp_path / "runs" / "ft"
    args = ["train", "--config", str(run / "config.yaml"), f"--train.init_from={run}", f"--out_dir={ft.parent}",
            "--name=ft", "--train.max_steps=2", "--optim.lr=1e-9", "--optim.muon_lr=1e-9", *SMALL]
    assert main(args) == 0
    start = load_file(str(list_checkpoints(run / "checkpoints")[0] / "model.safetensors"))
    end = load_file(str(list_checkpoints(ft / "checkpoints")[0] / "model.safetensors"))
    assert start.keys() == end.keys()
    # Started from the converted weights (a fresh initialisation differs by ~0.02-1): 2 steps at
    # lr 1e-9 move no weight by more than steps x lr x 2.5 x 2 = 1e-8. 2.5: an Adam step is at
    # most ~lr in its first steps; a Muon step is lr x sqrt(max(1, rows/cols)) (<= 2 here) x an
    # entry of the orthogonalised update (<= its spectral norm, < 1.25 after torch's Newton-Schulz).
    # 2: float32 rounds w - step to a float within the step of it.
    moved = max((start[k] - end[k]).abs().max().item() for k in start)
    assert moved <= 2 * 1e-9 * 2.5 * 2, moved

    # and back to Hugging Face: the same logits as the original
    out = tmp_path / "exported"
    assert main(["convert", "--to-hf", str(run), "--out", str(out)]) == 0
    again = transformers.AutoModelForCausalLM.from_pretrained(out).eval()
    original, exported = hf.state_dict(), again.state_dict()  # the conversion both ways loses no bit...
    assert original.keys() == exported.keys() and all(torch.equal(original[k], exported[k]) for k in original)
    x = torch.randint(0, tok.vocab_size, (2, 64))
    with torch.no_grad():  # ...so transformers runs the same computation: the same logits, bit for bit
        assert torch.equal(again(x).logits, hf(x).logits)
    hf_tok = transformers.AutoTokenizer.from_pretrained(out)
    assert hf_tok("ROMEO: hi", add_special_tokens=False)["input_ids"] == tok.encode("ROMEO: hi")


def test_convert_errors_are_one_line(tmp_path, capsys):
    assert main(["convert", "--from-hf", str(tmp_path), "--out", str(tmp_path / "r")]) == 2
    assert "no config.json" in capsys.readouterr().err
    assert main(["convert", "--out", str(tmp_path / "r")]) == 2
    assert "exactly one of --from-hf" in capsys.readouterr().err


def test_a_converted_run_is_fine_tuned_on_answers(hf_dir, tmp_path, monkeypatch, capsys):
    """axon finetune CONVERTED --task=sft: its BPE tokenizer encodes the chat template, its weights
    load strictly, and axon sample answers in the template."""
    from axon.eval import evaluate
    from axon.tasks import build_task
    from axon.train.run import load_run

    monkeypatch.setenv("AXON_CACHE", str(tmp_path / "cache"))
    run = tmp_path / "runs" / "converted"
    assert main(["convert", "--from-hf", str(hf_dir), "--out", str(run)]) == 0
    data = tmp_path / "pairs.jsonl"
    data.write_text("".join(json.dumps({"prompt": w, "response": w[::-1]}) + "\n" for w in ["king", "queen", "lord"]))
    sft = tmp_path / "runs" / "sft"
    assert main(["finetune", str(run), "--task=sft", f"--data.train_file={data}", f"--data.val_file={data}",
                 f"--out_dir={sft.parent}", "--name=sft", "--train.max_steps=1", "--optim.lr=1e-9",
                 "--optim.muon_lr=1e-9", *SMALL]) == 0
    assert "| val perplexity" in capsys.readouterr().out
    assert (sft / "tokenizer.json").read_bytes() == (run / "tokenizer.json").read_bytes()
    cfg, tuned, _ = load_run(sft, device="cpu")
    _, converted, _ = load_run(run, device="cpu")
    task = build_task(cfg, torch.device("cpu"))
    before = evaluate(converted, task.objective, task.val_data.iter_eval_batches(4, 64))["loss"]
    after = evaluate(tuned, task.objective, task.val_data.iter_eval_batches(4, 64))["loss"]
    # one step of lr 1e-9 from the converted weights moves the loss by ~1e-8 (a fresh init: 8e-3 away)
    assert after == pytest.approx(before, abs=1e-5)
    assert main(["sample", str(sft), "--prompt", "king", "--max-new-tokens", "4", "--no-stream"]) == 0
    assert capsys.readouterr().out.startswith("User: king\nAssistant: ")
