"""EleutherAI's lm-evaluation-harness running Axon models (axon.eval.prompting.lm_eval_adapter):
the harness itself on local task files of all four output types, example by example against
Axon's own harness (`axon eval --tasks`), at 0 shots and at 2 first_n shots; the continuation's
leading space (lm-eval #942, #1628) and the batch size (#1645); `axon lm-eval`; a run exported
with `axon convert --to-hf` under lm-eval's own `hf` model; and Axon without lm-eval installed.

Fixtures: a decoder (1 layer, width 32, context 64, a character tokenizer) trained for 80 steps on
"say cat: cat" lines, so that some of its answers are right and the accuracies are not all 0;
task files written to a temporary folder, read by lm-eval through datasets' "json" builder, offline.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from importlib.util import find_spec
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
import yaml

from axon.cli import main
from axon.data.tokenizers import CharTokenizer
from axon.eval.prompting import LMScorer, evaluate_tasks

needs_lm_eval = pytest.mark.skipif(find_spec("lm_eval") is None,
                                   reason="lm-evaluation-harness is not installed (pip install 'axon-lab[eval]')")

CHARS = "abcdefghijklmnopqrstuvwxyz :\n"
TEST_WORDS = ["cat", "dog", "sun", "hat", "box", "pen"]
SHOT_WORDS = ["cup", "map", "owl", "fig"]
# Kind 2 of tests/numerics.py (the same sums batched differently: lm-eval sends all of a task's
# requests at once, Axon's harness in its own order): observed <= 5e-7 on these sums of ~15 log-probs.
TOL = 1e-5
SRC = Path(__file__).resolve().parents[2] / "src"


def mc_record(i: int, w: str) -> dict:
    others = [x for x in TEST_WORDS if x != w]
    choices = [others[i % 5], w, others[(i + 2) % 5] + "s"]  # lengths differ: acc_norm is not acc
    return {"w": w, "choices": choices[i % 3:] + choices[: i % 3], "gold": (1 - i % 3) % 3}


TASKS = {  # name -> (YAML keys, test records, few-shot records or None)
    "ll": ({"output_type": "loglikelihood", "doc_to_text": "say {{w}}:", "doc_to_target": " {{w}}",
            "target_delimiter": "", "fewshot_split": "train", "fewshot_config": {"sampler": "first_n"},
            "metric_list": [{"metric": "acc"}, {"metric": "perplexity"}]},
           [{"w": w} for w in TEST_WORDS], [{"w": w} for w in SHOT_WORDS]),
    # lm-eval #942/#1628: the space at the end of the prompt belongs to the continuation's first token
    "ll_space": ({"output_type": "loglikelihood", "doc_to_text": "say {{w}}: ", "doc_to_target": "w",
                  "target_delimiter": "", "fewshot_split": "train", "fewshot_config": {"sampler": "first_n"},
                  "metric_list": [{"metric": "acc"}]},
                 [{"w": w} for w in TEST_WORDS], [{"w": w} for w in SHOT_WORDS]),
    # the default target_delimiter " ": it joins the shots only, in both harnesses (lm-eval 0.4.13's rule)
    "ll_default": ({"output_type": "loglikelihood", "doc_to_text": "say {{w}}:", "doc_to_target": "{{w}}",
                    "fewshot_split": "train", "fewshot_config": {"sampler": "first_n"},
                    "metric_list": [{"metric": "acc"}]},
                   [{"w": w} for w in TEST_WORDS], [{"w": w} for w in SHOT_WORDS]),
    # shots from the test split itself (fewshot_split = test_split): both harnesses leave the example out
    "mc": ({"output_type": "multiple_choice", "doc_to_text": "say {{w}}:", "doc_to_choice": "choices",
            "doc_to_target": "gold", "fewshot_split": "test", "fewshot_config": {"sampler": "first_n"},
            "metric_list": [{"metric": "acc"}, {"metric": "acc_norm"}]},
           [mc_record(i, w) for i, w in enumerate(TEST_WORDS)], None),
    "gen": ({"output_type": "generate_until", "doc_to_text": "say {{w}}:", "doc_to_target": "{{w}}",
             "fewshot_split": "train", "fewshot_config": {"sampler": "first_n"},
             "generation_kwargs": {"until": ["\n"], "max_gen_toks": 8, "do_sample": False, "temperature": 0.0},
             "filter_list": [{"name": "word", "filter": [{"function": "regex", "regex_pattern": "([a-z]+)"},
                                                         {"function": "take_first"}]}],
             "metric_list": [{"metric": "exact_match"}]},
            [{"w": w} for w in TEST_WORDS], [{"w": w} for w in SHOT_WORDS]),
    # no `until`: both stop at the shots' separator "\n\n"; no filter: lm-eval's "none"
    "gen_plain": ({"output_type": "generate_until", "doc_to_text": "say {{w}}:", "doc_to_target": " {{w}}",
                   "fewshot_split": "train", "fewshot_config": {"sampler": "first_n"},
                   "generation_kwargs": {"max_gen_toks": 10}, "metric_list": [{"metric": "exact_match"}]},
                  [{"w": w} for w in TEST_WORDS], [{"w": w} for w in SHOT_WORDS]),
    # one document longer than the context (64): rolling windows; one ending in a newline: lm-eval's word count
    "roll": ({"output_type": "loglikelihood_rolling", "doc_to_text": "", "doc_to_target": "text",
              "metric_list": [{"metric": "word_perplexity"}, {"metric": "byte_perplexity"},
                              {"metric": "bits_per_byte"}]},
             [{"text": "say cat: cat"}, {"text": "say dog: dog\n"}, {"text": "say sun: sun\n\n" * 7}], None),
}
FEWSHOT_TASKS = ["ll", "ll_space", "mc", "gen", "gen_plain"]  # a rolling task takes no shots
MEANS = ("acc", "acc_norm", "exact_match")  # per-example metrics; the perplexities are corpus figures


@pytest.fixture(scope="module")
def tok():
    return CharTokenizer.from_text(CHARS)


@pytest.fixture(scope="module")
def model(tok):
    """A decoder that has learnt most of "say W: W" (80 AdamW steps, about a second)."""
    from axon.models.decoder import Decoder, DecoderConfig

    torch.manual_seed(0)
    m = Decoder(DecoderConfig(vocab_size=tok.vocab_size, block_size=64, n_layer=1, n_head=2, n_embd=32))
    data = torch.tensor(tok.encode("".join(f"say {w}: {w}\n\n" for w in TEST_WORDS + SHOT_WORDS) * 10))
    opt = torch.optim.AdamW(m.parameters(), lr=1e-2)
    g = torch.Generator().manual_seed(0)
    for _ in range(80):
        starts = torch.randint(0, len(data) - 33, (8,), generator=g).tolist()
        x = torch.stack([data[s : s + 32] for s in starts])
        y = torch.stack([data[s + 1 : s + 33] for s in starts])
        loss = F.cross_entropy(m(x).flatten(0, 1), y.flatten())
        opt.zero_grad()
        loss.backward()
        opt.step()
    return m.eval()


@pytest.fixture(scope="module")
def task_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("lm-eval-tasks")
    for name, (keys, test, shots) in TASKS.items():
        files = {"test": f"{name}.jsonl"}
        (folder / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in test))
        if shots is not None:
            files["train"] = f"{name}_shots.jsonl"
            (folder / f"{name}_shots.jsonl").write_text("".join(json.dumps(r) + "\n" for r in shots))
        spec = {"task": name, "dataset_path": "json", "dataset_kwargs": {"data_files": files}, "test_split": "test",
                **keys}
        (folder / f"{name}.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    return folder


@pytest.fixture(scope="module")
def offline(tmp_path_factory):
    """datasets offline, its cache in a temporary folder: reading the task files must touch no network.
    lm-eval's environment report (which runs pip, git and nvidia-smi) is left out."""
    mp = pytest.MonkeyPatch()
    if find_spec("lm_eval") is not None:
        import datasets
        import lm_eval.evaluator

        mp.setattr(datasets.config, "HF_HUB_OFFLINE", True)
        # the results' environment report (torch.utils.collect_env runs pip, git, nvidia-smi: ~1 s a call)
        mp.setattr(lm_eval.evaluator, "add_env_info", lambda results: None)
        mp.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path_factory.mktemp("hf-datasets"))
    mp.setenv("HF_DATASETS_OFFLINE", "1")
    mp.setenv("HF_HUB_OFFLINE", "1")
    mp.setenv("DISABLE_MULTIPROC", "1")  # lm-eval's bootstrap pool, were a stderr bootstrapped
    yield
    mp.undo()


@pytest.fixture(scope="module")
def run_dir(model, tok, tmp_path_factory):
    from axon.config import RunConfig, dump_config
    from axon.train.checkpoint import save_checkpoint

    run = tmp_path_factory.mktemp("lm-eval-run") / "run"
    run.mkdir()
    (run / "config.yaml").write_text(dump_config(RunConfig(model=model.config, out_dir=str(run.parent), name="run")))
    tok.save(run / "tokenizer.json")
    save_checkpoint(run / "checkpoints", 0, model, [], {"step": 0})
    return run


def harness(lm, task_dir, tasks, shots, limit=None) -> dict:
    """lm-eval's simple_evaluate with every sample logged and no bootstrap (the stderrs of the means
    are checked against lm-eval's mean_stderr below; a bootstrap would start a process pool)."""
    import lm_eval

    from axon.eval.prompting.lm_eval_adapter import task_manager

    return lm_eval.simple_evaluate(model=lm, tasks=tasks, num_fewshot=shots, task_manager=task_manager(task_dir),
                                   log_samples=True, bootstrap_iters=0, limit=limit)


@pytest.fixture(scope="module")
def lm_eval_runs(model, tok, task_dir, offline):
    """lm-eval's results with AxonLM (batch 4) at 0 and 2 shots."""
    from axon.eval.prompting.lm_eval_adapter import AxonLM

    lm = AxonLM(scorer=LMScorer(model, tok, batch_size=4))
    return {0: harness(lm, task_dir, list(TASKS), 0), 2: harness(lm, task_dir, FEWSHOT_TASKS, 2)}


def samples_of(results: dict, task: str) -> list[dict]:
    return sorted(results["samples"][task], key=lambda s: s["doc_id"])


def plain(x):
    """JSON-like values with tuples as lists (lm-eval logs tuples, Axon's sample log lists)."""
    return json.loads(json.dumps(x))


def lm_eval_key(name: str) -> str:
    return name if "," in name else f"{name},none"  # lm-eval names the unfiltered pipeline "none"


# --- the harness itself against Axon's own harness, example by example --------------------------


@needs_lm_eval
@pytest.mark.parametrize("shots", [0, 2])
def test_lm_eval_equals_axon_example_by_example(shots, model, tok, task_dir, lm_eval_runs, tmp_path):
    from lm_eval.api.metrics import mean_stderr

    theirs = lm_eval_runs[shots]
    tasks = list(TASKS) if shots == 0 else FEWSHOT_TASKS
    log = tmp_path / "samples.jsonl"
    ours = evaluate_tasks(LMScorer(model, tok, batch_size=3), [task_dir / f"{t}.yaml" for t in tasks], shots=shots,
                          log_samples=log, progress=False)
    logged = [json.loads(line) for line in log.read_text().splitlines()]
    for task in tasks:
        mine = [s for s in logged if s["task"] == task]
        kind = ours[task]["output_type"]
        assert ours[task]["shots"] == theirs["n-shot"][task] == shots
        assert len(samples_of(theirs, task)) == len(mine) == len(TASKS[task][1])
        for s, m in zip(samples_of(theirs, task), mine):
            requests = [r[0] if kind == "loglikelihood_rolling" else r for r in plain(s["arguments"])]
            assert requests == m["requests"], task  # the same prompts: shots, delimiters, templates
            responses = [r[0] for r in plain(s["resps"])]
            if kind == "generate_until":
                assert responses == m["responses"], task  # the same generations
            else:
                for a, b in zip(responses, m["responses"]):
                    a, b = (a, b) if kind == "loglikelihood_rolling" else (a[0], b[0])
                    assert abs(a - b) < TOL, task
                if kind != "loglikelihood_rolling":  # the same greedy flags
                    assert [r[1] for r in responses] == [r[1] for r in m["responses"]], task
            for name in ours[task]["metrics"]:  # per example (each task here has one filter pipeline)
                base, _, pipeline = name.partition(",")
                if base in MEANS:
                    assert s["filter"] == (pipeline or "none") and s[base] == m["metrics"][name], (task, name)
                if kind == "generate_until":  # the answer the filters read from the generation
                    assert s["filtered_resps"][0] == m["metrics"]["answer" + name[len(base):]], task
        for name, value in ours[task]["metrics"].items():  # the task's figures
            assert theirs["results"][task][lm_eval_key(name)] == pytest.approx(value, rel=1e-6, abs=1e-9), (task, name)
            base, _, pipeline = name.partition(",")
            if base in MEANS:
                per = [s[base] for s in samples_of(theirs, task) if s["filter"] == (pipeline or "none")]
                assert ours[task]["stderr"][name] == pytest.approx(mean_stderr(per)), (task, name)
    zero = ours.get("ll", {}).get("metrics", {})
    if shots == 0:  # the fixture model is right on some and wrong on others: the comparison has teeth
        assert 0 < zero["acc"] < 1 and ours["mc"]["metrics"]["acc"] > 0
        assert ours["gen"]["metrics"]["exact_match,word"] > 0


@needs_lm_eval
def test_the_prompts_lm_eval_builds(lm_eval_runs):
    """What the comparison above rests on, spelt out: first_n shots from the few-shot split,
    target_delimiter between a shot's prompt and answer, and no shot equal to the example."""
    s = samples_of(lm_eval_runs[2], "ll")[0]
    assert plain(s["arguments"]) == [["say cup: cup\n\nsay map: map\n\nsay cat:", " cat"]]
    mc = samples_of(lm_eval_runs[2], "mc")  # shots: the first two test records other than the example
    assert mc[0]["arguments"][0][0].startswith("say dog: ") and mc[1]["arguments"][0][0].startswith("say cat: ")
    assert plain(samples_of(lm_eval_runs[0], "gen_plain")[0]["arguments"][0][1])["until"] == ["\n\n"]


@needs_lm_eval
def test_the_continuations_leading_space(lm_eval_runs):
    """lm-eval #942/#1628: a prompt ending in a space ("say cat: " + "cat") is scored as "say cat:" +
    " cat", the space belonging to the continuation as it does to the model's tokens: the same
    log-likelihoods as the task that writes it that way, at 0 and 2 shots."""
    for shots in (0, 2):
        spaced = samples_of(lm_eval_runs[shots], "ll_space")
        plain_ = samples_of(lm_eval_runs[shots], "ll")
        assert spaced[0]["arguments"][0][0].endswith("say cat: ") and spaced[0]["arguments"][0][1] == "cat"
        for a, b in zip(spaced, plain_):
            assert abs(a["resps"][0][0][0] - b["resps"][0][0][0]) < TOL and a["resps"][0][0][1] == b["resps"][0][0][1]


@needs_lm_eval
def test_lm_eval_results_do_not_depend_on_the_batch_size(model, tok, task_dir, lm_eval_runs):
    """lm-eval #1645: the same requests at batch 1 and batch 4 (lm_eval_runs) give the same numbers."""
    from axon.eval.prompting.lm_eval_adapter import AxonLM

    one = harness(AxonLM(scorer=LMScorer(model, tok), batch_size=1), task_dir, list(TASKS), 0)
    for task in TASKS:
        for a, b in zip(samples_of(one, task), samples_of(lm_eval_runs[0], task)):
            for x, y in zip(plain(a["resps"]), plain(b["resps"])):
                x, y = x[0], y[0]
                if isinstance(x, str):
                    assert x == y
                elif isinstance(x, list):
                    assert abs(x[0] - y[0]) < TOL and x[1] == y[1]
                else:
                    assert abs(x - y) < TOL
        assert one["results"][task].keys() == lm_eval_runs[0]["results"][task].keys()


# --- construction, task files, the command line ---------------------------------------------------


@needs_lm_eval
def test_data_files_are_read_from_the_task_files_folder(tmp_path, monkeypatch, offline):
    """A relative data_files path names a file beside the YAML (Axon's rule) wherever lm-eval runs
    from; a path that is no such file is left for datasets (lm-eval's rule)."""
    from axon.eval.prompting.lm_eval_adapter import resolve_data_files, task_manager

    folder = tmp_path / "tasks"
    (folder / "data").mkdir(parents=True)
    (folder / "data" / "t.jsonl").write_text('{"w": "cat"}\n{"w": "dog"}\n')
    spec = {"task": "t", "dataset_path": "json", "dataset_kwargs": {"data_files": {"test": "data/t.jsonl"}},
            "test_split": "test", "output_type": "loglikelihood", "doc_to_text": "say {{w}}:", "doc_to_target": "w"}
    (folder / "t.yaml").write_text(yaml.safe_dump(spec))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    task = task_manager(folder).load(["t"])["tasks"]["t"]
    assert [d["w"] for d in task.test_docs()] == ["cat", "dog"]
    kept = {"test": ["/abs/x.jsonl", "missing.jsonl", "data/*.jsonl"], "train": "data/t.jsonl"}
    cfg = resolve_data_files({"dataset_kwargs": {"data_files": kept}}, folder)["dataset_kwargs"]["data_files"]
    assert cfg == {"test": kept["test"], "train": str((folder / "data" / "t.jsonl").resolve())}



@needs_lm_eval
def test_axon_lm_from_model_args(run_dir):
    from lm_eval.api.registry import get_model

    from axon.errors import ConfigError
    from axon.eval.prompting.lm_eval_adapter import AxonLM

    cls = get_model("axon")
    assert cls is AxonLM and get_model("hf").__name__ == "HFLM"  # lm-eval's own models still there
    # what lm-eval adds from its flags (batch_size 1 by default) fills in what model_args leaves unset
    lm = cls.create_from_arg_string(f"run={run_dir},batch_size=5", {"batch_size": 1, "device": None,
                                                                     "max_batch_size": None})
    assert lm.scorer.batch_size == 5 and lm.scorer.max_length == 64
    assert cls.create_from_arg_string(f"run={run_dir}", {"batch_size": "3"}).scorer.batch_size == 3
    if not torch.cuda.is_available():  # lm-eval's command line passes --device cuda:0 unless told otherwise
        assert cls.create_from_arg_string(f"run={run_dir}", {"device": "cuda:0"}).scorer.device.type == "cpu"
    with pytest.raises(ConfigError, match="--model_args pretrained: not an argument of the axon model"):
        cls.create_from_arg_string(f"pretrained={run_dir}")
    with pytest.raises(ConfigError, match="batch_size must be an integer >= 1 .*no 'auto'"):
        cls.create_from_arg_string(f"run={run_dir}", {"batch_size": "auto"})


# `axon lm-eval ...` in a fresh process, except that lm-eval's TaskManager does not index its own
# ~15,000 task files (5-10 s on the CI machine; the test names only tasks of --include_path), nor
# does it collect its environment report (pip, git, nvidia-smi: ~1 s).
SKIP_LM_EVALS_OWN_TASKS = """
import sys
import lm_eval.evaluator
from lm_eval.tasks.manager import TaskManager
init = TaskManager.__init__
TaskManager.__init__ = lambda self, *a, include_defaults=False, **k: init(self, *a, include_defaults=include_defaults,
                                                                          **k)
lm_eval.evaluator.add_env_info = lambda results: None
from axon.cli import main
sys.exit(main(sys.argv[1:]))
"""


@needs_lm_eval
def test_axon_lm_eval_command_prints_lm_evals_table(run_dir, task_dir, model, tok, tmp_path):
    """`axon lm-eval ARGS` is lm-eval's command line with `axon` registered, run from another folder
    than the task files' (whose data_files are relative to it), offline."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), *filter(None, [os.environ.get("PYTHONPATH")])]),
           "HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1", "HF_DATASETS_CACHE": str(tmp_path / "hf"),
           "DISABLE_MULTIPROC": "1", "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-c", SKIP_LM_EVALS_OWN_TASKS, "lm-eval", "--model", "axon", "--model_args",
                          f"run={run_dir},batch_size=2,device=cpu", "--tasks", "mc", "--include_path",
                          str(task_dir), "--num_fewshot", "2", "--limit", "4"],
                         capture_output=True, text=True, cwd=tmp_path, env=env, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in out.stdout.splitlines()
            if line.startswith("|")]  # Tasks, Version, Filter, n-shot, Metric, (arrow), Value, ±, Stderr
    ours = evaluate_tasks(LMScorer(model, tok), [task_dir / "mc.yaml"], shots=2, limit=4, progress=False)["mc"]
    printed = {r[4]: (float(r[6]), float(r[8])) for r in rows if r[4] in ("acc", "acc_norm")}
    assert rows[2][:4] == ["mc", "Yaml", "none", "2"] and printed.keys() == {"acc", "acc_norm"}
    assert 0 < printed["acc"][0] < 1  # right on some, wrong on others
    for name, (value, stderr) in printed.items():  # printed with 4 decimals
        assert value == pytest.approx(ours["metrics"][name], abs=5e-5)
        assert stderr == pytest.approx(ours["stderr"][name], abs=5e-5)
    assert out.stdout.startswith("axon ({'run': ")  # lm-eval's header line: the model and its arguments


def test_axon_eval_and_lm_eval_without_lm_eval_installed(run_dir, task_dir, monkeypatch, capsys):
    """lm-eval is optional: with it unimportable, `axon eval --tasks` works and `axon lm-eval` says
    in one line how to install it (tests/test_layering.py: no other module imports it)."""
    for name in [m for m in sys.modules if m.partition(".")[0] == "lm_eval"] + ["lm_eval"]:
        monkeypatch.setitem(sys.modules, name, None)  # `import lm_eval...` now raises ImportError
    monkeypatch.delitem(sys.modules, "axon.eval.prompting.lm_eval_adapter", raising=False)
    assert main(["eval", str(run_dir), "--tasks", str(task_dir / "mc.yaml"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["mc"]["n"] == len(TEST_WORDS)
    assert main(["lm-eval", "--model", "axon", "--tasks", "mc"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "axon lm-eval: error: axon lm-eval needs lm-evaluation-harness: pip install 'axon-lab[eval]'"


# --- a run exported to Hugging Face under lm-eval's own `hf` model -------------------------------


@needs_lm_eval
def test_a_run_exported_to_hf_gives_the_same_numbers_under_lm_evals_hf_model(run_dir, task_dir, tmp_path,
                                                                                  lm_eval_runs):
    """`axon convert --to-hf RUN --out DIR`, then lm-eval's `--model hf --model_args pretrained=DIR`:
    the same log-likelihoods and greedy flags as `--model axon` on the run, at 2 shots, through
    transformers' own forward and lm-eval's own tokenisation of the exported tokenizer.
    prefix_token_id: a character tokenizer has no end-of-text token, and lm-eval's HFLM needs a
    token id there (it decodes it on every encode); no request here has an empty context, so the
    id is never scored."""
    pytest.importorskip("transformers")
    assert main(["convert", "--to-hf", str(run_dir), "--out", str(tmp_path / "hf")]) == 0
    import lm_eval

    from axon.eval.prompting.lm_eval_adapter import task_manager

    hf = lm_eval.simple_evaluate(model="hf", model_args={"pretrained": str(tmp_path / "hf"), "device": "cpu",
                                                         "prefix_token_id": 0, "dtype": "float32"},
                                 tasks=["ll", "ll_space", "mc"], num_fewshot=2, batch_size=4,
                                 task_manager=task_manager(task_dir), log_samples=True, bootstrap_iters=0)
    for task in ("ll", "ll_space", "mc"):
        for a, b in zip(samples_of(hf, task), samples_of(lm_eval_runs[2], task)):
            assert plain(a["arguments"]) == plain(b["arguments"])
            for (x, gx), (y, gy) in ([r[0] for r in pair] for pair in zip(plain(a["resps"]), plain(b["resps"]))):
                assert abs(x - y) < 1e-4 and gx == gy, task  # two implementations of the forward
        for key, value in lm_eval_runs[2]["results"][task].items():
            if key.split(",")[0] in MEANS:
                assert hf["results"][task][key] == value
        assert not math.isnan(hf["results"][task][lm_eval_key("acc")])
