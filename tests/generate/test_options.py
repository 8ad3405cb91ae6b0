"""SamplingOptions: every sampling setting is checked once, from Python as from the command line."""

import math

import pytest
import torch

from axon.errors import ConfigError
from axon.generate import SamplingOptionError, SamplingOptions, beam_search, generate, speculative_generate
from axon.models.decoder import Decoder, DecoderConfig

NAN, INF = math.nan, math.inf

# (keyword, value, the message's rule)
BAD = [
    ("temperature", -1, "temperature must be >= 0 and finite (0 is greedy), got -1"),
    ("temperature", NAN, "temperature must be >= 0 and finite (0 is greedy), got nan"),
    ("temperature", INF, "temperature must be >= 0 and finite (0 is greedy), got inf"),
    ("top_k", -1, "top_k must be an integer >= 0 (0 keeps every token), got -1"),
    ("top_k", 2.5, "top_k must be an integer >= 0 (0 keeps every token), got 2.5"),
    ("top_p", 2, "top_p must be in (0, 1], got 2"),
    ("top_p", 0, "top_p must be in (0, 1], got 0"),
    ("top_p", NAN, "top_p must be in (0, 1], got nan"),
    ("min_p", -0.1, "min_p must be in [0, 1], got -0.1"),
    ("min_p", 1.5, "min_p must be in [0, 1], got 1.5"),
    ("min_p", NAN, "min_p must be in [0, 1], got nan"),
    ("repetition_penalty", 0, "repetition_penalty must be positive and finite (1 disables it), got 0"),
    ("repetition_penalty", NAN, "repetition_penalty must be positive and finite (1 disables it), got nan"),
    ("repetition_penalty", INF, "repetition_penalty must be positive and finite (1 disables it), got inf"),
    ("max_new_tokens", -1, "max_new_tokens must be an integer >= 0, got -1"),
    ("max_new_tokens", 2.0, "max_new_tokens must be an integer >= 0, got 2.0"),
]
SPECULATIVE = {"temperature", "top_k", "top_p", "max_new_tokens"}  # the settings speculative decoding takes


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return Decoder(DecoderConfig(vocab_size=11, block_size=16, n_layer=1, n_head=2, n_embd=16)).eval()


def kwargs(name, value):
    kw = {"max_new_tokens": 3, name: value}
    return kw.pop("max_new_tokens"), kw


@pytest.mark.parametrize("name, value, message", BAD)
def test_sampling_options_refuse_with_one_line_naming_the_field(name, value, message):
    with pytest.raises(SamplingOptionError) as info:
        SamplingOptions(**{"max_new_tokens": 3, name: value})
    assert str(info.value) == message and "\n" not in message
    assert isinstance(info.value, ConfigError) and info.value.field == name  # the CLI prints it as one line
    assert info.value.message_for("--" + name.replace("_", "-")) == "--" + message.replace(name, name.replace("_", "-"), 1)


@pytest.mark.parametrize("name, value, message", BAD)
def test_generate_from_python_refuses_the_same(model, name, value, message):
    n, kw = kwargs(name, value)
    with pytest.raises(ConfigError) as info:
        generate(model, [[1, 2]], n, **kw)
    assert str(info.value) == message


@pytest.mark.parametrize("name, value, message", [b for b in BAD if b[0] in SPECULATIVE])
def test_speculative_generate_refuses_the_same(model, name, value, message):
    n, kw = kwargs(name, value)
    with pytest.raises(ConfigError) as info:
        speculative_generate(model, model, [1, 2], n, **kw)
    assert str(info.value) == message


def test_num_samples_must_be_at_least_one():
    with pytest.raises(SamplingOptionError, match=r"num_samples must be an integer >= 1, got 0"):
        SamplingOptions(3, num_samples=0)


def test_the_edges_of_each_range_are_accepted(model):
    SamplingOptions(0, temperature=0, top_k=0, top_p=1, min_p=0, repetition_penalty=1e-3)
    SamplingOptions(1, top_p=1e-9, min_p=1, num_samples=4)
    assert generate(model, [[1]], 0, temperature=0).tokens == [[]]


def test_options_instead_of_keywords(model):
    """options= gives the same tokens as the keywords; num_samples continues each prompt n times."""
    kw = dict(temperature=0.7, top_k=5, top_p=0.9, min_p=0.05, repetition_penalty=1.3)
    seeded = lambda: torch.Generator().manual_seed(3)  # noqa: E731
    by_keywords = generate(model, [[1, 2], [3]], 6, generator=seeded(), **kw)
    by_options = generate(model, [[1, 2], [3]], options=SamplingOptions(6, **kw), generator=seeded())
    assert by_options == by_keywords
    greedy = generate(model, [[1, 2], [3]], options=SamplingOptions(5, temperature=0, num_samples=2))
    alone = [generate(model, [p], 5, temperature=0).tokens[0] for p in ([1, 2], [3])]
    assert greedy.tokens == [alone[0], alone[0], alone[1], alone[1]]
    with pytest.raises(TypeError, match="not both"):
        generate(model, [[1]], 5, options=SamplingOptions(5))
    with pytest.raises(TypeError, match="not both"):
        generate(model, [[1]], options=SamplingOptions(5), temperature=0.5)
    with pytest.raises(TypeError, match="needs max_new_tokens"):
        generate(model, [[1]])


# The decoders' other keywords: refused by the checks `axon sample` applies to its flags before it
# loads a run (tests/bad_inputs/test_commands.py), with the same sentence naming the keyword.
DECODERS = [
    (lambda m: beam_search(m, [1, 2], 3, num_beams=0), "num_beams must be an integer >= 1, got 0"),
    (lambda m: beam_search(m, [1, 2], 3, num_beams=2, length_penalty=NAN), "length_penalty must be finite, got nan"),
    (lambda m: beam_search(m, [1, 2], 0, num_beams=2), "max_new_tokens must be an integer >= 1 with beam search, got 0"),
    (lambda m: beam_search(m, [1, 2], 3, num_beams=2, num_return=3),
     "num_return must be an integer in [1, 2] (at most one per beam), got 3"),
    (lambda m: beam_search(m, [1, 2], 3, eos_token_id=11), "eos_token_id takes token ids in [0, 11) (the vocabulary), got 11"),
    (lambda m: beam_search(m, [1, 2], 3, eos_token_id=[3, 9], vocab_limit=8),
     "eos_token_id takes token ids in [0, 8) (the vocabulary), got 9"),
    (lambda m: speculative_generate(m, m, [1, 2], 3, num_draft=-1), "num_draft must be an integer >= 0 (0: no drafting), got -1"),
    (lambda m: speculative_generate(m, m, [1, 2], 3, eos_token_id=99), "eos_token_id takes token ids in [0, 11) (the vocabulary), got 99"),
    (lambda m: generate(m, [[1, 2]], 3, stop_tokens=[99999]), "stop_tokens takes token ids in [0, 11) (the vocabulary), got 99999"),
    (lambda m: generate(m, [[1, 2]], 3, stop_tokens=[-1]), "stop_tokens takes token ids in [0, 11) (the vocabulary), got -1"),
]


@pytest.mark.parametrize("call, message", DECODERS, ids=[m.split()[0] + str(i) for i, (_, m) in enumerate(DECODERS)])
def test_decoders_refuse_their_settings_as_the_command_line_does(model, call, message):
    with pytest.raises(SamplingOptionError) as info:
        call(model)
    assert str(info.value) == message
    assert isinstance(info.value, ValueError) and isinstance(info.value, ConfigError)  # a bad argument, and a user error


def test_the_command_line_words_each_refusal_with_its_flag():
    """axon.cli turns an OptionError's keyword into the flag that feeds it."""
    from axon.cli import build_parser, flag_of

    parser = build_parser()
    assert flag_of(parser, "sample", "top_p") == "--top-p"
    assert flag_of(parser, "sample", "num_beams") == "--beams"
    assert flag_of(parser, "sample", "eos_token_id") == "--stop-token"
    assert flag_of(parser, "sample", "num_return") == "--num-samples"
    assert flag_of(parser, "eval", "data_dir") == "--data"
    assert flag_of(parser, "sample", "vocab_limit") is None  # no flag feeds it: the keyword is named
