"""Evaluation by prompting (issue 20): tasks written as lm-evaluation-harness YAML, scored by a model's
log-likelihoods and generations, zero-, one- and few-shot, with and without chain of thought.

    tasks/*.yaml + *.jsonl  (bundled.py writes them; a user writes more in the same schema)
         |
    loader: records -> prompts (few-shot examples joined by fewshot_delimiter)
         |
    scorer: loglikelihood / loglikelihood_rolling / generate_until  ->  metrics (acc, exact_match, ...)
"""
