"""Who says it? A labelled task built from the bundled corpus: the speaker of each speech.

Tiny Shakespeare is a sequence of speeches, each a line ``NAME:`` followed by the lines spoken,
separated by blank lines. The task (deterministic, no randomness):

* examples: every non-empty speech of the ``n_speakers`` (default 8) speakers with the most
  speeches (ties broken by name); text = the speech's lines (newlines kept), label = the name;
* split: per speaker, in corpus order, every ``val_every``-th speech (default 5th: the 5th, 10th,
  ...) goes to validation, the rest to training, so both splits hold every speaker in the same
  proportions and the validation speeches are spread over the plays;
* ``pretrain.txt``: the corpus with the validation speeches (name line and text) removed, for
  masked-LM pretraining that never sees a validation speech or the name above it.

With the defaults: the speeches of GLOUCESTER, DUKE VINCENTIO, MENENIUS, ROMEO, PETRUCHIO,
CORIOLANUS, KING RICHARD III and ISABELLA, 1,288 in all, 1,033 train / 255 validation; the
majority class (GLOUCESTER) is 16.4% of train and 16.5% of validation (``meta.json`` has the
counts). Gloucester becomes King Richard III (two labels, one man), Menenius and Coriolanus
share a play, as do the Duke and Isabella: naming the play is not enough. The name line is not part of the text;
speeches still mention other characters by name, which is fair evidence.

Files: ``train.jsonl`` / ``val.jsonl`` (``{"text": ..., "label": ...}`` per line, the format the
classify task reads), ``pretrain.txt``, ``meta.json``. Write them with
``python -m axon.data.speakers --out DIR``; configs name them ``bundled:speakers/train.jsonl``
(``bundled:speakers/val.jsonl``, ``bundled:speakers/pretrain.txt``), which are written into the
cache on first use.
"""

from __future__ import annotations

import argparse
import json
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path


VERSION = 1
N_SPEAKERS = 8
VAL_EVERY = 5
FILES = ("train.jsonl", "val.jsonl", "pretrain.txt", "meta.json")
_SPEECH = re.compile(r"([^\n]+):\n(.+)", re.S)  # "NAME:\n" then at least one character of speech


@dataclass(frozen=True)
class Speech:
    block: int  # index of the blank-line-separated block in the corpus
    speaker: str
    text: str


@dataclass
class SpeakerTask:
    train: list[Speech]
    val: list[Speech]
    labels: list[str]  # the speakers, most speeches first
    pretrain_text: str
    meta: dict


def speeches(text: str) -> list[Speech]:
    """Every block ``NAME:\\nspeech`` of the corpus, in order (blocks without a speech are skipped)."""
    out = []
    for i, block in enumerate(text.split("\n\n")):
        m = _SPEECH.fullmatch(block.strip("\n"))
        if m and m.group(2).strip():
            out.append(Speech(i, m.group(1), m.group(2)))
    return out


def build_speaker_task(text: str | None = None, n_speakers: int = N_SPEAKERS, val_every: int = VAL_EVERY) -> SpeakerTask:
    """The task from ``text`` (default: the bundled corpus); see the module docstring."""
    from axon.data.corpus import corpus_path
    from axon.errors import ConfigError

    if n_speakers < 2:
        raise ConfigError(f"n_speakers must be at least 2, got {n_speakers}")
    if val_every < 2:
        raise ConfigError(f"val_every must be at least 2 (every val_every-th speech is held out), got {val_every}")
    if text is None:
        text = corpus_path("shakespeare").read_text(encoding="utf-8")
    all_speeches = speeches(text)
    counts = Counter(s.speaker for s in all_speeches)
    labels = sorted(counts, key=lambda k: (-counts[k], k))[:n_speakers]
    if len(labels) < n_speakers:
        raise ConfigError(f"the text has {len(labels)} speakers, fewer than n_speakers={n_speakers}")
    keep = set(labels)
    train, val, seen = [], [], Counter()
    for s in all_speeches:
        if s.speaker in keep:
            seen[s.speaker] += 1
            (val if seen[s.speaker] % val_every == 0 else train).append(s)
    held_out = {s.block for s in val}
    pretrain = "\n\n".join(b for i, b in enumerate(text.split("\n\n")) if i not in held_out)

    def stats(split: list[Speech]) -> dict:
        c = Counter(s.speaker for s in split)
        return {"examples": len(split), "per_label": {k: c[k] for k in labels},
                "majority_label": labels[0], "majority_rate": c[labels[0]] / len(split)}

    meta = {"version": VERSION, "source": "tiny Shakespeare (bundled corpus)", "n_speakers": n_speakers,
            "val_every": val_every, "labels": labels, "train": stats(train), "val": stats(val),
            "pretrain_chars": len(pretrain), "held_out_speeches": len(held_out)}
    return SpeakerTask(train, val, labels, pretrain, meta)


def write_speaker_task(out_dir: str | Path, n_speakers: int = N_SPEAKERS, val_every: int = VAL_EVERY) -> dict:
    """Write train.jsonl, val.jsonl, pretrain.txt and meta.json into ``out_dir``; returns meta."""
    task = build_speaker_task(n_speakers=n_speakers, val_every=val_every)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for name, split in (("train.jsonl", task.train), ("val.jsonl", task.val)):
        lines = (json.dumps({"text": s.text, "label": s.speaker}, ensure_ascii=False) for s in split)
        (out / name).write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    (out / "pretrain.txt").write_text(task.pretrain_text, encoding="utf-8")
    (out / "meta.json").write_text(json.dumps(task.meta, indent=1) + "\n")
    return task.meta


def bundled_file(name: str, cache_dir: Path) -> Path:
    """The file ``speakers/<file>`` of a ``bundled:`` name, written into ``cache_dir`` on first use."""
    from axon.data.cache import made_on_first_use

    return made_on_first_use(name, FILES, VERSION, cache_dir, write_speaker_task)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m axon.data.speakers",
                                description="Write the speaker-identification task built from tiny Shakespeare.")
    p.add_argument("--out", required=True, help="directory for train.jsonl, val.jsonl, pretrain.txt, meta.json")
    p.add_argument("--n-speakers", type=int, default=N_SPEAKERS)
    p.add_argument("--val-every", type=int, default=VAL_EVERY)
    args = p.parse_args(argv)
    meta = write_speaker_task(args.out, args.n_speakers, args.val_every)
    print(f"wrote {args.out}: {meta['train']['examples']} train / {meta['val']['examples']} val speeches of "
          f"{len(meta['labels'])} speakers; majority ({meta['labels'][0]}) {meta['val']['majority_rate']:.1%} of val")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
