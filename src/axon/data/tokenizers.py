"""Tokenizers: text <-> token ids.

Every tokenizer here has the same small interface, which is all the rest of Axon relies on::

    kind          "char", "bpe" or "hf"
    vocab_size    number of ids; every id is in [0, vocab_size)
    eot_id        id of the end-of-text token, or None when the vocabulary has none
    encode(text)        -> list[int]
    encode_array(text)  -> np.ndarray of int64 (the fast path for long texts)
    decode(ids)         -> str
    save(path)          -> Path of the tokenizer.json written

Two file formats are read and written, both named ``tokenizer.json``:

* Axon's character format: ``{"axon_tokenizer": "char", "version": 1, "chars": [...],
  "unk": null | "<char>"}``. ``chars[i]`` is the character with id ``i``; ``unk`` is the
  replacement for characters outside the vocabulary, or null to refuse them.
* The Hugging Face ``tokenizers`` format, for byte-level BPE trained here and for any
  ``tokenizer.json`` published with a model (GPT-2's, Llama's, ...).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Literal

import numpy as np

from axon.errors import DataError

TOKENIZER_FILE = "tokenizer.json"
EOT_TOKEN = "<|endoftext|>"
#: Tokens recognised as "end of text" in a loaded Hugging Face vocabulary, in order of preference.
EOT_CANDIDATES = (EOT_TOKEN, "</s>", "<|end_of_text|>")
#: Vocabulary size used for ``build_tokenizer("bpe", ...)`` when none is given.
DEFAULT_BPE_VOCAB_SIZE = 4096
KINDS = ("char", "bpe")
#: The largest tokenizer.json read. Published ones are at most a few tens of MiB (Gemma's, with
#: 256k tokens and their merges: ~33 MiB); a file far beyond that is not a tokenizer.
MAX_TOKENIZER_BYTES = 256 << 20


def _tokenizer_file(path: str | Path) -> Path:
    """``path`` itself when it names a ``.json`` file or any existing file, else ``path / "tokenizer.json"``."""
    path = Path(path)
    return path if path.suffix == ".json" or path.is_file() else path / TOKENIZER_FILE


def check_tokenizer_choice(value: str, kinds: Iterable[str], what: str = "data.tokenizer") -> None:
    """Refuse, naming the field, a tokenizer that is neither one of ``kinds`` (built from the text)
    nor a tokenizer file or a directory holding a ``tokenizer.json`` -- before any text is read.
    (Whether the file is a tokenizer is for :func:`load_tokenizer`, whose errors name the file.)"""
    kinds = tuple(kinds)
    if value in kinds:
        return
    path = Path(value)
    if path.is_file() or (path / TOKENIZER_FILE).is_file():
        return
    if path.is_dir():
        problem = f"the directory {path} holds no {TOKENIZER_FILE}"
    elif path.suffix == ".json" or len(path.parts) > 1:
        problem = f"no such file: {path}"
    else:
        problem = f"unknown tokenizer {value!r}"
    raise DataError(f"{what}: {problem}; choose one of: {', '.join(kinds)}, or a path to a {TOKENIZER_FILE}")


def _write_json(path: str | Path, obj: dict | str) -> Path:
    file = _tokenizer_file(path)
    file.parent.mkdir(parents=True, exist_ok=True)
    file.write_text(obj if isinstance(obj, str) else json.dumps(obj), encoding="utf-8")
    return file


def _check_ids(ids: Sequence[int] | np.ndarray, vocab_size: int) -> np.ndarray:
    arr = np.asarray(ids, dtype=np.int64).reshape(-1)
    if arr.size and (arr.min() < 0 or arr.max() >= vocab_size):
        bad = int(arr[(arr < 0) | (arr >= vocab_size)][0])
        raise DataError(f"token id {bad} is outside the vocabulary [0, {vocab_size})")
    return arr


class CharTokenizer:
    """Character-level tokenizer: one id per Unicode code point of a fixed character set.

    ``CharTokenizer.from_text(text)`` uses the sorted unique characters of ``text`` as the
    vocabulary (nanoGPT's convention: tiny Shakespeare gives 65 ids).

    Characters outside the vocabulary are handled by ``unknown``:

    * ``"error"`` (default): :class:`DataError` naming the character and its position.
    * ``"replace"``: the character is encoded as ``unk_char``, which must be in the vocabulary.
      It defaults to ``"?"`` when the vocabulary has one, else to the first character
      (``chars[0]``). Decoding then yields ``unk_char`` in its place: the mapping is lossy.
    """

    kind = "char"
    eot_id = None

    def __init__(
        self,
        chars: Sequence[str],
        unknown: Literal["error", "replace"] = "error",
        unk_char: str | None = None,
    ) -> None:
        chars = list(chars)
        if not chars:
            raise DataError("a character vocabulary needs at least one character")
        if any(not isinstance(c, str) or len(c) != 1 for c in chars) or len(set(chars)) != len(chars):
            raise DataError("a character vocabulary must be a list of distinct single characters")
        if unknown not in ("error", "replace"):
            raise DataError(f"unknown={unknown!r}: choose 'error' or 'replace'")
        self.chars = chars
        self.vocab_size = len(chars)
        self.unknown = unknown
        self.unk_char: str | None = None
        if unknown == "replace":
            self.unk_char = unk_char if unk_char is not None else ("?" if "?" in chars else chars[0])
            if self.unk_char not in chars:
                raise DataError(f"unk_char {self.unk_char!r} is not in the character vocabulary")

        # Code point -> id lookup table, -1 for characters outside the vocabulary. One extra
        # trailing -1 entry catches every code point above the largest in the vocabulary, so
        # encode_array is a clip and a gather, with no Python loop over characters.
        self._codes = np.array([ord(c) for c in chars], dtype=np.uint32)
        self._table = np.full(int(self._codes.max()) + 2, -1, dtype=np.int64)
        self._table[self._codes] = np.arange(self.vocab_size)

    @classmethod
    def from_text(
        cls,
        text: str | Iterable[str],
        unknown: Literal["error", "replace"] = "error",
        unk_char: str | None = None,
    ) -> CharTokenizer:
        """Vocabulary = sorted unique characters of ``text`` (a string or an iterable of them)."""
        chars: set[str] = set()
        for piece in [text] if isinstance(text, str) else text:
            chars.update(piece)
        if not chars:
            raise DataError("cannot build a character vocabulary from empty text")
        return cls(sorted(chars), unknown=unknown, unk_char=unk_char)

    def encode_array(self, text: str) -> np.ndarray:
        # UTF-32 gives exactly one 4-byte unit per code point, i.e. per Python str index;
        # surrogatepass lets a lone surrogate through to be reported like any unknown char.
        codes = np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype="<u4")
        ids = self._table[np.minimum(codes, len(self._table) - 1)]
        unknown = ids < 0
        if unknown.any():
            if self.unk_char is None:
                pos = int(np.argmax(unknown))
                raise DataError(
                    f"character {text[pos]!r} at position {pos} is not in the character vocabulary "
                    f"({self.vocab_size} chars)"
                )
            ids[unknown] = self._table[ord(self.unk_char)]
        return ids

    def encode(self, text: str) -> list[int]:
        return self.encode_array(text).tolist()

    def decode(self, ids: Sequence[int] | np.ndarray) -> str:
        arr = _check_ids(ids, self.vocab_size)
        return self._codes[arr].astype("<u4").tobytes().decode("utf-32-le", "surrogatepass")

    def save(self, path: str | Path) -> Path:
        """Write the Axon character format to ``path`` (a ``.json`` file, or a directory)."""
        return _write_json(
            path, {"axon_tokenizer": "char", "version": 1, "chars": self.chars, "unk": self.unk_char}
        )

    @classmethod
    def from_dict(cls, obj: dict, source: str | Path) -> CharTokenizer:
        if obj.get("version") != 1 or not isinstance(obj.get("chars"), list):
            raise DataError(f"{source}: unsupported or malformed Axon char tokenizer")
        unk = obj.get("unk")
        try:
            return cls(obj["chars"], unknown="error" if unk is None else "replace", unk_char=unk)
        except DataError as e:
            raise DataError(f"{source}: {e}") from None

    def __repr__(self) -> str:
        return f"CharTokenizer(vocab_size={self.vocab_size}, unknown={self.unknown!r})"


#: Texts longer than twice this are cut into chunks of about this many characters and
#: batch-encoded: the same ids, ~3x faster for 1 MB (the Rust encoder is slow on huge strings).
ENCODE_CHUNK_CHARS = 1 << 12
# A cut just before a newline that follows a non-whitespace character is a boundary of the
# GPT-2 pre-tokenizer regex in every context: letter, digit and punctuation runs never absorb a
# newline, and no whitespace run ends at the cut, so no lookahead (``\s+(?!\S)``) sees across it.
# Python's \S is a subset of the regex's non-whitespace (str.isspace covers Unicode White_Space).
_SAFE_CUT = re.compile(r"\S(?=\n)")


def _chunks(text: str, size: int = ENCODE_CHUNK_CHARS) -> list[str]:
    """Cut ``text`` into pieces of at least ``size`` characters at safe cuts (see above)."""
    pieces, start = [], 0
    while (m := _SAFE_CUT.search(text, start + size)) is not None:
        pieces.append(text[start : m.end()])
        start = m.end()
    pieces.append(text[start:])
    return pieces


class HFTokenizer:
    """Any Hugging Face ``tokenizers.Tokenizer`` behind Axon's tokenizer interface.

    Decoding keeps special tokens and never "cleans up" spaces, so ``decode(encode(t)) == t``
    whenever the tokenizer itself is lossless (byte-level BPE is; WordPiece is not).
    """

    kind = "hf"

    def __init__(self, tokenizer) -> None:  # tokenizers.Tokenizer, imported lazily
        from tokenizers import pre_tokenizers

        self.tokenizer = tokenizer
        self.vocab_size = tokenizer.get_vocab_size(with_added_tokens=True)
        self.eot_id: int | None = next(
            (i for i in map(tokenizer.token_to_id, EOT_CANDIDATES) if i is not None), None
        )
        pre = tokenizer.pre_tokenizer
        # Long texts can be cut into chunks and batch-encoded only when the pipeline is exactly
        # "GPT-2 regex, then bytes" (see _chunks); a normalizer, another pre-tokenizer or a
        # prefix space added to each chunk could change the ids, so those encode in one piece.
        self._chunkable = (
            tokenizer.normalizer is None
            and isinstance(pre, pre_tokenizers.ByteLevel)
            and pre.use_regex
            and not pre.add_prefix_space
        )

    def encode_array(self, text: str) -> np.ndarray:
        try:
            if self._chunkable and len(text) > 2 * ENCODE_CHUNK_CHARS:
                encodings = self.tokenizer.encode_batch(_chunks(text), add_special_tokens=False)
                return np.concatenate([np.asarray(e.ids, dtype=np.int64) for e in encodings])
            return np.asarray(self.tokenizer.encode(text, add_special_tokens=False).ids, dtype=np.int64)
        except TypeError:
            if isinstance(text, str):  # the Rust side refuses strings it cannot hold as UTF-8
                raise DataError("text contains a lone surrogate, which is not valid Unicode") from None
            raise

    def encode(self, text: str) -> list[int]:
        return self.encode_array(text).tolist()

    def decode(self, ids: Sequence[int] | np.ndarray) -> str:
        arr = _check_ids(ids, self.vocab_size)
        return self.tokenizer.decode(arr.tolist(), skip_special_tokens=False)

    def save(self, path: str | Path) -> Path:
        """Write the standard Hugging Face ``tokenizer.json`` to ``path`` (file or directory)."""
        return _write_json(path, self.tokenizer.to_str())

    def __repr__(self) -> str:
        return f"{type(self).__name__}(vocab_size={self.vocab_size}, eot_id={self.eot_id})"


#: What :func:`load_tokenizer` and :func:`build_tokenizer` return.
AnyTokenizer = CharTokenizer | HFTokenizer


class BPETokenizer(HFTokenizer):
    """Byte-level BPE (GPT-2 style) built on Hugging Face ``tokenizers``.

    Text is split by the GPT-2 regex, each piece is turned into bytes, and the bytes are mapped
    to 256 printable stand-in characters; the initial alphabet holds all 256, so every string
    (emoji, combining marks, NUL, any whitespace run) is representable and decodes back exactly.
    There is no normalizer and no prefix space: the ids are a function of the exact text.
    """

    kind = "bpe"

    @classmethod
    def train(
        cls,
        texts: Iterable[str],
        vocab_size: int,
        special_tokens: Sequence[str] = (EOT_TOKEN,),
    ) -> BPETokenizer:
        """Learn merges from ``texts`` until ``vocab_size`` ids (bytes + specials + merges).

        The result can be smaller than ``vocab_size`` when the text has too few distinct pairs.
        """
        from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

        alphabet = pre_tokenizers.ByteLevel.alphabet()
        if vocab_size < len(alphabet) + len(special_tokens):
            raise DataError(
                f"BPE vocab_size {vocab_size} is too small: the byte alphabet and special tokens "
                f"alone need {len(alphabet) + len(special_tokens)}"
            )
        tok = Tokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
        tok.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size,
            special_tokens=list(special_tokens),
            initial_alphabet=alphabet,
            show_progress=False,
        )
        tok.train_from_iterator(texts, trainer)
        return cls(tok)


def load_tokenizer(path: str | Path) -> AnyTokenizer:
    """Load a ``tokenizer.json`` (or a directory holding one).

    Axon's character format is recognised by its ``"axon_tokenizer"`` key; anything else is
    read by Hugging Face ``tokenizers`` and wrapped as :class:`BPETokenizer` when its model is
    BPE, else as :class:`HFTokenizer`.
    """
    file = _tokenizer_file(path)
    if not file.is_file():
        raise DataError(f"tokenizer file not found: {file}")
    size = file.stat().st_size
    if size > MAX_TOKENIZER_BYTES:  # refused before it is read: parsing it could take minutes and gigabytes
        raise DataError(f"{file}: {size / 2**20:,.0f} MiB is far larger than any real tokenizer.json (the largest "
                        f"published ones are a few tens of MiB); refusing to parse more than {MAX_TOKENIZER_BYTES >> 20} MiB")
    try:
        text = file.read_text(encoding="utf-8")
        obj = json.loads(text)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise DataError(f"{file}: not a tokenizer file ({e})") from None
    if not isinstance(obj, dict):
        raise DataError(f"{file}: not a tokenizer file (expected a JSON object)")
    if "axon_tokenizer" in obj:
        if obj["axon_tokenizer"] != "char":
            raise DataError(f"{file}: unknown Axon tokenizer type {obj['axon_tokenizer']!r}")
        return CharTokenizer.from_dict(obj, file)

    from tokenizers import Tokenizer

    try:
        tok = Tokenizer.from_str(text)
    except Exception as e:  # the Rust parser raises bare Exception on a malformed file
        raise DataError(f"{file}: not a valid Hugging Face tokenizer ({e})") from None
    # A published tokenizer.json may pad or cut every encoding to a fixed length (MiniLM's: 128);
    # Axon encodes whole texts and pads batches itself.
    tok.no_padding()
    tok.no_truncation()
    is_bpe = isinstance(obj.get("model"), dict) and obj["model"].get("type") == "BPE"
    return (BPETokenizer if is_bpe else HFTokenizer)(tok)


def build_tokenizer(
    kind: str, texts: Iterable[str], vocab_size: int | None = None
) -> AnyTokenizer:
    """Build a tokenizer by name, or load one from a path.

    * ``"char"``: vocabulary = the characters of ``texts`` (``vocab_size`` is ignored: the
      character set decides it).
    * ``"bpe"``: byte-level BPE trained on ``texts`` with ``vocab_size`` ids
      (default :data:`DEFAULT_BPE_VOCAB_SIZE`).
    * anything else is taken as a path to a ``tokenizer.json`` or a directory holding one;
      ``texts`` is not read.
    """
    if kind == "char":
        return CharTokenizer.from_text(texts)
    if kind == "bpe":
        return BPETokenizer.train(texts, vocab_size or DEFAULT_BPE_VOCAB_SIZE)
    path = Path(kind)
    if path.suffix == ".json" or path.exists():
        return load_tokenizer(path)
    raise DataError(f"unknown tokenizer {kind!r}; choose one of: {', '.join(KINDS)}, or a path to a tokenizer.json")
