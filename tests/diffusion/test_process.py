"""The Gaussian diffusion of axon.diffusion.process against its closed forms.

Most statistical tests use data with a known answer: x_0 ~ N(mu, s^2 I) in 2-D, for which q(x_t) is
N(sqrt(abar) mu, (abar s^2 + 1 - abar) I) and the best eps-prediction E[eps | x_t] is affine in x_t,
so the denoiser is exact and the process alone is under test. Bounds on sample statistics are
Z_BOUND standard errors (two-sided P ~ 6e-7 per comparison under the null), every seed fixed.
"""

from __future__ import annotations

import math
import re

import pytest
import torch

from axon.diffusion import Diffusion, cfg, guided, importance_probs, make_betas
from axon.diffusion.process import discretized_gaussian_log_likelihood
from axon.errors import ConfigError

Z_BOUND = 5.0
MU = torch.tensor([0.3, -0.2], dtype=torch.float64)


def gaussian_eps(d: Diffusion, mu: torch.Tensor, s: float):
    """E[eps | x_t] for x_0 ~ N(mu, s^2 I): sqrt(1 - abar) (x_t - sqrt(abar) mu) / (abar s^2 + 1 - abar)."""
    def denoise(x, t):
        ab = d.alphas_cumprod.to(x)[t].unsqueeze(-1)
        return (1 - ab).sqrt() * (x - ab.sqrt() * mu.to(x)) / (ab * s * s + 1 - ab)
    return denoise


def gaussian_x0_var(d: Diffusion, s: float) -> torch.Tensor:
    """Var(x_0 | x_t) for x_0 ~ N(mu, s^2), per dimension, at every t: (T,)."""
    ab = d.alphas_cumprod
    return s * s * (1 - ab) / (ab * s * s + 1 - ab)


@pytest.fixture(scope="module")
def linear():
    return Diffusion(make_betas("linear", 1000))


# ----------------------------------------------------------------------------------------------
# Schedules


def test_schedules_match_their_papers():
    lin = make_betas("linear", 1000)
    assert lin.dtype == torch.float64 and lin.shape == (1000,)
    assert lin[0].item() == 1e-4 and abs(lin[-1].item() - 0.02) < 1e-15
    # At T = 100 both ends scale by 10, so x_T is still noise (fixed ends would leave abar_T = 0.36).
    assert torch.prod(1 - make_betas("linear", 100)).item() < 1e-4

    cos = make_betas("cosine", 1000)
    f = [math.cos((t / 1000 + 0.008) / 1.008 * math.pi / 2) ** 2 for t in range(1001)]
    abar = torch.cumprod(1 - cos, 0)
    free = cos < 0.999  # before the clip, abar_t is f(t) / f(0) (Nichol & Dhariwal eq. 17)
    assert torch.allclose(abar[free], torch.tensor(f[1:], dtype=torch.float64)[free] / f[0], rtol=1e-10)
    assert cos.max().item() == 0.999 and not free.all()


@pytest.mark.parametrize("call, message", [
    (lambda: make_betas("quadratic", 1000), "schedule must be one of linear, cosine, got 'quadratic'"),
    (lambda: make_betas("linear", 20), "timesteps must be >= 21 for the linear schedule"),
    (lambda: make_betas("cosine", 1), "timesteps must be an integer >= 2, got 1"),
    (lambda: Diffusion(make_betas("linear", 10 ** 3), target="noise"), "target must be one of eps, x0, v, got 'noise'"),
    (lambda: Diffusion(make_betas("linear", 10 ** 3), variance="learned"), "variance must be one of fixed_small"),
    (lambda: Diffusion(torch.tensor([0.1, 1.0])), "betas must be a 1-D tensor of at least 2 values in (0, 1)"),
])
def test_refusals_are_one_line(call, message):
    with pytest.raises(ConfigError) as e:
        call()
    assert message in str(e.value) and "\n" not in str(e.value)


# ----------------------------------------------------------------------------------------------
# The forward process and its posterior


@pytest.mark.parametrize("t", [0, 50, 300, 999])
def test_forward_marginals_are_the_closed_form(linear, t):
    n, x0 = 20000, torch.tensor([[0.7, -1.2]], dtype=torch.float64)
    g = torch.Generator().manual_seed(t)
    x_t = linear.q_sample(x0.expand(n, 2), torch.full((n,), t), torch.randn(n, 2, generator=g, dtype=torch.float64))
    mean, var = linear.alphas_cumprod[t].sqrt() * x0[0], 1 - linear.alphas_cumprod[t]
    se_mean, se_var = math.sqrt(var / n), var * math.sqrt(2 / (n - 1))
    assert (x_t.mean(0) - mean).abs().max() < Z_BOUND * se_mean
    assert (x_t.var(0) - var).abs().max() < Z_BOUND * se_var


def test_q_sample_broadcasts_per_example_steps_over_images(linear):
    x0, noise, t = torch.randn(3, 1, 4, 4), torch.randn(3, 1, 4, 4), torch.tensor([0, 500, 999])
    x_t = linear.q_sample(x0, t, noise)
    assert x_t.dtype == torch.float32 and x_t.shape == x0.shape
    for i in range(3):
        ab = linear.alphas_cumprod[t[i]].item()
        expected = math.sqrt(ab) * x0[i].double() + math.sqrt(1 - ab) * noise[i].double()
        assert torch.allclose(x_t[i].double(), expected, atol=1e-6)
    assert torch.equal(linear.q_sample(x0, 500, noise)[1], x_t[1])  # an int step: every row at it


def test_posterior_is_equations_6_and_7_by_hand():
    betas = make_betas("cosine", 200)
    d = Diffusion(betas)
    x0, x_t = torch.tensor([[0.5, -0.25]], dtype=torch.float64), torch.tensor([[0.1, 0.9]], dtype=torch.float64)
    abar = 1.0
    abars = []
    for b in betas.tolist():
        abar *= 1 - b
        abars.append(abar)
    for t in (1, 7, 100, 199):
        b, ab, ab_prev = betas[t].item(), abars[t], abars[t - 1]
        mean, var, logvar = d.q_posterior(x0, x_t, torch.tensor([t]))
        expected = math.sqrt(ab_prev) * b / (1 - ab) * x0 + math.sqrt(1 - b) * (1 - ab_prev) / (1 - ab) * x_t
        assert torch.allclose(mean, expected, rtol=1e-12)
        assert math.isclose(var.item(), (1 - ab_prev) / (1 - ab) * b, rel_tol=1e-12)
        assert math.isclose(logvar.item(), math.log((1 - ab_prev) / (1 - ab) * b), rel_tol=1e-12)
    _, var0, logvar0 = d.q_posterior(x0, x_t, torch.tensor([0]))
    assert var0.item() == 0 and logvar0.item() == d.posterior_log_variance_clipped[1].item()  # clipped at t = 0


@pytest.mark.parametrize("t", [1, 10, 500])
def test_posterior_is_bayes_rule_on_a_grid(linear, t):
    # q(x_{t-1} | x_t, x_0) ~ q(x_t | x_{t-1}) q(x_{t-1} | x_0), by quadrature over x_{t-1} in 1-D.
    x0, x_t = 0.6, 0.35
    ab_prev, beta = linear.alphas_cumprod[t - 1].item(), linear.betas[t].item()
    _, var, _ = linear.q_posterior(torch.tensor([[x0]]), torch.tensor([[x_t]]), torch.tensor([t]))
    sd = math.sqrt(var.item())
    f64 = dict(dtype=torch.float64)
    mean, _, _ = linear.q_posterior(torch.tensor([[x0]], **f64), torch.tensor([[x_t]], **f64), torch.tensor([t]))
    grid = torch.linspace(mean.item() - 12 * sd, mean.item() + 12 * sd, 200001, dtype=torch.float64)
    log_w = (-(x_t - math.sqrt(1 - beta) * grid) ** 2 / (2 * beta)
             - (grid - math.sqrt(ab_prev) * x0) ** 2 / (2 * (1 - ab_prev)))
    w = torch.exp(log_w - log_w.max())
    w = w / w.sum()
    m = (w * grid).sum().item()
    assert math.isclose(m, mean.item(), rel_tol=1e-9, abs_tol=1e-9 * sd)
    assert math.isclose((w * (grid - m) ** 2).sum().item(), var.item(), rel_tol=1e-6)


@pytest.mark.parametrize("target", ["eps", "x0", "v"])
def test_each_target_converts_back_to_x0_and_eps(target):
    d = Diffusion(make_betas("cosine", 1000), target=target)
    x0, noise = torch.randn(6, 3, dtype=torch.float64), torch.randn(6, 3, dtype=torch.float64)
    t = torch.tensor([0, 1, 200, 600, 900, 998])
    x_t, out = d.q_sample(x0, t, noise), d.target_of(x0, noise, t)
    assert torch.allclose(d.x0_from(x_t, t, out), x0, atol=1e-9)
    assert torch.allclose(d.eps_from(x_t, t, out), noise, atol=1e-9)
    if target == "v":  # Salimans & Ho: v = sqrt(abar) eps - sqrt(1 - abar) x_0
        ab = d.alphas_cumprod[t].unsqueeze(1)
        assert torch.allclose(out, ab.sqrt() * noise - (1 - ab).sqrt() * x0, atol=1e-12)


# ----------------------------------------------------------------------------------------------
# Losses


def _prediction(d: Diffusion, x_t, t, x0_hat):
    """The output of a net of d's target that predicts x0_hat at (x_t, t)."""
    ab = d.alphas_cumprod[t].unsqueeze(1)
    eps_hat = (x_t - ab.sqrt() * x0_hat) / (1 - ab).sqrt()
    return {"eps": eps_hat, "x0": x0_hat, "v": ab.sqrt() * eps_hat - (1 - ab).sqrt() * x0_hat}[d.target]


def test_losses_weigh_the_same_x0_error_the_same_for_every_target():
    betas = make_betas("linear", 1000)
    nets = {target: Diffusion(betas, target=target) for target in ("eps", "x0", "v")}
    x0, noise = torch.randn(5, 4, dtype=torch.float64), torch.randn(5, 4, dtype=torch.float64)
    t = torch.tensor([0, 3, 100, 500, 999])
    x_t = nets["eps"].q_sample(x0, t, noise)
    delta = 0.01 * torch.randn(5, 4, dtype=torch.float64)
    err = (delta ** 2).mean(1)  # ||x_0 - x0_hat||^2 per dimension
    snr = nets["eps"].snr[t]
    for d in nets.values():
        out = _prediction(d, x_t, t, x0 + delta)
        assert torch.allclose(d.loss(out, x0, noise, t, "snr", gamma=5.0), snr.clamp(max=5.0) * err, rtol=1e-9)
        assert torch.allclose(d.loss(out, x0, noise, t, "vlb"), nets["eps"].loss(
            _prediction(nets["eps"], x_t, t, x0 + delta), x0, noise, t, "vlb"), rtol=1e-9)
        assert torch.allclose(d.loss(out, x0, noise, t), ((out - d.target_of(x0, noise, t)) ** 2).mean(1))
        assert d.loss(d.target_of(x0, noise, t), x0, noise, t).abs().max() == 0  # the perfect prediction
    # eps's simple loss is the SNR-weighted x0 error (DDPM eq. 12 without its weight)
    assert torch.allclose(nets["eps"].loss(_prediction(nets["eps"], x_t, t, x0 + delta), x0, noise, t), snr * err,
                          rtol=1e-9)


@pytest.mark.parametrize("target", ["eps", "v"])
def test_vlb_loss_is_the_bound_term_for_fixed_small(target):
    d = Diffusion(make_betas("linear", 1000), target=target)
    x0, noise = torch.randn(4, 3, dtype=torch.float64), torch.randn(4, 3, dtype=torch.float64)
    t = torch.tensor([1, 20, 400, 999])
    x_t = d.q_sample(x0, t, noise)
    out = d.target_of(x0, noise, t) + 0.1 * torch.randn(4, 3, dtype=torch.float64)
    kl = d.vb_terms(out, x0, x_t, t, discrete=False)  # nats per dimension; model and posterior variances agree
    assert torch.allclose(d.loss(out, x0, noise, t, "vlb"), kl, rtol=1e-8)


def test_importance_probs_follow_root_mean_square_losses():
    history, counts = torch.rand(10, 4) + 0.1, torch.full((10,), 4)
    assert torch.equal(importance_probs(history, counts - (torch.arange(10) == 3).long()),
                       torch.full((10,), 0.1, dtype=torch.float64))  # uniform until every t has k values
    p = importance_probs(history, counts, uniform=0.0)
    rms = history.double().pow(2).mean(1).sqrt()
    assert torch.allclose(p, rms / rms.sum()) and math.isclose(p.sum().item(), 1.0)
    assert math.isclose(importance_probs(history, counts, uniform=0.5).min().item(), 0.5 * p.min().item() + 0.05)


# ----------------------------------------------------------------------------------------------
# Sampling


def _mean_cov(x):
    c = x - x.mean(0)
    return x.mean(0), c.T @ c / (x.shape[0] - 1)


def _two_sample_z(a, b):
    """The largest |z| over the means, variances and covariance of two 2-D samples (Gaussian-ish)."""
    (ma, ca), (mb, cb) = _mean_cov(a), _mean_cov(b)
    se_mean = ((ca.diagonal() + cb.diagonal()) / a.shape[0]).sqrt()
    # Var of a sample (co)variance of a Gaussian: (c_ii c_jj + c_ij^2) / n
    se_cov = ((ca.diagonal().outer(ca.diagonal()) + ca ** 2 + cb.diagonal().outer(cb.diagonal()) + cb ** 2)
              / a.shape[0]).sqrt()
    return max(((ma - mb) / se_mean).abs().max().item(), ((ca - cb) / se_cov).abs().max().item())


@pytest.fixture(scope="module")
def gaussian_samples():
    d, s, n = Diffusion(make_betas("linear", 1000), variance="fixed_small"), 0.5, 3000
    denoise = gaussian_eps(d, MU, s)

    def draw(sampler, seed, net=denoise, **kw):
        return d.sample(net, (n, 2), sampler=sampler, generator=torch.Generator().manual_seed(seed), clip_x0=False,
                        dtype=torch.float64, **kw)

    return d, s, denoise, draw


def test_ddim_eta_1_with_every_step_is_ddpm(gaussian_samples):
    d, s, denoise, draw = gaussian_samples
    # In distribution: two samplers, independent seeds, against each other and against N(mu, s^2 I).
    ddpm, ddim = draw("ddpm", 1), draw("ddim", 2, eta=1.0)
    assert _two_sample_z(ddpm, ddim) < Z_BOUND
    truth = MU + s * torch.randn(ddpm.shape, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    assert _two_sample_z(ddpm, truth) < Z_BOUND
    # The test has power: a denoiser whose data mean is off by 0.15 (0.3 s) fails it (expected z ~ 11).
    shifted = draw("ddpm", 1, net=gaussian_eps(d, MU + 0.15, s))
    assert _two_sample_z(shifted, ddim) > Z_BOUND
    # And path by path: eq. 12 with eta = 1 is Algorithm 2's step, drawing the same noise in the same order.
    assert torch.allclose(draw("ddim", 1, eta=1.0), ddpm, atol=1e-10)


def test_ddim_eta_0_is_deterministic_and_reaches_the_data_distribution(gaussian_samples):
    d, s, denoise, draw = gaussian_samples
    a, b = draw("ddim", 4, steps=50), draw("ddim", 5, steps=50)
    assert torch.equal(a, draw("ddim", 4, steps=50))
    x_T = torch.randn(8, 2, dtype=torch.float64)
    assert torch.equal(d.sample(denoise, (8, 2), sampler="ddim", steps=50, x_T=x_T, clip_x0=False),
                       d.sample(denoise, (8, 2), sampler="ddim", steps=50, x_T=x_T, clip_x0=False,
                                generator=torch.Generator().manual_seed(9)))  # eta 0 draws no noise
    assert _two_sample_z(a, b) < Z_BOUND
    assert (a.mean(0) - MU).abs().max() < 0.03 and (a.std(0) - s).abs().max() < 0.03


def test_sample_keeps_a_strip_and_reports_progress(linear):
    seen = []
    x0, strip = linear.sample(lambda x, t: torch.zeros_like(x), (2, 1, 4, 4), sampler="ddim", steps=10, keep=4,
                              generator=torch.Generator().manual_seed(0), progress=lambda i, n: seen.append((i, n)))
    assert seen == [(i, 10) for i in range(1, 11)]
    assert [t for t, _ in strip] == [900, 600, 200, -1]  # 11 states (x at 900, 800, ..., 0, then x_0): 0, 3, 7, 10
    assert torch.equal(strip[0][1], torch.randn(2, 1, 4, 4, generator=torch.Generator().manual_seed(0)))
    assert strip[-1][1] is x0 and x0.shape == (2, 1, 4, 4) and x0.dtype == torch.float32
    assert x0.abs().max() <= 1.0  # clipped x0_hat, last step to abar = 1


def test_timesteps_and_sampler_refusals(linear):
    assert linear.timesteps_for("ddpm") == list(range(999, -1, -1))
    assert linear.timesteps_for("ddim", 50)[:3] == [980, 960, 940] and linear.timesteps_for("ddim", 50)[-1] == 0
    assert linear.timesteps_for("ddim", 3) == [666, 333, 0]
    denoise = gaussian_eps(linear, MU, 0.5)
    for kw, message in [(dict(sampler="ddpm", steps=50), "steps must be 1000 (every step) for the ddpm sampler"),
                        (dict(sampler="ddim", steps=1001), "steps must be at most the process's 1000 timesteps"),
                        (dict(sampler="ddim", steps=10, keep=1), "keep must be 0 or an integer from 2 to 11"),
                        (dict(sampler="ddim", steps=10, eta=1.5), "eta must be in [0, 1]"),
                        (dict(sampler="euler"), "sampler must be one of ddpm, ddim")]:
        with pytest.raises(ConfigError, match=re.escape(message)):
            linear.sample(denoise, (2, 2), **kw)


def test_guidance_scale_1_is_the_conditional_net_and_0_the_unconditional(linear):
    a, b = torch.randn(4, 2), torch.randn(4, 2)
    assert cfg(a, b, 1.0) is a and cfg(a, b, 0) is b
    assert torch.allclose(cfg(a, b, 3.0), b + 3 * (a - b)) and torch.allclose(cfg(a, b, 0.5), (a + b) / 2)
    cond, uncond = gaussian_eps(linear, MU, 0.5), gaussian_eps(linear, -MU, 0.5)
    calls = []

    def counting_uncond(x, t):
        calls.append(t)
        return uncond(x, t)

    def run(net):
        return linear.sample(net, (64, 2), sampler="ddim", steps=20, eta=1.0, clip_x0=False,
                             generator=torch.Generator().manual_seed(0))

    assert torch.equal(run(guided(cond, counting_uncond, 1.0)), run(cond)) and not calls
    assert torch.equal(run(guided(cond, uncond, 0.0)), run(uncond))
    # Scale 3 pushes the samples beyond the conditional mean, away from the unconditional one.
    assert (run(guided(cond, counting_uncond, 3.0)).mean(0) - MU).double() @ MU > 0 and len(calls) == 20


# ----------------------------------------------------------------------------------------------
# The bound in bits per dimension


def expected_bound(d: Diffusion, mu: torch.Tensor, s: float) -> float:
    """E[bits/dim] of DDPM eq. 5 for x_0 ~ N(mu, s^2 I) under the exact eps-prediction and a Gaussian
    decoder, term by term in closed form: x0_hat = E[x_0 | x_t], so E||x_0 - x0_hat||^2 = Var(x_0 | x_t)."""
    ab, err2 = d.alphas_cumprod, gaussian_x0_var(d, s)
    sigma2, post = d.model_variance[1:], d.posterior_variance[1:]
    # t >= 1: E KL(N(mu~, beta~) || N(mu_theta, sigma^2)), mu~ - mu_theta = coef1 (x_0 - x0_hat)
    kl = 0.5 * (-1 + sigma2.log() - post.log() + post / sigma2 + d.posterior_mean_coef1[1:] ** 2 * err2[1:] / sigma2)
    s0 = d.model_variance[0].item()
    decoder = 0.5 * math.log(2 * math.pi * s0) + err2[0].item() / (2 * s0)  # E -log N(x_0; x0_hat, sigma_0^2)
    abT, m2 = ab[-1].item(), (mu ** 2).mean().item() + s * s
    prior = 0.5 * (-1 - math.log(1 - abT) + (1 - abT) + abT * m2)  # E KL(N(sqrt(abT) x_0, 1 - abT) || N(0, 1))
    return (prior + decoder + kl.sum().item()) / math.log(2)


@pytest.fixture(scope="module")
def gaussian_data():
    s, n = 0.5, 2000
    return s, MU + s * torch.randn(n, 2, generator=torch.Generator().manual_seed(11), dtype=torch.float64)


@pytest.mark.parametrize("schedule, variance", [("linear", "fixed_small"), ("linear", "fixed_large"),
                                                ("cosine", "fixed_large")])
def test_bound_of_the_exact_denoiser_is_its_closed_form(gaussian_data, schedule, variance):
    s, x0 = gaussian_data
    d = Diffusion(make_betas(schedule, 1000), variance=variance)
    bpd = d.bits_per_dim(gaussian_eps(d, MU, s), x0, torch.Generator().manual_seed(0), discrete=False, chunk=250)
    assert bpd.dtype == torch.float64 and bpd.shape == (x0.shape[0],)
    se = bpd.std().item() / math.sqrt(len(bpd))
    assert abs(bpd.mean().item() - expected_bound(d, MU, s)) < Z_BOUND * se
    # A bound: above the data's true NLL (entropy 0.5 log2(2 pi e s^2) = 1.047 bits/dim), by the
    # fixed variances' mismatch with the true reverse variance (0.2 bits fixed_large, 0.86 fixed_small).
    entropy = 0.5 * math.log2(2 * math.pi * math.e * s * s)
    assert expected_bound(d, MU, s) > entropy and bpd.mean().item() > entropy
    # A worse denoiser (eps 30% too large) gives a higher bound, on the same points and draws.
    worse = d.bits_per_dim(lambda x, t: 1.3 * gaussian_eps(d, MU, s)(x, t), x0, torch.Generator().manual_seed(0),
                           discrete=False, chunk=250)
    diff = worse - bpd
    assert diff.mean().item() > Z_BOUND * diff.std().item() / math.sqrt(len(diff))


def test_bound_is_the_nll_where_the_fixed_variance_is_the_true_reverse_variance():
    # For x_0 ~ N(mu, I), q(x_{t-1} | x_t) has variance beta_t exactly: fixed_large with the exact
    # eps is the true reverse process, and the bound is the NLL plus KL(q(x_T) || N(0, I)) and the
    # decoder's variance mismatch (beta~_1 for beta_0, as Ho et al.'s code sets it): 0.164 bits/dim here.
    d, n = Diffusion(make_betas("linear", 1000), variance="fixed_large"), 2000
    x0 = MU + torch.randn(n, 2, generator=torch.Generator().manual_seed(12), dtype=torch.float64)
    bpd = d.bits_per_dim(gaussian_eps(d, MU, 1.0), x0, torch.Generator().manual_seed(1), discrete=False, chunk=250)
    nll = (0.5 * math.log(2 * math.pi) + 0.5 * (x0 - MU) ** 2).mean(1) / math.log(2)
    r = d.betas[0].item() / d.model_variance[0].item()
    gap = (0.5 * d.alphas_cumprod[-1].item() * (MU ** 2).mean().item() + 0.5 * (r - 1 - math.log(r))) / math.log(2)
    assert 0.1 < gap < 0.2 and math.isclose(expected_bound(d, MU, 1.0), 0.5 * math.log2(2 * math.pi * math.e) + gap,
                                            rel_tol=1e-9)
    diff = bpd - nll
    assert abs(diff.mean().item() - gap) < Z_BOUND * diff.std().item() / math.sqrt(n)


def test_discretised_decoder_is_a_distribution_over_256_levels():
    levels = torch.linspace(-1, 1, 256, dtype=torch.float64)
    for mean, log_scale in [(0.0, math.log(0.01)), (0.97, math.log(0.3)), (-1.4, math.log(0.05))]:
        logp = discretized_gaussian_log_likelihood(levels, torch.full_like(levels, mean),
                                                   torch.full_like(levels, log_scale))
        assert math.isclose(logp.exp().sum().item(), 1.0, rel_tol=1e-9)


def test_bound_on_images_is_deterministic_and_discrete_by_default(linear):
    x0 = (torch.randint(0, 256, (2, 1, 4, 4), generator=torch.Generator().manual_seed(0)).float() / 127.5 - 1)

    def denoise(x, t):
        return torch.zeros_like(x)

    a = linear.bits_per_dim(denoise, x0, torch.Generator().manual_seed(0), chunk=250)
    assert torch.equal(a, linear.bits_per_dim(denoise, x0, torch.Generator().manual_seed(0), chunk=250))
    assert (a > 0).all() and (a < 20).all()  # discrete: probabilities of 256 levels, so >= 0 bits


def test_bound_asks_the_net_about_x_t_at_the_step_it_was_drawn_at(linear):
    # x_0 = c in D dimensions: the spread of x_t - sqrt(abar_t) c over its D entries estimates 1 - abar_t
    # (relative s.e. sqrt(2 / D)); one step off would read 1 - abar_{t+1}, three times 1 - abar_t at t = 0.
    D, c, seen = 4096, 0.4, []

    def recording(x, t):
        seen.append((x.clone(), t.clone()))
        return torch.zeros_like(x)

    linear.bits_per_dim(recording, torch.full((1, D), c), torch.Generator().manual_seed(0), discrete=False, chunk=250)
    x_t, t = torch.cat([x for x, _ in seen]).double(), torch.cat([t for _, t in seen])
    assert torch.equal(t, torch.arange(1000))
    spread = (x_t - linear.sqrt_alphas_cumprod[t].unsqueeze(1) * c).pow(2).mean(1) / (1 - linear.alphas_cumprod[t])
    assert (spread - 1).abs().max() < Z_BOUND * (2 / D) ** 0.5
