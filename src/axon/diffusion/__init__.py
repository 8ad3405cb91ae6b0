"""Denoising diffusion (issue 19): the Gaussian process of DDPM and its samplers as tensor math.

``process``: schedules, q(x_t | x_0) and its posterior, the targets (eps, x0, v), the losses, DDPM
and DDIM steps and loops, classifier-free guidance and the variational bound in bits/dim. It
takes the denoiser as a callable and imports no model, task or trainer (tests/test_layering.py).
"""

from axon.diffusion.process import (
    SAMPLERS,
    SCHEDULES,
    TARGETS,
    VARIANCES,
    WEIGHTINGS,
    Diffusion,
    ImportanceSampler,
    cfg,
    guided,
    importance_probs,
    make_betas,
)

__all__ = ["SAMPLERS", "SCHEDULES", "TARGETS", "VARIANCES", "WEIGHTINGS", "Diffusion", "ImportanceSampler", "cfg", "guided",
           "importance_probs", "make_betas"]
