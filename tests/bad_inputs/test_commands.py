"""Bad input to every subcommand other than config and train (test_config_and_train.py): sample,
eval, prepare, convert, finetune, baseline, translate, embed, tag, lora, scaling, compare, index and rag. Each case ends in
one line naming the flag (as typed) or the file, exit 2, no traceback (issue 16).

A flag is refused by the check of the option object or keyword it feeds (SamplingOptions, the
beam, draft and stop-token checks of axon.generate.options, check_eval_options, prepare's,
check_translate_options, ...): an OptionError that axon.cli words with the flag, so the Python
API refuses the same values with the same sentence (tests/generate/test_options.py and the
modules' own tests check that side). Flags and files are checked before a run is loaded: most
cases below name a run that need not be opened. All cases run in one driver process (run_all).
"""

import json
from pathlib import Path

import pytest
from harness import Case, assert_user_error, run_all

TEXT = "To be, or not to be, that is the question. " * 40


def write(name: str, data: bytes | str):
    def setup(tmp: Path, run: Path) -> None:
        path = tmp / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data.encode() if isinstance(data, str) else data)

    return setup


def both(*setups):
    def setup(tmp: Path, run: Path) -> None:
        for s in setups:
            s(tmp, run)

    return setup


def huge_tokenizer(tmp: Path, run: Path) -> None:
    """The run's tokenizer.json grown to 300 MiB (sparse: no disk is used) past its JSON."""
    with open(run / "tokenizer.json", "r+b") as f:
        f.truncate(300 << 20)


def hf_dir(config: dict):
    """A Hugging Face directory {tmp}/hf: ``config`` as config.json, and a safetensors file (the
    config is refused before any tensor is looked at)."""

    def setup(tmp: Path, run: Path) -> None:
        from safetensors.torch import save_file
        import torch

        (tmp / "hf").mkdir()
        (tmp / "hf" / "config.json").write_text(json.dumps(config))
        save_file({"wte.weight": torch.zeros(2, 2)}, str(tmp / "hf" / "model.safetensors"))

    return setup


GPT2 = {"model_type": "gpt2", "vocab_size": 65, "n_positions": 64, "n_embd": 32, "n_layer": 2, "n_head": 2}


def adapters(lora: str):
    """{tmp}/ad.safetensors: one adapter tensor, and ``lora`` as its lora metadata."""

    def setup(tmp: Path, run: Path) -> None:
        from safetensors.torch import save_file
        import torch

        save_file({"blocks.0.attn.qkv.lora_A": torch.zeros(4, 64)}, str(tmp / "ad.safetensors"),
                  metadata={"format": "axon-lora", "family": "decoder", "lora": lora})

    return setup


# A compare of two variants of the default recipe; its first job is a-s0.
COMPARE = ["compare", "--variant", "a: --train.max_steps=2", "--variant", "b: --train.max_steps=3", "--out", "{tmp}/cmp",
           "--no-progress"]
SWEEP = ["scaling", "plan", "--budgets", "1e12", "--sizes", "16,32"]

SAMPLE = [
    Case("sample-run-missing", ["sample", "{tmp}/nope"], "nope is not a run directory (no such directory)"),
    Case("sample-run-is-a-file", ["sample", "{tmp}/f"], "f is not a run directory (it is a file)", setup=write("f", "x")),
    Case("sample-temperature-nan", ["sample", "{run}", "--temperature", "nan"],
         "--temperature must be >= 0 and finite (0 is greedy), got nan"),
    Case("sample-repetition-penalty-nan", ["sample", "{run}", "--repetition-penalty", "nan"],
         "--repetition-penalty must be positive and finite (1 disables it), got nan"),
    Case("sample-top-k-negative", ["sample", "{run}", "--top-k", "-3"],
         "--top-k must be an integer >= 0 (0 keeps every token), got -3"),
    Case("sample-num-samples-negative", ["sample", "{run}", "--num-samples", "-2"],
         "--num-samples must be an integer >= 1, got -2"),
    Case("sample-num-draft-negative", ["sample", "{run}", "--num-draft", "-1"],
         "--num-draft must be an integer >= 0 (0: no drafting), got -1"),
    Case("sample-beams-negative", ["sample", "{run}", "--beams", "-2"],
         "--beams must be an integer >= 0 (0: sampling, no beam search), got -2"),
    Case("sample-beams-length-penalty-nan", ["sample", "{run}", "--beams", "2", "--length-penalty", "nan"],
         "--length-penalty must be finite, got nan"),
    Case("sample-more-samples-than-beams", ["sample", "{run}", "--beams", "2", "--num-samples", "3"],
         "--num-samples must be an integer in [1, 2] (at most one per beam), got 3"),
    Case("sample-stop-token-negative", ["sample", "{run}", "--stop-token", "-1"], "--stop-token takes token ids >= 0, got -1"),
    Case("sample-stop-token-beyond-vocabulary", ["sample", "{run}", "--stop-token", "99999"],
         "--stop-token takes token ids in [0, 65) (the vocabulary), got 99999"),
    Case("sample-beams-stop-token-beyond-vocabulary", ["sample", "{run}", "--beams", "2", "--stop-token", "65"],
         "--stop-token takes token ids in [0, 65) (the vocabulary), got 65"),
    Case("sample-prompt-file-not-utf8", ["sample", "{run}", "--prompt-file", "{tmp}/p.txt"],
         "--prompt-file {tmp}/p.txt: not UTF-8 text (byte 3: invalid start byte)", setup=write("p.txt", b"hi \xff there")),
    Case("sample-prompt-file-missing", ["sample", "{run}", "--prompt-file", "{tmp}/nope.txt"],
         "nope.txt: No such file or directory"),
    Case("sample-prompt-file-a-directory", ["sample", "{run}", "--prompt-file", "{tmp}"], ": Is a directory"),
    Case("sample-draft-missing", ["sample", "{run}", "--draft", "{tmp}/nope"],
         "--draft: {tmp}/nope is not a run directory (no such directory)"),
    Case("sample-tokenizer-far-too-large", ["sample", "{run}"],
         "tokenizer.json: 300 MiB is far larger than any real tokenizer.json", setup=huge_tokenizer, fresh_run=True),
]

EVAL = [
    Case("eval-batch-size-zero", ["eval", "{run}", "--batch-size", "0"], "--batch-size must be an integer >= 1, got 0"),
    Case("eval-batch-size-negative", ["eval", "{run}", "--batch-size", "-4"], "--batch-size must be an integer >= 1, got -4"),
    Case("eval-max-batches-zero", ["eval", "{run}", "--max-batches", "0"], "--max-batches must be an integer >= 1, got 0"),
    Case("eval-split-unknown", ["eval", "{run}", "--split", "test"], "--split must be train or val, got 'test'"),
    Case("eval-data-not-prepared", ["eval", "{run}", "--data", "{tmp}"],
         "--data must be a prepared data directory (with meta.json: see axon prepare), got '{tmp}'"),
    Case("eval-run-missing", ["eval", "{tmp}/nope"], "nope is not a run directory (no such directory)"),
    Case("eval-run-is-a-file", ["eval", "{tmp}/f"], "f is not a run directory (it is a file)", setup=write("f", "x")),
]

PREPARE = [
    Case("prepare-out-is-a-file", ["prepare", "{tmp}/t.txt", "--out", "{tmp}/f"],
         "--out must name a directory to write into, got '{tmp}/f', which is a file",
         setup=both(write("t.txt", TEXT), write("f", "x"))),
    Case("prepare-max-docs-negative", ["prepare", "{tmp}/t.txt", "--out", "{tmp}/d", "--max-docs", "-1"],
         "--max-docs must be an integer >= 1, got -1", setup=write("t.txt", TEXT)),
    Case("prepare-vocab-size-negative", ["prepare", "{tmp}/t.txt", "--out", "{tmp}/d", "--tokenizer", "bpe",
                                         "--vocab-size", "-5"], "--vocab-size must be an integer >= 1, got -5",
         setup=write("t.txt", TEXT)),
    Case("prepare-val-fraction-nan", ["prepare", "{tmp}/t.txt", "--out", "{tmp}/d", "--val-fraction", "nan"],
         "--val-fraction must be in [0, 1), got nan", setup=write("t.txt", TEXT)),
    Case("prepare-val-fraction-documents", ["prepare", "{tmp}/t.jsonl", "--out", "{tmp}/d", "--val-fraction", "0.9"],
         "--val-fraction must be at most 0.5 when documents are split", setup=write("t.jsonl", '{"text": "a"}\n')),
    Case("prepare-input-missing", ["prepare", "{tmp}/nope.txt", "--out", "{tmp}/d"], "input file not found: {tmp}/nope.txt"),
    Case("prepare-input-not-utf8", ["prepare", "{tmp}/t.txt", "--out", "{tmp}/d"], "t.txt: not valid UTF-8 text (byte 4)",
         setup=write("t.txt", b"abc \xfe def")),
    Case("prepare-jsonl-line-not-json", ["prepare", "{tmp}/t.jsonl", "--out", "{tmp}/d"], "t.jsonl",
         setup=write("t.jsonl", '{"text": "a"}\n{"text": \n')),
]

CONVERT = [
    Case("convert-field-of-wrong-type", ["convert", "--from-hf", "{tmp}/hf", "--out", "{tmp}/r"],
         "{tmp}/hf: config.json: n_layer must be an integer, got '2'", setup=hf_dir({**GPT2, "n_layer": "2"})),
    Case("convert-switch-of-wrong-type", ["convert", "--from-hf", "{tmp}/hf", "--out", "{tmp}/r"],
         "config.json: tie_word_embeddings must be true or false, got 'yes'",
         setup=hf_dir({**GPT2, "tie_word_embeddings": "yes"})),
    Case("convert-epsilon-nan", ["convert", "--from-hf", "{tmp}/hf", "--out", "{tmp}/r"],
         "config.json: layer_norm_epsilon must be a finite number, got nan",
         setup=hf_dir({**GPT2, "layer_norm_epsilon": float("nan")})),
    Case("convert-config-not-json", ["convert", "--from-hf", "{tmp}/hf", "--out", "{tmp}/r"], "config.json: not valid JSON",
         setup=write("hf/config.json", "{")),
    Case("convert-from-hf-missing", ["convert", "--from-hf", "{tmp}/nope", "--out", "{tmp}/r"],
         "nope: no such directory (expected a Hugging Face model directory)"),
    Case("convert-from-hf-a-file", ["convert", "--from-hf", "{tmp}/f", "--out", "{tmp}/r"], "f: not a directory",
         setup=write("f", "x")),
    Case("convert-to-hf-run-missing", ["convert", "--to-hf", "{tmp}/nope", "--out", "{tmp}/hf"],
         "nope is not a run directory (no such directory)"),
    Case("convert-out-not-empty", ["convert", "--to-hf", "{run}", "--out", "{tmp}"],
         "--out must name a new or empty directory, got '{tmp}', which holds files already", setup=write("f", "x")),
    Case("convert-out-is-a-file", ["convert", "--from-hf", "{tmp}/hf", "--out", "{tmp}/f"],
         "--out must name a directory to write into, got '{tmp}/f', which is a file", setup=write("f", "x")),
    Case("convert-both-directions", ["convert", "--from-hf", "{tmp}/hf", "--to-hf", "{run}", "--out", "{tmp}/r"],
         "give exactly one of --from-hf HF_DIR or --to-hf RUN_DIR"),
]

FINETUNE = [
    Case("finetune-run-missing", ["finetune", "{tmp}/nope"], "nope is not a run directory (no such directory)"),
    Case("finetune-run-is-a-file", ["finetune", "{tmp}/f"], "f is not a run directory (it is a file)", setup=write("f", "x")),
    Case("finetune-recipe-missing", ["finetune", "{run}", "--config", "{tmp}/nope.yaml"], "nope.yaml"),
]

CLASSIFY_ROWS = "a fine day\tpos\nfoul weather\tneg\n"
BASELINE = [
    Case("baseline-not-classify", ["baseline"],
         "task: the TF-IDF baseline reads a classify task's data; this config's task is 'lm'"),
    Case("baseline-train-file-missing", ["baseline", "--task=classify", "--model.family=rnn_classifier",
                                         "--data.train_file={tmp}/nope.tsv"], "data.train_file: {tmp}/nope.tsv not found"),
    Case("baseline-val-label-unknown", ["baseline", "--task=classify", "--model.family=rnn_classifier",
                                        "--data.train_file={tmp}/t.tsv", "--data.val_file={tmp}/v.tsv"],
         "{tmp}/v.tsv:2: label 'meh' does not occur in the training file {tmp}/t.tsv",
         setup=both(write("t.tsv", CLASSIFY_ROWS * 5), write("v.tsv", "fine\tpos\nso so\tmeh\n"))),
]

TRANSLATE = [
    Case("translate-beams-zero", ["translate", "{run}", "--input", "a", "--beams", "0"],
         "--beams must be an integer >= 1 (1: greedy), got 0"),
    Case("translate-batch-size-negative", ["translate", "{run}", "--input", "a", "--batch-size", "-1"],
         "--batch-size must be an integer >= 1, got -1"),
    Case("translate-max-new-tokens-zero", ["translate", "{run}", "--input", "a", "--max-new-tokens", "0"],
         "--max-new-tokens must be an integer >= 1, got 0"),
    Case("translate-input-file-not-utf8", ["translate", "{run}", "--input-file", "{tmp}/s.txt"],
         "--input-file {tmp}/s.txt: not UTF-8 text (byte 1", setup=write("s.txt", b"a\xff\n")),
    Case("translate-eval-missing", ["translate", "{run}", "--eval", "{tmp}/nope.tsv"], "nope.tsv: cannot read"),
    Case("translate-eval-no-tab", ["translate", "{run}", "--eval", "{tmp}/p.tsv"], "p.tsv:1: no tab",
         setup=write("p.tsv", "abc\n")),
    Case("translate-not-seq2seq", ["translate", "{run}", "--input", "a"], "decoder run; translate needs a seq2seq run"),
    Case("translate-run-missing", ["translate", "{tmp}/nope", "--input", "a"], "nope is not a run directory (no such directory)"),
]

EMBED = [
    Case("embed-export-into-missing-directory", ["embed", "{run}", "--export", "{tmp}/nodir/v.txt"],
         "--export must name a file in an existing directory, got '{tmp}/nodir/v.txt'; {tmp}/nodir does not exist"),
    Case("embed-export-a-directory", ["embed", "{run}", "--export", "{tmp}"],
         "--export must name a file to write, got '{tmp}', which is a directory"),
    Case("embed-k-zero", ["embed", "{run}", "--neighbors", "king", "--k", "0"], "--k must be an integer >= 1, got 0"),
    Case("embed-run-missing", ["embed", "{tmp}/nope", "--neighbors", "king"], "nope is not a run directory (no such directory)"),
    Case("embed-not-word2vec", ["embed", "{run}", "--neighbors", "king"], "is a decoder run; axon embed reads word2vec, glove and fasttext runs"),
]

TAG = [
    Case("tag-no-input", ["tag", "{run}"], "give one of --input TEXT (repeatable), --input-file FILE or --eval FILE.conll"),
    Case("tag-input-empty", ["tag", "{run}", "--input", "Romeo", "--input", "  "],
         "--input 2: no words to tag (an empty sentence)"),
    Case("tag-input-file-empty", ["tag", "{run}", "--input-file", "{tmp}/s.txt"],
         "--input-file {tmp}/s.txt: no sentences (the file is empty)", setup=write("s.txt", "")),
    Case("tag-input-file-blank-line", ["tag", "{run}", "--input-file", "{tmp}/s.txt"],
         "--input-file {tmp}/s.txt line 2: no words to tag (an empty sentence)", setup=write("s.txt", "Romeo\n\nJuliet\n")),
    Case("tag-input-file-not-utf8", ["tag", "{run}", "--input-file", "{tmp}/s.txt"],
         "--input-file {tmp}/s.txt: not UTF-8 text (byte 1", setup=write("s.txt", b"a\xff\n")),
    Case("tag-eval-one-column", ["tag", "{run}", "--eval", "{tmp}/v.conll"], "v.conll:2: one column 'is'",
         setup=write("v.conll", "Romeo B-PER\nis\n")),
    Case("tag-eval-missing", ["tag", "{run}", "--eval", "{tmp}/nope.conll"], "--eval: {tmp}/nope.conll not found"),
    Case("tag-not-a-tagger", ["tag", "{run}", "--input", "a"],
         "is a decoder run trained for 'lm'; axon tag reads tag runs (model.family=rnn_tagger, or bert with model.head=tag); "
         "use axon sample RUN_DIR"),
    Case("tag-run-missing", ["tag", "{tmp}/nope", "--input", "a"], "nope is not a run directory (no such directory)"),
]

LORA = [
    Case("lora-metadata-not-json", ["lora", "apply", "{run}", "{tmp}/ad.safetensors", "--out", "{tmp}/m"],
         "{tmp}/ad.safetensors: its lora metadata is not valid JSON", setup=adapters('{"targets": ["*.qkv"], "rank": ')),
    Case("lora-metadata-rank-zero", ["lora", "apply", "{run}", "{tmp}/ad.safetensors", "--out", "{tmp}/m"],
         "{tmp}/ad.safetensors: its lora metadata: lora.rank: must be >= 1, got 0",
         setup=adapters('{"targets": ["*.qkv"], "rank": 0, "alpha": 8}')),
    Case("lora-metadata-lacks-rank", ["lora", "apply", "{run}", "{tmp}/ad.safetensors", "--out", "{tmp}/m"],
         "its lora metadata lacks targets, rank or alpha", setup=adapters('{"targets": ["*.qkv"]}')),
    Case("lora-adapters-not-safetensors", ["lora", "apply", "{run}", "{tmp}/ad.safetensors", "--out", "{tmp}/m"],
         "ad.safetensors", setup=write("ad.safetensors", b"not a safetensors file")),
    Case("lora-adapters-missing", ["lora", "apply", "{run}", "{tmp}/nope.safetensors", "--out", "{tmp}/m"],
         "adapter file not found: {tmp}/nope.safetensors"),
    Case("lora-merge-not-a-lora-run", ["lora", "merge", "{run}", "--out", "{tmp}/m"], "is not a LoRA run"),
    Case("lora-merge-run-missing", ["lora", "merge", "{tmp}/nope", "--out", "{tmp}/m"],
         "nope is not a run directory (no such directory)"),
    Case("lora-merge-out-not-empty", ["lora", "merge", "{run}", "--out", "{run}"],
         "--out must name a new or empty directory"),
    Case("lora-export-out-a-directory", ["lora", "export", "{run}", "--out", "{tmp}"],
         "--out must name a file to write, got '{tmp}', which is a directory"),
]

SCALING = [
    Case("scaling-csv-missing-value", ["scaling", "fit", "{tmp}/s.csv"], "s.csv, line 3: no value in column loss",
         setup=write("s.csv", "N,D,loss\n1e6,1e8,3.0\n2e6,1e8\n")),
    Case("scaling-csv-not-a-number", ["scaling", "fit", "{tmp}/s.csv"], "s.csv, line 2, column D: 'lots' is not a number",
         setup=write("s.csv", "N,D,loss\n1e6,lots,3.0\n")),
    Case("scaling-csv-not-utf8", ["scaling", "fit", "{tmp}/s.csv"], "sweep CSV {tmp}/s.csv: not UTF-8 text",
         setup=write("s.csv", b"N,D,loss\n1e6,1e8,3.0 \xff\n")),
    Case("scaling-two-runs", ["scaling", "fit", "{tmp}/s.csv"],
         "2 runs are too few to fit any law: Kaplan's L(N) needs 3 distinct model sizes (these runs have 2)",
         setup=write("s.csv", "N,D,loss\n1e6,1e8,3.0\n2e6,1e8,2.8\n")),
    Case("scaling-bootstrap-negative", ["scaling", "fit", "{tmp}/s.csv", "--bootstrap", "-1"],
         "--bootstrap must be an integer >= 0 (0: no intervals), got -1", setup=write("s.csv", "N,D,loss\n1e6,1e8,3.0\n")),
    Case("scaling-sweep-missing", ["scaling", "fit", "{tmp}/nope"], "no sweep CSV at {tmp}/nope"),
    Case("scaling-out-is-a-file", ["scaling", "fit", "{tmp}/s.csv", "--out", "{tmp}/f"],
         "--out must name a directory to write into, got '{tmp}/f', which is a file",
         setup=both(write("s.csv", "N,D,loss\n1e6,1e8,3.0\n"), write("f", "x"))),
    Case("scaling-fits-damaged", ["scaling", "predict", "{tmp}/fits.json", "--flops", "1e15"], "fits.json: not valid JSON",
         setup=write("fits.json", "{")),
    Case("scaling-flops-negative", ["scaling", "predict", "{tmp}", "--flops=-1e15"], "--flops: expected positive numbers"),
    Case("scaling-workers-zero", [*SWEEP, "--workers", "0"],
         "--workers must be an integer >= 1 (unset: cores / threads per run), got 0"),
    Case("scaling-threads-negative", [*SWEEP, "--threads", "-1"], "--threads must be an integer >= 1, got -1"),
    Case("scaling-head-dim-zero", [*SWEEP, "--head-dim", "0"], "--head-dim must be an integer >= 1, got 0"),
    Case("scaling-min-steps-negative", [*SWEEP, "--min-steps", "-1"], "--min-steps must be an integer >= 0 (0: keep every run), got -1"),
    Case("scaling-every-run-left-out", ["scaling", "plan", "--budgets", "1e6", "--sizes", "16,32", "--model.preset=tiny"],
         "every planned run was left out: each has fewer than --min-steps 10 steps (the longest, C1e6-L2-d16, has 1)"),
]

COMPARE_CASES = [
    Case("compare-result-damaged", COMPARE,
         "the run result {tmp}/cmp/runs/a-s0/result.json: malformed JSON at line 1, column 14: Expecting property name "
         "enclosed in double quotes; "
         "remove it, and the command resumes that run from its last checkpoint",
         setup=write("cmp/runs/a-s0/result.json", '{"step": 20, ')),
    Case("compare-job-record-damaged", COMPARE, "the job record {tmp}/cmp/jobs/a-s0.json: not a job record",
         setup=write("cmp/jobs/a-s0.json", '["a list"]')),
    Case("compare-workers-negative", [*COMPARE, "--workers", "-1"], "--workers must be an integer >= 1"),
    Case("compare-threads-zero", [*COMPARE, "--threads-per-run", "0"], "--threads-per-run must be an integer >= 1, got 0"),
    Case("compare-budget-value-inf", [*COMPARE, "--budget-value", "inf"], "--budget-value must be a positive finite number, got inf"),
    Case("compare-out-is-a-file", [*COMPARE[:-3], "--out", "{tmp}/f"],
         "--out must name a directory to write into, got '{tmp}/f', which is a file", setup=write("f", "x")),
    Case("compare-seeds-negative", [*COMPARE, "--seeds", "-1"], "--seeds '-1': give a count"),
    Case("compare-recipe-missing", ["compare", "{tmp}/a.yaml", "{tmp}/b.yaml", "--out", "{tmp}/cmp"], "a.yaml"),
    Case("compare-metric-goal-unknown", [*COMPARE, "--metric", "gold:up"],
         "--metric 'gold:up': write NAME, NAME:max or NAME:min"),
]

PROMPTS = '{"prompt": "Come, my lord,"}\n'
LABEL_ARGS = ["label", "{run}", "--prompts", "{tmp}/p.jsonl", "--out", "{tmp}/c.jsonl"]
STAGES = Path(__file__).resolve().parents[2] / "configs" / "instructgpt"


def pipeline_recipe(**change) -> str:
    """A pipeline recipe (YAML) naming the bundled stage recipes, with ``change`` applied (None: key removed)."""
    import yaml

    recipe = {"base": "{tmp}/nope", "gold": "sentiment", "sft": {"recipe": str(STAGES / "sentiment_sft.yaml")},
              "label": {"prompts": "bundled:sentiment/train.jsonl", "max_prompts": 4},
              "reward": {"recipe": str(STAGES / "sentiment_rm.yaml")}, "ppo": {"recipe": str(STAGES / "sentiment_ppo.yaml")}}
    for k, v in change.items():
        if v is None:
            recipe.pop(k)
        else:
            recipe[k] = v
    return yaml.safe_dump(recipe)


def recipe_with_base(tmp: Path, run: Path) -> None:
    (tmp / "r.yaml").write_text(pipeline_recipe().replace("{tmp}", str(tmp)))


PIPELINE = ["pipeline", "{tmp}/r.yaml", "--name=p", "--out-dir", "{tmp}/runs", "--no-progress"]

LABEL = [
    Case("label-k-one", [*LABEL_ARGS, "--k", "1"], "--k must be an integer >= 2 (answers compared per prompt), got 1",
         setup=write("p.jsonl", PROMPTS)),
    Case("label-temperature-zero", [*LABEL_ARGS, "--temperature", "0"],
         "--temperature must be > 0 (K answers are sampled; at 0 they would all be the same), got 0.0",
         setup=write("p.jsonl", PROMPTS)),
    Case("label-max-prompts-zero", [*LABEL_ARGS, "--max-prompts", "0"],
         "--max-prompts must be an integer >= 1 (unset: every prompt of the file), got 0", setup=write("p.jsonl", PROMPTS)),
    Case("label-gold-unknown", [*LABEL_ARGS, "--gold", "happy"], "--gold must be one of sentiment, instructions, arithmetic, got 'happy'",
         setup=write("p.jsonl", PROMPTS)),
    Case("label-labellers-malformed", [*LABEL_ARGS, "--labellers", "a:0.1,b"],
         "--labellers must be id:flip pairs separated by commas, e.g. a:0.1,b:0.85, got 'a:0.1,b'",
         setup=write("p.jsonl", PROMPTS)),
    Case("label-labellers-flip-above-one", [*LABEL_ARGS, "--labellers", "a:1.5"],
         "--labellers gives each labeller a flip rate in [0, 1], got 'a:1.5'", setup=write("p.jsonl", PROMPTS)),
    Case("label-labellers-twice", [*LABEL_ARGS, "--labellers", "a:0.1,a:0.2"],
         "--labellers names each labeller once, got 'a:0.1,a:0.2'", setup=write("p.jsonl", PROMPTS)),
    Case("label-out-a-directory", ["label", "{run}", "--prompts", "{tmp}/p.jsonl", "--out", "{tmp}"],
         "--out must name a file to write, got '{tmp}', which is a directory", setup=write("p.jsonl", PROMPTS)),
    Case("label-prompts-missing", LABEL_ARGS, "prompts: {tmp}/p.jsonl not found"),
    Case("label-prompts-bad-line", LABEL_ARGS, "{tmp}/p.jsonl:2: expected an object with a 'prompt' key",
         setup=write("p.jsonl", PROMPTS + '{"text": "x"}\n')),
    Case("label-not-a-chat-run", LABEL_ARGS, "is a lm run; label samples answers of a chat model (an sft, ppo, grpo, dpo or online_dpo run)",
         setup=write("p.jsonl", PROMPTS)),
    Case("label-run-missing", ["label", "{tmp}/nope", "--prompts", "{tmp}/p.jsonl", "--out", "{tmp}/c.jsonl"],
         "nope is not a run directory (no such directory)", setup=write("p.jsonl", PROMPTS)),
]

PIPELINE_CASES = [
    Case("pipeline-recipe-missing", PIPELINE, "config file not found: {tmp}/r.yaml"),
    Case("pipeline-recipe-unknown-key", PIPELINE, "r.yaml: unknown key 'bse'; a pipeline recipe has base, gold, sft",
         setup=write("r.yaml", pipeline_recipe(bse="x"))),
    Case("pipeline-gold-unknown", PIPELINE, "r.yaml: gold must be one of sentiment, instructions, arithmetic, got 'happy'",
         setup=write("r.yaml", pipeline_recipe(gold="happy"))),
    Case("pipeline-stage-missing", PIPELINE, "r.yaml: reward must be a mapping", setup=write("r.yaml", pipeline_recipe(reward=None))),
    Case("pipeline-stage-recipe-missing", PIPELINE, "r.yaml: sft.recipe: {tmp}/nope.yaml not found",
         setup=write("r.yaml", pipeline_recipe(sft={"recipe": "nope.yaml"}))),
    Case("pipeline-stage-unknown-key", PIPELINE, "r.yaml: ppo.steps: unknown key; a training stage has recipe, overrides",
         setup=write("r.yaml", pipeline_recipe(ppo={"recipe": str(STAGES / "sentiment_ppo.yaml"), "steps": 3}))),
    Case("pipeline-labellers-bad", PIPELINE, "r.yaml: label.labellers gives each labeller a flip rate in [0, 1], got 'a:2'",
         setup=write("r.yaml", pipeline_recipe(label={"prompts": "bundled:sentiment/train.jsonl", "labellers": {"a": 2}}))),
    Case("pipeline-name-not-a-directory-name", [*PIPELINE[:2], "--name=a/b", *PIPELINE[3:]], "name: 'a/b' is not a directory name",
         setup=recipe_with_base),
    Case("pipeline-override-out-dir", [*PIPELINE, "--out_dir=x"],
         "--out_dir=x: the pipeline sets out_dir of each stage itself (OUT_DIR/NAME/STAGE); give the pipeline's own --out-dir and --name",
         setup=recipe_with_base),
    Case("pipeline-base-missing", PIPELINE, "nope is not a run directory (no such directory)", setup=recipe_with_base),
    Case("pipeline-made-from-another-recipe", PIPELINE, "{tmp}/runs/p was made with another recipe",
         setup=both(recipe_with_base, write("runs/p/pipeline.json", '{"recipe": {}, "base": "x", "overrides": []}'))),
]

FRONTIER = ["frontier", "--reference", "{run}", "--prompts", "{tmp}/p.jsonl", "--out", "{tmp}/f", "--no-progress"]
ITERATED = ["iterated-dpo", "{run}", "--name=i", "--out-dir", "{tmp}/runs"]
ITERATED_CASES = [
    Case("frontier-gold-unknown", [*FRONTIER, "--gold", "happy"], "--gold: 'happy' is not a gold judge"),
    Case("frontier-best-of-n-zero", [*FRONTIER, "--gold", "sentiment", "--best-of-n", "0,4"],
         "--best-of-n: n must be >= 1, got 0,4"),
    Case("frontier-best-of-n-words", [*FRONTIER, "--gold", "sentiment", "--best-of-n", "four"],
         "--best-of-n: 'four' is not a comma-separated list of integers"),
    Case("frontier-run-missing", [*FRONTIER, "{tmp}/nope", "--gold", "sentiment"], "nope is not a run directory"),
    Case("frontier-prompts-missing", [*FRONTIER, "--gold", "sentiment"], "p.jsonl"),
    Case("iterated-dpo-rounds-zero", [*ITERATED, "--rounds=0"], "--rounds: must be >= 1, got 0"),
    Case("iterated-dpo-pairs-zero", [*ITERATED, "--pairs=0"], "--pairs: must be >= 1"),
    Case("iterated-dpo-override-out-dir", [*ITERATED, "--out_dir=x"], "--out_dir: iterated-dpo sets it for each round"),
    Case("iterated-dpo-override-train-file", [*ITERATED, "--data.train_file=x"],
         "--data.train_file: iterated-dpo sets it for each round"),
    Case("iterated-dpo-start-missing", ["iterated-dpo", "{tmp}/nope", "--name=i"], "nope is not a run directory"),
    Case("iterated-dpo-unknown-judge", [*ITERATED, "--online_dpo.reward=gold:x"], "online_dpo.reward: unknown judge 'gold:x'"),
]

SAMPLE_SCORES = [
    Case("sample-response-on-a-language-model", ["sample", "{run}", "--response", "x"],
         "--response and --responses-file are scored by a reward run; "),
    Case("sample-response-and-responses-file", ["sample", "{run}", "--response", "x", "--responses-file", "{tmp}/r.jsonl"],
         "give --response TEXT (repeatable, with --prompt) or --responses-file FILE, not both"),
    Case("sample-responses-file-bad-line", ["sample", "{run}", "--responses-file", "{tmp}/r.jsonl"],
         "--responses-file {tmp}/r.jsonl:1: expected an object with keys 'prompt', 'response'; missing 'response'",
         setup=write("r.jsonl", '{"prompt": "a"}\n')),
]

RAG_CASES = [
    Case("index-build-without-passages", ["index", "build", "--out", "{tmp}/idx"], "axon index build needs --passages"),
    Case("index-build-empty-passages", ["index", "build", "--passages", "{tmp}/p.jsonl", "--out", "{tmp}/idx"],
         "p.jsonl: no passages (the file is empty)", setup=write("p.jsonl", "")),
    Case("index-build-retriever-missing", ["index", "build", "--passages", "{tmp}/p.jsonl", "--out", "{tmp}/idx",
                                           "--retriever", "{tmp}/nope"], "--retriever: {tmp}/nope is no run directory; give none, oracle, bm25 or a dpr run directory",
         setup=write("p.jsonl", '{"id": 1, "text": "a"}\n')),
    Case("index-build-retriever-not-dpr", ["index", "build", "--passages", "{tmp}/p.jsonl", "--out", "{tmp}/idx",
                                           "--retriever", "{run}"], "is a decoder run; a dense retriever is a dpr run",
         setup=write("p.jsonl", '{"id": 1, "text": "a"}\n')),
    Case("index-query-not-an-index", ["index", "query", "{tmp}", "--question", "q"], "not an index folder"),
    Case("index-query-k-zero", ["index", "query", "{tmp}", "--question", "q", "--k", "0"], "--k must be an integer >= 1"),
    Case("rag-without-question", ["rag", "{run}"], "give --question TEXT"),
    Case("rag-not-a-reader", ["rag", "{run}", "--question", "q"], "is a decoder run, not a rag reader"),
    Case("rag-run-missing", ["rag", "{tmp}/nope", "--question", "q"], "nope is not a run directory (no such directory)"),
]

CASES = (SAMPLE + SAMPLE_SCORES + EVAL + PREPARE + CONVERT + FINETUNE + BASELINE + TRANSLATE + EMBED + TAG + LORA + SCALING + COMPARE_CASES
         + LABEL + PIPELINE_CASES + ITERATED_CASES + RAG_CASES)


@pytest.fixture(scope="module")
def results(tmp_path_factory, tiny_run, axon_cache):
    root = tmp_path_factory.mktemp("commands")
    return root, run_all(CASES, root, tiny_run, axon_cache)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_is_one_line(case, results):
    root, found = results
    expect = case.expect.replace("{tmp}", str(root / case.id))
    assert_user_error(found[case.id], expect, case.argv[0])


def test_every_subcommand_has_a_table():
    """A new subcommand gets its rows here (or in test_config_and_train.py)."""
    from axon.cli import build_parser

    import argparse

    parser = build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices
    # lm-eval: its arguments are lm-eval's own, parsed and logged by lm-eval's CLI (several lines of INFO
    # first); its own refusals -- lm-eval missing, a bad --model_args -- are one line, tested in
    # tests/eval/test_lm_eval_adapter.py
    tested = {c.argv[0] for c in CASES} | {"train", "config", "lm-eval"}
    assert set(commands) <= tested, set(commands) - tested
