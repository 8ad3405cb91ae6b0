"""Printing a continuation while it is generated, without ever showing half a character.

A byte-level BPE token can end in the middle of a multi-byte UTF-8 character (``é`` is the two
bytes C3 A9; a token may hold only C3), so decoding the new tokens one at a time would print
replacement characters. :class:`StreamPrinter` decodes the whole continuation after each token
and writes only what is new, waiting while the text ends in an incomplete character (U+FFFD),
or in the beginning of a stop string (``"\n\n"`` after one newline: the next token decides
whether it is text or the stop). :meth:`StreamPrinter.finish` writes what was held back, so the
streamed text always equals the finished text cut at its stop string.
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
            cut = cut_at_stop(text, self.stop_strings)
            text = cut if len(cut) < len(text) else text[: len(text) - self._held(text)]
        self._write_upto(text)

    def finish(self) -> None:
        """Write whatever is still held back (generation ended): the stream is then the whole text."""
        text = self.decode(self.tokens)
        self._write_upto(cut_at_stop(text, self.stop_strings) if self.stop_strings else text)

    def _held(self, text: str) -> int:
        """Length of the longest end of ``text`` that begins a stop string (0: none)."""
        return max((n for s in self.stop_strings for n in range(1, len(s)) if text.endswith(s[:n])), default=0)

    def _write_upto(self, text: str) -> None:
        if len(text) > self.shown:
            self.write(text[self.shown:])
            self.shown = len(text)
