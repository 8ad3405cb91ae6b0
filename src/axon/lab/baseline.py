"""The baseline every classification table needs: TF-IDF features and logistic regression.

``axon baseline --config CONFIG [--section.key=value ...]`` (or :func:`tfidf_baseline` on a
config) reads the same train and validation examples the ``classify`` task reads for that config
(``axon.data.files.read_splits`` and ``read_examples``, with ``data.text_field`` /
``data.label_field``; without ``data.val_file`` every 10th training example is held out, as the
task does) and fits a linear model on bag-of-n-gram features:

    texts                       "O happy dagger!"
      | TfidfVectorizer          lowercased words (inner apostrophes kept: o'er, 'tis -> tis),
      |                          uni- and bigrams, tf -> 1 + log tf (sublinear), x idf, L2 rows
    X (n, |vocabulary|) sparse
      | LogisticRegression(C)   multinomial, L2 penalty, lbfgs
    p(label | text) (n, n_labels) -> argmax

C, the inverse regularisation strength, is chosen on a split of the TRAINING examples only: a
seeded ``DEV_FRACTION`` of them (``train.seed``) is held out, each C of ``C_GRID`` is fit on the
rest and scored by accuracy on the held-out part (ties, common on a small dev part: the lower
log-loss there, then the smaller C), and the chosen C is refit
on all training examples. The validation examples are read once, for the final figures: accuracy,
macro F1 (the unweighted mean of the per-label F1s, labels of the training file) and the majority
baseline (always the training set's most frequent label, ties to the first in sorted order, as the
classify task's ``majority_baseline``).

scikit-learn is imported here, lazily (``pip install axon-lab[nlp]``); a config whose task is not
``classify`` ends with one line.
"""

from __future__ import annotations

from collections import Counter

from axon.errors import ConfigError, DataError

#: the values of C tried on the dev split of train
C_GRID = (0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0, 300.0, 1000.0)
#: the share of the training examples held out to choose C
DEV_FRACTION = 0.2
#: a word: letters/digits, with inner apostrophes ("o'er"); a leading apostrophe is dropped
TOKEN_PATTERN = r"(?u)\w+(?:'\w+)*"


def _sklearn():
    try:
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.linear_model import LogisticRegression
        from sklearn.metrics import f1_score
    except ImportError:
        raise ConfigError("the TF-IDF baseline needs scikit-learn: pip install axon-lab[nlp]") from None
    return TfidfVectorizer, LogisticRegression, f1_score


def fit_tfidf(texts: list[str], labels: list[str], C: float, seed: int = 0):
    """A fitted (vectorizer, logistic regression) pair (module docstring)."""
    TfidfVectorizer, LogisticRegression, _ = _sklearn()
    vectorizer = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, lowercase=True, token_pattern=TOKEN_PATTERN)
    X = vectorizer.fit_transform(texts)
    model = LogisticRegression(C=C, max_iter=5000, random_state=seed).fit(X, labels)
    return vectorizer, model


def _predict(fitted, texts: list[str]) -> list[str]:
    vectorizer, model = fitted
    return list(model.predict(vectorizer.transform(texts)))


def _accuracy(pred: list[str], gold: list[str]) -> float:
    return sum(p == g for p, g in zip(pred, gold)) / len(gold)


def choose_C(texts: list[str], labels: list[str], seed: int, grid=C_GRID) -> tuple[float, dict[float, float]]:
    """(best C, {C: dev accuracy}): each C fit on a seeded (1 - DEV_FRACTION) of the training
    examples, scored on the rest."""
    import numpy as np

    order = np.random.default_rng(seed).permutation(len(texts))
    n_dev = max(1, int(round(DEV_FRACTION * len(texts))))
    dev, fit = order[:n_dev], order[n_dev:]
    fit_labels = [labels[i] for i in fit]
    if len(set(fit_labels)) < 2:
        raise DataError(f"choosing C: the {len(fit)} training examples left after holding out {n_dev} have one label; "
                        "the baseline needs more examples")
    from sklearn.metrics import log_loss

    scores, losses = {}, {}
    dev_texts, dev_labels = [texts[i] for i in dev], [labels[i] for i in dev]
    for C in grid:
        vectorizer, model = fitted = fit_tfidf([texts[i] for i in fit], fit_labels, C, seed)
        scores[C] = _accuracy(_predict(fitted, dev_texts), dev_labels)
        losses[C] = log_loss(dev_labels, model.predict_proba(vectorizer.transform(dev_texts)), labels=model.classes_)
    best = max(grid, key=lambda C: (scores[C], -losses[C], -C))
    return best, scores


def baseline_data(cfg):
    """(train examples, train file, val examples, val file, labels) of a classify config, read
    as the classify task reads them; one line for a config of another task."""
    from axon.data.files import read_examples, read_splits
    from axon.tasks import task_name

    task = task_name(cfg)
    if task != "classify":
        raise ConfigError(f"task: the TF-IDF baseline reads a classify task's data; this config's task is {task!r}")
    data = cfg.data
    train_ex, train_file, val_ex, val_file = read_splits(
        data, lambda path: read_examples(path, data.text_field, data.label_field))
    labels = sorted({e.label for e in train_ex})
    if len(labels) < 2:
        raise DataError(f"{train_file}: a classifier needs at least two labels, found {labels}")
    for e in val_ex:
        if e.label not in labels:
            raise DataError(f"{val_file}:{e.line}: label {e.label!r} does not occur in the training file {train_file}")
    return train_ex, train_file, val_ex, val_file, labels


def tfidf_baseline(cfg) -> dict:
    """The TF-IDF + logistic-regression baseline on the classify data of ``cfg`` (module
    docstring): a dict of the figures."""
    train_ex, train_file, val_ex, val_file, labels = baseline_data(cfg)
    _, _, f1_score = _sklearn()
    texts, gold = [e.text for e in train_ex], [e.label for e in train_ex]
    seed = cfg.train.seed
    C, dev_scores = choose_C(texts, gold, seed)
    fitted = fit_tfidf(texts, gold, C, seed)
    val_gold = [e.label for e in val_ex]
    pred = _predict(fitted, [e.text for e in val_ex])
    counts = Counter(gold)
    top = max(labels, key=lambda k: (counts[k], -labels.index(k)))
    return {"train_file": str(train_file), "val_file": str(val_file), "train_examples": len(train_ex),
            "val_examples": len(val_ex), "labels": labels, "features": len(fitted[0].vocabulary_),
            "C": C, "dev_accuracy": dev_scores, "val_accuracy": _accuracy(pred, val_gold),
            "val_macro_f1": float(f1_score(val_gold, pred, labels=labels, average="macro", zero_division=0)),
            "majority_label": top, "majority_baseline": _accuracy([top] * len(val_gold), val_gold)}


def baseline_line(result: dict) -> str:
    """The one-line summary ``axon baseline`` prints."""
    return (f"tfidf+logreg: train {result['train_examples']} / val {result['val_examples']} | "
            f"{result['features']} features | C {result['C']:g} (dev accuracy {result['dev_accuracy'][result['C']]:.4f}) | "
            f"val accuracy {result['val_accuracy']:.4f} | val macro F1 {result['val_macro_f1']:.4f} | "
            f"majority baseline {result['majority_baseline']:.4f} ({result['majority_label']})")
