"""Passage collections and questions (axon.data.passages) and the knowledge base's distractor mentions."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from axon.data.knowledge import knowledge_base
from axon.data.passages import RetrievalPairs, load_collection, read_passages, read_questions
from axon.errors import DataError


def test_a_written_knowledge_base_reads_back_as_the_same_collection(tmp_path):
    kb = knowledge_base(12, seed=3, mentions=2)
    p, q = kb.write(tmp_path)
    coll = load_collection(str(p), str(q))
    assert [x.text for x in coll.passages] == [x.text for x in kb.passages]
    assert coll.keys == [str(x.id) for x in kb.passages]
    assert [(x.text, x.answer, x.passage_id, x.split) for x in coll.questions] == \
           [(x.text, x.answer, x.passage_id, x.split) for x in kb.questions]


def test_mentions_name_other_people_never_the_subject_and_zero_changes_nothing():
    plain, mentioned = knowledge_base(30, seed=1), knowledge_base(30, seed=1, mentions=3)
    names = {p.entity for p in plain.passages}
    for p in mentioned.passages:
        assert p.text.startswith(p.entity + ", a friend of ")
        others = [n for n in names if n in p.text and n != p.entity]
        assert len(others) == 3
        assert p.text.count(p.entity) == 1
    # the facts are the same people's facts whatever the mentions (mentions draw after each fact's answers)
    assert [p.relation for p in plain.passages] == [p.relation for p in mentioned.passages]
    assert knowledge_base(30, seed=1).passages == plain.passages  # mentions=0 is the earlier base


def test_user_files_resolve_ids_titles_and_the_held_out_tenth(tmp_path):
    ps = tmp_path / "p.jsonl"
    ps.write_text("".join(json.dumps({"id": f"doc{i}", "title": f"T{i}", "text": f"fact {i}"}) + "\n" for i in range(3)))
    passages, keys = read_passages(ps)
    assert keys == ["doc0", "doc1", "doc2"] and passages[1].text == "T1. fact 1"
    qs = tmp_path / "q.jsonl"
    qs.write_text("".join(json.dumps({"question": f"q{i}", "answer": "a", "passage_id": f"doc{i % 3}"}) + "\n"
                          for i in range(20)))
    questions = read_questions(qs, keys)
    assert [q.split for q in questions].count("test") == 2 and questions[9].split == "test"
    assert questions[4].passage_id == 1


@pytest.mark.parametrize("passages, questions, message", [
    ("", None, "no passages"),
    ('{"text": "a"}\n{"id": 0, "text": "b"}\n', None, "repeats line 1"),
    ('{"id": 1}\n', None, "non-empty string under 'text'"),
    ('[1, 2]\n', None, "expected a JSON object"),
    ('{"id": "a", "text": "x"}\n', '{"question": "q", "answer": "y", "passage_id": "b", "split": "train"}\n',
     "not in the passages file"),
    ('{"id": "a", "text": "x"}\n', '{"question": "q", "answer": "y", "passage_id": "a", "split": "train"}\n',
     "no test questions"),
    ('{"id": "a", "text": "x"}\n', '{"question": "q", "answer": "y", "split": "dev"}\n', "split must be"),
])
def test_bad_files_are_one_line_naming_the_file(tmp_path, passages, questions, message):
    ps = tmp_path / "p.jsonl"
    ps.write_text(passages)
    with pytest.raises(DataError, match=message) as e:
        if questions is None:
            read_passages(ps)
        else:
            qs = tmp_path / "q.jsonl"
            qs.write_text(questions)
            load_collection(str(ps), str(qs))
    assert "\n" not in str(e.value) and "p.jsonl" in str(e.value) or "q.jsonl" in str(e.value)


def test_only_one_of_the_two_files_is_refused():
    with pytest.raises(DataError, match="go together"):
        load_collection("p.jsonl", None)


def _pairs(hard=True):
    passages = [[2, 10 + i, 3] for i in range(10)]
    questions = [[2, 30 + i, 3] for i in range(20)]
    positive = [i % 10 for i in range(20)]
    negatives = [[(i + 1) % 10, (i + 2) % 10, (i + 3) % 10] for i in range(20)]
    return RetrievalPairs(questions, positive, negatives, passages, pad_id=0, hard_negatives=hard)


def test_batches_have_distinct_positives_and_hard_negatives_outside_them_and_are_pure():
    data = _pairs()
    for step in range(20):
        q, qm, p, pm = data.get_batch(step, 4, 16, seed=7)
        assert q.shape == (4, 3) and p.shape == (8, 3)
        pos = p[:4, 1].tolist()
        assert len(set(pos)) == 4
        assert not set(p[4:, 1].tolist()) & set(pos)  # no hard negative is a positive of the batch
        for row, qid in enumerate(q[:, 1].tolist()):
            assert pos[row] - 10 == (qid - 30) % 10  # row i's positive is question i's passage
    a, b = data.get_batch(3, 4, 16, seed=7), data.get_batch(3, 4, 16, seed=7)
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert not torch.equal(data.get_batch(4, 4, 16, seed=7)[0], a[0])
    assert _pairs(hard=False).get_batch(0, 4, 16, seed=7)[2].shape == (4, 3)


def test_a_batch_larger_than_the_passages_takes_each_once_and_eval_batches_cover_every_question():
    data = _pairs()
    q, _, p, _ = data.get_batch(0, 64, 16, seed=0)
    assert q.shape[0] == 10 and len(set(p[:10, 1].tolist())) == 10
    seen = []
    for q, _, p, _ in data.iter_eval_batches(4, 16):
        assert len(set(p[: q.shape[0], 1].tolist())) == q.shape[0]
        seen += q[:, 1].tolist()
    assert sorted(seen) == list(range(30, 50))
    assert np.array_equal(sorted(seen), sorted(seen))


def test_a_batch_holding_every_passage_has_no_hard_negatives():
    q, _, p, _ = _pairs().get_batch(0, 10, 16, seed=0)
    assert q.shape[0] == 10 and p.shape[0] == 10
