"""Printing a continuation while it is generated, without ever showing half a character.

A byte-level BPE token can end in the middle of a multi-byte UTF-8 character (``é`` is the two
bytes C3 A9; a token may hold only C3), so decoding the new tokens one at a time would print
replacement characters. :class:`StreamPrinter` decodes the whole continuation after each token
and writes only what is new, waiting while the text ends in an incomplete character (U+FFFD).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from axon.generate.sampling import cut_at_stop


def _print(text: str) -> None:
    print(text, end="", flush=True)


class StreamPrinter:
    """An ``on_token(b, token)`` callback for :func:`axon.generate.generate` (one sequence) that
    writes the decoded continuation as it grows.

    ``decode``: token ids -> text; ``stop_strings``: the text is cut before the earliest one, as
    :func:`~axon.generate.sampling.cut_at_stop` cuts the finished text; ``write``: where new text
    goes (default: stdout, flushed).
    """

    def __init__(self, decode: Callable[[list[int]], str], stop_strings: Sequence[str] = (),
                 write: Callable[[str], None] = _print) -> None:
        self.decode, self.stop_strings, self.write = decode, list(stop_strings), write
        self.tokens: list[int] = []
        self.shown = 0  # characters of the continuation already written

    def __call__(self, b: int, token: int) -> None:
        self.tokens.append(token)
        text = self.decode(self.tokens)
        if text.endswith("\ufffd"):  # an incomplete character: wait for its other bytes
            return
        if self.stop_strings:
            text = cut_at_stop(text, self.stop_strings)
        self.write(text[self.shown:])
        self.shown = len(text)
