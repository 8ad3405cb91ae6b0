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


# ----------------------------------------------------------------------------------------------
# benchmarks/fewshot_scaling.py and cot_finetune.py: GPT-3's few-shot claim and chain of thought (issue 20)


def _fabricated_evals(gaps: dict[str, float], n: int = 100) -> tuple[dict, dict]:
    """Run results and evaluations of one task "t" where size s scores 0 on every example at 0 shots
    and a share gaps[s] of the examples right at 8 shots (rising with shots in between)."""
    shots = (0, 1, 2, 4, 8)
    runs, evals = {}, {}
    for i, (size, gap) in enumerate(gaps.items()):
        right = {k: round(gap * n * math.log2(1 + k) / math.log2(9)) for k in shots}
        per = {str(k): {"values": [1.0] * right[k] + [0.0] * (n - right[k]), "truncated": 0.0} for k in shots}
        runs[f"{size}-s0"] = {"params": 1000 * (i + 1)}
        evals[f"{size}-s0"] = {"t": {"metric": "acc", "output_type": "loglikelihood", "shots": per}}
    return runs, evals


def test_fewshot_scaling_statistics_slope_gap_seeds_and_verdicts():
    fs = load_script("fewshot_scaling")
    shots = [0, 1, 2, 4, 8]
    # the slope contrast recovers a line in log2(1 + shots) exactly, and the gap is paired per example
    line = {k: [0.2 + 0.05 * math.log2(1 + k), 0.3 + 0.05 * math.log2(1 + k)] for k in shots}
    slope, _ = fs.contrast(line, fs.slope_weights(shots))
    assert slope == pytest.approx(0.05, abs=1e-12)
    gap, se = fs.contrast({0: [0.0, 1.0, 0.0], 8: [1.0, 1.0, 1.0]}, {8: 1.0, 0: -1.0})
    assert gap == pytest.approx(2 / 3) and se == pytest.approx(math.sqrt(1 / 3 / 3))  # sd of (1, 0, 1) / sqrt 3
    # one seed: the examples' binomial error; several: the spread across seeds is added
    assert fs.mean_se([1.0, 0.0, 0.0, 1.0])[1] == pytest.approx(math.sqrt(0.25 * 4 / 3 / 4))
    assert fs.pool_seeds([(0.3, 0.04)]) == (0.3, pytest.approx(0.04))
    mean, se = fs.pool_seeds([(0.4, 0.05), (0.6, 0.05)])
    assert mean == pytest.approx(0.5) and se == pytest.approx(math.hypot(0.05, 0.1))
    sizes = [("1x16", []), ("4x128", [])]
    verdicts = {}
    for case, gaps in {"grows": {"1x16": 0.0, "4x128": 0.5}, "shrinks": {"1x16": 0.5, "4x128": 0.0},
                       "same": {"1x16": 0.3, "4x128": 0.32}}.items():
        runs, evals = _fabricated_evals(gaps)
        summary = fs.summarise(sizes, [0], shots, ["t"], runs, evals)
        verdicts[case] = summary["claims"]["gap_grows_with_size"]["t"]["verdict"]
        rise = summary["claims"]["accuracy_rises_with_shots"]["t"]
        for size, gap in gaps.items():
            assert rise[size]["gap"]["value"] == pytest.approx(gap)
            assert rise[size]["verdict"] == ("rises" if gap > 0 else "flat")
        assert len(summary["points"]) == len(summary["curves"]) == 2 * len(shots)
    assert verdicts == {"grows": "reproduced", "shrinks": "reversed", "same": "not reproduced (the intervals overlap)"}
    # a contrast that is 0 on every example still has an interval: one example's worth (1/n for the gap),
    # so 4 right of 300 at 8 shots against none anywhere is no trend (a rule without the floor said "reproduced")
    assert fs.contrast({0: [0.0] * 300, 8: [0.0] * 300}, {8: 1.0, 0: -1.0}) == (0.0, pytest.approx(1 / 300))
    runs, evals = _fabricated_evals({"1x16": 0.0, "4x128": 4 / 300}, n=300)
    summary = fs.summarise(sizes, [0], shots, ["t"], runs, evals)
    assert summary["claims"]["gap_grows_with_size"]["t"]["verdict"] == "not reproduced (the intervals overlap)"
    assert [label for label, _ in fs.parse_sizes("1x32,4x128,tiny")] == ["1x32", "4x128", "tiny"]
    assert fs.parse_sizes("3x96")[0][1] == ["--model.n_layer=3", "--model.n_embd=96", "--model.n_head=3"]


def test_fewshot_scaling_refuses_a_bad_size_in_one_line(tmp_path):
    p = run("fewshot_scaling.py", "--out", str(tmp_path), "--sizes", "2x64,big")
    assert p.returncode == 2 and p.stderr.strip().splitlines()[-1].startswith(
        "fewshot_scaling.py: error: --sizes: 'big' is not LAYERSxWIDTH with an even width (e.g. 2x64) or a decoder")
    assert not (tmp_path / "runs").exists()


@pytest.mark.slow
def test_fewshot_scaling_smoke_scores_every_size_task_and_shots_and_resumes(tmp_path):
    p = run("fewshot_scaling.py", "--out", str(tmp_path), "--smoke")
    assert p.returncode == 0, p.stderr[-2000:]
    assert "Claim 1: accuracy rises with shots" in p.stdout and "Claim 2: the gap acc(8) - acc(0)" in p.stdout
    r = json.loads((tmp_path / "fewshot_scaling.json").read_text())
    tasks, shots = ["random_insertion", "arithmetic_2da", "arithmetic_2ds"], [0, 1, 2, 4, 8]
    assert r["settings"]["sizes"] == ["1x16", "1x32"] and r["settings"]["tasks"] == tasks
    assert {(q["size"], q["seed"], q["task"], q["shots"]) for q in r["points"]} == {
        (s, 0, t, k) for s in ("1x16", "1x32") for t in tasks for k in shots}
    assert all(q["n"] == 10 and q["metric"] == "acc" and 0 <= q["value"] <= 1 for q in r["points"])
    params = {name: run_["params"] for name, run_ in r["runs"].items()}
    assert params["1x16-s0"] < params["1x32-s0"]
    # 8 two-digit shots and 8 random-insertion shots fit the 320-character context
    assert r["truncated"]["arithmetic_2da"]["8"] == 0 and r["truncated"]["random_insertion"]["8"] == 0
    # the gap is the paired mean of each example's 8-shot minus 0-shot score, from the saved evaluations
    ev = json.loads((tmp_path / "evals" / "1x32-s0.json").read_text())["results"]["arithmetic_2ds"]["shots"]
    gap = r["claims"]["accuracy_rises_with_shots"]["arithmetic_2ds"]["1x32"]["gap"]["value"]
    assert gap == pytest.approx(sum(ev["8"]["values"]) / 10 - sum(ev["0"]["values"]) / 10)
    assert (tmp_path / "fewshot_scaling.png").stat().st_size > 10_000
    again = run("fewshot_scaling.py", "--out", str(tmp_path), "--smoke")  # resumes: nothing trained or scored again
    assert again.returncode == 0 and "trained 0 runs, kept 2 finished ones" in again.stdout
    assert "evaluated" not in again.stdout
    assert json.loads((tmp_path / "fewshot_scaling.json").read_text())["points"] == r["points"]
    # the runs' char tokenizer covers every bundled task (the corpus alone lacks the word problems' "+ * / =");
    # a task of yours with a character it lacks is refused before anything trains
    shards = tmp_path / "data" / "c100000-s0" / "shards"
    assert set("+*/=") <= set(json.loads((shards / "tokenizer.json").read_text())["chars"])
    from axon.errors import DataError
    from axon.eval.prompting import load_task

    (tmp_path / "euro.jsonl").write_text('{"q": "1 \u20ac", "a": "2"}\n')
    (tmp_path / "euro.yaml").write_text("task: euro\ndataset_path: json\n"
                                        "dataset_kwargs: {data_files: {test: euro.jsonl}}\ntest_split: test\n"
                                        "output_type: loglikelihood\ndoc_to_text: q\ndoc_to_target: a\n")
    with pytest.raises(DataError, match=r"^task euro: .*\u20ac.* use another --out$"):
        load_script("fewshot_scaling").prepare_corpus(tmp_path, 100000, 0, [load_task(tmp_path / "euro.yaml")])


@pytest.mark.slow
def test_cot_finetune_smoke_trains_both_arms_on_one_tokenizer_and_fills_the_table(tmp_path):
    p = run("cot_finetune.py", "--out", str(tmp_path), "--smoke")
    assert p.returncode == 0, p.stderr[-2000:]
    assert "trained with rationales" in p.stdout and "chain of thought vs direct" in p.stdout
    r = json.loads((tmp_path / "cot_finetune.json").read_text())
    data = tmp_path / "data" / "n200-s0"
    chars = json.loads((data / "tokenizer.json").read_text())["chars"]
    assert set("+*/=0123456789.") <= set(chars)  # the rationales' arithmetic, which the corpus's tokenizer lacks
    for arm in ("rationales", "direct"):  # both arms prepared with that one tokenizer
        assert json.loads((data / arm / "tokenizer.json").read_text())["chars"] == chars
    # the training text is the tasks' shot format: "Q: ...\nA: <rationale or not> The answer is N."
    with_r, direct = ((data / f"{arm}.txt").read_text().split("\n\n") for arm in ("rationales", "direct"))
    assert len(with_r) == len(direct) == 200
    for a, b in zip(with_r, direct):
        qa, qb = a.split("\nA: "), b.split("\nA: ")
        assert qa[0] == qb[0] and qa[0].startswith("Q: ") and qb[1].startswith("The answer is ")
        assert qa[1].endswith(qb[1]) and "=" in qa[1] and "=" not in qb[1]
    assert r["runs"]["rationales-s0"]["params"] == r["runs"]["direct-s0"]["params"]
    assert r["runs"]["rationales-s0"]["tokens"] == r["runs"]["direct-s0"]["tokens"]
    cells = [r["table"][arm][t] for arm in ("rationales", "direct") for t in ("word_problems", "word_problems_cot")]
    assert all(c["n"] == 6 and c["metric"] == "exact_match,get-answer" and 0 <= c["value"] <= 1 for c in cells)
    # the headline is paired over the same problems: the difference of the two diagonal cells
    head = r["table"]["rationales"]["word_problems_cot"]["value"] - r["table"]["direct"]["word_problems"]["value"]
    assert r["cot_vs_direct"]["value"] == pytest.approx(head)


def test_diffusion_curves_draws_every_variant_seed_and_the_long_run(tmp_path):
    def write(run, rows):
        run.mkdir(parents=True)
        (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))

    for name, acc in (("base", 0.9), ("unconditional", None)):
        for s in range(2):
            rows = [{"step": 10, "train_loss": 1.0}]
            rows += [{"step": k, "val_loss": 0.1, "val_frechet_distance": 30 / k + s,
                      **({"val_accuracy": acc} if acc else {})} for k in (5, 10)]
            write(tmp_path / "cmp" / "runs" / f"{name}-s{s}", rows)
    write(tmp_path / "long", [{"step": k, "val_frechet_distance": 3.0, "val_accuracy": 0.95} for k in (5, 10, 20)])
    out = tmp_path / "c.png"
    p = run("diffusion_curves.py", str(tmp_path / "cmp"), "--long", str(tmp_path / "long"), "--out", str(out))
    assert p.returncode == 0, p.stderr[-2000:]
    assert out.stat().st_size > 10000
    spec = importlib.util.spec_from_file_location("diffusion_curves", BENCH / "diffusion_curves.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.curve(tmp_path / "cmp" / "runs" / "base-s1") == [(5, 7.0, 0.9), (10, 4.0, 0.9)]


# ----------------------------------------------------------------------------------------------
# benchmarks/chameleon_stability.py: Chameleon's QK-norm / z-loss stability claim (issue 22)


def test_chameleon_stability_counts_spikes_and_divergence_and_compares_with_intervals(tmp_path):
    st = load_script("chameleon_stability")

    def write(name, losses, vals, skipped=0):
        run = tmp_path / name
        run.mkdir()
        rows = [{"step": 10 * (i + 1), "train_loss": v, "grad_norm": 1.0} for i, v in enumerate(losses)]
        rows += [{"step": 50 * (i + 1), "val_loss": v, "val_logit_norm": 10.0 + i} for i, v in enumerate(vals)]
        (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        (run / "result.json").write_text(json.dumps({"skipped_steps": skipped}))
        return st.run_summary(run, steps=100)

    calm = write("calm", [3.0, 2.0, 1.5, 1.4, 1.3, 1.2, 1.1, 1.1, 1.0, 1.0], [1.5, 1.05])
    assert (calm["spikes"], calm["diverged"], calm["final_val_loss"], calm["logit_norm_max"]) == (0, False, 1.05, 11.0)
    spiky = write("spiky", [3.0, 2.0, 1.0, 1.4, 1.0, 1.3, 1.0, 1.0, 1.0, 1.0], [1.0, 1.6])
    assert spiky["spikes"] == 2 and spiky["diverged"]  # 1.4 and 1.3 > 1.25 x 1.0; 1.6 > 1.5 x 1.0
    assert write("nan", [3.0, 2.0], [1.0, 1.0], skipped=3)["diverged"]
    low = [{"final_val_loss": v, "diverged": False, "spikes": 0} for v in (1.00, 1.01, 1.02)]
    high = [{"final_val_loss": v, "diverged": d, "spikes": 1} for v, d in ((1.50, True), (1.52, False), (1.55, False))]
    v = st.verdict({"qk+z": low, "qk": low, "z": high, "none": high})
    assert v["verdict"].startswith("QK-norm helps") and v["without_qk_norm"]["diverged"] == 2
    assert st.verdict({"qk+z": low, "qk": high, "z": low, "none": high})["verdict"].startswith("no difference")


@pytest.mark.slow
def test_chameleon_stability_smoke_runs_every_combination(tmp_path):
    p = run("chameleon_stability.py", "--out", str(tmp_path), "--smoke")
    assert p.returncode == 0, p.stderr[-2000:]
    r = json.loads((tmp_path / "chameleon_stability.json").read_text())
    combos = r["0.03"]["combos"]
    assert set(combos) == {"qk+z", "qk", "z", "none"} and all(len(c["runs"]) == 1 for c in combos.values())
    assert all(c["runs"][0]["evals"] and math.isfinite(c["final_val_loss"][0]) for c in combos.values())
    assert (tmp_path / "chameleon_stability.png").stat().st_size > 10000
    cfg = (tmp_path / "runs" / "lr0.03-none-s0" / "config.yaml").read_text()
    assert "qk_norm: false" in cfg and "z_loss: 0.0" in cfg
    bad = run("chameleon_stability.py", "--out", str(tmp_path), "--lrs", "0.1,-1")
    assert bad.returncode != 0 and "--lrs" in bad.stderr.strip().splitlines()[-1]


def test_metric_curves_puts_each_runs_metric_on_its_variants_flops(tmp_path):
    mc = load_script("metric_curves")
    cmp = tmp_path / "cmp"
    plan = {"variants": [{"name": "early", "tokens_per_step": 10, "flops_per_token": 2.0},
                         {"name": "early-both", "tokens_per_step": 5, "flops_per_token": 1.0}]}
    (cmp / "runs").mkdir(parents=True)
    (cmp / "plan.json").write_text(json.dumps(plan))
    for name, acc in (("early-s0", 0.5), ("early-s1", 0.6), ("early-both-s0", 0.7)):
        (cmp / "runs" / name).mkdir()
        rows = [{"step": 2, "train_loss": 1.0}, {"step": 4, "val_loss": 1.0, "val_acc": acc}]
        (cmp / "runs" / name / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    got = mc.curves(cmp, "acc")
    assert got == {"early": [[(80.0, 0.5)], [(80.0, 0.6)]], "early-both": [[(20.0, 0.7)]]}
    assert mc.main([str(cmp), "--metric", "acc", "--out", str(tmp_path / "c.png")]) == 0
    assert (tmp_path / "c.png").stat().st_size > 5000
    p = run("metric_curves.py", str(cmp), "--metric", "nothing")
    assert p.returncode != 0 and "no run" in p.stderr.strip().splitlines()[-1]


def test_rag_em_vs_hit_reads_each_readers_result(tmp_path):
    script = load_script("rag_em_vs_hit")
    runs = []
    for name, spec, result in (("closed", "none", {"val_em": 0.01}),
                               ("bm25", "bm25", {"val_em": 0.3, "val_hit": 0.4, "val_em_hit": 0.7, "val_em_miss": 0.03})):
        d = tmp_path / name
        d.mkdir()
        (d / "result.json").write_text(json.dumps(result))
        (d / "config.yaml").write_text(f"model:\n  family: decoder\nrag:\n  retriever: {spec}\n  read_passages: 1\n")
        runs.append(d)
    rows = script.points(runs)
    assert [r["label"] for r in rows] == ["closed-book", "bm25 k=1"] and rows[0]["hit"] == 0.0
    assert rows[1]["em_hit"] == 0.7
    assert script.main([*map(str, runs), "--out", str(tmp_path / "p.png")]) == 0
    assert (tmp_path / "p.png").stat().st_size > 5000
    p = run("rag_em_vs_hit.py", str(tmp_path / "nothing"))
    assert p.returncode != 0 and "no result.json" in p.stderr.strip().splitlines()[-1]


def test_rag_edit_swaps_each_held_out_fact_and_asks_before_and_after(tmp_path):
    from axon.cli import main as axon_main

    assert axon_main(["train", "--task=rag", "--model.preset=tiny", "--model.block_size=96", "--rag.kb_entities=8",
                      "--train.max_steps=2", "--log.progress=false", f"--out_dir={tmp_path}", "--name=r"]) == 0
    script = load_script("rag_edit")
    r = script.edit_and_ask(str(tmp_path / "r"), "born_in")
    assert r["questions"] == 2 * 4  # two held-out people (25% of 8), four questions about their birthplace
    assert r["example"]["new"] != r["example"]["old"]
    assert r["edited_passages"] == 2  # one birthplace passage per held-out person
    name = r["example"]["question"].removeprefix("Where was ").removesuffix(" born?")
    assert name in r["example"]["read_after"][0][1]  # BM25 reads a passage about the person asked about
    for key in ("em_before", "em_after_new_answer", "em_after_old_answer"):
        assert 0.0 <= r[key] <= 1.0
