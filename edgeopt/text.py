"""Text as model input: passages from an offline corpus, tokenised with the model's own
tokenizer (a Hugging Face `tokenizer.json`), padded to a fixed length.

The built-in corpus is Python's own documentation (`pydoc_data.topics`, shipped with
the interpreter): 79 topics of real English prose, cut into paragraphs. A seeded
permutation splits the paragraphs into disjoint sets: calibration (the train split),
validation, documents, and queries (the first sentence of other paragraphs). The test
split holds the queries, then the documents, so embeddings can be scored on retrieval.
"""

from __future__ import annotations

import itertools
import re
from pathlib import Path

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, PositiveInt

from edgeopt.core.artifact import TensorSpec
from edgeopt.core.data import Dataset, Split
from edgeopt.core.errors import DataError, first_line

PYDOC = "pydoc-topics"
TOKEN_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


class TextSource(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    corpus: str = Field(
        PYDOC, description="pydoc-topics (Python's documentation) or a UTF-8 .txt, one passage per line"
    )
    tokenizer: Path | None = Field(
        None, description="a folder holding the model's tokenizer.json (default: the Hugging Face model's directory)"
    )
    max_length: PositiveInt = Field(128, description="tokens per passage, truncated or padded")
    samples: PositiveInt = Field(400, description="documents: held-out passages the report scores")
    queries: int = Field(
        100, ge=0, description="queries: first sentences of other passages, retrieved from the documents"
    )
    calibration: PositiveInt = Field(256, description="passages for calibration (the train split)")
    validation: PositiveInt = Field(128, description="passages where accuracy budgets are checked")
    seed: int = Field(0, description="fixes which passages fall in which set, and their order")


def pydoc_passages(min_words: int = 12) -> list[str]:
    """Paragraphs of Python's documentation, in a fixed order."""
    from pydoc_data.topics import topics

    paragraphs = (p.strip() for name in sorted(topics) for p in re.split(r"\n\s*\n", topics[name]))
    return [" ".join(p.split()) for p in paragraphs if len(p.split()) >= min_words]


def load_text(source: TextSource, folder: Path, inputs: tuple[TensorSpec, ...], model_dir: Path | None) -> Dataset:
    """Tokenise seeded, disjoint passage sets into one int64 array per model input."""
    unknown = [spec.name for spec in inputs if spec.name not in TOKEN_INPUTS]
    if unknown:
        raise DataError(f"text feeds inputs named {', '.join(TOKEN_INPUTS)}; the model also takes {', '.join(unknown)}")
    if source.tokenizer is None and model_dir is None:
        raise DataError("text data needs a tokenizer: give data.text.tokenizer (a folder holding tokenizer.json)")
    passages = pydoc_passages() if source.corpus == PYDOC else _lines(folder / source.corpus)
    sizes = (source.calibration, source.validation, source.queries, source.samples)
    if sum(sizes) > len(passages):
        raise DataError(
            f"{source.corpus}: {len(passages)} passages, fewer than the {sum(sizes)} asked for "
            f"(calibration {sizes[0]} + validation {sizes[1]} + queries {sizes[2]} + samples {sizes[3]})"
        )
    order = np.random.default_rng(source.seed).permutation(len(passages))
    bounds = np.cumsum((0, *sizes))
    calibration, validation, queries, documents = (
        [passages[i] for i in order[start:stop]] for start, stop in itertools.pairwise(bounds)
    )
    queries = [_first_sentence(q) for q in queries]
    tokenizer = _tokenizer(folder / source.tokenizer if source.tokenizer else model_dir, source.max_length)

    def split(texts: list[str], query_count: int = 0) -> Split:
        encodings = tokenizer.encode_batch(texts)
        arrays = {
            "input_ids": np.array([e.ids for e in encodings], np.int64),
            "attention_mask": np.array([e.attention_mask for e in encodings], np.int64),
            "token_type_ids": np.array([e.type_ids for e in encodings], np.int64),
        }
        return Split({spec.name: arrays[spec.name] for spec in inputs}, None, queries=query_count)

    return Dataset(
        name=source.corpus,
        test=split(queries + documents, len(queries)),
        train=split(calibration),
        validation=split(validation),
    )


def _first_sentence(passage: str) -> str:
    return re.split(r"(?<=[.!?:])\s", passage, maxsplit=1)[0]


def _lines(path: Path) -> list[str]:
    try:
        lines = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
    except (OSError, UnicodeDecodeError) as err:
        raise DataError(f"{path}: not a readable UTF-8 text file ({err})") from err
    passages = [line for line in lines if line]
    if not passages:
        raise DataError(f"{path}: holds no text (one passage per line)")
    return passages


def _tokenizer(folder: Path, max_length: int):
    try:
        from tokenizers import Tokenizer
    except ImportError as err:
        raise DataError("text data needs the tokenizers package: pip install edgeopt[transformers]") from err
    path = folder / "tokenizer.json"
    try:
        tokenizer = Tokenizer.from_file(str(path))
    except Exception as err:  # tokenizers raises a bare Exception for missing and malformed files
        raise DataError(f"{path}: not a readable tokenizer.json ({first_line(err)})") from err
    tokenizer.enable_truncation(max_length)
    pad_id = tokenizer.token_to_id("[PAD]") or 0
    tokenizer.enable_padding(length=max_length, pad_id=pad_id, pad_token=tokenizer.id_to_token(pad_id) or "[PAD]")
    return tokenizer
