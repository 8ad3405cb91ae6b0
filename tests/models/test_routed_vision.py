"""The routed vision family (axon.models.routed_vision): a Switch router over whole image models.
Dispatch against each expert run alone, the gate on class logits only, counts, the balance loss
spreading a collapsed router, a planted mixture routed by type, idle experts' zero gradients,
classify and detect runs end to end with exact resume, the routing table, bad settings in one line."""

import shutil
from pathlib import Path

import pytest
import torch

from axon.cli import main
from axon.config import load_config
from axon.errors import ConfigError
from axon.models.routed_vision import PRESETS, RoutedVision, RoutedVisionConfig
from axon.objectives.classification import ImageClassification
from axon.train.checkpoint import list_checkpoints
from axon.train.logging import read_metrics
from axon.train.run import load_run, train


def routed(**kw) -> RoutedVision:
    torch.manual_seed(0)
    return RoutedVision(RoutedVisionConfig(**{**PRESETS["tiny"]["config"], "num_labels": 10, **kw}))


DETECTORS = dict(image_size=16, in_channels=3, num_labels=3, experts=["detr:tiny", "detr:tiny n_embd=16 n_head=2"])


def test_counts_and_the_served_task():
    m = routed()
    assert [type(e).__name__ for e in m.experts] == ["ViT", "VisionMamba"]
    assert all((e.config.image_size, e.config.in_channels, e.config.num_labels) == (8, 1, 10) for e in m.experts)
    router = 16 * 16 + 16 + 16 * 2
    assert m.router_params() == router
    assert m.active_params() == router + max(e.active_params() for e in m.experts)
    assert m.flops_per_token() == 6.0 * (16 * 16 + 16 * 2) + max(e.flops_per_token() for e in m.experts)
    assert m.config.tasks == ("image_classify",) and RoutedVisionConfig(**DETECTORS).tasks == ("detect",)
    assert RoutedVisionConfig(**DETECTORS).num_queries == 6


@pytest.mark.parametrize("gate", ["switch", "straight_through"])
def test_each_image_gets_its_experts_output_scaled_by_the_gate(gate):
    m = routed(gate=gate).eval()
    x = torch.randn(12, 1, 8, 8)
    with torch.no_grad():
        out = m(x)
        p = m.route(x)[1]
    routes = p.argmax(-1)
    assert len(set(routes.tolist())) == 2  # both experts in use: the dispatch is tested, not one path
    for b in range(12):
        e = int(routes[b])
        scale = p[b, e] if gate == "switch" else 1.0
        with torch.no_grad():
            alone = m.experts[e](x[b:b + 1])[0]
        torch.testing.assert_close(out[b], alone * scale, rtol=1e-5, atol=1e-6)


def test_detectors_scale_class_logits_and_pass_boxes_through():
    torch.manual_seed(0)
    m = RoutedVision(RoutedVisionConfig(**DETECTORS)).eval()
    x = torch.rand(8, 3, 16, 16) * 2 - 1
    with torch.no_grad():
        logits, boxes = m(x)
        p = m.route(x)[1]
    assert logits.shape == (1, 8, 6, 4) and boxes.shape == (1, 8, 6, 4)
    for b in range(8):
        e = int(p[b].argmax())
        with torch.no_grad():
            lg, bx = m.experts[e](x[b:b + 1])
        torch.testing.assert_close(logits[:, b], lg[:, 0] * p[b, e], rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(boxes[:, b], bx[:, 0], rtol=1e-5, atol=1e-6)


def test_the_router_learns_from_the_task_loss_through_the_gate():
    m = routed().train()
    x, y = torch.randn(8, 1, 8, 8), torch.randint(0, 10, (8,))
    loss, parts = ImageClassification()(m, (x, y))
    loss.backward()
    assert set(parts) == {"ce", "count", "correct", "routed_balance", "routed_z"}
    assert m.router.weight.grad.abs().sum() > 0 and m.router_in.weight.grad.abs().sum() > 0


def test_an_idle_expert_gets_zero_gradients_in_training():
    m = routed().train()
    with torch.no_grad():
        m.router.weight.zero_()
        m.router.weight[0] = 1.0
        m.router_in.bias.fill_(1.0)  # GELU(1) > 0 on every channel: every image to expert 0
    x, y = torch.randn(4, 1, 8, 8), torch.randint(0, 10, (4,))
    ImageClassification()(m, (x, y))[0].backward()
    assert (m.last_route == 0).all()
    assert all(p.grad is not None and not p.grad.any() for p in m.experts[1].parameters())
    assert any(p.grad.any() for p in m.experts[0].parameters())


def kinds(n: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """A planted mixture: kind a, a bright blob on the left half labelled by its row (0-3); kind b,
    the same blob on the right half of a darker image, labelled by its row + 4 in reverse."""
    row = torch.randint(0, 4, (n,), generator=gen)
    xa = torch.full((n, 1, 8, 8), -1.0)
    xb = torch.full((n, 1, 8, 8), -0.5)
    for i, r in enumerate(row.tolist()):
        xa[i, 0, 2 * r:2 * r + 2, 0:4] = 1.0
        xb[i, 0, 2 * r:2 * r + 2, 4:8] = 1.0
    return xa, row, xb, 7 - row


def test_a_planted_mixture_is_routed_by_type():
    """Two experts, each first trained on one kind (as experts loaded from their runs would be);
    then the router alone, from the task loss through its gate and the balance loss: kind a goes
    to expert 0 and kind b to expert 1."""
    m = routed(experts=["resnet:tiny", "resnet:tiny"]).train()
    gen = torch.Generator().manual_seed(0)
    for i in range(2):
        opt = torch.optim.Adam(m.experts[i].parameters(), lr=1e-2)
        for _ in range(30):
            xa, ya, xb, yb = kinds(32, gen)
            x, y = (xa, ya) if i == 0 else (xb, yb)
            loss, _ = ImageClassification()(m.experts[i], (x, y))
            opt.zero_grad()
            loss.backward()
            opt.step()
    m.eval()  # the experts' batch norms keep their statistics; the router trains alone
    for p in m.experts.parameters():
        p.requires_grad_(False)
    opt = torch.optim.Adam([*m.router_in.parameters(), *m.router.parameters()], lr=0.02)
    for _ in range(60):
        xa, ya, xb, yb = kinds(32, gen)
        loss, _ = ImageClassification()(m, (torch.cat([xa, xb]), torch.cat([ya, yb])))
        opt.zero_grad()
        loss.backward()
        opt.step()
    xa, _, xb, _ = kinds(64, gen)
    table = m.routing_table({"a": xa, "b": xb})
    assert table["a"][0] >= 0.95 and table["b"][1] >= 0.95, table


def test_balance_loss_spreads_a_collapsed_router():
    m = routed()
    with torch.no_grad():  # every image to expert 0, with probability about 0.94
        m.router.weight.zero_()
        m.router.weight[0] = 0.2
        m.router_in.bias.fill_(1.0)
    gen = torch.Generator().manual_seed(0)
    xa, _, xb, _ = kinds(16, gen)
    x = torch.cat([xa, xb])
    m.train()
    m(x)
    assert m.metrics()["routed_max_load"] == 2.0
    opt = torch.optim.Adam([*m.router_in.parameters(), *m.router.parameters()], lr=0.05)
    for _ in range(40):
        m(x)
        loss = m.aux_losses()["routed_balance"]
        opt.zero_grad()
        loss.backward()
        opt.step()
    m.metrics()
    m(x)
    loads = m.metrics()
    assert 0.3 <= loads["routed_expert0_frac"] <= 0.7, loads
    assert loads["routed_balance"] < 0.0105  # coef * E * sum f_i P_i: 0.02 collapsed, 0.01 balanced


@pytest.mark.parametrize("kw, words", [
    (dict(experts=["vit:tiny"]), "model.experts: lists 1 expert(s)"),
    (dict(experts=["vit:tiny", "decoder:tiny"]), "model.experts[1]: 'decoder' is not an image classifier or detector family"),
    (dict(experts=["vit:tiny", "detr:tiny"]), "model.experts: mixes classifiers and detectors (vit, detr)"),
    (dict(experts=["vit:tiny image_size=4", "resnet:tiny"]), "image_size cannot be set in an expert: the experts share model.image_size"),
    (dict(experts=["vit:huge", "resnet:tiny"]), "model.experts[0]: unknown vit preset 'huge'"),
    (dict(image_size=16, in_channels=3, experts=["detr:tiny", "detr:tiny num_queries=3"]),
     "the detectors must agree on num_queries and dec_layers"),
    (dict(route_grid=9), "model.route_grid: must be in [1, image_size=8]"),
    (dict(expert_runs=["a"]), "model.expert_runs: has 1 entries for 2 experts"),
])
def test_bad_settings_are_config_errors(kw, words):
    with pytest.raises(ConfigError) as e:
        RoutedVisionConfig(**{**PRESETS["tiny"]["config"], **kw})
    assert words in str(e.value)


CLASSIFY = ["--model.family=routed_vision", "--model.preset=tiny", "--train.max_steps=6", "--train.batch_size=16",
            "--train.eval_interval=3", "--train.eval_batches=2", "--train.checkpoint_interval=3", "--train.threads=1",
            "--train.log_interval=1"]
DETECT = ["--model.family=routed_vision", "--model.experts=[detr:tiny, detr:tiny n_embd=16 n_head=2]",
          "--model.image_size=16", "--model.in_channels=3", "--detect.train_images=32", "--detect.val_images=8",
          "--train.max_steps=6", "--train.batch_size=8", "--train.eval_interval=3", "--train.eval_batches=1",
          "--train.checkpoint_interval=3", "--train.threads=1", "--train.log_interval=1"]


def losses(run_dir):
    return {r["step"]: r["train_loss"] for r in read_metrics(Path(run_dir) / "metrics.jsonl") if "train_loss" in r}


@pytest.mark.parametrize("args", [CLASSIFY, DETECT], ids=["classify", "detect"])
def test_runs_end_to_end_and_resume_exactly(tmp_path, args):
    ref = train(load_config(None, [*args, f"--out_dir={tmp_path}", "--name=ref"]))
    ref_dir = Path(ref["run_dir"])
    records = [r for r in read_metrics(ref_dir / "metrics.jsonl") if "train_loss" in r]
    assert {"routed_expert0_frac", "routed_max_load", "routed_balance"} <= set(records[0])
    cfg, _, _ = load_run(ref_dir, device="cpu")
    from axon.tasks import task_name

    assert task_name(cfg) == ("detect" if args is DETECT else "image_classify")
    run = tmp_path / "resumed"
    shutil.copytree(ref_dir, run)
    for ckpt in list_checkpoints(run / "checkpoints"):
        if int(ckpt.name.split("_")[1]) > 3:
            shutil.rmtree(ckpt)
    resumed = train(resume=run)
    assert losses(run) == losses(ref_dir)
    assert resumed["val_loss"] == ref["val_loss"]


def test_routing_table_of_a_vision_run_and_the_wrong_task(tmp_path, capsys):
    from axon.lab.routing import main as table_main
    from axon.lab.routing import routing_table

    out = train(load_config(None, [*CLASSIFY, f"--out_dir={tmp_path}", "--name=t", "--train.max_steps=2"]))
    names, rows = routing_table(out["run_dir"], top=None)
    assert names == ["vit:tiny", "vision_mamba:tiny"]
    assert sorted(k for k, _, _ in rows) == [str(i) for i in range(10)] and sum(n for _, n, _ in rows) == 359
    assert all(sum(s) == pytest.approx(1.0) for _, _, s in rows)
    capsys.readouterr()
    assert table_main([out["run_dir"], "--file", "x.jsonl"]) == 2
    assert "--file is for text runs" in capsys.readouterr().err
    assert main(["train", *CLASSIFY, "--task=detect", f"--out_dir={tmp_path}", "--name=bad"]) == 2
    err = capsys.readouterr().err.strip()
    assert "a routed_vision model does not do 'detect' (it does image_classify)" in err and len(err.splitlines()) == 1


def test_expert_runs_start_image_experts(tmp_path, capsys):
    """A classifier run starts expert 0 (strictly: batch-norm statistics included); a run of another
    architecture is refused in one line before anything trains."""
    common = ["--train.max_steps=2", "--train.batch_size=16", "--train.eval_interval=100", "--train.eval_batches=1",
              "--train.threads=1", f"--out_dir={tmp_path}"]
    src = train(load_config(None, ["--model.family=resnet", "--model.preset=tiny", "--optim.name=adamw", *common, "--name=src"]))
    _, source, _ = load_run(src["run_dir"], device="cpu")
    routed_args = ["--model.family=routed_vision", "--model.experts=[resnet:tiny, vit:tiny]", *common,
                   "--optim.name=adamw", "--optim.lr=1e-12", "--train.max_steps=1"]
    out = train(load_config(None, [*routed_args, "--name=routed", f"--model.expert_runs=[{src['run_dir']}, null]"]))
    _, m, _ = load_run(out["run_dir"], device="cpu")
    for name, p in source.state_dict().items():
        if name.endswith("num_batches_tracked") or "running_" in name:
            continue  # batch-norm statistics move in the routed run's own training step
        assert torch.allclose(m.experts[0].state_dict()[name].float(), p.float(), atol=1e-6), name
    capsys.readouterr()
    assert main(["train", *routed_args, "--name=bad", f"--model.expert_runs=[null, {src['run_dir']}]"]) == 2
    err = capsys.readouterr().err.strip()
    assert "model.expert_runs[1]:" in err and len(err.splitlines()) == 1 and not (tmp_path / "bad").exists()
