"""axon.diffusion against diffusers' DDPMScheduler and DDIMScheduler (diffusers 0.42, a dev dependency).

The diffusers options matched: ``clip_sample`` True and False (clip_sample_range 1), ``thresholding``
off, ``rescale_betas_zero_snr`` off; DDIM with ``set_alpha_to_one=True`` (the last step goes to abar =
1: our t_prev = -1), ``steps_offset=0`` and ``timestep_spacing="leading"`` (its defaults) and
``use_clipped_model_output=False`` (eps_hat from the unclipped prediction); DDPM with
``variance_type`` fixed_small, fixed_large and learned_range and no ``set_timesteps`` (every step). Prediction
types epsilon, sample and v_prediction are our targets eps, x0 and v.

diffusers keeps its tables in float32 (``torch.linspace(..., dtype=float32)``, a float32 cumprod),
so the comparisons give it float64 tables built from its own betas, and both sides float64 inputs:
what remains is the same mathematics in another order, bounded by TOL, a thousand times inside the
issue's 1e-6 bar. The
betas themselves agree with diffusers' to float32 rounding. Noise is drawn by both from generators
with the same seed: diffusers' ``randn_tensor`` and ours make the same ``torch.randn`` call.
"""

from __future__ import annotations

import pytest
import torch
from diffusers import DDIMScheduler, DDPMScheduler

from axon.diffusion import Diffusion, make_betas

# Beyond summation order the one difference is diffusers' beta_t = 1 - abar_t / abar_{t-1} against our table's
# beta_t: relative u / beta_t, largest where beta_t is smallest (cosine's first, 4e-5: 3e-12) and values are O(1);
# where x0_hat = x_t / sqrt(abar_t) grows (to ~2e4 at cosine's last step) beta_t is ~1 and the error ~2e4 u = 2e-12.
# Measured: 3e-14 (single steps), 5e-15 (20-step loops). TOL keeps a factor of 300 over the estimate.
TOL = 1e-9
SCHEDULES = {"linear": "linear", "cosine": "squaredcos_cap_v2"}
PREDICTIONS = {"eps": "epsilon", "x0": "sample", "v": "v_prediction"}
pytestmark = pytest.mark.numerics


def _float64(sched):
    """diffusers' scheduler with its tables recomputed in float64 from its own betas."""
    sched.betas = sched.betas.double()
    sched.alphas = 1.0 - sched.betas
    sched.alphas_cumprod = torch.cumprod(sched.alphas, 0)
    return sched


def _pair(kind, schedule, target, variance="fixed_small", clip=True):
    common = dict(num_train_timesteps=1000, beta_schedule=SCHEDULES[schedule], prediction_type=PREDICTIONS[target],
                  clip_sample=clip, thresholding=False)
    if kind == "ddpm":
        sched = DDPMScheduler(variance_type=variance, **common)
    else:
        sched = DDIMScheduler(set_alpha_to_one=True, steps_offset=0, timestep_spacing="leading", **common)
    ours = Diffusion(sched.betas.double(), target=target, variance=variance)
    return _float64(sched), ours


def _gen(seed):
    return torch.Generator().manual_seed(seed)


def _worst(a, b):
    return (a - b).abs().max().item()


@pytest.mark.parametrize("schedule", ["linear", "cosine"])
def test_betas_are_diffusers_to_float32_rounding(schedule):
    theirs = DDPMScheduler(num_train_timesteps=1000, beta_schedule=SCHEDULES[schedule]).betas
    ours = make_betas(schedule, 1000)
    assert torch.allclose(ours.float(), theirs, rtol=2 ** -23, atol=0)
    # Their float32 cumprod drifts from the float64 one by rounding only (~sqrt(1000) float32 ulps).
    theirs_abar = DDPMScheduler(num_train_timesteps=1000, beta_schedule=SCHEDULES[schedule]).alphas_cumprod
    ours_abar = torch.cumprod(1 - ours, 0)
    assert ((theirs_abar.double() - ours_abar).abs() / ours_abar).max() < 1000 * 2 ** -24


@pytest.mark.parametrize("schedule", ["linear", "cosine"])
def test_add_noise_is_q_sample(schedule):
    sched, ours = _pair("ddpm", schedule, "eps")
    x0, noise = torch.randn(6, 3, 4, 4, dtype=torch.float64), torch.randn(6, 3, 4, 4, dtype=torch.float64)
    t = torch.tensor([0, 1, 250, 500, 998, 999])
    assert _worst(sched.add_noise(x0, noise, t), ours.q_sample(x0, t, noise)) < TOL
    assert _worst(sched.get_velocity(x0, noise, t), Diffusion(ours.betas, target="v").target_of(x0, noise, t)) < TOL


@pytest.mark.parametrize("schedule", ["linear", "cosine"])
@pytest.mark.parametrize("target", ["eps", "x0", "v"])
@pytest.mark.parametrize("variance", ["fixed_small", "fixed_large"])
@pytest.mark.parametrize("clip", [True, False])
def test_ddpm_step_is_diffusers(schedule, target, variance, clip):
    sched, ours = _pair("ddpm", schedule, target, variance, clip)
    for t in (999, 700, 300, 20, 1, 0):
        out, x_t = torch.randn(2, 3, 4, 4, dtype=torch.float64), 1.5 * torch.randn(2, 3, 4, 4, dtype=torch.float64)
        expected = sched.step(out, t, x_t, generator=_gen(t)).prev_sample
        assert _worst(ours.ddpm_step(out, x_t, t, generator=_gen(t), clip_x0=clip), expected) < TOL, t


@pytest.mark.parametrize("schedule", ["linear", "cosine"])
@pytest.mark.parametrize("target", ["eps", "x0", "v"])
@pytest.mark.parametrize("clip", [True, False])
def test_ddim_step_is_diffusers(schedule, target, clip):
    sched, ours = _pair("ddim", schedule, target, clip=clip)
    sched.set_timesteps(7)
    ts = ours.timesteps_for("ddim", 7)
    assert sched.timesteps.tolist() == ts
    for eta in (0.0, 0.5, 1.0):
        for t, t_prev in zip(ts, ts[1:] + [-1]):
            out, x_t = torch.randn(2, 2, dtype=torch.float64), 1.5 * torch.randn(2, 2, dtype=torch.float64)
            expected = sched.step(out, t, x_t, eta=eta, generator=_gen(t)).prev_sample
            got = ours.ddim_step(out, x_t, t, t_prev, eta=eta, generator=_gen(t), clip_x0=clip)
            assert _worst(got, expected) < TOL, (eta, t)


@pytest.mark.parametrize("target", ["eps", "x0", "v"])
def test_ddim_with_eps_from_the_clipped_x0_is_diffusers_use_clipped_model_output(target):
    """clipped_eps=True (the task's choice, which guidance needs) is diffusers' use_clipped_model_output."""
    sched, ours = _pair("ddim", "linear", target, clip=True)
    sched.set_timesteps(7)
    ts = ours.timesteps_for("ddim", 7)
    moved = 0.0
    for eta in (0.0, 0.5):
        for t, t_prev in zip(ts, ts[1:] + [-1]):
            out, x_t = 3 * torch.randn(2, 2, dtype=torch.float64), 1.5 * torch.randn(2, 2, dtype=torch.float64)
            expected = sched.step(out, t, x_t, eta=eta, generator=_gen(t), use_clipped_model_output=True).prev_sample
            got = ours.ddim_step(out, x_t, t, t_prev, eta=eta, generator=_gen(t), clip_x0=True, clipped_eps=True)
            assert _worst(got, expected) < TOL, (eta, t)
            plain = ours.ddim_step(out, x_t, t, t_prev, eta=eta, generator=_gen(t), clip_x0=True)
            moved = max(moved, _worst(got, plain))
    assert moved > 1e-3  # the outputs clip here, so the choice matters


@pytest.mark.parametrize("steps", [1, 3, 7, 20, 50, 333, 999, 1000])
def test_ddim_spacing_is_diffusers_leading(steps):
    sched = DDIMScheduler(num_train_timesteps=1000)
    sched.set_timesteps(steps)
    assert sched.timesteps.tolist() == Diffusion(make_betas("linear", 1000)).timesteps_for("ddim", steps)


def _tiny_net(seed: int):
    """A fixed random denoiser in float64: tanh(x W + time features), applied to (B, 2) points."""
    g = _gen(seed)
    w, u = torch.randn(2, 2, generator=g, dtype=torch.float64), torch.randn(2, generator=g, dtype=torch.float64)

    def net(x, t):
        t = torch.as_tensor(t, dtype=torch.float64).reshape(-1, 1) / 1000
        return torch.tanh(x @ w + torch.sin(3 * t) * u)
    return net


@pytest.mark.parametrize("schedule, target, eta", [("linear", "eps", 0.0), ("cosine", "v", 0.0),
                                                   ("linear", "x0", 1.0)])
def test_a_whole_ddim_loop_is_diffusers(schedule, target, eta):
    sched, ours = _pair("ddim", schedule, target)
    net, x_T = _tiny_net(0), 1.0 * torch.randn(64, 2, generator=_gen(1), dtype=torch.float64)
    sched.set_timesteps(20)
    x, g = x_T.clone(), _gen(2)
    for t in sched.timesteps:
        x = sched.step(net(x, t), int(t), x, eta=eta, generator=g).prev_sample
    got = ours.sample(net, x_T.shape, sampler="ddim", steps=20, eta=eta, x_T=x_T, generator=_gen(2))
    assert _worst(got, x) < TOL  # the bar for a whole loop is 1e-5


@pytest.mark.parametrize("variance", ["fixed_small", "fixed_large"])
def test_a_whole_ddpm_loop_is_diffusers(variance):
    sched, ours = _pair("ddpm", "linear", "eps", variance)
    net, x_T = _tiny_net(3), torch.randn(16, 2, generator=_gen(4), dtype=torch.float64)
    x, g = x_T.clone(), _gen(5)
    for t in sched.timesteps:
        x = sched.step(net(x, t), int(t), x, generator=g).prev_sample
    got = ours.sample(net, x_T.shape, sampler="ddpm", x_T=x_T, generator=_gen(5))
    assert _worst(got, x) < TOL


@pytest.mark.parametrize("target", ["eps", "v"])
def test_diffusers_strided_ddpm_is_our_ddim_with_eta_1(target):
    # DDPMScheduler.set_timesteps(50) takes the posterior over each jump of 20 steps: DDIM eq. 16 with
    # eta = 1, as long as x0_hat is not clipped (DDIM keeps the unclipped eps_hat). The ddpm sampler
    # here takes every step, so fewer stochastic steps are sampler="ddim", eta=1.
    sched, ours = _pair("ddpm", "linear", target, "fixed_small", clip=False)
    sched.set_timesteps(50)
    net, x_T = _tiny_net(5), torch.randn(16, 2, generator=_gen(6), dtype=torch.float64)
    x, g = x_T.clone(), _gen(7)
    for t in sched.timesteps:
        x = sched.step(net(x, t), int(t), x, generator=g).prev_sample
    got = ours.sample(net, x_T.shape, sampler="ddim", steps=50, eta=1.0, x_T=x_T, generator=_gen(7), clip_x0=False)
    assert _worst(got, x) < TOL


@pytest.mark.parametrize("schedule", ["linear", "cosine"])
@pytest.mark.parametrize("target", ["eps", "x0", "v"])
def test_a_learned_variance_step_is_diffusers_learned_range(schedule, target):
    """The net's output [prediction, v] with twice the channels: DDPMScheduler(variance_type="learned_range")."""
    sched, ours = _pair("ddpm", schedule, target, "learned_range")
    for t in (999, 700, 300, 20, 1, 0):
        pred, x_t = torch.randn(2, 3, 4, 4, dtype=torch.float64), 1.5 * torch.randn(2, 3, 4, 4, dtype=torch.float64)
        v = torch.empty(2, 3, 4, 4, dtype=torch.float64).uniform_(-1.2, 1.2)
        out = torch.cat([pred, v], 1)
        expected = sched.step(out, t, x_t, generator=_gen(t)).prev_sample
        assert _worst(ours.ddpm_step(out, x_t, t, generator=_gen(t)), expected) < TOL, t


def test_a_whole_ddpm_loop_with_a_learned_variance_is_diffusers():
    sched, ours = _pair("ddpm", "linear", "eps", "learned_range")
    base = _tiny_net(8)

    def net(x, t):  # (B, 2) -> (B, 4): the prediction, then v in (-1, 1)
        out = base(x, t)
        return torch.cat([out, torch.tanh(out + 0.3)], 1)

    x_T = torch.randn(16, 2, generator=_gen(9), dtype=torch.float64)
    x, g = x_T.clone(), _gen(10)
    for t in sched.timesteps:
        x = sched.step(net(x, t), int(t), x, generator=g).prev_sample
    got = ours.sample(net, x_T.shape, sampler="ddpm", x_T=x_T, generator=_gen(10))
    assert _worst(got, x) < TOL
