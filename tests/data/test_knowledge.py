"""axon.data.knowledge: the generated knowledge base is deterministic, split by entity, each question's
passage holds its answer, and the JSONL files hold it all."""

import json

import pytest

from axon.data.knowledge import RELATIONS, knowledge_base


def test_the_same_seed_gives_the_same_base_and_another_seed_another():
    a, b, c = knowledge_base(40, seed=1), knowledge_base(40, seed=1), knowledge_base(40, seed=2)
    assert a.passages == b.passages and a.questions == b.questions
    assert a.passages != c.passages


def test_every_question_is_answered_by_its_passage_and_the_split_is_by_entity():
    kb = knowledge_base(80, seed=0, test_fraction=0.25)
    entities = {p.entity for p in kb.passages}
    assert len(entities) == 80 and len(kb.passages) == 80 * len(RELATIONS)
    assert len(kb.questions) == sum(len(asks) for _, asks in RELATIONS.values()) * 80
    for q in kb.questions:
        p = kb.passages[q.passage_id]
        assert p.entity == q.entity and q.entity in q.text and q.answer in p.text and q.answer not in q.text
    train = {q.entity for q in kb.split("train")}
    test = {q.entity for q in kb.split("test")}
    assert not train & test and len(test) == 20 and train | test == entities
    # the paraphrases: most questions share no content word with their passage besides the name
    words = lambda s: set(s.lower().replace("?", "").replace(".", "").split())  # noqa: E731
    stop = {"the", "of", "did", "was", "what", "which", "in", "a", "an", "is", "how", "does", "to", "for", "on", "name"}
    shared = [words(q.text) - words(q.entity) - stop & words(kb.passages[q.passage_id].text) for q in kb.questions]
    assert sum(not s for s in shared) > len(shared) / 2


def test_write_puts_passages_and_questions_in_jsonl(tmp_path):
    kb = knowledge_base(10, seed=0)
    p, q = kb.write(tmp_path / "kb")
    passages = [json.loads(line) for line in p.read_text().splitlines()]
    questions = [json.loads(line) for line in q.read_text().splitlines()]
    assert passages[0].keys() == {"id", "text", "entity", "relation"} and len(passages) == 40
    assert questions[0].keys() == {"question", "answer", "passage_id", "entity", "split"}
    assert [x["id"] for x in passages] == list(range(40))


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError):
        knowledge_base(1)
    with pytest.raises(ValueError):
        knowledge_base(10, test_fraction=1.0)
