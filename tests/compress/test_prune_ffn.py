"""prune_ffn on a 2-layer BERT-style encoder (feed-forward width 128)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from compress.prune_ffn import PruneFfnOptions, prune_ffn
from edgeopt.core.context import StageContext
from edgeopt.core.data import Split
from edgeopt.core.errors import RecipeError
from edgeopt.core.torch_artifact import load_module

BLOCKS = ("bert.encoder.layer.0", "bert.encoder.layer.1")


@pytest.fixture
def context(tmp_path, bert_probe):
    return StageContext(tmp_path, bert_probe, calibration=Split(bert_probe, None))


def _run(module, probe) -> np.ndarray:
    with torch.inference_mode():
        names = ("input_ids", "attention_mask", "token_type_ids")
        return module(*(torch.from_numpy(probe[name]) for name in names)).numpy()


def test_neurons_that_never_vary_go_first_and_their_mean_stays_in_the_bias(bert_torch, bert_probe, context, tmp_path):
    """A quarter of each block's neurons made constant (zero weights, a bias): they carry no
    variance, so they are the ones removed, and folding their value into the output bias
    leaves the model's function as it was."""
    module = load_module(bert_torch)
    constant = torch.arange(0, 128, 4)
    with torch.no_grad():
        for block in BLOCKS:
            up = module.get_submodule(f"{block}.intermediate.dense")
            up.weight[constant] = 0
            up.bias[constant] = torch.linspace(-1, 2, len(constant))
    path = tmp_path / "constant.pt"
    torch.save(module.state_dict(), path)
    source = dataclasses.replace(bert_torch, path=path)
    out = tmp_path / "out"
    out.mkdir()

    result = prune_ffn(source, PruneFfnOptions(ratio=0.25, round_to=32), dataclasses.replace(context, out_dir=out))

    pruned = load_module(result)
    for block in BLOCKS:
        assert pruned.get_submodule(f"{block}.intermediate.dense").out_features == 96
        assert pruned.get_submodule(f"{block}.output.dense").in_features == 96
    np.testing.assert_allclose(_run(pruned, bert_probe), _run(module, bert_probe), atol=2e-5)
    compression = result.facts["compression"]
    assert (compression["neurons_before"], compression["neurons"], compression["blocks"]) == (128, 96, 2)
    assert compression["variance_kept"] == pytest.approx(1.0)
    assert "128 to 96 neurons" in compression["summary"]


def test_pruning_real_neurons_changes_the_output_a_little(bert_torch, bert_probe, context):
    result = prune_ffn(bert_torch, PruneFfnOptions(ratio=0.25, round_to=32), context)
    expected, actual = _run(load_module(bert_torch), bert_probe), _run(load_module(result), bert_probe)
    cosine = (expected * actual).sum(-1) / np.linalg.norm(expected, axis=-1) / np.linalg.norm(actual, axis=-1)
    assert 0.9 < cosine.min() < 1 - 1e-6
    assert result.facts["parameters"] < result.facts["compression"]["parameters_before"]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"up": "ffn.lin1"}, "no module name ends with 'ffn.lin1'"),
        ({"down": "attention.output.dense"}, "no Linear sibling bert.encoder.layer.0.attention.output.dense"),
        ({"ratio": 0.1, "round_to": 64}, "keeps 128; choose another ratio or round_to"),
    ],
)
def test_options_that_find_no_block_or_keep_everything_are_refused(bert_torch, context, options, message):
    with pytest.raises(RecipeError, match=message):
        prune_ffn(bert_torch, PruneFfnOptions(**options), context)
