"""axon.lab.frontier: reward against KL. A tiny pretrained run as the reference and a DPO run of it
that learnt a planted preference; the reference's own KL is 0, the DPO run's is positive and its
judge score higher; answers do not depend on the batching; best-of-n by the judge never loses
as n grows and its KL is the analytic one; Gao et al.'s forms are recovered from exact points;
seeds pool into a t-interval; the command writes its JSON and plot, and refuses a bad judge."""

import json
import math
import random
import shutil

import numpy as np
import pytest
from scipy import stats

from axon.cli import main
from axon.errors import ConfigError
from axon.lab.frontier import (
    Point,
    best_of_n_points,
    checkpoint_steps,
    fit_gao,
    frontier,
    pool_seeds,
    run_point,
)

QUIET = ["--log.progress=false", "--train.threads=1"]


def spaced(prompt: str, answer: str) -> float:
    """The planted judge: the share of the answer's characters that are spaces (the DPO run's
    chosen answers space the prompt's letters out)."""
    return answer.count(" ") / max(len(answer), 1)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """(reference, policy): a tiny pretrained run, and DPO of it on "abc" -> "a b c" over "cba"."""
    root = tmp_path_factory.mktemp("frontier")
    cache = tmp_path_factory.getbasetemp() / "axon-cache"
    assert main(["train", "--model.preset=tiny", "--train.max_steps=20", "--train.sample_tokens=0", *QUIET,
                 f"--data.cache_dir={cache}", f"--out_dir={root}", "--name=pre"]) == 0
    rng = random.Random(0)
    words = sorted({"".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(3, 5)))
                    for _ in range(60)})
    for name, part in (("train", words[:48]), ("val", words[48:])):
        (root / f"{name}.jsonl").write_text("".join(json.dumps({"prompt": w, "chosen": " ".join(w), "rejected": w[::-1]})
                                                    + "\n" for w in part))
    assert main(["finetune", str(root / "pre"), "--task=dpo", "--optim.name=adamw", "--optim.lr=3e-3",
                 "--schedule.warmup_steps=5", "--train.batch_size=8", "--train.max_steps=40", *QUIET,
                 "--train.checkpoint_interval=20", "--train.keep_checkpoints=5",  # steps 20 and 40
                 f"--data.train_file={root / 'train.jsonl'}", f"--data.val_file={root / 'val.jsonl'}",
                 f"--out_dir={root}", "--name=dpo"]) == 0
    return root / "pre", root / "dpo"


@pytest.fixture(scope="module")
def pretrained(runs):
    return runs[0]


@pytest.fixture(scope="module")
def policy(runs):
    return runs[1]


PROMPTS = ["abc", "qrst", "mno", "zyx", "hello", "word", "cat", "dog"]


def test_reference_has_no_kl_and_the_policy_moved_and_gained(pretrained, policy):
    ref = run_point(pretrained, PROMPTS, spaced, reference=pretrained, max_new_tokens=12, batch_size=8)
    assert ref.kl == 0.0 and ref.prompts == len(PROMPTS)
    pt = run_point(policy, PROMPTS, spaced, max_new_tokens=12, batch_size=8)  # reference: its train.init_from
    assert pt.method == "dpo" and pt.setting == "beta=0.1"
    assert pt.kl > 0.5, pt
    assert pt.gold > ref.gold + 0.1, (pt.gold, ref.gold)
    assert pt.gold_ci[0] <= pt.gold <= pt.gold_ci[1]


def test_a_point_does_not_depend_on_the_batching(policy):
    a = run_point(policy, PROMPTS, spaced, max_new_tokens=12, batch_size=8, seed=3)
    b = run_point(policy, PROMPTS, spaced, max_new_tokens=12, batch_size=3, seed=3)
    assert a.gold == b.gold and a.length == b.length
    assert a.kl == pytest.approx(b.kl, abs=1e-4)
    c = run_point(policy, PROMPTS, spaced, max_new_tokens=12, batch_size=8, seed=4)
    assert (c.gold, c.length) != (a.gold, a.length)  # another seed, other answers


def test_best_of_n_by_the_judge_never_loses_as_n_grows(pretrained):
    pts = best_of_n_points(pretrained, PROMPTS, spaced, [4, 1, 2], max_new_tokens=10, batch_size=16)
    assert [p.setting for p in pts] == ["n=1", "n=2", "n=4"]
    golds = [p.gold for p in pts]
    assert golds == sorted(golds) and golds[-1] > golds[0]
    assert [p.kl for p in pts] == pytest.approx([math.log(n) - (n - 1) / n for n in (1, 2, 4)])
    with pytest.raises(ConfigError, match="n must be >= 1"):
        best_of_n_points(pretrained, PROMPTS, spaced, [0])


@pytest.mark.parametrize("form,f", [("bon", lambda d: d), ("rl", np.log)])
def test_gao_forms_are_recovered_from_exact_points(form, f):
    d = np.array([0.5, 1.0, 1.5, 2.0, 3.0])
    fit = fit_gao(d, d * (0.8 - 0.2 * f(d)), form, bootstrap=20)
    assert fit["alpha"] == pytest.approx(0.8) and fit["beta"] == pytest.approx(0.2) and fit["rmse"] < 1e-12
    noisy = d * (0.8 - 0.2 * f(d)) + np.array([0.02, -0.01, 0.03, -0.02, 0.01])
    fit = fit_gao(d, noisy, form, bootstrap=200)
    assert fit["alpha_ci"][0] < fit["alpha"] < fit["alpha_ci"][1]
    with pytest.raises(ConfigError, match="at least 3 points"):
        fit_gao([0.0, 1.0, 2.0], [0.0, 0.1, 0.2], form)


def test_seeds_pool_into_a_t_interval():
    def pt(seed, gold, kl):
        return Point("ppo", "beta=0.1", seed, f"r{seed}", gold, (gold - 0.1, gold + 0.1), kl, (kl, kl))

    rows = pool_seeds([pt(0, 0.5, 2.0), pt(1, 0.7, 4.0), pt(2, 0.6, 3.0), Point("dpo", "beta=1", 0, "d", 0.4,
                                                                                  (0.3, 0.5), 1.0, (0.9, 1.1))])
    ppo = next(r for r in rows if r["method"] == "ppo")
    half = stats.t.ppf(0.975, 2) * np.std([0.5, 0.7, 0.6], ddof=1) / math.sqrt(3)
    assert ppo["seeds"] == 3 and ppo["gold"] == pytest.approx(0.6) and ppo["kl"] == pytest.approx(3.0)
    assert ppo["gold_ci"] == pytest.approx((0.6 - half, 0.6 + half))
    dpo = next(r for r in rows if r["method"] == "dpo")
    assert dpo["seeds"] == 1 and dpo["gold_ci"] == (0.3, 0.5)  # one seed: its own bootstrap interval


def test_frontier_writes_json_and_plot(tmp_path, pretrained, policy, capsys):
    out = frontier([str(policy)], pretrained, PROMPTS, spaced, tmp_path / "f", best_of=[1, 2],
                   labels={str(policy): "DPO:planted"}, max_new_tokens=10, progress=False)
    saved = json.loads((tmp_path / "f" / "frontier.json").read_text())
    assert saved["pooled"] == json.loads(json.dumps(out["pooled"]))
    assert [(r["method"], r["setting"]) for r in saved["pooled"]] == [
        ("DPO", "planted"), ("best-of-n (gold)", "n=1"), ("best-of-n (gold)", "n=2")]
    assert (tmp_path / "f" / "frontier.png").stat().st_size > 5000
    assert saved["reference"]["kl"] == 0.0
    # the command: LABEL=RUN, a named judge, the table printed
    prompts = tmp_path / "p.jsonl"
    prompts.write_text("".join(json.dumps({"prompt": p}) + "\n" for p in PROMPTS))
    assert main(["frontier", f"mine:x={policy}", "--reference", str(pretrained), "--prompts", str(prompts),
                 "--gold", "sentiment", "--best-of-n", "1,2", "--max-new-tokens", "8", "--out", str(tmp_path / "c"),
                 "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "mine " in printed and "best-of-n (gold)" in printed and "frontier.png" in printed
    assert json.loads((tmp_path / "c" / "frontier.json").read_text())["gold_judge"] == "sentiment"


def test_checkpoints_place_a_run_along_its_training(tmp_path, pretrained, policy, capsys):
    """Gao et al.'s RL curves: one point per kept checkpoint; the newest is the run's own point, an
    earlier one is another policy (nearer the reference)."""
    assert [s for s, _ in checkpoint_steps(policy)] == [20, 40]
    out = frontier([str(policy)], pretrained, PROMPTS, spaced, tmp_path / "f", max_new_tokens=12, batch_size=8,
                   progress=False, checkpoints=True)
    pts = [p for p in out["points"] if p["method"] == "dpo"]
    assert [(p["setting"], p["extra"]["step"]) for p in pts] == [("beta=0.1 step=20", 20), ("beta=0.1 step=40", 40)]
    last = run_point(policy, PROMPTS, spaced, max_new_tokens=12, batch_size=8)
    assert (pts[1]["gold"], pts[1]["length"]) == (last.gold, last.length)
    assert pts[1]["kl"] == pytest.approx(last.kl)
    assert (pts[0]["gold"], pts[0]["kl"]) != (pts[1]["gold"], pts[1]["kl"])
    assert out["checkpoints"] is True and len(out["pooled"]) == 2  # a row per step: not pooled together
    # the command's flag, and a run with no checkpoint kept refuses in one line
    prompts = tmp_path / "p.jsonl"
    prompts.write_text("".join(json.dumps({"prompt": p}) + "\n" for p in PROMPTS))
    assert main(["frontier", str(policy), "--reference", str(pretrained), "--prompts", str(prompts), "--gold",
                 "sentiment", "--checkpoints", "--max-new-tokens", "8", "--out", str(tmp_path / "c"),
                 "--no-progress"]) == 0
    assert "step=20" in capsys.readouterr().out
    empty = tmp_path / "empty"
    shutil.copytree(policy, empty, ignore=shutil.ignore_patterns("checkpoints"))
    (empty / "checkpoints").mkdir()
    with pytest.raises(ConfigError, match="no checkpoint to place"):
        frontier([str(empty)], pretrained, PROMPTS, spaced, tmp_path / "e", progress=False, checkpoints=True)


def test_the_command_refuses_an_unknown_judge(tmp_path, pretrained, capsys):
    prompts = tmp_path / "p.jsonl"
    prompts.write_text("".join(json.dumps({"prompt": p}) + "\n" for p in PROMPTS))
    code = main(["frontier", "--reference", str(pretrained), "--prompts", str(prompts), "--gold", "vibes",
                 "--out", str(tmp_path / "o"), "--no-progress"])
    assert code != 0
    assert "--gold: 'vibes' is not a gold judge" in capsys.readouterr().err
