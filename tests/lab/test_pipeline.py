"""`axon pipeline` (axon.lab.pipeline) and `axon label` (axon.lab.labels) end to end on a tiny model:
SFT -> comparisons of its samples -> reward model -> PPO, through the command line, stopped by
SIGTERM in the PPO stage and run again (finished stages skipped, the interrupted one resumed);
the comparisons (gold labels agree with VADER, same arguments -> same bytes); `axon sample` on the
reward run. About 40 s on one thread."""

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

pytest.importorskip("vaderSentiment")

from axon.config import load_config  # noqa: E402
from axon.feedback import sentiment_gold  # noqa: E402
from axon.lab.labels import label_samples  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
STAGES = REPO / "configs" / "instructgpt"
PPO_STEPS = 12


def env(cache: Path) -> dict:
    e = dict(os.environ, AXON_CACHE=str(cache), OMP_NUM_THREADS="1")
    e["PYTHONPATH"] = os.pathsep.join([str(REPO / "src"), e.get("PYTHONPATH", "")])
    return e


def axon(cache: Path, *args: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "axon", *args], env=env(cache), capture_output=True, text=True,
                          timeout=300, **kw)


def recipe(base: Path) -> dict:
    """The bundled sentiment stages at test size."""
    small = ["--train.eval_batches=1", "--train.sample_tokens=0"]
    return {
        "base": str(base), "gold": "sentiment",
        "sft": {"recipe": str(STAGES / "sentiment_sft.yaml"),
                "overrides": ["--train.max_steps=40", "--train.eval_interval=20", "--train.checkpoint_interval=20",
                              "--train.batch_size=16", *small]},
        "label": {"prompts": "bundled:sentiment/train.jsonl", "max_prompts": 60, "k": 4, "max_new_tokens": 40,
                  "labellers": {"careful": 0.1, "sloppy": 0.3, "adversary": 0.85},
                  "val_prompts": "bundled:sentiment/val.jsonl", "val_max_prompts": 30},
        "reward": {"recipe": str(STAGES / "sentiment_rm.yaml"),
                   "overrides": ["--train.max_steps=10", "--train.eval_interval=10", "--train.checkpoint_interval=5",
                                 "--train.batch_size=4"]},
        "ppo": {"recipe": str(STAGES / "sentiment_ppo.yaml"),
                "overrides": ["--ppo.rollout_batch=8", "--ppo.epochs=1", "--ppo.max_new_tokens=16", "--train.batch_size=4",
                              "--train.grad_accum=1", f"--train.max_steps={PPO_STEPS}", f"--train.eval_interval={PPO_STEPS}",
                              "--train.checkpoint_interval=2", "--train.log_interval=1", *small]},
    }


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    """The pipeline stopped by SIGTERM in its PPO stage, then run again twice: (root, cache, the three runs)."""
    tmp = tmp_path_factory.mktemp("pipeline")
    cache = tmp / "cache"
    base = axon(cache, "train", "--model.preset=tiny", "--model.block_size=128", "--train.max_steps=60",
                "--train.eval_interval=60", "--train.sample_tokens=0", "--log.progress=false", "--train.threads=1",
                f"--out_dir={tmp}", "--name=base")
    assert base.returncode == 0, base.stderr
    file = tmp / "recipe.yaml"
    file.write_text(yaml.safe_dump(recipe(tmp / "base")))
    root = tmp / "runs" / "p"
    argv = [sys.executable, "-m", "axon", "pipeline", str(file), "--name=p", "--out-dir", str(tmp / "runs"), "--no-progress",
            "--train.threads=1"]
    proc = subprocess.Popen(argv, env=env(cache), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    first_checkpoint = root / "ppo" / "checkpoints" / "step_00000002"
    deadline = time.time() + 240
    while not first_checkpoint.is_dir() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    stopped = subprocess.CompletedProcess(argv, proc.returncode, out, err)
    stopped.finished = [s for s in ("sft", "reward", "ppo") if (root / s / "result.json").is_file()]
    again = subprocess.run(argv, env=env(cache), capture_output=True, text=True, timeout=300)
    third = subprocess.run(argv, env=env(cache), capture_output=True, text=True, timeout=300)
    return root, cache, (stopped, again, third)


def test_a_stopped_pipeline_resumes_its_stage_and_skips_finished_ones(made):
    root, _, (stopped, again, third) = made
    assert stopped.returncode == 128 + signal.SIGTERM, stopped.stderr
    assert "stage ppo stopped by signal 15" in stopped.stderr and "run the same command again" in stopped.stderr
    assert stopped.finished == ["sft", "reward"]  # ppo not: stopped, checkpointed
    for stage in ("sft", "reward"):
        assert f"[pipeline p] {stage}: axon finetune" in stopped.stdout  # each stage says what it does
    assert again.returncode == 0, again.stderr
    for stage in ("sft", "label", "reward"):
        assert f"[pipeline p] {stage}: finished before" in again.stdout, again.stdout
    assert f"ppo: interrupted before; resuming {root / 'ppo'}" in again.stdout
    result = json.loads((root / "ppo" / "result.json").read_text())
    assert result["step"] == PPO_STEPS and not result["interrupted"]
    steps = [json.loads(line)["step"] for line in (root / "ppo" / "metrics.jsonl").read_text().splitlines()]
    assert sorted(set(s for s in steps)) == list(range(1, PPO_STEPS + 1))  # every step once logged, none lost
    assert "summary (200 validation prompts" in again.stdout and "held-out pairwise accuracy" in again.stdout
    assert third.returncode == 0 and "ppo: finished before" in third.stdout and "summary: made before" in third.stdout
    seconds = json.loads((root / "seconds.json").read_text())
    assert set(seconds) == {"sft", "label", "reward", "ppo"} and all(v > 0 for v in seconds.values())


def test_each_stage_is_an_ordinary_run_linked_to_the_one_before(made):
    root, _, _ = made
    sft, rm, ppo = (load_config(root / s / "config.yaml") for s in ("sft", "reward", "ppo"))
    assert (sft.task, rm.task, ppo.task) == ("sft", "reward", "ppo")
    assert rm.train.init_from == str(root / "sft") and ppo.train.init_from == str(root / "sft")
    assert rm.model.family == "reward" and rm.model.labeller_noise and rm.model.labellers == ["adversary", "careful", "sloppy"]
    assert rm.data.train_file == str(root / "label" / "comparisons.jsonl") and rm.data.val_file == str(root / "label" / "val.jsonl")
    assert ppo.ppo.reward == str(root / "reward") and ppo.ppo.gold == "sentiment"
    result = json.loads((root / "ppo" / "result.json").read_text())
    assert -1 <= result["val_gold"] <= 1  # VADER reported beside a learnt reward (ppo.gold)
    summary = json.loads((root / "summary.json").read_text())
    assert (root / "ppo.png").read_bytes()[:4] == b"\x89PNG"
    assert set(summary["rm_eps"]) == {"adversary", "careful", "sloppy"}
    assert summary["sft"]["reward"] != summary["ppo"]["reward"] and math.isfinite(summary["ppo_val_kl"])
    won = summary["ppo_over_sft"]  # per prompt by the gold judge, ties as half, with its Wilson interval
    assert won["wins"] + won["ties"] + won["losses"] == summary["prompts"]
    assert won["rate"] == pytest.approx((won["wins"] + won["ties"] / 2) / summary["prompts"])
    assert won["low"] <= won["rate"] <= won["high"] and won["high"] - won["low"] > 0


def test_comparisons_follow_the_gold_judge_by_their_labellers(made):
    root, _, _ = made
    rows = [json.loads(line) for line in (root / "label" / "comparisons.jsonl").read_text().splitlines()]
    assert len(rows) >= 10 and {r["labeller"] for r in rows} <= {"careful", "sloppy", "adversary"}
    for r in rows:
        assert sentiment_gold(r["prompt"], r["chosen"]) != sentiment_gold(r["prompt"], r["rejected"])  # no gold ties
        assert r["chosen"].strip() and r["rejected"].strip()
    gold = [json.loads(line) for line in (root / "label" / "val.jsonl").read_text().splitlines()]
    assert gold and all(sentiment_gold(r["prompt"], r["chosen"]) > sentiment_gold(r["prompt"], r["rejected"]) for r in gold)
    info = json.loads((root / "label" / "result.json").read_text())["train"]
    for lab, v in info["labellers"].items():  # the observed flip rates are those of the file
        mine = [r for r in rows if r["labeller"] == lab]
        flipped = sum(sentiment_gold(r["prompt"], r["chosen"]) < sentiment_gold(r["prompt"], r["rejected"]) for r in mine)
        assert v["comparisons"] == len(mine) and (not mine or v["observed_flip"] == flipped / len(mine))


def test_label_writes_the_same_bytes_for_the_same_arguments(made, tmp_path, monkeypatch):
    root, cache, _ = made
    monkeypatch.setenv("AXON_CACHE", str(cache))  # bundled:sentiment/ is written there, never into ~/.cache
    kw = dict(gold="sentiment", k=3, max_prompts=12, max_new_tokens=24, progress=False, device="cpu")
    a = label_samples(root / "sft", "bundled:sentiment/train.jsonl", tmp_path / "a.jsonl", **kw)
    label_samples(root / "sft", "bundled:sentiment/train.jsonl", tmp_path / "b.jsonl", **kw)
    label_samples(root / "sft", "bundled:sentiment/train.jsonl", tmp_path / "c.jsonl", seed=1, **kw)
    assert (tmp_path / "a.jsonl").read_bytes() == (tmp_path / "b.jsonl").read_bytes()
    assert (tmp_path / "a.jsonl").read_bytes() != (tmp_path / "c.jsonl").read_bytes()
    assert a["answers"] == 36 and a["prompts"] == 12
    r = label_samples(root / "sft", "bundled:sentiment/train.jsonl", tmp_path / "r.jsonl", rankings=True,
                      labellers={"gold": 0.0}, **kw)
    ranks = [json.loads(line) for line in (tmp_path / "r.jsonl").read_text().splitlines()]
    assert r["lines"] == len(ranks) > 0
    for x in ranks:  # a flip-0 labeller ranks by the gold judge (ties in any order)
        assert sorted(x["ranking"]) == list(range(len(x["responses"])))
        scores = [sentiment_gold(x["prompt"], x["responses"][i]) for i in x["ranking"]]
        assert scores == sorted(scores, reverse=True)


def test_sample_on_a_reward_run_prints_one_score_per_response(made, tmp_path):
    import torch

    from axon.tasks.ppo import RunReward
    from axon.train.run import load_run

    root, cache, _ = made
    responses = ["I love thee, sweet lord", "O wretched, hateful death"]
    out = axon(cache, "sample", str(root / "reward"), "--prompt", "Come, my lord,", "--response", responses[0],
               "--response", responses[1], "--device", "cpu")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert [line.split("\t")[1] for line in lines] == responses
    _, model, tok = load_run(root / "reward", "cpu")
    want = RunReward(model, tok).score(["Come, my lord,"] * 2, responses)
    assert torch.equal(torch.tensor([float(line.split("\t")[0]) for line in lines], dtype=torch.float64),
                       torch.round(want * 1e4) / 1e4)  # printed with 4 decimals
    file = tmp_path / "pairs.jsonl"
    file.write_text("".join(json.dumps({"prompt": "Come, my lord,", "response": r}) + "\n" for r in responses))
    out = axon(cache, "sample", str(root / "reward"), "--responses-file", str(file), "--device", "cpu")
    rows = [json.loads(line) for line in out.stdout.splitlines()]
    assert [r["response"] for r in rows] == responses and [r["score"] for r in rows] == want.tolist()


@pytest.mark.parametrize("name", ["sentiment.yaml", "instructions.yaml"])
def test_the_bundled_pipeline_recipes_build_every_stage(made, name, monkeypatch):
    """Each stage recipe of configs/instructgpt/ composes into a run config the way the pipeline
    composes it, and the label stage's prompt files exist."""
    from axon.data.files import resolve_file
    from axon.data.prompts import read_prompts
    from axon.lab.pipeline import read_recipe
    from axon.tasks.finetune import finetune_config

    root, cache, _ = made
    monkeypatch.setenv("AXON_CACHE", str(cache))
    spec = read_recipe(STAGES / name)
    for key in ("prompts", "val_prompts"):
        assert len(read_prompts(resolve_file(spec["label"][key], key))) >= spec["label"][key.replace("prompts", "max_prompts")]
    links = {"sft": [], "reward": [f"--data.train_file={root / 'label' / 'comparisons.jsonl'}"],
             "ppo": [f"--ppo.reward={root / 'reward'}", f"--ppo.gold={spec['gold']}"]}
    for stage, source in (("sft", root.parent.parent / "base"), ("reward", root / "sft"), ("ppo", root / "sft")):
        cfg = finetune_config(source, spec[stage]["recipe"], [*spec[stage]["overrides"], *links[stage], f"--task={stage}"])
        assert cfg.task == stage and cfg.train.init_from == str(source)
    assert cfg.ppo.gold == spec["gold"] and cfg.ppo.reward == str(root / "reward")


@pytest.mark.parametrize("gold, judge", [("instructions", "the instruction judge"), ("sentiment", "VADER")])
def test_the_plot_names_the_gold_judge_it_shows(gold, judge, tmp_path, monkeypatch):
    """ppo.png's middle panel is the recipe's gold judge (it said VADER for the instruction judge too)."""
    import matplotlib.figure

    from axon.lab.pipeline import plot_ppo

    run = tmp_path / "ppo"
    run.mkdir()
    rows = [{"step": 4 * (i + 1), "rollout": i, "score": 0.1 * i, "gold": 0.3, "kl": 0.5 * i} for i in range(12)]
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    titles = []
    real = matplotlib.figure.Figure.savefig
    monkeypatch.setattr(matplotlib.figure.Figure, "savefig",
                        lambda fig, *a, **k: (titles.extend(ax.get_title() for ax in fig.axes), real(fig, *a, **k)))
    out = plot_ppo({"PPO": run}, tmp_path / "ppo.png", gold=gold)
    assert out.read_bytes()[:4] == b"\x89PNG"
    assert titles[1] == f"gold score of each rollout ({judge})"
    assert not any("VADER" in t for t in titles) or gold == "sentiment"
