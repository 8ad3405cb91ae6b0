"""Preference comparisons as reward-model batches: the data of the ``reward`` task (``axon.tasks.reward``),
and the same files as (chosen, rejected) pairs in the chat template for the ``dpo`` task
(``ComparisonPairs``, at the end of this module).

A file is JSONL, one object per line, in either of two forms (both may appear in one file):

* a comparison: ``{"prompt": P, "chosen": A, "rejected": B}`` -- A is better than B;
* a ranking (InstructGPT's form, Ouyang et al. 2022 sec. 3.5): ``{"prompt": P, "responses":
  [R0, R1, ..., R(K-1)], "ranking": [i1, i2, ..., iK]}`` -- ``ranking`` lists indices into
  ``responses`` from best to worst (a permutation of 0..K-1, no ties), so R[i1] > R[i2] > ...;
  it stands for all K(K-1)/2 comparisons (R[ia], R[ib]) with a < b.

Either may name who judged it, ``"labeller": "<id>"`` (a non-empty string), for
``model.labeller_noise``; a comparison without one is taken at face value. Any other key is
refused, so that a misspelt ``"labeler"`` cannot quietly make every comparison trusted. The prompt
may be empty; responses may not, and the two sides of a comparison must differ.

The text scored is ``prompt + response``, joined as written (put any separator at the end of the
prompt), encoded with the run's tokenizer. A text longer than ``block_size`` tokens is refused,
naming its line, unless ``truncate``, which keeps its LAST block_size tokens: the reward is read
at the last token, so the start of the prompt is what goes.

All comparisons of one prompt -- a ranking's K(K-1)/2, and every comparison line with the same
prompt text -- form one group, and a group is one row of a batch: its pairs are always in the same
batch, as InstructGPT trains them (comparisons of one prompt are strongly correlated, and spread
over an epoch they made its reward model overfit), and each response is scored once however many
pairs it is in. A batch of B groups, K the most responses and P the most pairs of a group in it,
T its longest text:

    tokens    (B, K, T) int64  prompt + response ids, right-padded with 0 (causal attention keeps
                               padding out of the last real token's state, so any id would do)
    lengths   (B, K)    int64  real tokens of each text; 0 marks an empty slot (a group with < K)
    pairs     (B, P, 2) int64  (better, worse) response indices within the row's group; -1 pads
    labeller  (B, P)    int64  index into the labeller list of each pair; -1: none (or padding)

Every tensor holds its B rows along dimension 0 (a distributed run slices them). Training
batches draw ``batch_size`` groups uniformly with replacement from a generator seeded with
(seed, step, micro_step), so a batch is a pure function of its arguments (exact resume);
evaluation walks the groups in file order.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from axon.errors import DataError, reading

COMPARISON_KEYS = ("prompt", "chosen", "rejected")
RANKING_KEYS = ("prompt", "responses", "ranking")
LABELLER_KEY = "labeller"


@dataclass
class PromptGroup:
    """Every comparison of one prompt: its distinct responses and (better, worse, labeller, line)
    for each pair, ``better`` and ``worse`` indexing ``responses``."""

    prompt: str
    line: int  # the first line of the file that holds this prompt
    responses: list[str] = field(default_factory=list)
    pairs: list[tuple[int, int, str | None, int]] = field(default_factory=list)
    response_lines: list[int] = field(default_factory=list)  # where each response first appears

    def add_response(self, text: str, line: int) -> int:
        if text not in self.responses:
            self.responses.append(text)
            self.response_lines.append(line)
        return self.responses.index(text)


def _string(obj: dict, key: str, where: str, allow_empty: bool = False) -> str:
    value = obj[key]
    if not isinstance(value, str):
        raise DataError(f"{where}: {key!r} must be a string, got {type(value).__name__}")
    if not allow_empty and not value.strip():
        raise DataError(f"{where}: {key!r} is empty")
    return value


def _ranked_pairs(obj: dict, where: str) -> tuple[list[str], list[tuple[int, int]]]:
    """The responses of a ranking line and its K(K-1)/2 (better, worse) index pairs."""
    responses, ranking = obj["responses"], obj["ranking"]
    if not isinstance(responses, list) or len(responses) < 2:
        raise DataError(f"{where}: 'responses' must be a list of at least two responses")
    for i, r in enumerate(responses):
        if not isinstance(r, str) or not r.strip():
            raise DataError(f"{where}: responses[{i}] must be a non-empty string")
    for i, r in enumerate(responses):
        if r in responses[:i]:
            raise DataError(f"{where}: responses[{i}] repeats responses[{responses.index(r)}]; a ranking orders distinct responses")
    K = len(responses)
    if (not isinstance(ranking, list) or any(isinstance(i, bool) or not isinstance(i, int) for i in ranking)
            or sorted(ranking) != list(range(K))):
        raise DataError(f"{where}: 'ranking' must list the indices 0..{K - 1} of 'responses' once each, best first "
                        f"(got {ranking!r})")
    return responses, [(ranking[a], ranking[b]) for a in range(K) for b in range(a + 1, K)]


def read_preferences(path: str | Path) -> list[PromptGroup]:
    """The prompt groups of a preference file (module docstring), in order of first appearance;
    a bad line is a DataError naming the file and line."""
    path = Path(path)
    with reading(path, "preference file"):
        raw = path.read_text(encoding="utf-8")
    lines = raw.split("\n")
    if lines and lines[-1] == "":
        lines.pop()  # the newline that ends the last line
    groups: dict[str, PromptGroup] = {}
    for n, line in enumerate(lines, start=1):
        where = f"{path}:{n}"
        line = line.removesuffix("\r")
        if not line.strip():
            raise DataError(f"{where}: empty line; every line must hold one comparison or ranking")
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise DataError(f"{where}: not valid JSON ({e.msg})") from None
        if not isinstance(obj, dict):
            raise DataError(f"{where}: expected a JSON object, got {type(obj).__name__}")
        keys = set(obj) - {LABELLER_KEY}
        if keys == set(COMPARISON_KEYS):
            form = "comparison"
        elif keys == set(RANKING_KEYS):
            form = "ranking"
        else:
            raise DataError(f"{where}: expected the keys {', '.join(COMPARISON_KEYS)} (a comparison) or "
                            f"{', '.join(RANKING_KEYS)} (a ranking), optionally {LABELLER_KEY!r}; got {', '.join(sorted(map(str, obj)))}")
        prompt = _string(obj, "prompt", where, allow_empty=True)
        labeller = _string(obj, LABELLER_KEY, where) if LABELLER_KEY in obj else None
        if form == "comparison":
            chosen, rejected = _string(obj, "chosen", where), _string(obj, "rejected", where)
            if chosen == rejected:
                raise DataError(f"{where}: 'chosen' and 'rejected' are the same text; a comparison needs two responses")
            responses, order = [chosen, rejected], [(0, 1)]
        else:
            responses, order = _ranked_pairs(obj, where)
        group = groups.setdefault(prompt, PromptGroup(prompt, n))
        ids = [group.add_response(r, n) for r in responses]
        group.pairs += [(ids[b], ids[w], labeller, n) for b, w in order]
    if not groups:
        raise DataError(f"{path}: no comparisons")
    return list(groups.values())


def labeller_ids(groups: list[PromptGroup]) -> list[str]:
    """The distinct labeller ids of ``groups``, sorted."""
    return sorted({lab for g in groups for _, _, lab, _ in g.pairs if lab is not None})


@dataclass
class EncodedGroup:
    seqs: list[np.ndarray]  # token ids of prompt + response, one per response
    pairs: np.ndarray  # (P, 3) int64: better, worse, labeller index (-1: none)


def encode_groups(groups: list[PromptGroup], tokenizer, labellers: list[str], block_size: int,
                  truncate: bool, source: str) -> tuple[list[EncodedGroup], int]:
    """Each group's texts encoded (``tokenizer.encode(prompt + response)``) and its pairs as
    indices, labellers by position in ``labellers`` (-1 for none or one not listed); and how many
    texts were cut to their last ``block_size`` tokens (``truncate``; otherwise a longer text is
    a DataError naming its line)."""
    index = {lab: i for i, lab in enumerate(labellers)}
    out, cut = [], 0
    for g in groups:
        seqs = []
        for text, line in zip(g.responses, g.response_lines):
            try:
                ids = np.asarray(tokenizer.encode(g.prompt + text), dtype=np.int64)
            except DataError as e:
                raise DataError(f"{source}:{line}: {e}") from None
            if len(ids) > block_size:
                if not truncate:
                    raise DataError(f"{source}:{line}: prompt + response is {len(ids)} tokens, more than "
                                    f"model.block_size={block_size}; shorten it, raise model.block_size, or set "
                                    "data.truncate=true to keep the last tokens")
                ids, cut = ids[-block_size:], cut + 1
            if len(ids) == 0:
                raise DataError(f"{source}:{line}: prompt + response encodes to no tokens")
            seqs.append(ids)
        pairs = np.array([(b, w, index.get(lab, -1) if lab is not None else -1) for b, w, lab, _ in g.pairs], dtype=np.int64)
        out.append(EncodedGroup(seqs, pairs))
    return out, cut


class PreferencePairs:
    """Encoded prompt groups as reward-model batches (module docstring)."""

    def __init__(self, groups: list[EncodedGroup]):
        if not groups:
            raise DataError("no comparisons")
        self.groups = groups

    def __len__(self) -> int:
        return len(self.groups)

    @property
    def num_pairs(self) -> int:
        return sum(len(g.pairs) for g in self.groups)

    def batch(self, rows) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        groups = [self.groups[i] for i in rows]
        B = len(groups)
        K = max(len(g.seqs) for g in groups)
        T = max(len(s) for g in groups for s in g.seqs)
        P = max(len(g.pairs) for g in groups)
        tokens = np.zeros((B, K, T), dtype=np.int64)
        lengths = np.zeros((B, K), dtype=np.int64)
        pairs = np.full((B, P, 2), -1, dtype=np.int64)
        labeller = np.full((B, P), -1, dtype=np.int64)
        for b, g in enumerate(groups):
            for k, s in enumerate(g.seqs):
                tokens[b, k, : len(s)] = s
                lengths[b, k] = len(s)
            pairs[b, : len(g.pairs)] = g.pairs[:, :2]
            labeller[b, : len(g.pairs)] = g.pairs[:, 2]
        return tuple(torch.from_numpy(a) for a in (tokens, lengths, pairs, labeller))

    def get_batch(self, step: int, batch_size: int, block_size: int, seed: int, micro_step: int = 0):
        rng = np.random.default_rng(np.random.SeedSequence([seed, step, micro_step]))
        return self.batch(rng.integers(0, len(self.groups), size=batch_size))

    def iter_eval_batches(self, batch_size: int, block_size: int, max_batches: int | None = None) -> Iterator[tuple]:
        starts = range(0, len(self.groups), batch_size)
        if max_batches is not None:
            starts = starts[:max_batches]
        return (self.batch(range(s, min(s + batch_size, len(self.groups)))) for s in starts)


# ----------------------------------------------------------------------------------------------
# Comparisons in the chat template: the data of the ``dpo`` task (``axon.tasks.dpo``)


class ComparisonPairs:
    """Every (chosen, rejected) pair of a preference file, each side rendered in the SFT chat
    template (``axon.data.chat``): the prompt as the user's turn, the response as the assistant's
    answer with the end marker, the loss on the answer and its marker only.

    A batch of B pairs is ``(x (B, 2, T), y (B, 2, T))`` int64, [:, 0] the chosen side and [:, 1]
    the rejected one, each as the sft task's (x = ids[:-1] padded with 0, y = ids[1:] on the
    answer's tokens and IGNORE elsewhere), T the longest side of the batch less one. A ranking
    gives its K(K-1)/2 pairs. Training batches draw ``batch_size`` pairs uniformly with replacement
    from a generator seeded with (seed, step, micro_step) (exact resume); evaluation walks the
    pairs in file order."""

    def __init__(self, seqs: list[np.ndarray], trained: list[np.ndarray], pairs: np.ndarray, block_size: int):
        if len(pairs) == 0:
            raise DataError("no comparisons")
        self.seqs, self.trained, self.pairs, self.block_size = seqs, trained, pairs, block_size

    def __len__(self) -> int:
        return len(self.pairs)

    def collate(self, rows) -> tuple[torch.Tensor, torch.Tensor]:
        from axon.data.chat import IGNORE, PAD_INPUT

        sides = self.pairs[np.asarray(rows, dtype=np.int64)]  # (B, 2) indices into seqs
        T = max(len(self.seqs[i]) for i in sides.ravel()) - 1
        x = np.full((*sides.shape, T), PAD_INPUT, dtype=np.int64)
        y = np.full((*sides.shape, T), IGNORE, dtype=np.int64)
        for (b, s), i in np.ndenumerate(sides):
            ids, trained = self.seqs[i], self.trained[i]
            x[b, s, : len(ids) - 1] = ids[:-1]
            y[b, s, : len(ids) - 1] = np.where(trained[1:], ids[1:], IGNORE)
        return torch.from_numpy(x), torch.from_numpy(y)

    def _check_block(self, block_size: int) -> None:
        if block_size < self.block_size:
            raise DataError(f"the comparisons were checked for block_size {self.block_size}, asked for {block_size}")

    def get_batch(self, step: int, batch_size: int, block_size: int, seed: int, micro_step: int = 0):
        self._check_block(block_size)
        rng = np.random.default_rng(np.random.SeedSequence([seed, step, micro_step]))
        return self.collate(rng.integers(0, len(self.pairs), size=batch_size))

    def iter_eval_batches(self, batch_size: int, block_size: int, max_batches: int | None = None) -> Iterator[tuple]:
        self._check_block(block_size)
        starts = range(0, len(self.pairs), batch_size)
        if max_batches is not None:
            starts = starts[:max_batches]
        return (self.collate(range(s, min(s + batch_size, len(self.pairs)))) for s in starts)


def encode_comparisons(groups: list[PromptGroup], tokenizer, block_size: int, truncate: bool,
                       source: str) -> tuple[ComparisonPairs, int]:
    """The pairs of ``groups`` (read from ``source``) in the chat template, and how many texts were
    cut. A text of n tokens trains n - 1 positions, so n - 1 may not exceed ``block_size``: a longer
    one is a DataError naming its line, or with ``truncate`` the end of its answer is cut (a prompt
    that leaves no answer token is still an error). An answer holding the end marker is refused."""
    from axon.data.chat import END, encode_pieces, pieces

    seqs, trained, pairs, cut = [], [], [], 0
    for g in groups:
        first = len(seqs)
        for text, line in zip(g.responses, g.response_lines):
            where = f"{source}:{line}"
            if END in text:
                raise DataError(f"{where}: a response holds the end marker {END!r}, which ends an answer in the chat "
                                "template (axon.data.chat); remove it from the response")
            ids, mask = encode_pieces(tokenizer, pieces([("user", g.prompt), ("assistant", text)],
                                                        ["prompt", "response"]), where)
            if len(ids) - 1 > block_size:
                if not mask[1 : block_size + 1].any():
                    raise DataError(f"{where}: the prompt alone fills model.block_size={block_size} tokens in the chat "
                                    "template, leaving no room for the answer; shorten the prompt or raise model.block_size")
                if not truncate:
                    raise DataError(f"{where}: prompt + response is {len(ids)} tokens in the chat template, so the model "
                                    f"would read {len(ids) - 1}, more than model.block_size={block_size}; shorten it, raise "
                                    "model.block_size, or set data.truncate=true to cut the end of the answer")
                ids, mask, cut = ids[: block_size + 1], mask[: block_size + 1], cut + 1
            seqs.append(ids)
            trained.append(mask)
        pairs += [(first + b, first + w) for b, w, _, _ in g.pairs]
    return ComparisonPairs(seqs, trained, np.asarray(pairs, dtype=np.int64).reshape(-1, 2), block_size), cut
