"""The routed vision model's config and named sizes (the model: ``axon.models.routed_vision``): a
Switch router that sends each image to one of E whole image models.

Torch-free. The experts are spec strings as ``routed``'s (``axon.model_configs.routed``):
"family[:preset] [key=value ...]", e.g. "vit:digits", "vision_mamba:digits n_layer=2". Either
every expert is an image classifier (``vit``, ``vision_mamba``, ``resnet``, ``vit_hybrid``: the
run's task is ``image_classify``) or every expert is a detector (``detr``, on any of its
backbones: the task is ``detect``, and the experts must agree on ``num_queries`` and
``dec_layers``, since their predictions are stacked into one batch). The experts share this
config's ``image_size``, ``in_channels`` and ``num_labels`` (the task fills it); setting one in an
expert is refused.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from axon.errors import check
from axon.model_configs.fields import check_fields
from axon.model_configs.routed import family_config

#: The families an expert may be, by what they predict.
CLASSIFIERS = ("vit", "vision_mamba", "resnet", "vit_hybrid")
DETECTORS = ("detr",)


@dataclass
class RoutedVisionConfig:
    family: Literal["routed_vision"] = "routed_vision"
    preset: str | None = None  # the named size this config started from, for the record
    image_size: int = 8  # every expert's input: height = width in pixels
    in_channels: int = 1
    num_labels: int | None = None  # classes (detectors: object classes); null: from the task's data
    experts: list[str] = field(default_factory=lambda: ["vit:digits", "vision_mamba:digits", "resnet:digits"])
    expert_runs: list[str | None] | None = None  # a run directory per expert (null: from scratch), loaded at the start
    # The router reads the image average-pooled to route_grid x route_grid (null: the whole image), through an
    # MLP of width router_embd, to E logits; top-1 (axon.models.routed_vision).
    route_grid: int | None = 4
    router_embd: int = 32
    # switch: the expert's class logits times its router probability (Switch eq. 2); straight_through: times
    # p / stopgrad(p), the expert's own logits with Switch's gradient to the router. Boxes are never scaled.
    gate: Literal["switch", "straight_through"] = "switch"
    balance_loss: float = 0.01  # Switch load-balancing loss over the images of a batch
    z_loss: float = 0.001  # ST-MoE router z-loss
    init_std: float = 0.02  # the router's weights

    def __post_init__(self):
        check_fields(self, "model.")  # types, and no NaN or infinity (axon.model_configs.fields)
        check(self.image_size > 0, "model.image_size", "must be positive")
        check(self.in_channels > 0, "model.in_channels", "must be positive")
        check(self.num_labels is None or self.num_labels > 0, "model.num_labels", "must be positive, or null")
        check(len(self.experts) >= 2, "model.experts",
              f"lists {len(self.experts)} expert(s); a router needs at least two (e.g. [vit:digits, resnet:digits])")
        check(self.expert_runs is None or len(self.expert_runs) == len(self.experts), "model.expert_runs",
              f"has {len(self.expert_runs or [])} entries for {len(self.experts)} experts; give one per expert (null: from scratch)")
        check(self.route_grid is None or 1 <= self.route_grid <= self.image_size, "model.route_grid",
              f"must be in [1, image_size={self.image_size}], or null for the whole image (got {self.route_grid})")
        check(self.router_embd > 0, "model.router_embd", "must be positive")
        check(self.balance_loss >= 0, "model.balance_loss", "must be >= 0")
        check(self.z_loss >= 0, "model.z_loss", "must be >= 0")
        check(self.init_std > 0, "model.init_std", "must be positive")
        configs = self.expert_configs()  # each expert's own checks, named model.experts[i]
        kinds = {c.family in DETECTORS for c in configs}
        check(len(kinds) == 1, "model.experts",
              f"mixes classifiers and detectors ({', '.join(c.family for c in configs)}); route among "
              f"classifiers ({', '.join(CLASSIFIERS)}) or among detectors ({', '.join(DETECTORS)})")
        if self.detects:
            shapes = {(c.num_queries, c.dec_layers) for c in configs}
            check(len(shapes) == 1, "model.experts",
                  "the detectors must agree on num_queries and dec_layers (their predictions are stacked), got "
                  + ", ".join(f"num_queries={c.num_queries} dec_layers={c.dec_layers}" for c in configs))

    def expert_configs(self) -> list:
        """Each expert's family config, with this config's image_size, in_channels and num_labels."""
        shared = {"image_size": self.image_size, "in_channels": self.in_channels, "num_labels": self.num_labels}
        return [family_config(spec, f"model.experts[{i}]", CLASSIFIERS + DETECTORS, shared,
                              kind="an image classifier or detector family")
                for i, spec in enumerate(self.experts)]

    @property
    def n_experts(self) -> int:
        return len(self.experts)

    @property
    def detects(self) -> bool:
        """True when the experts are detectors (the run's task is detect), False for classifiers."""
        from axon.model_configs.routed import parse_expert

        return parse_expert(self.experts[0], "model.experts[0]")[0] in DETECTORS

    @property
    def tasks(self) -> tuple[str, ...]:
        """The tasks this model serves, the first its default (``axon.tasks.task_name``)."""
        return ("detect",) if self.detects else ("image_classify",)

    @property
    def num_queries(self) -> int | None:
        """The detectors' shared N (the detect task checks it against the data); None for classifiers."""
        return self.expert_configs()[0].num_queries if self.detects else None

    @property
    def block_size(self) -> int:
        """One image is one "token" of the trainer's count (``flops_per_token``: per image)."""
        return 1


# Named sizes; tests/models/test_routed_vision.py checks the counts (10 labels / 3 labels).
PRESETS: dict[str, dict] = {
    "tiny": dict(
        params="see tests", source="for tests: a ViT and a Vision Mamba of the tiny presets, 8x8 grey images",
        config=dict(image_size=8, in_channels=1, experts=["vit:tiny", "vision_mamba:tiny"], route_grid=4,
                    router_embd=16),
    ),
}
