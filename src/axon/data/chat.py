"""Prompt/response pairs and chats for supervised fine-tuning: files, the chat template, the loss
mask and batches. The data of the ``sft`` task (``axon.tasks.sft``).

Files (``data.train_file``, ``data.val_file``): JSONL, one example per line, in either form (a
file may mix them)::

    {"prompt": "abc", "response": "cba"}
    {"messages": [{"role": "system", "content": "..."}, {"role": "user", "content": "..."},
                  {"role": "assistant", "content": "..."}, ...]}

A pair is the chat ``[user: prompt, assistant: response]``. Roles are ``system``, ``user`` and
``assistant``, in any order; a chat needs an assistant message, and its last message is one
(a message after the last answer would teach nothing). Every content is a non-empty string, and
an assistant's may not hold the end marker. Other keys are ignored. A malformed line is a
DataError naming the file and line (and the field: ``response``, ``messages[2].content``).

The chat template: each message is ``Role: content`` and messages are joined by a newline; an
assistant's content ends with the end marker ``END = "$"``. The loss covers exactly the
assistant contents and their markers (``^`` below); system and user messages and every
``Role: `` header are context only::

    System: Reverse the letters.
    User: abc
    Assistant: cba$             the model reads "...Assistant: " and must continue "cba$"
               ^^^^
    User: hello
    Assistant: olleh$           (no newline after the last message)
               ^^^^^^

The template is plain text of the 65 characters of tiny Shakespeare, so a character-level model
pretrained on the bundled corpus encodes it unchanged. ``$`` occurs once in that corpus (the
rarest of its characters): a pretrained model has no habit of writing it, and sampling stops at
it (``axon sample`` on an sft run, the task's samples).

Encoding: the pieces (``Role: `` headers, contents, markers) are encoded one at a time and
concatenated, so the mask ends exactly where a content ends for any tokenizer (no BPE merge
straddles "cba" and "$"); a prompt for sampling is encoded the same way (``prompt_ids``). A
character the tokenizer cannot encode is a DataError naming the file, line and field.

Lengths: an example of n tokens trains n - 1 positions (inputs ids[:-1], targets ids[1:]), so n - 1
may not exceed ``block_size``; a longer one is a DataError naming its line, or with ``truncate``
its tail is cut (the last response loses its end and any later turns go; an example whose cut
leaves no response token to learn is still an error).

Batches: ``(x (B, T), y (B, T))`` int64, right-padded to the longest example of the batch:
``x`` = ids[:-1] (padding: id 0, which never reaches a target), ``y`` = ids[1:] where the next
token is trained on and ``IGNORE = -100`` elsewhere (prompt, headers, padding), the value the
cross-entropy skips. A right-padded causal model computes each real position as unpadded.
Training batches draw examples uniformly with replacement from a generator seeded with (seed,
step, micro_step) (exact resume); validation batches are the examples in file order. Packing
several examples into one row is not done: padding alone.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from axon.errors import DataError, reading

END = "$"  # the end-of-response marker the model learns to write after each answer
ROLES = {"system": "System", "user": "User", "assistant": "Assistant"}  # role -> its header in the template
IGNORE = -100  # a target the loss skips (torch's cross_entropy default; axon.objectives.IGNORE_INDEX)
PAD_INPUT = 0  # input id after the end of an example (its logits are never scored)
FORMS = '{"prompt": ..., "response": ...} or {"messages": [{"role": ..., "content": ...}, ...]}'


@dataclass(frozen=True)
class Conversation:
    messages: tuple[tuple[str, str], ...]  # (role, content) in order
    fields: tuple[str, ...]  # the JSON field of each content, for messages: "response", "messages[2].content"
    line: int  # 1-based line of its file


@dataclass(frozen=True)
class Piece:
    text: str
    trained: bool  # its tokens are targets of the loss
    field: str  # where the text comes from: a content's JSON field, or "the chat template"


TEMPLATE = "the chat template"


def pieces(messages: Sequence[tuple[str, str]], fields: Sequence[str] | None = None,
           generation: bool = False) -> list[Piece]:
    """The template's pieces of ``messages`` (module docstring); ``generation`` adds the header
    the model answers after (``\\nAssistant: ``)."""
    fields = fields or [f"messages[{i}].content" for i in range(len(messages))]
    out = []
    for i, ((role, content), field) in enumerate(zip(messages, fields)):
        out.append(Piece(("\n" if i else "") + ROLES[role] + ": ", False, TEMPLATE))
        out.append(Piece(content, role == "assistant", field))
        if role == "assistant":
            out.append(Piece(END, True, TEMPLATE))
    if generation:
        out.append(Piece(("\n" if messages else "") + ROLES["assistant"] + ": ", False, TEMPLATE))
    return out


def render(messages: Sequence[tuple[str, str]], generation: bool = False) -> str:
    """The text of ``messages`` in the chat template."""
    return "".join(p.text for p in pieces(messages, generation=generation))


def encode_pieces(tokenizer, parts: Sequence[Piece], where: str) -> tuple[np.ndarray, np.ndarray]:
    """(ids (n,) int64, trained (n,) bool): each piece encoded on its own, concatenated."""
    ids, trained = [], []
    for p in parts:
        try:
            piece = np.asarray(tokenizer.encode(p.text), dtype=np.int64)
        except DataError as e:  # a character outside a char tokenizer's vocabulary
            raise DataError(f"{where}: {p.field}: {e}") from None
        ids.append(piece)
        trained.append(np.full(len(piece), p.trained))
    return np.concatenate(ids), np.concatenate(trained)


def prompt_ids(tokenizer, text: str) -> tuple[str, list[int]]:
    """A user's ``text`` in the chat template, ready for the answer: (its text, its ids). What
    ``axon sample`` feeds an sft run."""
    parts = pieces([("user", text)], generation=True)
    return "".join(p.text for p in parts), encode_pieces(tokenizer, parts, "the prompt")[0].tolist()


# ----------------------------------------------------------------------------------------------
# Reading


def read_conversations(path: str | Path) -> list[Conversation]:
    """The examples of a JSONL file in either form (module docstring); DataError on a bad line."""
    path = Path(path)
    with reading(path, "data file"):
        raw = path.read_text(encoding="utf-8")
    lines = raw.split("\n")
    if lines and lines[-1] == "":
        lines.pop()  # the newline that ends the last line
    out = [_conversation(line.removesuffix("\r"), f"{path}:{n}", n) for n, line in enumerate(lines, 1)]
    if not out:
        raise DataError(f"{path}: no examples; expected one JSON object per line, {FORMS}")
    return out


def _conversation(line: str, where: str, n: int) -> Conversation:
    if not line.strip():
        raise DataError(f"{where}: empty line; every line must hold one example")
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as e:
        raise DataError(f"{where}: not valid JSON ({e.msg})") from None
    if not isinstance(obj, dict) or not ("messages" in obj or "prompt" in obj or "response" in obj):
        raise DataError(f"{where}: expected an object {FORMS}")
    if "messages" in obj:
        if "prompt" in obj or "response" in obj:
            raise DataError(f"{where}: give either 'messages' or 'prompt' and 'response', not both")
        messages = obj["messages"]
        if not isinstance(messages, list) or not messages:
            raise DataError(f"{where}: 'messages' must be a non-empty list of {{\"role\": ..., \"content\": ...}}")
        pairs, fields = [], []
        for i, m in enumerate(messages):
            if not isinstance(m, dict) or "role" not in m or "content" not in m:
                raise DataError(f"{where}: messages[{i}] must be an object with keys 'role' and 'content'")
            if not isinstance(m["role"], str) or m["role"] not in ROLES:
                raise DataError(f"{where}: messages[{i}].role must be one of {', '.join(ROLES)}, got {m['role']!r}")
            pairs.append((m["role"], m["content"]))
            fields.append(f"messages[{i}].content")
        if pairs[-1][0] != "assistant":
            raise DataError(f"{where}: the last message is the {pairs[-1][0]}'s; a chat ends with an assistant "
                            "message (the loss is on the assistant's answers)")
    else:
        for key in ("prompt", "response"):
            if key not in obj:
                raise DataError(f"{where}: no {key!r}; expected an object {FORMS}")
        pairs, fields = [("user", obj["prompt"]), ("assistant", obj["response"])], ["prompt", "response"]
    for (role, content), field in zip(pairs, fields):
        if not isinstance(content, str):
            raise DataError(f"{where}: {field} must be a string, got {type(content).__name__}")
        if not content.strip():
            raise DataError(f"{where}: {field} is empty")
        if role == "assistant" and END in content:
            raise DataError(f"{where}: {field} holds the end marker {END!r}, which ends an answer in the chat "
                            "template (axon.data.chat); remove it from the answer")
    return Conversation(tuple(pairs), tuple(fields), n)


# ----------------------------------------------------------------------------------------------
# Encoding and batches


class ChatExamples:
    """Encoded examples of one split as (x, y) batches (module docstring)."""

    def __init__(self, seqs: list[np.ndarray], trained: list[np.ndarray], block_size: int, lines: list[int]):
        if not seqs:
            raise DataError("no examples")
        self.seqs, self.trained, self.block_size, self.lines = seqs, trained, block_size, lines
        self.num_targets = sum(int(t[1:].sum()) for t in trained)  # response tokens the loss covers

    def __len__(self) -> int:
        return len(self.seqs)

    def collate(self, rows: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
        """Examples ``rows`` -> (x (B, T), y (B, T)) int64, T = the longest example's length - 1."""
        T = max(len(self.seqs[i]) for i in rows) - 1
        x = np.full((len(rows), T), PAD_INPUT, dtype=np.int64)
        y = np.full((len(rows), T), IGNORE, dtype=np.int64)
        for b, i in enumerate(rows):
            ids, trained = self.seqs[i], self.trained[i]
            n = len(ids) - 1
            x[b, :n] = ids[:-1]
            y[b, :n] = np.where(trained[1:], ids[1:], IGNORE)  # y[t] predicts token t + 1
        return torch.from_numpy(x), torch.from_numpy(y)

    def _check_block(self, block_size: int) -> None:
        if block_size < self.block_size:
            raise DataError(f"the examples were checked for block_size {self.block_size}, asked for {block_size}")

    def get_batch(self, step: int, batch_size: int, block_size: int, seed: int, micro_step: int = 0):
        """``batch_size`` examples drawn uniformly with replacement; a pure function of the arguments."""
        self._check_block(block_size)
        rng = np.random.default_rng(np.random.SeedSequence([seed, step, micro_step]))
        return self.collate(rng.integers(0, len(self.seqs), size=batch_size).tolist())

    def iter_eval_batches(self, batch_size: int, block_size: int,
                          max_batches: int | None = None) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Every example once, in file order, ``batch_size`` at a time (at most ``max_batches``)."""
        self._check_block(block_size)
        starts = range(0, len(self.seqs), batch_size)
        if max_batches is not None:
            starts = starts[:max_batches]
        return (self.collate(range(s, min(s + batch_size, len(self.seqs)))) for s in starts)


def encode_conversations(convs: Sequence[Conversation], tokenizer, block_size: int, truncate: bool,
                         source: str) -> tuple[ChatExamples, int]:
    """The examples of ``convs`` (read from ``source``) encoded for ``block_size``, and how many
    were cut (``truncate``; module docstring)."""
    seqs, trained, cut = [], [], 0
    for c in convs:
        where = f"{source}:{c.line}"
        ids, mask = encode_pieces(tokenizer, pieces(c.messages, c.fields), where)
        if len(ids) - 1 > block_size:
            if not truncate:
                raise DataError(f"{where}: the example is {len(ids)} tokens in the chat template, so the model would "
                                f"read {len(ids) - 1}, more than model.block_size={block_size}; shorten it, raise "
                                "model.block_size, or set data.truncate=true to cut the end of its answer")
            ids, mask, cut = ids[: block_size + 1], mask[: block_size + 1], cut + 1
            if not mask[1:].any():
                raise DataError(f"{where}: the prompt alone is more than model.block_size={block_size} tokens, "
                                "so data.truncate would leave nothing of the answer; shorten the prompt")
        seqs.append(ids)
        trained.append(mask)
    return ChatExamples(seqs, trained, block_size, [c.line for c in convs]), cut
