"""Data: tokenizers, token shards, preparation of text/JSONL/HF datasets, and batches."""

from axon.data.loader import TokenDataset
from axon.data.prepare import prepare, prepare_corpus
from axon.data.shards import read_shard, write_shard
from axon.data.tokenizers import BPETokenizer, CharTokenizer, HFTokenizer, build_tokenizer, load_tokenizer

__all__ = [
    "TokenDataset", "prepare", "prepare_corpus", "read_shard", "write_shard",
    "CharTokenizer", "BPETokenizer", "HFTokenizer", "build_tokenizer", "load_tokenizer",
]
