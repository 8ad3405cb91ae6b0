"""The reward model's config and named sizes (the model: ``axon.models.reward``; the task:
``axon.tasks.reward``).

A reward model is a decoder body with a scalar head, so its config is the decoder's with the
family renamed and the fields of the labeller model added: give it the shape of the language
model (or SFT) run named by ``train.init_from`` and that run's weights load into the body.

Labellers of unequal reliability (``labeller_noise``): each labeller l reverses a comparison with
probability eps_l, learnt with the reward (``axon.objectives.reward``). The eps_l are parameters
of the model -- their number is part of its shape, saved in every checkpoint and fixed on resume --
which is why these fields live in the ``model`` section rather than in a section of their own
(as classify's ``num_labels`` does, the task fills ``labellers`` from the training file).

Torch-free, apart from the model, so that ``axon.config`` builds and validates a run's ``model``
section without importing torch or ``axon.models`` (see ``axon.model_configs``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from axon.errors import check
from axon.model_configs.decoder import DecoderConfig


@dataclass
class RewardConfig(DecoderConfig):
    family: Literal["reward"] = "reward"
    # Learn one flip rate eps_l per labeller with the reward (Christiano et al. 2017's many trainers;
    # axon.objectives.reward). Comparisons without a labeller id are taken at face value (eps = 0).
    labeller_noise: bool = False
    # The labeller ids, in the order of the model's eps parameters; null: the sorted ids of the
    # training file (the task fills it). Set only with labeller_noise.
    labellers: list[str] | None = None
    # eps of every labeller at the start. Near 0.5 a labeller's comparisons weigh little (1 - 2 eps = 0.2
    # of a trusted one at 0.4) until the reward agrees with them, so comparisons without a labeller
    # lead the first steps; below 0.5 says "labellers agree with the truth more often than not", which
    # orients the reward when there are none. (At 0.25 an adversary labelling 60% of the comparisons
    # sent 1 of 13 seeded runs to the mirror optimum, eps and reward reversed; docs/rlhf.md.)
    labeller_eps_init: float = 0.4
    # the lr of the flip rates' logits is labeller_lr_scale x optim.lr (axon.train.optim.lr_scale): each
    # is fitted from all of one labeller's comparisons and must keep up with the reward
    labeller_lr_scale: float = 30.0

    def __post_init__(self):
        super().__post_init__()
        check(0.0 < self.labeller_eps_init < 0.5, "model.labeller_eps_init",
              f"must be in (0, 0.5), got {self.labeller_eps_init}; at 0.5 a label says nothing and nothing learns")
        check(self.labeller_lr_scale > 0, "model.labeller_lr_scale", f"must be > 0, got {self.labeller_lr_scale}")
        if self.labellers is not None:
            check(self.labeller_noise, "model.labellers",
                  "names the labellers of model.labeller_noise; set labeller_noise=true or remove it")
            check(len(self.labellers) > 0, "model.labellers", "is empty; leave it null to take the training file's labellers")
            check(all(self.labellers), "model.labellers", f"holds an empty id: {self.labellers}")
            check(len(set(self.labellers)) == len(self.labellers), "model.labellers",
                  f"names a labeller twice: {self.labellers}")

    @property
    def n_labellers(self) -> int:
        """How many eps parameters the model has (0 without labeller_noise)."""
        return len(self.labellers or ()) if self.labeller_noise else 0


# The decoder's tiny shape, for tests and the recipe's measurements (configs/reward_tiny.yaml).
PRESETS: dict[str, dict] = {
    "tiny": dict(params="111,040 (vocab 65)", source="for tests; the decoder's tiny shape",
                 config=dict(block_size=64, n_layer=2, n_head=4, n_embd=64)),
}
