"""The corpus as the feedback data's source: the same file as axon.data's, its words, and no torch."""

import hashlib
import os
import random
import re
import subprocess
import sys
from pathlib import Path

from axon.data.corpus import corpus_path
from axon.feedback import source
from axon.feedback.rand import Draw, stream_seed

ROOT = Path(__file__).resolve().parents[2]


def test_the_corpus_file_is_axon_datas():
    # source.py names the file instead of importing axon.data (whose __init__ loads torch)
    assert source.CORPUS_FILE == corpus_path("shakespeare")


def test_the_split_is_nanogpts():
    train, val = source.corpus_parts()
    assert (len(train), len(val)) == (1_003_854, 111_540)  # axon.data.prepare's docstring: the published split
    assert train + val == source.corpus_text()


def test_the_vocabulary_is_lowercase_words_of_the_train_part():
    words = source.vocabulary()
    assert 2000 < len(words) < 4000
    assert list(words) == sorted(set(words))
    assert all(w.isalpha() and w.islower() and w.isascii() for w in words)
    assert all(source.MIN_LETTERS <= len(w) <= source.MAX_LETTERS for w in words)
    assert not set(words) & source.STOPWORDS
    assert {"king", "love", "crown"} <= set(words) and "never" not in words and "five" not in words
    train = source.corpus_parts()[0].lower()
    assert all(re.search(rf"(?<![a-z]){w}(?![a-z])", train) for w in words[::25])


def test_the_charset_lacks_digits_and_double_quotes():
    assert len(source.charset()) == 65
    assert source.foreign_chars("How many? five.") == ""
    assert source.foreign_chars('He said "7"') == '"7'


def test_draws_use_only_what_python_keeps_stable():
    # Python promises the same Random(int seed).random() stream on every version; Draw builds every
    # draw from it, so the bundled data regenerates alike on any interpreter.
    seed = int.from_bytes(hashlib.sha256(b"7/a/1").digest()[:8], "big")
    assert stream_seed(7, "a", 1) == seed
    r, d = random.Random(seed), Draw(7, "a", 1)
    assert [d.below(1000) for _ in range(20)] == [int(r.random() * 1000) for _ in range(20)]
    assert Draw(7, "a", 1).random() != Draw(7, "a", 2).random() != Draw(8, "a", 1).random()
    assert sorted(Draw(3, "s").shuffled(range(20))) == list(range(20)) != Draw(3, "s").shuffled(range(20))
    assert len(set(Draw(3, "s").sample(range(50), 10))) == 10


def test_importing_and_using_the_package_loads_no_torch():
    code = ("import sys\nimport axon.feedback as f\n"
            "xs = f.generate_instructions(20)\nf.win_rate([1, 0], [0, 0])\nf.sentiment_prompts('train', 5)\n"
            "f.make_comparisons([x.prompt for x in xs], [[x.reference(), 'no'] for x in xs], lambda p, r: len(r))\n"
            "print(*sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'numpy')))")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), *filter(None, [os.environ.get("PYTHONPATH")])])}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == []
