"""Metrics of prompted evaluation, as lm-evaluation-harness defines them.

    output_type            per example (from the responses)          task figure (over n examples)
    loglikelihood          acc = greedy?  ll                         acc: mean; perplexity = exp(-mean ll)
    multiple_choice        acc = argmax_i ll_i == gold               means
                           acc_norm = argmax_i ll_i / len(choice_i) == gold   (len in characters)
    generate_until         answer = filters(generation)              means
                           exact_match = answer == target; f1 = SQuAD token F1
    loglikelihood_rolling  ll, words (lm-eval's count: re.split(r"\\s+")), bytes (UTF-8)
                           word_perplexity = exp(-sum ll / sum words), byte_perplexity =
                           exp(-sum ll / sum bytes), bits_per_byte = -sum ll / sum bytes / ln 2

Standard errors: of the mean, sample std (n - 1) / sqrt(n), for the per-example means; None for
the corpus-level perplexities (and for n = 1). Filters (generate_until's ``filter_list``, each
pipeline reported as ``metric,name``): ``regex`` (lm-eval's: all matches of ``regex_pattern``,
the ``group_select``-th, its first non-empty group if it has groups, stripped; none: ``fallback``,
"[invalid]"), ``take_first`` (one generation per example: nothing to do), ``lowercase``,
``remove_whitespace`` (leading whitespace).
"""

from __future__ import annotations

import math
import re
import string
from collections import Counter

PERPLEXITIES = ("perplexity", "word_perplexity", "byte_perplexity", "bits_per_byte")


def apply_filters(text: str, steps: list[dict]) -> str:
    """The answer a filter pipeline reads from one generation (module docstring)."""
    for step in steps:
        fn = step["function"]
        if fn == "regex":
            found, which = re.findall(step["regex_pattern"], text), step.get("group_select", 0)
            if -len(found) <= which < len(found):  # none found: never
                match = found[which]
                if isinstance(match, tuple):  # several groups: the first that matched
                    match = next((m for m in match if m), "")
                text = match.strip()
            else:
                text = step.get("fallback", "[invalid]")
        elif fn == "lowercase":
            text = text.lower()
        elif fn == "remove_whitespace":
            text = text.lstrip()
        # take_first: one generation per example already
    return text


def _normalize_squad(text: str) -> str:
    """SQuAD's answer normalisation: lower case, no punctuation, no articles, single spaces."""
    text = "".join(ch for ch in text.lower() if ch not in set(string.punctuation))
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


def f1_score(prediction: str, target: str) -> float:
    """SQuAD's token F1 of two answers (both empty after normalisation: 1; one empty: 0)."""
    pred, gold = _normalize_squad(prediction).split(), _normalize_squad(target).split()
    if not pred or not gold:
        return float(pred == gold)
    common = sum((Counter(pred) & Counter(gold)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(pred), common / len(gold)
    return 2 * precision * recall / (precision + recall)


def exact_match(prediction: str, target: str, ignore_case: bool = False, ignore_punctuation: bool = False) -> float:
    """1.0 when the answer is the target exactly (lm-eval's exact_match with its two options)."""
    if ignore_case:
        prediction, target = prediction.lower(), target.lower()
    if ignore_punctuation:
        table = str.maketrans("", "", string.punctuation)
        prediction, target = prediction.translate(table), target.translate(table)
    return float(prediction == target)


def count_words(doc: str) -> int:
    """lm-eval's word count of a document: the pieces between runs of whitespace, so a leading or
    trailing space adds an empty piece (``" a b "``: 4), as its word_perplexity counts them."""
    return len(re.split(r"\s+", doc))


def _argmax(values: list[float]) -> int:
    return max(range(len(values)), key=lambda i: (values[i], -i))  # the first of equal maxima, as numpy's


def example_metrics(spec, example, responses: list) -> dict:
    """Per-example figures of ``example`` (a ``tasks_spec.Example``) from its ``responses``, plus
    what the aggregates need (``ll``, ``words``, ``bytes``) and, for generate_until, each filter's answer."""
    kind = spec.output_type
    names = {m["metric"] for m in spec.metrics}
    out: dict = {}
    if kind == "loglikelihood":
        ll, greedy = responses[0]
        out["ll"] = ll
        if "acc" in names:
            out["acc"] = float(greedy)
    elif kind == "multiple_choice":
        lls = [ll for ll, _ in responses]
        out["lls"] = lls
        if "acc" in names:
            out["acc"] = float(_argmax(lls) == example.gold)
        if "acc_norm" in names:
            per_char = [ll / max(1, len(c)) for ll, c in zip(lls, example.choices)]
            out["acc_norm"] = float(_argmax(per_char) == example.gold)
    elif kind == "generate_until":
        for name, steps in spec.filters or [("none", [])]:
            answer = apply_filters(responses[0], steps)
            suffix = "" if not spec.filters else f",{name}"
            out[f"answer{suffix}"] = answer
            for m in spec.metrics:
                if m["metric"] == "exact_match":
                    out[f"exact_match{suffix}"] = exact_match(answer, example.gold, m.get("ignore_case", False),
                                                              m.get("ignore_punctuation", False))
                elif m["metric"] == "f1":
                    out[f"f1{suffix}"] = f1_score(answer, example.gold)
    else:
        doc = example.requests[0]
        out.update(ll=responses[0], words=count_words(doc), bytes=len(doc.encode("utf-8")))
    return out


def metric_names(spec) -> list[str]:
    """The names a task reports, in its metric_list's order (generate_until: one per filter)."""
    names = [m["metric"] for m in spec.metrics]
    if spec.output_type == "generate_until" and spec.filters:
        return [f"{n},{f}" for f, _ in spec.filters for n in names]
    return names


def _mean_stderr(values: list[float]) -> tuple[float, float | None]:
    n = len(values)
    mean = sum(values) / n
    if n < 2:
        return mean, None
    var = sum((v - mean) ** 2 for v in values) / (n - 1)
    return mean, math.sqrt(var / n)


def aggregate(spec, per_example: list[dict]) -> dict[str, tuple[float, float | None]]:
    """name -> (value, standard error or None) over the examples' :func:`example_metrics`."""
    out = {}
    for name in metric_names(spec):
        base = name.split(",")[0]
        if base == "perplexity":
            out[name] = (math.exp(-sum(e["ll"] for e in per_example) / len(per_example)), None)
        elif base in PERPLEXITIES:
            ll = sum(e["ll"] for e in per_example)
            units = sum(e["words" if base == "word_perplexity" else "bytes"] for e in per_example)
            if units == 0:
                out[name] = (math.nan, None)
            elif base == "bits_per_byte":
                out[name] = (-ll / units / math.log(2), None)
            else:
                out[name] = (math.exp(-ll / units), None)
        else:
            out[name] = _mean_stderr([e[name] for e in per_example])
    return out


__all__ = ["apply_filters", "count_words", "exact_match", "f1_score", "example_metrics", "metric_names", "aggregate",
           "PERPLEXITIES"]
