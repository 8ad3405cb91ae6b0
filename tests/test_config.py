import pytest
import yaml

from axon.config import RunConfig, build_config, dump_config, load_config, parse_overrides
from axon.errors import ConfigError, DataError


def test_defaults_are_the_default_job():
    cfg = RunConfig()
    assert cfg.model.family == "decoder" and cfg.data.corpus == "shakespeare" and cfg.data.tokenizer == "char"


def test_precedence_defaults_yaml_cli(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("model:\n  preset: tiny\n  n_layer: 3\ntrain:\n  max_steps: 7\n  batch_size: 5\n")
    cfg = load_config(recipe, ["--train.max_steps=9", "--optim.betas=[0.8, 0.9]", "--name", "x"])
    assert cfg.model.n_layer == 3  # recipe over preset
    assert cfg.model.n_embd == 64  # preset over defaults
    assert cfg.train.max_steps == 9  # CLI over recipe
    assert cfg.train.batch_size == 5
    assert cfg.optim.betas == (0.8, 0.9)
    assert cfg.name == "x"
    assert cfg.train.eval_interval == RunConfig().train.eval_interval


def test_resolved_config_round_trips(tmp_path):
    cfg = load_config(None, ["--model.preset=gpt2", "--model.block_size=256", "--schedule.name=wsd"])
    path = tmp_path / "c.yaml"
    path.write_text(dump_config(cfg))
    assert load_config(path) == cfg


@pytest.mark.parametrize(
    "overrides, match",
    [
        (["--train.max_stepz=3"], r"unknown key train\.max_stepz; valid keys in train: seed, batch_size"),
        (["--nope.x=1"], "unknown key nope; valid top-level keys"),
        (["--model.n_layer=two"], r"model\.n_layer: expected an integer, got 'two'"),
        (["--model.norm=batchnorm"], r"model\.norm: 'batchnorm' is not valid; choose one of: layernorm, rmsnorm"),
        (["--model.preset=gpt5"], r"model\.preset: unknown preset 'gpt5'; choose one of: tiny"),
        (["--model.family=cnn"], "unknown family 'cnn'"),
        (["--optim.name=adamq"], r"optim\.name: unknown optimizer 'adamq'; choose one of: adamw"),
        (["--train.batch_size=0"], r"train\.batch_size: must be positive"),
        (["--log.progress=maybe"], r"log\.progress: expected true or false"),
        (["--model.n_embd=100", "--model.n_head=3"], r"model\.n_embd: 100 is not divisible by n_head=3"),
        (["--train.max_steps"], "needs a value"),
        (["train.max_steps=3"], "write overrides as --section.key=value"),
        (["--train.max_steps=null"], "set max_steps or max_tokens"),
    ],
)
def test_bad_values_name_the_key(overrides, match):
    with pytest.raises(ConfigError, match=match):
        load_config(None, overrides)


def test_yaml_errors(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: [1, 2\n")
    with pytest.raises(DataError, match=r"^config file .*bad\.yaml: malformed YAML at line 2, column 1: expected ','"):
        load_config(bad)
    bad.write_bytes(b"train:\n  max_steps: 3 # \xff\n")
    with pytest.raises(DataError, match=r"^config file .*bad\.yaml: not UTF-8 text \(byte 24"):
        load_config(bad)
    bad.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(bad)


def test_override_values_are_yaml_scalars():
    tree = parse_overrides(["--model.n_kv_head=null", "--log.tensorboard=true", "--train.sample_prompt=ROMEO:"])
    assert tree == {"model": {"n_kv_head": None}, "log": {"tensorboard": True}, "train": {"sample_prompt": "ROMEO:"}}
    # YAML 1.1 reads 3e-4 as text; the float field still takes it as a number.
    assert load_config(None, ["--optim.lr=3e-4", "--train.max_tokens=1e6"]).optim.lr == 3e-4
    assert load_config(None, ["--train.max_tokens=1e6"]).train.max_tokens == 1_000_000


def test_every_shipped_recipe_loads():
    from pathlib import Path

    root = Path(__file__).parents[1] / "configs"
    # every run recipe, in sub-folders too; configs/instructgpt/ holds pipeline files (axon.lab.instructgpt's)
    recipes = sorted(r for r in root.rglob("*.yaml") if r.parent.name != "instructgpt")
    assert len(recipes) > 40, "configs/ has recipes"
    for recipe in recipes:
        cfg = build_config(yaml.safe_load(recipe.read_text()))
        assert cfg.model is not None


def test_default_job_recipe_is_the_defaults():
    from pathlib import Path

    assert load_config(Path(__file__).parents[1] / "configs" / "shakespeare_char.yaml") == RunConfig()


@pytest.mark.parametrize("name", ["../../escape", "a/b", "..", ".", "", "x\\y"])
def test_a_run_name_is_one_path_component(name):
    """A run goes to out_dir/name: `--name=../../escape` once wrote two levels above runs/."""
    with pytest.raises(ConfigError, match="^name: .* is not a directory name"):
        load_config(None, [f"--name={name}"])


def test_an_unknown_task_is_refused_in_the_config():
    with pytest.raises(ConfigError, match="^task: unknown task 'foo'; choose one of: lm, mlm"):
        load_config(None, ["--task=foo"])
    assert load_config(None, ["--name=run-1.b", "--task=lm"]).name == "run-1.b"


@pytest.mark.parametrize("scaling, problem", [
    ({"rope_type": "linear", "factor": 0}, "factor must be positive"),
    ({"rope_type": "linear"}, "linear scaling needs exactly the numbers factor"),
    ({"rope_type": "linear", "factor": 2.0, "low_freq_factor": 1.0}, "unknown ['low_freq_factor']"),
    ({"rope_type": "yarn", "factor": 4.0}, "rope_type 'yarn' is not supported"),
    ({"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 4.0, "high_freq_factor": 1.0,
      "original_max_position_embeddings": 8192}, "0 < low_freq_factor < high_freq_factor"),
])
def test_a_bad_rope_scaling_is_refused_by_the_config(scaling, problem):
    """The config layer validates with the one check nn/positional and interop use (axon.rope_scaling)."""
    from axon.config import build_model_config

    with pytest.raises(ConfigError) as e:
        build_model_config({"rope_scaling": scaling})
    assert problem in str(e.value)
    good = {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
            "original_max_position_embeddings": 8192}
    assert build_model_config({"rope_scaling": good}).rope_scaling == good


# (section, values, the message): refused alike by a flag, by build_config and by the dataclass itself.
REFUSED = [
    ("optim", {"betas": [1.5, 0.9]}, "optim.betas: each must be in [0, 1), got [1.5, 0.9]"),
    ("optim", {"name": "sgd", "momentum": -1.0}, "optim.momentum: must be in [0, 1), got -1.0"),
    ("optim", {"name": "sgd", "momentum": 0.0, "nesterov": True}, "optim.nesterov: Nesterov's look-ahead needs momentum"),
    ("optim", {"lr": 0.0}, "optim.lr: must be positive, got 0.0"),
    ("optim", {"lr": float("inf")}, "optim.lr: must be a finite number, got inf"),
    ("optim", {"eps": 0.0}, "optim.eps: must be positive, got 0.0"),
    ("optim", {"weight_decay": float("nan")}, "optim.weight_decay: must be a finite number, got nan"),
    ("optim", {"muon_momentum": 1.0}, "optim.muon_momentum: must be in [0, 1), got 1.0"),
    ("train", {"seed": -1}, "train.seed: must be in [0, 4294967295], got -1"),
    ("train", {"threads": 0}, "train.threads: must be >= 1"),
    ("train", {"device": "meta"}, "train.device: 'meta' is not a device to train on; use auto, cpu, cuda or cuda:N"),
    ("train", {"max_seconds": float("inf")}, "train.max_seconds: must be a finite number, got inf"),
    ("train", {"sample_tokens": -1}, "train.sample_tokens: must be >= 0"),
    ("schedule", {"min_lr_ratio": float("nan")}, "schedule.min_lr_ratio: must be a finite number, got nan"),
    ("data", {"mask_prob": float("nan")}, "data.mask_prob: must be a finite number, got nan"),
    ("lora", {"alpha": float("inf")}, "lora.alpha: must be a finite number, got inf"),
    ("model", {"norm_eps": 0.0}, "model.norm_eps: must be positive, got 0.0"),
    ("model", {"init_std": -0.02}, "model.init_std: must be positive"),
    ("model", {"rope_theta": float("nan")}, "model.rope_theta: must be a finite number, got nan"),
    ("model", {"norm": "batchnorm"}, "model.norm: 'batchnorm' is not valid; choose one of: layernorm, rmsnorm"),
]


@pytest.mark.parametrize("section, values, message", REFUSED, ids=[m.split(":")[0] for _, _, m in REFUSED])
def test_the_python_api_refuses_what_the_command_line_refuses(section, values, message):
    """One place validates a field (its dataclass's __post_init__), so RunConfig(...) in Python, a
    recipe and --section.key=value all refuse a value with the same message (issue 16)."""
    from axon.config import SECTIONS
    from axon.model_configs import DecoderConfig

    cls = DecoderConfig if section == "model" else SECTIONS[section]
    flags = [f"--{section}.{k}={v}" for k, v in values.items()]
    attempts = {"flags": lambda: load_config(None, flags), "build_config": lambda: build_config({section: values}),
                "dataclass": lambda: RunConfig(**{section: cls(**values)})}
    for how, attempt in attempts.items():
        with pytest.raises(ConfigError) as e:
            attempt()
        assert str(e.value).startswith(message), (how, str(e.value))


def test_a_python_caller_gets_the_types_a_recipe_gets():
    """The dataclasses convert what a flag would (an int for a float, a list for a tuple, numpy's
    integers) and refuse what is no value of the field's type; text is read as numbers only from
    recipes and flags."""
    from pathlib import Path

    import numpy as np

    from axon.config import OptimConfig
    from axon.model_configs import DecoderConfig

    assert OptimConfig(betas=[0.8, 0.9]).betas == (0.8, 0.9)
    assert type(DecoderConfig(rope_theta=10000).rope_theta) is float
    assert type(DecoderConfig(n_layer=np.int64(3)).n_layer) is int  # yaml.safe_dump writes no numpy scalar
    assert RunConfig(out_dir=Path("somewhere")).out_dir == "somewhere"
    with pytest.raises(ConfigError, match=r"^model\.n_layer: expected an integer, got '2'"):
        DecoderConfig(n_layer="2")
    assert load_config(None, ["--model.n_layer=2"]).model.n_layer == 2
    with pytest.raises(ConfigError, match=r"^optim: expected OptimConfig, got \{'lr': 1\}"):
        RunConfig(optim={"lr": 1})
    with pytest.raises(ConfigError, match=r"^model: expected a family's config"):
        RunConfig(model={"n_layer": 2})
