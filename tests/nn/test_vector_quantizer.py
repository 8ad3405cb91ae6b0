"""The vector quantiser (axon.nn.vq): nearest codes, the straight-through gradient, the losses,
EMA updates by hand, dead-code restarts and usage figures; and that usage does not collapse."""

import math

import torch

from axon.nn.vq import VectorQuantizer, code_usage, nearest_codes


def test_picks_the_nearest_code_as_brute_force_does():
    g = torch.Generator().manual_seed(0)
    z, book = torch.randn(200, 5, generator=g), torch.randn(17, 5, generator=g)
    brute = torch.tensor([min(range(17), key=lambda k: float(((zi - book[k]) ** 2).sum())) for zi in z])
    assert torch.equal(nearest_codes(z, book), brute)


def test_straight_through_gradient_reaches_the_encoder_and_losses_are_the_papers():
    torch.manual_seed(0)
    vq = VectorQuantizer(8, 4, beta=0.25, update="gradient")
    z = torch.randn(10, 4, requires_grad=True)
    out, loss, codes = vq(z)
    zq = vq.codebook[codes].detach()
    assert torch.allclose(out, zq)  # the forward is the code vectors
    expected = ((zq - z.detach()) ** 2).mean() * 1.25  # codebook term + 0.25 commitment: equal in value
    assert torch.allclose(loss, expected)
    (out * torch.arange(40.0).reshape(10, 4)).sum().backward()  # d out / d z is the identity
    assert torch.allclose(z.grad, torch.arange(40.0).reshape(10, 4))
    assert vq.codebook.grad is None  # no gradient reached the codebook through out
    vq.zero_grad()
    z.grad = None
    _, loss, _ = vq(z)
    loss.backward()
    assert vq.codebook.grad is not None and vq.codebook.grad.abs().sum() > 0  # the codebook term trains it
    assert torch.allclose(z.grad, 0.25 * 2 * (z.detach() - zq) / z.numel())  # only the commitment term


def test_ema_update_equals_a_hand_computation():
    vq = VectorQuantizer(3, 2, update="ema", decay=0.9, eps=1e-5)
    book = torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    vq.codebook.copy_(book)
    vq.embed_sum.copy_(book)
    vq.cluster_size.fill_(1.0)
    z = torch.tensor([[1.0, 0.0], [0.0, 1.0], [9.0, 1.0]])  # codes 0, 0, 1; code 2 unused
    vq.train()
    _, loss, codes = vq(z)
    assert codes.tolist() == [0, 0, 1]
    N = torch.tensor([0.9 + 0.1 * 2, 0.9 + 0.1 * 1, 0.9])
    m = torch.stack([0.9 * book[0] + 0.1 * (z[0] + z[1]), 0.9 * book[1] + 0.1 * z[2], 0.9 * book[2]])
    n = N.sum()
    smoothed = (N + 1e-5) / (n + 3 * 1e-5) * n
    assert torch.allclose(vq.cluster_size, N) and torch.allclose(vq.embed_sum, m)
    assert torch.allclose(vq.codebook, m / smoothed[:, None])
    assert torch.allclose(loss, 0.25 * ((z - vq.codebook[codes]) ** 2).mean())  # commitment only
    vq.eval()
    before = vq.codebook.clone()
    vq(z)
    assert torch.equal(vq.codebook, before)  # eval mode updates nothing


def test_dead_codes_restart_from_the_batch_deterministically():
    def run():
        torch.manual_seed(0)
        vq = VectorQuantizer(8, 2, update="gradient", dead_after=3)
        with torch.no_grad():
            vq.codebook.copy_(torch.tensor([[0.0, 0.0]] + [[100.0 + k, 100.0] for k in range(7)]))  # 7 codes far from the data
        z = torch.randn(32, 2, generator=torch.Generator().manual_seed(1))
        used = []
        for _ in range(4):
            _, _, codes = vq(z)
            used.append(code_usage(codes, 8)["codes_used"])
        return vq, used

    vq, used = run()
    assert used[:3] == [1, 1, 1] and used[3] > 4  # after 3 unused steps the 7 dead codes restart on the data
    assert (vq.codebook[1:].abs() < 10).all()  # now encoder outputs of the batch
    assert torch.equal(run()[0].codebook, vq.codebook)  # the same batch restarts them the same way


def test_usage_figures():
    assert code_usage(torch.tensor([0, 1, 2, 3]), 8) == {"codes_used": 4, "code_perplexity": 4.0}
    u = code_usage(torch.tensor([5, 5, 5, 5]), 8)
    assert u["codes_used"] == 1 and math.isclose(u["code_perplexity"], 1.0)


def test_codebook_usage_does_not_collapse_on_clustered_data():
    """32 clusters far from the codebook's start (centred at 20, codes within 1/32 of the origin):
    every vector is nearest the same code at first. With dead-code restarts, both update rules end
    with more than three quarters of the 32 codes used; without restarts the same start collapses
    to one code (the test's control: the restarts are what keeps the codebook alive)."""
    g = torch.Generator().manual_seed(0)
    centres = torch.randn(32, 6, generator=g) * 5 + 20

    def train(dead_after, update):
        torch.manual_seed(0)
        vq = VectorQuantizer(32, 6, update=update, decay=0.9, dead_after=dead_after)
        opt = torch.optim.Adam(vq.parameters(), lr=0.1) if update == "gradient" else None
        for step in range(150):
            gs = torch.Generator().manual_seed(step)
            z = centres[torch.randint(0, 32, (256,), generator=gs)] + 0.1 * torch.randn(256, 6, generator=gs)
            loss = vq(z)[1]
            if opt is not None:
                opt.zero_grad()
                loss.backward()
                opt.step()
        vq.eval()
        return code_usage(vq(centres.repeat_interleave(8, 0))[2], 32)

    for update in ("ema", "gradient"):
        alive, collapsed = train(10, update), train(0, update)
        assert alive["codes_used"] > 24 and alive["code_perplexity"] > 20, (update, alive)
        assert collapsed["codes_used"] == 1, (update, collapsed)
