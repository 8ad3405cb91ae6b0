import sys
import types

from axon.config import LogConfig
from axon.train.logging import MetricsLogger, read_metrics, truncate_metrics


def test_wandb_receives_metrics_offline(tmp_path, monkeypatch):
    """W&B is optional: with the library present, runs start offline and get every number."""
    calls = {}

    class Run:
        def log(self, data, step):
            calls.setdefault("log", []).append((step, data))

        def finish(self):
            calls["finish"] = True

    fake = types.SimpleNamespace(init=lambda **kw: calls.setdefault("init", kw) and Run())
    monkeypatch.setitem(sys.modules, "wandb", fake)
    logger = MetricsLogger(tmp_path, LogConfig(wandb=True), {"train": {"seed": 1}})
    logger.log({"step": 3, "train_loss": 2.5, "val_full": True, "note": "x"})
    logger.close()
    assert calls["init"]["mode"] == "offline" and calls["init"]["config"] == {"train": {"seed": 1}}
    assert calls["log"] == [(3, {"train_loss": 2.5})]  # numbers only: no flags, no text
    assert calls["finish"]


def test_missing_wandb_is_a_config_error(tmp_path, monkeypatch):
    import pytest

    from axon.errors import ConfigError

    monkeypatch.setitem(sys.modules, "wandb", None)  # import fails
    with pytest.raises(ConfigError, match="wandb package is not installed"):
        MetricsLogger(tmp_path, LogConfig(wandb=True))


def test_torn_last_line_is_ignored_and_truncation_drops_later_steps(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 1}\n{"step": 2}\n{"step": 3}\n{"st')
    assert [r["step"] for r in read_metrics(path)] == [1, 2, 3]
    truncate_metrics(path, 2)
    assert [r["step"] for r in read_metrics(path)] == [1, 2]
