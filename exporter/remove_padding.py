"""The `remove_padding` stage: a BERT-style encoder whose per-token layers compute on the
batch's real tokens only.

A batch of texts padded to one length is mostly padding (the pydoc passages `make bench`
embeds hold 48.5 real tokens of 128 at the median). `trim_padding` cuts the batch to its
longest text, which leaves a batch of 8 at 128 as soon as one text fills it. Here the
real tokens of every row are gathered into one packed [tokens, hidden] matrix, and the
Linear layers, LayerNorms and GELUs (most of the work) run on it. The Linears' GEMMs then
cost what the batch's text costs, whatever its longest row. This is the "remove padding"
of FasterTransformer and of ONNX Runtime's packed attention (a CUDA kernel); here it is
plain ONNX (NonZero, Gather), so ONNX Runtime and OpenVINO read it.

Attention goes back to the padded [batch, heads, length, length] layout under the mask
(`trim_padding` after this stage cuts it to the batch's longest row). `attention: per_row`
runs it row by row on each row's own tokens instead (an ONNX Loop over the batch): a third
of the score entries at batch 8 on the pydoc passages, but each row's step has a fixed cost.
Measured on MiniLM's FP32 export (`make bench`, 2 threads, AVX-512 VNNI and AMX): on ONNX
Runtime 41.6 against 60.5 ms at batch 8 and 5.3 against 8.8 ms at batch 1; on OpenVINO 44.8
against 41.7 and 6.9 against 6.7 ms. NNCF's graph builder cannot read the Loop.

Exact where the outputs are per sequence and pool over the mask (a sentence embedding):
the real tokens see what they saw before, and a padded position's state, read from a
real token's row, is never attended to and is multiplied by zero in the pooling.
Dynamic INT8 quantizes each call's activations by their range, which then leaves out
the padded tokens: an INT8 descendant's outputs move a little, toward FP32.

torch artifact → torch artifact (rebuilt by `padding_removed` from its parent's source;
the state dict keeps its names, so later stages find the same layers).
"""

from __future__ import annotations

import dataclasses
import functools
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field

from edgeopt.core.artifact import Artifact, TorchSource
from edgeopt.core.context import StageContext
from edgeopt.core.errors import ExportError, RecipeError
from edgeopt.core.numeric import Tolerance, compare_outputs, describe_failures

if TYPE_CHECKING:
    from torch import nn

_LAYER_PARTS = ("attention.self.query", "attention.self.key", "attention.self.value", "attention.output",
                "intermediate", "output")  # fmt: skip
_HEAD_SIZES = ("num_attention_heads", "attention_head_size")


class Attention(StrEnum):
    PER_ROW = "per_row"
    PADDED = "padded"


class RemovePaddingOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    attention: Attention = Field(
        Attention.PADDED,
        description="padded: the batch's [batch, heads, length, length] scores under the mask; per_row: each "
        "row's tokens attend to each other, row by row (an ONNX Loop: fewer score entries, a fixed cost per "
        "row; NNCF cannot read it)",
    )
    tolerance: Tolerance = Field(
        Tolerance(atol=1e-4, rtol=1e-3, min_cosine=0.9999),
        description="agreement with the padded model on the probe, whose texts are padded",
    )


def remove_padding(artifact: Artifact, options: RemovePaddingOptions, context: StageContext) -> Artifact:
    import torch

    from edgeopt.core.torch_artifact import factory_source, load_module, output_tuple, save_derived

    parent = factory_source(artifact, "remove_padding")
    module = load_module(artifact)
    encoders = _encoders(module)
    if not encoders:
        raise RecipeError(
            "remove_padding: the model holds no BERT-style encoder (embeddings, then encoder.layer[i] with "
            "attention.self.query/key/value, attention.output, intermediate and output)"
        )
    feeds = [torch.from_numpy(context.probe[spec.name]) for spec in artifact.io.inputs]
    outputs = [spec.name for spec in artifact.io.outputs]
    with torch.inference_mode():
        expected = dict(zip(outputs, output_tuple(module(*feeds)), strict=True))
    lengths = {feed.shape[1] for feed in feeds if feed.ndim == 2}
    per_token = [name for name, out in expected.items() if out.ndim >= 3 and out.shape[1] in lengths]
    if per_token:
        raise ExportError(
            f"{artifact.path}: output {per_token[0]!r} is per token, and a padded position's state is not "
            "computed once padding is removed: remove padding from models whose outputs are per sequence"
        )
    _pack(module, encoders, options.attention)
    with torch.inference_mode():
        actual = dict(zip(outputs, output_tuple(module(*feeds)), strict=True))
    agreement = compare_outputs(
        {n: t.numpy() for n, t in expected.items()},
        {n: t.numpy() for n, t in actual.items()},
        options.tolerance,
        reference_name="the padded model",
    )
    if not agreement.passed:
        raise ExportError(
            f"{artifact.path}: removing padding changes the outputs ({describe_failures(agreement)}); the model "
            "must mask padding out (an attention mask, pooling over the mask)"
        )
    record = {"base": dataclasses.asdict(parent), "encoders": encoders, "attention": str(options.attention)}
    source = TorchSource(f"{__name__}:padding_removed", record)
    max_abs = max(output.max_abs for output in agreement.outputs)
    facts = {"padding_removed": {"encoders": encoders, "max_abs_against_padded": max_abs}}
    return save_derived(module, artifact, source, context, stage="remove_padding", options=options, facts=facts)


def padding_removed(base: dict, encoders: list[str], attention: str = Attention.PADDED) -> nn.Module:
    """The parent's module with each named encoder run on the real tokens only."""
    from edgeopt.core.torch_artifact import from_record

    return _pack(from_record(base), encoders, Attention(attention))


def _pack(module: nn.Module, encoders: list[str], attention: Attention) -> nn.Module:
    for name in encoders:
        owner_name, _, child = name.rpartition(".")
        owner = module.get_submodule(owner_name)
        setattr(owner, child, _packed_class()(owner.get_submodule(child), attention))
    return module


def _encoders(module: nn.Module) -> list[str]:
    """The names of the BERT-style encoders in the module (the outermost, once each)."""
    from torch import nn

    found: list[str] = []
    for name, sub in module.named_modules():
        if not name or any(name.startswith(f"{outer}.") for outer in found):
            continue
        layers = getattr(getattr(sub, "encoder", None), "layer", None)
        if not (hasattr(sub, "embeddings") and isinstance(layers, nn.ModuleList) and len(layers)):
            continue
        if all(_bert_layer(layer) for layer in layers) and not _decoder(sub):
            found.append(name)
    return found


def _bert_layer(layer: nn.Module) -> bool:
    """A layer whose parts the packed forward calls, by BERT's names."""
    try:
        for path in _LAYER_PARTS:
            layer.get_submodule(path)
    except AttributeError:
        return False
    return all(hasattr(layer.attention.self, name) for name in _HEAD_SIZES)


def _decoder(encoder: nn.Module) -> bool:
    config = getattr(encoder, "config", None)
    return bool(getattr(config, "is_decoder", False) or getattr(config, "add_cross_attention", False))


@functools.cache
def _attention() -> dict:
    """Per attention kind, the function from packed Q, K, V (and a layout) to packed context."""
    import torch

    def row_attention(query, key, value, bounds, heads: int, size: int):
        """Each row's tokens attend to that row's tokens only, one row at a time: no mask,
        and no padded [batch, heads, length, length] scores (a third of their entries even
        cut to the longest row, at batch 8 on the pydoc passages). Scripted, so the export
        holds a Loop over the rows."""
        tokens = query.size(0)
        query, key, value = (x.view(tokens, heads, size).transpose(0, 1) for x in (query, key, value))
        context = value.narrow(1, 0, 0)
        for index in range(bounds.size(0) - 1):
            # narrow: one Slice on the token axis (indexing [:, a:b] also copies the whole tensor)
            start, length = int(bounds[index]), int(bounds[index + 1] - bounds[index])
            row_query, row_key, row_value = (x.narrow(1, start, length) for x in (query, key, value))
            weights = (row_query @ row_key.transpose(1, 2) * size**-0.5).softmax(-1)
            context = torch.cat([context, weights @ row_value], 1)
        return context.transpose(0, 1).reshape(tokens, heads * size)

    def padded_attention(query, key, value, layout: PaddedLayout, heads: int, size: int):
        """The batch's scores in the padded layout under the mask, back to the packed rows."""
        batch, length = layout.bias.shape[0], layout.bias.shape[-1]

        def padded(x):
            return x.index_select(0, layout.row).view(batch, length, heads, size).transpose(1, 2)

        scores = padded(query) @ padded(key).transpose(-1, -2) * size**-0.5 + layout.bias
        context = (scores.softmax(dim=-1) @ padded(value)).transpose(1, 2).reshape(batch * length, heads * size)
        return context.index_select(0, layout.positions)

    return {Attention.PER_ROW: torch.jit.script(row_attention), Attention.PADDED: padded_attention}


@functools.cache
def _packed_class():
    """Defined on first use: torch is imported inside functions (`import edgeopt` stays light)."""
    import torch
    from torch import nn

    class PackedEncoder(nn.Module):
        """A BERT-style encoder's forward on packed real tokens; its children are the
        encoder's own, under the same names, so its state dict is unchanged."""

        def __init__(self, encoder: nn.Module, attention: Attention):
            super().__init__()
            self.attention_kind = attention
            for child_name, child in encoder.named_children():
                self.add_module(child_name, child)
            self.config = getattr(encoder, "config", None)

        def forward(self, input_ids, attention_mask=None, token_type_ids=None, **_unused):
            from transformers.modeling_outputs import BaseModelOutput

            batch, length = input_ids.shape
            if attention_mask is None:
                attention_mask = torch.ones_like(input_ids)
            extra = {} if token_type_ids is None else {"token_type_ids": token_type_ids}
            hidden = self.embeddings(input_ids=input_ids, **extra)
            width = hidden.shape[-1]
            real = attention_mask != 0
            # a batch of padding alone computes its first position, so there is a row to read;
            # pooling over the mask multiplies it by zero
            alone = (torch.arange(batch * length, device=input_ids.device) == 0) & ~real.any()
            computed = real.reshape(-1) | alone
            positions = computed.nonzero().squeeze(1)
            # each padded position reads a computed token's row (the one before it, or the
            # first), which pooling over the mask multiplies by zero
            row = (computed.long().cumsum(0) - 1).clamp(min=0)
            tokens = hidden.reshape(-1, width).index_select(0, positions)
            attend = _attention()[self.attention_kind]
            if self.attention_kind is Attention.PER_ROW:
                # a row's tokens lie together in the packed matrix, from one bound to the next
                ends = computed.view(batch, length).long().sum(1).cumsum(0)
                layout = torch.cat([ends[:1] * 0, ends])
            else:
                bias = (1.0 - attention_mask[:, None, None, :].to(hidden.dtype)) * torch.finfo(hidden.dtype).min
                layout = PaddedLayout(row, positions, bias)
            for layer in self.encoder.layer:
                own = layer.attention.self
                context = attend(
                    own.query(tokens), own.key(tokens), own.value(tokens), layout,
                    own.num_attention_heads, own.attention_head_size,
                )  # fmt: skip
                tokens = layer.attention.output(context, tokens)
                tokens = layer.output(layer.intermediate(tokens), tokens)
            return BaseModelOutput(last_hidden_state=tokens.index_select(0, row).view(batch, length, width))

    return PackedEncoder


@dataclasses.dataclass(frozen=True)
class PaddedLayout:
    """Where the packed tokens sit in the padded batch, and the mask's additive bias."""

    row: Any  # per padded position, the packed row it reads
    positions: Any  # per packed row, its padded position
    bias: Any  # [batch, 1, 1, length]: 0 where a key is real, the dtype's minimum where padding
