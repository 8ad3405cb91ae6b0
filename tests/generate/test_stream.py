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
    assert written == ["a", "b", "x"]  # from the stop string on, nothing more


def test_the_beginning_of_a_stop_string_waits_for_the_next_token():
    # "\n\n" stops; one newline is held back until the next token says whether it is text
    printer = StreamPrinter(utf8, stop_strings=["\n\n", "END"])
    written = feed(printer, b"a\nb\nE")
    # each "\n" waits for the next token; "E" (it begins "END") is still held
    assert written == ["a", "\nb", "\n"]
    printer.finish()  # generation ended without a stop: what was held is text
    assert "".join(written) == "a\nb\nE"
    printer = StreamPrinter(utf8, stop_strings=["\n\n"])
    written = feed(printer, b"ab\n\ncd")
    printer.finish()
    assert "".join(written) == "ab"  # never the first newline of the stop


def test_finish_writes_a_trailing_incomplete_character_as_the_batch_text_has_it():
    printer = StreamPrinter(utf8)
    written = feed(printer, "aé".encode()[:-1])
    assert written == ["a"]
    printer.finish()
    assert "".join(written) == utf8("aé".encode()[:-1]) == "a\ufffd"


def test_streamed_text_equals_the_decoded_batch():
    torch.manual_seed(0)
    model = Decoder(DecoderConfig(vocab_size=256, block_size=32, n_layer=1, n_head=2, n_embd=16)).eval()
    written = []
    printer = StreamPrinter(utf8, write=written.append)
    seed = lambda: torch.Generator().manual_seed(1)  # noqa: E731
    out = generate(model, [[97]], 20, generator=seed(), on_token=printer)
    assert printer.tokens == out.tokens[0]
    text = utf8(out.tokens[0])
    assert "".join(written) == text.rstrip("\ufffd")  # all but a trailing incomplete character ...
    printer.finish()
    assert "".join(written) == text  # ... which finish() writes
