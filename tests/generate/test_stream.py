"""StreamPrinter: the continuation appears as it is generated, never half a character."""

import torch

from axon.generate import StreamPrinter, generate
from axon.models.decoder import Decoder, DecoderConfig


def utf8(ids):
    """A byte-level decoder: token i is byte i (a split character decodes to U+FFFD, as in BPE)."""
    return bytes(ids).decode("utf-8", errors="replace")


def feed(printer, text_bytes):
    written = []
    printer.write = written.append
    for t in text_bytes:
        printer(0, t)
    return written


def test_a_character_split_across_tokens_is_written_whole():
    # "é" is C3 A9 and "€" is E2 82 AC: one token each byte, so the decoder sees them incomplete.
    written = feed(StreamPrinter(utf8), "aé€b".encode())
    assert written == ["a", "é", "€", "b"]  # nothing written while a character is incomplete
    assert "".join(written) == "aé€b" and "\ufffd" not in "".join(written)


def test_the_text_is_cut_before_a_stop_string():
    written = feed(StreamPrinter(utf8, stop_strings=["y"]), b"abxyz")
    assert written == ["a", "b", "x", "", ""]  # from the stop string on, nothing more


def test_streamed_text_equals_the_decoded_batch():
    torch.manual_seed(0)
    model = Decoder(DecoderConfig(vocab_size=256, block_size=32, n_layer=1, n_head=2, n_embd=16)).eval()
    written = []
    printer = StreamPrinter(utf8, write=written.append)
    seed = lambda: torch.Generator().manual_seed(1)  # noqa: E731
    out = generate(model, [[97]], 20, generator=seed(), on_token=printer)
    assert printer.tokens == out.tokens[0]
    text = utf8(out.tokens[0])
    # Everything up to a trailing incomplete character is written.
    assert "".join(written) == text.rstrip("\ufffd")
