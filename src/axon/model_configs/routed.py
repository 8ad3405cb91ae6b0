"""The routed model's config and named sizes (the model: ``axon.models.routed``): a sequence-level
Switch router over E whole causal language models of any family.

Torch-free. Each expert is a string a YAML list and a ``--model.experts=[...]`` flag both read:

    "family[:preset] [key=value ...]"     e.g. "decoder:tiny", "mamba:tiny n_layer=3",
                                                "decoder:nanogpt-cpu moe_experts=4 moe_top_k=1"

the named family's config (``axon.model_configs``) started from the preset, with the overrides
(scalars: numbers, true/false, null, text) checked against the family's field types as
``--model.key=value`` is.
The experts share this config's ``vocab_size`` (the task fills it) and ``block_size``: setting
either in an expert is refused, and so is any other family than a causal language model's.
A ConfigError names the expert: ``model.experts[1]: ...``.

``expert_runs`` (one entry per expert, null for "from scratch") names run directories whose
newest checkpoints initialise the experts at the start of a run: e.g. a DPO-tuned decoder or a
rag run's reader (``axon.train.run.init_submodule``, through ``Model.init_sources``). An expert run
must have this run's tokenizer (refused otherwise); a run without this run's extra token ids (a
rag reader's pad, BOS and EOS) fills the first rows of its embedding and output matrices.
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field
from typing import Any, Literal

from axon.errors import ConfigError, check
from axon.model_configs.fields import check_fields, coerce

#: Families an expert may be: causal LMs with forward(idx) -> logits (B, T, V) over block_size positions.
#: (``progressive`` changes shape during training; the image families do not predict tokens.)
EXPERT_FAMILIES = ("decoder", "mamba", "rnn", "conv_attention")


def parse_expert(spec: str, key: str) -> tuple[str, str | None, dict[str, Any]]:
    """"family[:preset] [key=value ...]" -> (family, preset or None, {key: YAML value})."""
    check(isinstance(spec, str) and spec.split() != [], key,
          f"{spec!r} is empty; an expert is 'family[:preset] [key=value ...]', e.g. 'decoder:tiny'")
    head, *pairs = spec.split()
    family, colon, preset = head.partition(":")
    check(not colon or preset != "", key, f"{spec!r} has a colon but no preset after it ('family:preset')")
    overrides: dict[str, Any] = {}
    for pair in pairs:
        name, eq, value = pair.partition("=")
        check(eq == "=" and name != "", key, f"{pair!r} in {spec!r} is not key=value (an expert is 'family[:preset] [key=value ...]')")
        check(name not in overrides, key, f"{spec!r} sets {name} twice")
        overrides[name] = _scalar(value)
    return family, preset or None, overrides


def _scalar(text: str) -> Any:
    """A YAML scalar's null and booleans; anything else stays text, which :func:`coerce` reads as the
    field's type (numbers included, as it reads a flag's)."""
    if text in ("null", "Null", "NULL", "~", ""):
        return None
    if text in ("true", "True", "TRUE", "false", "False", "FALSE"):
        return text.lower() == "true"
    return text


@dataclass
class RoutedConfig:
    family: Literal["routed"] = "routed"
    preset: str | None = None  # the named size this config started from, for the record
    vocab_size: int | None = None  # null: taken from the tokenizer; every expert shares it
    block_size: int = 32  # every expert's context
    experts: list[str] = field(default_factory=lambda: ["decoder:tiny", "mamba:tiny"])  # "family[:preset] [k=v ...]"
    expert_runs: list[str | None] | None = None  # a run directory per expert (null: from scratch), loaded at the start
    # The router: a bag of the first route_tokens tokens, mean of a router_embd-wide embedding, linear to E logits.
    # Position t is routed on tokens 0..min(t, route_tokens - 1): causal (axon.models.routed).
    route_tokens: int = 8
    router_embd: int = 32
    # switch: the expert's logits times its router probability (Switch eq. 2: the router learns from the task
    # loss, at the price of a temperature); straight_through: times p / stopgrad(p) -- the expert's own logits
    # (an expert loaded from a run predicts as it did), with Switch's gradient to the router.
    gate: Literal["switch", "straight_through"] = "switch"
    balance_loss: float = 0.01  # Switch load-balancing loss coefficient (E * sum_i f_i P_i over sequences)
    z_loss: float = 0.001  # ST-MoE router z-loss coefficient
    init_std: float = 0.02  # the router's weights

    def __post_init__(self):
        check_fields(self, "model.")  # types, and no NaN or infinity (axon.model_configs.fields)
        check(self.vocab_size is None or self.vocab_size > 0, "model.vocab_size", "must be positive")
        check(self.block_size > 0, "model.block_size", "must be positive")
        check(len(self.experts) >= 2, "model.experts",
              f"lists {len(self.experts)} expert(s); a router needs at least two (e.g. [decoder:tiny, mamba:tiny])")
        check(self.expert_runs is None or len(self.expert_runs) == len(self.experts), "model.expert_runs",
              f"has {len(self.expert_runs or [])} entries for {len(self.experts)} experts; give one per expert (null: from scratch)")
        check(1 <= self.route_tokens <= self.block_size, "model.route_tokens",
              f"must be in [1, block_size={self.block_size}] (got {self.route_tokens})")
        check(self.router_embd > 0, "model.router_embd", "must be positive")
        check(self.balance_loss >= 0, "model.balance_loss", "must be >= 0")
        check(self.z_loss >= 0, "model.z_loss", "must be >= 0")
        check(self.init_std > 0, "model.init_std", "must be positive")
        self.expert_configs()  # each expert's own checks, named model.experts[i]

    @property
    def n_experts(self) -> int:
        return len(self.experts)

    @property
    def context_limit(self) -> int:
        """Generation recomputes over at most block_size tokens (``axon.generate.cache.context_limit``)."""
        return self.block_size

    def expert_configs(self) -> list:
        """Each expert's family config, with this config's vocab_size and block_size."""
        return [family_config(spec, f"model.experts[{i}]", EXPERT_FAMILIES,
                              {"vocab_size": self.vocab_size, "block_size": self.block_size})
                for i, spec in enumerate(self.experts)]


def family_config(spec: str, key: str, families: tuple[str, ...], shared: dict[str, Any],
                  kind: str = "a causal language model family", what: str = "an expert",
                  why: dict[str, str] | None = None):
    """The config a spec "family[:preset] [key=value ...]" names: the family's preset, then the
    overrides coerced to the fields' types, then ``shared`` (fields the router sets for every
    expert, which the spec may not; ``why`` says why, by field). ``families`` are those allowed,
    ``kind`` says what they are, ``what`` what the spec builds; a ConfigError names ``key``. Also
    DETR's backbone (``axon.model_configs.detr``)."""
    from axon.model_configs import FAMILY_CONFIGS

    family, preset, overrides = parse_expert(spec, key)
    check(family in FAMILY_CONFIGS, key, f"unknown family {family!r} in {spec!r}; {what} is one of: {', '.join(families)}")
    check(family in families, key, f"{family!r} is not {kind}; {what} is one of: {', '.join(families)}")
    entry = FAMILY_CONFIGS[family]
    check(preset is None or preset in entry.presets, key,
          f"unknown {family} preset {preset!r}; choose one of: {', '.join(entry.presets)}")
    cls = entry.config
    names = [f.name for f in dataclasses.fields(cls) if f.init]
    hints = typing.get_type_hints(cls)
    fixed = ("family", "preset", *shared)
    for name, value in overrides.items():
        check(name in names, key, f"{family} has no field {name!r}; valid: {', '.join(n for n in names if n not in fixed)}")
        reason = (why or {}).get(name, f"the experts share model.{name}") if name in shared else "write 'family:preset'"
        check(name not in fixed, key, f"{name} cannot be set in {what}: {reason}")
        overrides[name] = coerce(value, hints[name], f"{key}.{name}")
    data = {**(entry.presets[preset]["config"] if preset else {}), **overrides, "preset": preset, **shared}
    try:
        return cls(**data)
    except ConfigError as e:
        raise ConfigError(f"{key}: {spec!r}: {e}") from None


# Named sizes. The counts are what axon.models.routed builds at vocabulary 65 (tiny Shakespeare's characters);
# tests/models/test_routed.py checks them.
PRESETS: dict[str, dict] = {
    "tiny": dict(
        params="130,992 (vocab 65)", source="for tests: a 2-layer decoder and a 2-layer Mamba, routed on 4 tokens",
        config=dict(block_size=32, experts=["decoder:tiny", "mamba:tiny"], route_tokens=4, router_embd=16),
    ),
}
