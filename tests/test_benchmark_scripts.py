"""The CPU benchmark scripts run end to end on a toy size and refuse bad input in one line.

Behaviour only: their figures are measured by hand on a quiet machine (benchmarks/README.md)."""

import importlib.util
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


def run(script, *args, timeout=240):
    return subprocess.run([sys.executable, str(BENCH / script), *args], capture_output=True, text=True, timeout=timeout)


@pytest.mark.slow
def test_train_throughput_smoke_reports_both_models():
    p = run("train_throughput.py", "--n-layer", "1", "--n-head", "2", "--n-embd", "32", "--block-size", "16", "--batch-size", "2",
            "--steps", "2", "--rounds", "2", "--warmup", "1", "--threads", "1", "--json")
    assert p.returncode == 0, p.stderr[-2000:]
    r = json.loads(p.stdout.strip().splitlines()[-1])
    assert [row["name"] for row in r["results"]] == ["axon", "hf-sdpa"] and r["ratio"] > 0
    assert r["ratio_nanogpt"] is None and r["first_losses_max_gap"] < 1e-3  # the same model trains the same way


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("trl") is None, reason="trl (the dev extra) is not installed")
def test_trl_dpo_smoke_reports_both_steps_on_the_same_model():
    p = run("trl_dpo.py", "--quick", "--threads", "1", "--json")
    assert p.returncode == 0, p.stderr[-2000:]
    r = json.loads(p.stdout.strip().splitlines()[-1])
    assert set(r["results"]) == {"axon", "trl"} and r["ratio"] > 0 and r["rounds"] == 2
    # the same model and tokens on both sides, trained the same way (the second loss follows one update)
    assert r["logp_gap"] < 1e-3 and r["warmup_loss_gap"] < 1e-3 and r["bar_config"] is False


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("trl") is None, reason="trl (the dev extra) is not installed")
def test_trl_grpo_smoke_reports_both_iterations_on_the_same_model():
    p = run("trl_grpo.py", "--quick", "--threads", "1", "--json")
    assert p.returncode == 0, p.stderr[-2000:]
    r = json.loads(p.stdout.strip().splitlines()[-1])
    assert set(r["results"]) == {"axon", "trl"} and r["ratio"] > 0 and r["rounds"] == 2 and r["bar_config"] is False
    for side in ("axon", "trl"):  # the split: a rollout and an update inside each iteration
        assert 0 < r["results"][side]["rollout_median_ms"] < r["results"][side]["median_ms"]



@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("denoising_diffusion_pytorch") is None,
                    reason="denoising-diffusion-pytorch (installed by hand, benchmarks/ddpm_peer.py) is not installed")
def test_ddpm_peer_smoke_trains_both_on_the_same_batches_and_scores_both(cache_dir):
    p = run("ddpm_peer.py", "--quick", "--json", "--cache-dir", str(cache_dir))  # the session's digits classifier
    assert p.returncode == 0, p.stderr[-2000:]
    r = json.loads(p.stdout.strip().splitlines()[-1])
    assert r["steps"] == 12 and r["threads"] == [1] and r["ratio"]["1"] > 0 and r["bar_config"] is False
    assert set(r["steps_per_s"]) == {"axon@1", "peer@1"}
    assert abs(r["params"]["peer"] / r["params"]["axon"] - 1) < 0.02  # the same size, within 2%
    # both learn to predict unit-variance noise: near 1 at initialisation on either side
    for side in ("axon", "peer"):
        assert len(r["first_losses"][side]) == 3 and all(0.5 < v < 2.0 for v in r["first_losses"][side])
    q = r["quality"]
    assert q["axon"]["n_gen"] == q["peer"]["n_gen"] == q["real"]["n_gen"] == 64
    # real digits are far closer to the held-out ones than 12 steps of either model's samples
    assert q["real"]["frechet_distance"] < min(q["axon"]["frechet_distance"], q["peer"]["frechet_distance"])


def test_ddpm_peer_refuses_bad_thread_counts_in_one_line():
    p = run("ddpm_peer.py", "--threads", "1,x")
    assert p.returncode == 2 and p.stderr.strip().splitlines()[-1].endswith("--threads: comma-separated integers, e.g. 1,2; got '1,x'")

def test_train_throughput_refuses_a_directory_without_nanogpt(tmp_path):
    p = run("train_throughput.py", "--nanogpt", str(tmp_path), "--steps", "1", "--rounds", "1", "--warmup", "1",
            "--n-layer", "1", "--n-embd", "32", "--n-head", "2", "--block-size", "16", "--batch-size", "2")
    assert p.returncode != 0 and p.stderr.strip().splitlines()[-1] == f"error: --nanogpt {tmp_path}: no model.py there (a nanoGPT checkout is expected)"


def test_default_job_refuses_a_directory_without_nanogpt(tmp_path):
    p = run("default_job.py", "--nanogpt", str(tmp_path))
    assert p.returncode == 2 and p.stderr.strip() == f"error: {tmp_path} is not a nanoGPT checkout (no train.py or data/shakespeare_char/prepare.py)"


# ----------------------------------------------------------------------------------------------
# benchmarks/instructgpt_headline.py: tiny pretrain -> SFT -> PPO runs, then the script on a few prompts


@pytest.fixture(scope="module")
def rlhf_runs(tmp_path_factory):
    """A tiny language model (30 steps), an SFT run from it (10 steps) and a PPO run from that (one
    rollout of 16 answers), each a real run of its task: the script's inputs at toy size."""
    from axon.config import load_config
    from axon.feedback import bundled_path
    from axon.tasks.finetune import finetune_config
    from axon.train.run import train

    root = tmp_path_factory.mktemp("headline")
    quiet = ["--log.progress=false", "--train.threads=1", "--train.sample_tokens=0", f"--out_dir={root}",
             "--train.eval_batches=1"]
    lm = train(load_config(None, ["--model.preset=tiny", "--model.block_size=128", "--name=lm", "--train.max_steps=30",
                                  "--train.eval_interval=30", *quiet]))["run_dir"]
    sft = train(finetune_config(lm, None, ["--task=sft", "--name=sft", "--train.max_steps=10", "--train.batch_size=8",
                                           f"--data.train_file={bundled_path('train')}",
                                           f"--data.val_file={bundled_path('val')}", *quiet]))["run_dir"]
    ppo = train(finetune_config(sft, None, ["--task=ppo", "--name=ppo", "--train.max_steps=2", "--train.batch_size=8",
                                            "--ppo.rollout_batch=16", "--ppo.epochs=1", "--ppo.max_new_tokens=16",
                                            "--optim.name=adamw", "--optim.lr=3e-3", *quiet]))["run_dir"]
    return sft, ppo


def load_script(name):
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, BENCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_instructgpt_headline_n_at_kl_is_the_nearest_best_of_n():
    script = load_script("instructgpt_headline")
    for kl in (-0.1, 0.0, 0.2, 0.65, 1.84, 3.93, 6.0):
        brute = min(range(1, 2001), key=lambda n: (abs(script.best_of_n_kl(n) - kl), n))
        assert script.n_at_kl(kl, 2000) == brute, kl
    assert script.n_at_kl(3.93, 137) == 137 and script.n_at_kl(3.93, 200) in (137, 138)  # log 137 - 136/137 = 3.927


@pytest.mark.slow
def test_instructgpt_headline_smoke_reports_win_rates_and_equal_kl(rlhf_runs):
    sft, ppo = rlhf_runs
    # the same SFT run as "large" and "small": its answers must tie with themselves on every prompt
    p = run("instructgpt_headline.py", "--large", sft, "--small-sft", sft, "--small-ppo", ppo, "--ppo", ppo,
            "--limit", "6", "--max-new-tokens", "16", "--max-n", "3", "--threads", "1", "--json")
    assert p.returncode == 0, p.stderr[-2000:]
    out = json.loads(p.stdout)
    assert out["prompts"] == 6
    rates = {(r["comparison"], r["answers"]): r for r in out["headline"]["win_rates"]}
    assert len(rates) == 6
    for r in rates.values():
        assert r["wins"] + r["ties"] + r["losses"] == 6
        assert r["rate"] == (r["wins"] + r["ties"] / 2) / 6 and r["low"] <= r["rate"] <= r["high"]
    for answers in ("sampled", "greedy"):  # the same seeded samples of the same weights
        assert rates[("small SFT vs large SFT (control)", answers)]["ties"] == 6
    large, small_sft, small_ppo = out["headline"]["policies"]
    assert out["headline"]["size_ratio"] == 1.0 and small_ppo["ppo"] and small_ppo["kl"] is not None
    from axon.feedback import bundled_path, read_jsonl

    types = [r["type"] for r in read_jsonl(bundled_path("heldout"))[:6]]
    for policy in (large, small_ppo):  # the per-type means weigh back to the mean
        by_type = policy["gold_by_type"]
        assert set(by_type) == set(types)
        assert sum(by_type[t] * types.count(t) for t in by_type) / 6 == pytest.approx(policy["gold"], abs=1e-12)
    (e,) = out["equal_kl"]
    assert 1 <= e["n"] <= 3 and e["best_of_n_kl"] == pytest.approx(math.log(e["n"]) - (e["n"] - 1) / e["n"])
    assert e["ppo_gold"] == small_ppo["gold"] and e["ppo_kl"] == small_ppo["kl"]  # the same answers, measured once
    assert e["win_rate"]["wins"] + e["win_rate"]["ties"] + e["win_rate"]["losses"] == 6
    # the SFT run where a PPO run is expected: one line naming the flag
    p = run("instructgpt_headline.py", "--large", sft, "--small-sft", sft, "--small-ppo", sft, "--limit", "1",
            "--max-new-tokens", "4")
    assert p.returncode == 1 and p.stderr.strip() == f"error: --small-ppo {sft}: not a PPO run started from --small-sft {sft}"


# benchmarks/sentiment_rm_diagnosis.py: the figures of a comparisons file, on files whose answers are known
def test_sentiment_rm_diagnosis_bag_of_words_learns_the_labels_it_is_given(tmp_path):
    from axon.feedback.sentiment import sentiment_score, vader_available

    if not vader_available():
        pytest.skip("needs vaderSentiment")
    good, bad = ["love", "sweet", "fair", "good", "happy"], ["death", "hate", "woe", "evil", "grief"]
    rows = [{"prompt": "Come,", "chosen": f"my {g} lord", "rejected": f"my {b} lord", "labeller": "a"} for g in good for b in bad]
    flipped = [{**r, "chosen": r["rejected"], "rejected": r["chosen"]} for r in rows]
    for name, lines in (("right.jsonl", rows), ("flipped.jsonl", flipped), ("val.jsonl", rows[::3])):
        (tmp_path / name).write_text("".join(json.dumps(r) + "\n" for r in lines))
    gap = sorted(abs(sentiment_score(r["chosen"]) - sentiment_score(r["rejected"])) for r in rows)[len(rows) // 2]
    out = {}
    for name in ("right", "flipped"):
        p = run("sentiment_rm_diagnosis.py", str(tmp_path / f"{name}.jsonl"), str(tmp_path / "val.jsonl"))
        assert p.returncode == 0, p.stderr[-2000:]
        out[name] = p.stdout.splitlines()
    assert "labels agree with VADER 1.000, one side neutral 0.000" in out["right"][0]
    assert "labels agree with VADER 0.000" in out["flipped"][0]
    assert f"{gap:.2f}" in out["right"][1].split(": ")[1].split()  # the median of |gold gap|
    assert "held-out accuracy 1.000" in out["right"][3] and "held-out accuracy 0.000" in out["flipped"][3]
