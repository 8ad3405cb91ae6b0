"""Editing the knowledge base changes a reader's answer without retraining (issue 23's second claim).

    python benchmarks/rag_edit.py runs/reader [--relation born_in] [--out edit.json]

For a rag run trained on the generated knowledge base: every held-out person's fact of ``--relation`` is
swapped for another person's answer of that relation (a value the reader has seen, so only the passage can
tell), the edited collection is written beside the run's, and each such question is asked twice through
``axon.tasks.rag.ask`` -- over the original passages and over the edited ones, the reader unchanged. Reports
the exact match against the original answers before, against the new answers after, and the share of the
questions answered right before that follow the edit.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path


def edit_and_ask(run: str, relation: str = "born_in", limit: int | None = None, retriever: str | None = None) -> dict:
    from axon.config import load_config
    from axon.tasks.dpr import collection
    from axon.tasks.rag import ask, exact_match

    cfg = load_config(Path(run) / "config.yaml")
    if cfg.rag.passages is not None:
        raise SystemExit(f"{run}: trained on a user's collection; this benchmark edits the generated knowledge base")
    coll = collection(cfg)
    test = [q for q in coll.split("test") if coll.passages[q.passage_id].relation == relation]
    if not test:
        raise SystemExit(f"no held-out question asks {relation!r}")
    if limit:
        test = test[:limit]
    answers = sorted({q.answer for q in coll.questions if coll.passages[q.passage_id].relation == relation})
    new = {}  # passage id -> (old answer, new answer): the next answer of the relation, in sorted order
    for q in test:
        old = q.answer
        new[q.passage_id] = (old, answers[(answers.index(old) + 1) % len(answers)])
    with tempfile.TemporaryDirectory() as tmp:
        original, edited = Path(tmp) / "original.jsonl", Path(tmp) / "edited.jsonl"
        rows_o, rows_e = [], []
        for p in coll.passages:
            rows_o.append({"id": p.id, "text": p.text})
            text = p.text
            if p.id in new:
                old, nw = new[p.id]
                assert text.rstrip(".").endswith(old), text
                text = text[: text.rstrip(".").rfind(old)] + nw + "."
            rows_e.append({"id": p.id, "text": text})
        original.write_text("".join(json.dumps(r) + "\n" for r in rows_o))
        edited.write_text("".join(json.dumps(r) + "\n" for r in rows_e))
        texts = [q.text for q in test]
        before = ask(run, texts, passages=original, retriever=retriever)
        after = ask(run, texts, passages=edited, retriever=retriever)
    right_before = [exact_match(b["answer"], q.answer) for b, q in zip(before, test)]
    follows = [exact_match(a["answer"], new[q.passage_id][1]) for a, q in zip(after, test)]
    kept_old = [exact_match(a["answer"], q.answer) for a, q in zip(after, test)]
    n_right = sum(right_before)
    return {"run": str(run), "relation": relation, "retriever": retriever or cfg.rag.retriever, "questions": len(test),
            "edited_passages": len(new),
            "em_before": n_right / len(test), "em_after_new_answer": sum(follows) / len(test),
            "em_after_old_answer": sum(kept_old) / len(test),
            "follow_edit_given_right_before": (sum(f for f, r in zip(follows, right_before) if r) / n_right) if n_right else None,
            "example": {"question": test[0].text, "before": before[0]["answer"], "after": after[0]["answer"],
                        "old": test[0].answer, "new": new[test[0].passage_id][1],
                        "read_after": after[0]["passages"][:1]}}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("run", help="a rag run on the generated knowledge base")
    ap.add_argument("--relation", default="born_in", choices=["born_in", "occupation", "birth_year", "instrument"])
    ap.add_argument("--limit", type=int, help="at most this many questions")
    ap.add_argument("--retriever", help="bm25, none or a dpr run (default: the run's own; an oracle run needs one)")
    ap.add_argument("--out", help="also write the figures as JSON")
    args = ap.parse_args(argv)
    r = edit_and_ask(args.run, args.relation, args.limit, args.retriever)
    print(json.dumps(r, indent=1))
    if args.out:
        Path(args.out).write_text(json.dumps(r, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
