"""The routed family (axon.models.routed): a sequence-level Switch router over whole language models.
Shapes and counts, causality at every position, the balance loss spreading a collapsed router's
load, a planted mixture routed by type, recomputed decoding, expert runs as starting weights,
exact resume (the routed model and the Lory decoder), and bad inputs in one line."""

import json
import shutil
from pathlib import Path

import pytest
import torch

from axon.cli import main
from axon.config import load_config
from axon.errors import ConfigError
from axon.models.routed import PRESETS, Routed, RoutedConfig
from axon.objectives import CausalLM
from axon.train.checkpoint import list_checkpoints
from axon.train.logging import read_metrics
from axon.train.run import load_run, train

from cache_checks import assert_same_logits


def routed(**kw) -> Routed:
    torch.manual_seed(0)
    return Routed(RoutedConfig(**{"vocab_size": 65, **PRESETS["tiny"]["config"], **kw}))


def test_shapes_counts_and_the_preset_parameter_string():
    m = routed()
    x = torch.randint(0, 65, (5, 32))
    assert m(x).shape == (5, 32, 65) and m(x, last_only=True).shape == (5, 1, 65)
    n = sum(p.numel() for p in m.parameters())
    assert f"{n:,}" == PRESETS["tiny"]["params"].split()[0]
    decoder, mamba = m.experts
    router = 65 * 16 + 16 * 2
    assert m.active_params() == router + max(decoder.active_params(), mamba.active_params())
    assert m.flops_per_token() == pytest.approx(6 * 16 * 2 * 4 / 32 + max(decoder.flops_per_token(32), mamba.flops_per_token(32)))
    assert [type(e).__name__ for e in m.experts] == ["Decoder", "Mamba"]
    assert all(e.config.vocab_size == 65 and e.config.block_size == 32 for e in m.experts)


def test_expert_specs_take_overrides_typed_like_flags():
    cfg = RoutedConfig(experts=["decoder:tiny n_layer=1 dropout=1e-1 mlp=gelu", "rnn cell=gru", "mamba:tiny"])
    dec, rnn, _ = cfg.expert_configs()
    assert (dec.n_layer, dec.dropout, dec.mlp, dec.preset, dec.block_size) == (1, 0.1, "gelu", "tiny", 32)
    assert rnn.cell == "gru" and rnn.preset is None


@pytest.mark.parametrize("kw, words", [
    (dict(experts=[]), "model.experts: lists 0 expert(s); a router needs at least two"),
    (dict(experts=["decoder:tiny"]), "model.experts: lists 1 expert(s)"),
    (dict(experts=["decoder:tiny", "transformer:tiny"]), "model.experts[1]: unknown family 'transformer'"),
    (dict(experts=["decoder:tiny", "vit:tiny"]), "model.experts[1]: 'vit' is not a causal language model family"),
    (dict(experts=["mamba:nanogpt-cpu", "decoder"]), "model.experts[0]: unknown mamba preset 'nanogpt-cpu'; choose one of: tiny"),
    (dict(experts=["decoder:tiny n_layers=2", "mamba"]), "model.experts[0]: decoder has no field 'n_layers'"),
    (dict(experts=["decoder:tiny block_size=64", "mamba"]), "block_size cannot be set in an expert: the experts share model.block_size"),
    (dict(experts=["decoder:tiny n_layer=two", "mamba"]), "model.experts[0].n_layer: expected an integer, got 'two'"),
    (dict(experts=["decoder:tiny n_head=3", "mamba"]), "model.experts[0]: 'decoder:tiny n_head=3': model.n_embd: 64 is not divisible"),
    (dict(experts=["decoder:tiny n_layer", "mamba"]), "'n_layer' in 'decoder:tiny n_layer' is not key=value"),
    (dict(expert_runs=["a"]), "model.expert_runs: has 1 entries for 2 experts"),
    (dict(route_tokens=0), "model.route_tokens: must be in [1, block_size=32]"),
])
def test_bad_settings_are_config_errors(kw, words):
    with pytest.raises(ConfigError) as e:
        RoutedConfig(**kw)
    assert words in str(e.value)


@pytest.mark.parametrize("flag, words", [
    ("--model.experts=[decoder:tiny, foo:tiny]", "model.experts[1]: unknown family 'foo'"),
    ("--model.experts=[decoder:huge, mamba]", "model.experts[0]: unknown decoder preset 'huge'"),
    ("--model.experts=[]", "model.experts: lists 0 expert(s)"),
])
def test_cli_reports_a_bad_expert_in_one_line(capsys, flag, words):
    assert main(["config", "--model.family=routed", "--model.preset=tiny", flag]) == 2
    err = capsys.readouterr().err
    assert words in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("gate", ["switch", "straight_through"])
def test_a_future_token_never_changes_a_past_logit(gate):
    """Token j changed: every logit before j is unchanged -- also for j < route_tokens, where the
    sequence's route may change but the earlier positions are routed on their own prefixes."""
    m = routed(route_tokens=6, gate=gate)
    torch.manual_seed(1)
    x = torch.randint(0, 65, (8, 20))
    for mode in (m.eval, m.train):
        mode()
        for j in (1, 3, 5, 12):
            y = x.clone()
            y[:, j:] = (y[:, j:] + 7) % 65
            assert_same_logits(m, m(x)[:, :j], m(y)[:, :j], steps=20)


def test_early_positions_use_their_own_prefix_route_and_gate():
    m = routed(route_tokens=4).eval()
    x = torch.randint(0, 65, (6, 16))
    with torch.no_grad():
        out = m(x)
        _, p = m.route(x)
        for b in range(6):
            for t in range(16):
                pt = p[b, min(t, 3)]
                e = int(pt.argmax())
                want = m.experts[e](x[b : b + 1, : t + 1])[0, -1] * pt[e]
                assert torch.allclose(out[b, t], want, atol=1e-5), (b, t)


def planted(n: int, kind: str, T: int = 16, gen=None) -> torch.Tensor:
    """Kind a: counting up by 1 over tokens 0..7; kind b: counting up by 3 over tokens 8..15."""
    start = torch.randint(0, 8, (n, 1), generator=gen)
    t = torch.arange(T)
    return (start + t) % 8 if kind == "a" else (start + 3 * t) % 8 + 8


def test_balance_loss_spreads_a_collapsed_router():
    m = routed(experts=["decoder:tiny n_layer=1", "decoder:tiny n_layer=1"], vocab_size=16)
    with torch.no_grad():  # every token votes for expert 0 through one embedding channel
        m.router_emb.weight[:, 0] = 3.0
        m.router.weight.zero_()
        m.router.weight[0, 0] = 2.0
        m.router_emb.weight[:, 1:].normal_()
    gen = torch.Generator().manual_seed(0)
    x = torch.cat([planted(16, "a", gen=gen), planted(16, "b", gen=gen)])
    m.train()
    m(x)
    assert m.metrics()["routed_max_load"] == 2.0  # collapsed: every sequence to expert 0
    opt = torch.optim.Adam([m.router_emb.weight, m.router.weight], lr=0.05)
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


def test_a_planted_mixture_is_routed_by_type():
    """Two experts, each first trained on one kind of sequence (as experts loaded from their runs
    would be); then the router alone, from the task loss through its gate and the balance loss:
    kind a goes to expert 0 and kind b to expert 1."""
    m = routed(experts=["decoder:tiny n_layer=1", "decoder:tiny n_layer=1"], vocab_size=16, route_tokens=4)
    gen = torch.Generator().manual_seed(0)
    for i, kind in enumerate("ab"):
        expert = m.experts[i]
        opt = torch.optim.Adam(expert.parameters(), lr=1e-2)
        for _ in range(40):
            x = planted(16, kind, gen=gen)
            loss, _ = CausalLM()(expert, (x[:, :-1], x[:, 1:]))
            opt.zero_grad()
            loss.backward()
            opt.step()
    for p in m.experts.parameters():
        p.requires_grad_(False)
    opt = torch.optim.Adam([m.router_emb.weight, m.router.weight], lr=0.05)
    for _ in range(30):
        x = torch.cat([planted(16, "a", gen=gen), planted(16, "b", gen=gen)])
        loss, parts = CausalLM()(m, (x[:, :-1], x[:, 1:]))
        opt.zero_grad()
        loss.backward()
        opt.step()
    table = m.routing_table({"a": planted(64, "a", gen=gen), "b": planted(64, "b", gen=gen)})
    assert table["a"][0] >= 0.95 and table["b"][1] >= 0.95, table
    assert set(parts) == {"ce", "routed_balance", "routed_z"}


def test_recomputed_decoding_equals_the_full_forward():
    from axon.generate import generate

    m = routed().eval()
    x = torch.randint(0, 65, (3, 20))
    with torch.no_grad():
        full = m(x)
        cache = m.make_cache(3, 20)
        steps = [m(x[:, :2], cache=cache)] + [m(x[:, t:t + 1], cache=cache) for t in range(2, 20)]
    assert_same_logits(m, torch.cat(steps, 1), full, steps=20)
    out = generate(m, [[1, 2, 3, 4, 5], [6]], 5, temperature=0.0)  # left padding: packed, exact
    for prompt, tokens in zip([[1, 2, 3, 4, 5], [6]], out.tokens):
        ids = torch.tensor([prompt])
        for t in tokens:
            with torch.no_grad():
                assert int(m(ids)[0, -1].argmax()) == t
            ids = torch.cat([ids, torch.tensor([[t]])], 1)


def test_an_moe_expert_adds_its_own_aux_losses_and_metrics():
    m = routed(experts=["decoder:tiny moe_experts=2", "mamba:tiny"]).train()
    with torch.no_grad():  # every sequence to expert 0
        m.router.weight.zero_()
        m.router.weight[0] = 1.0
        m.router_emb.weight.fill_(1.0)
    x = torch.randint(0, 65, (8, 32))
    m(x)
    aux = m.aux_losses()
    assert set(aux) == {"routed_balance", "routed_z", "expert0_moe_balance", "expert0_moe_z"}
    assert float(aux["routed_balance"].detach()) == pytest.approx(0.01 * 2 * float(m.route(x)[1][:, -1, 0].mean().detach()))
    m.experts[0](x)  # the same rows alone: the same expert losses
    assert all(torch.equal(aux[f"expert0_{k}"], v) for k, v in m.experts[0].aux_losses().items())
    metrics = m.metrics()
    assert metrics["routed_expert0_frac"] == 1.0 and metrics["routed_max_load"] == 2.0
    assert "expert0_moe_expert1_frac" in metrics


# -- runs ----------------------------------------------------------------------------------------

RUN = ["--train.batch_size=4", "--train.log_interval=1", "--train.eval_interval=100", "--train.eval_batches=1",
       "--train.checkpoint_interval=3", "--train.keep_checkpoints=10", "--train.sample_tokens=4",
       "--train.threads=1", "--schedule.warmup_steps=2", "--log.progress=false", "--train.max_steps=6"]
ROUTED = ["--model.family=routed", "--model.preset=tiny"]
LORY = ["--model.preset=tiny", "--model.block_size=32", "--model.moe_experts=3", "--model.moe_kind=lory",
        "--model.lory_segment=8"]


def losses(run_dir):
    return {r["step"]: r["train_loss"] for r in read_metrics(Path(run_dir) / "metrics.jsonl") if "train_loss" in r}


@pytest.mark.parametrize("model", [ROUTED, LORY], ids=["routed", "lory"])
def test_exact_resume(tmp_path, cache_dir, model):
    args = [*model, *RUN, f"--out_dir={tmp_path}", "--name=ref", f"--data.cache_dir={cache_dir}"]
    ref = train(load_config(None, args))
    ref_dir = Path(ref["run_dir"])
    records = [r for r in read_metrics(ref_dir / "metrics.jsonl") if "train_loss" in r]
    assert any(k.startswith("routed_expert" if model is ROUTED else "moe_expert") for k in records[0])
    assert (ref_dir / "samples.txt").read_text().strip()
    run = tmp_path / "resumed"
    shutil.copytree(ref_dir, run)
    for ckpt in list_checkpoints(run / "checkpoints"):
        if int(ckpt.name.split("_")[1]) > 3:
            shutil.rmtree(ckpt)
    resumed = train(resume=run)
    assert losses(run) == losses(ref_dir)
    assert resumed["val_loss"] == ref["val_loss"]


def test_expert_runs_start_the_experts(tmp_path, cache_dir, capsys):
    common = [*RUN, f"--out_dir={tmp_path}", f"--data.cache_dir={cache_dir}"]
    src = train(load_config(None, ["--model.preset=tiny", "--model.block_size=32", *common, "--name=src",
                                   "--train.max_steps=3"]))
    _, source, _ = load_run(src["run_dir"], device="cpu")
    out = train(load_config(None, [*ROUTED, *common, "--name=routed", "--train.max_steps=1", "--optim.name=adamw",
                                   "--optim.lr=1e-12", f"--model.expert_runs=[{src['run_dir']}, null]"]))
    _, m, _ = load_run(out["run_dir"], device="cpu")
    for name, p in source.state_dict().items():
        assert torch.allclose(m.experts[0].state_dict()[name], p, atol=1e-8), name
    capsys.readouterr()
    assert main(["train", *ROUTED, *common, "--name=bad", "--model.expert_runs=[/nonexistent, null]"]) == 2
    err = capsys.readouterr().err.strip()
    assert "model.expert_runs[0]: /nonexistent is neither a run directory" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "bad").exists()  # refused before anything trained: nothing left behind


def test_sample_command_and_the_routing_table_of_a_routed_run(tmp_path, cache_dir, capsys):
    from axon.lab.routing import main as table_main
    from axon.lab.routing import routing_table

    out = train(load_config(None, [*ROUTED, *RUN, f"--out_dir={tmp_path}", "--name=s", f"--data.cache_dir={cache_dir}",
                                   "--train.max_steps=2"]))
    capsys.readouterr()
    assert main(["sample", out["run_dir"], "--prompt=To be", "--max-new-tokens=5", "--seed=0"]) == 0
    assert capsys.readouterr().out.startswith("To be")
    rows = [{"text": t, "label": k} for k, t in [("up", "abcdefgh"), ("up", "bcdefghi"), ("low", "ABCDEFGH"), ("short", "ab")]]
    (tmp_path / "t.jsonl").write_text("\n".join(map(json.dumps, rows)))
    names, table = routing_table(out["run_dir"], str(tmp_path / "t.jsonl"))
    assert names == ["decoder:tiny", "mamba:tiny"]
    assert [(k, n) for k, n, _ in table] == [("up", 2), ("low", 1)]  # "ab" is shorter than the route: skipped
    assert all(sum(shares) == pytest.approx(1.0) for _, _, shares in table)
    assert table_main([out["run_dir"], "--file", str(tmp_path / "t.jsonl")]) == 0
    assert "| up | 2 |" in capsys.readouterr().out
    assert table_main([str(tmp_path / "nope")]) == 2
    assert "is not a run directory" in capsys.readouterr().err


def test_an_idle_expert_gets_zero_gradients_in_training():
    """DDP needs a gradient for every parameter on every rank: an expert no row visited joins the
    graph with zeros (and the optimizer treats it as nn.moe's unused experts)."""
    m = routed().train()
    with torch.no_grad():
        m.router.weight.zero_()
        m.router.weight[0] = 1.0
        m.router_emb.weight.fill_(1.0)  # every sequence to expert 0
    x = torch.randint(0, 65, (4, 32))
    CausalLM()(m, (x, x))[0].backward()
    assert (m.last_route == 0).all()
    assert all(p.grad is not None and not p.grad.any() for p in m.experts[1].parameters())
    assert any(p.grad.any() for p in m.experts[0].parameters())


def test_a_rag_reader_and_a_base_decoder_start_a_routed_reader(tmp_path, cache_dir, capsys):
    """The issue's language trio on the rag task: expert 0 from a rag run (a reader), expert 1 from
    a plain LM run (as a DPO-tuned decoder would be: no pad/BOS/EOS ids, so its embedding and output
    rows are extended by the reader's three), expert 2 a Mamba from scratch -- all on one tokenizer.
    Another tokenizer is refused in one line before anything trains."""
    common = [*RUN, f"--out_dir={tmp_path}", f"--data.cache_dir={cache_dir}", "--train.max_steps=2",
              "--model.block_size=64"]
    rag = ["--task=rag", "--rag.kb_entities=20", "--rag.eval_questions=4", "--rag.max_answer_tokens=4"]
    base = train(load_config(None, [*common, "--model.preset=tiny", "--data.tokenizer=bpe", "--data.vocab_size=300",
                                    "--name=base"]))
    tok = str(Path(base["run_dir"]) / "tokenizer.json")
    reader = train(load_config(None, [*common, *rag, "--model.preset=tiny", f"--data.tokenizer={tok}", "--name=reader"]))
    routed_args = [*common, *rag, "--model.family=routed", "--model.experts=[decoder:tiny, decoder:tiny, mamba:tiny]",
                   f"--model.expert_runs=[{reader['run_dir']}, {base['run_dir']}, null]", "--model.route_tokens=8",
                   "--optim.name=adamw", "--optim.lr=1e-12"]
    out = train(load_config(None, [*routed_args, f"--data.tokenizer={tok}", "--name=routed", "--train.max_steps=1"]))
    assert "em" in out or any(k.endswith("em") for k in out), out
    _, m, _ = load_run(out["run_dir"], device="cpu")
    _, r, _ = load_run(reader["run_dir"], device="cpu")
    _, b, _ = load_run(base["run_dir"], device="cpu")
    for name, p in r.state_dict().items():
        assert torch.allclose(m.experts[0].state_dict()[name], p, atol=1e-8), name
    V = b.config.vocab_size
    assert m.config.vocab_size == V + 3  # the reader's pad, BOS and EOS after the tokenizer's ids
    for name, p in b.state_dict().items():
        mine = m.experts[1].state_dict()[name]
        assert torch.allclose(mine[:V] if name in ("wte.weight", "lm_head.weight") else mine, p, atol=1e-8), name
    assert "wte.weight, lm_head.weight extended by this run's 3 extra token ids" in capsys.readouterr().err
    assert main(["train", *routed_args, "--name=bad"]) == 2  # the reader's own char tokenizer: not the experts'
    err = capsys.readouterr().err.strip()
    assert "model.expert_runs[0]:" in err and "was trained with another tokenizer than this run's" in err, err
    errors = [line for line in err.splitlines() if "error" in line]  # (the char reader's data may warn of cut inputs)
    assert len(errors) == 1 and errors[0] == err.splitlines()[-1] and not (tmp_path / "bad").exists()
