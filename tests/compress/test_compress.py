"""The compress stages on a small digits CNN: structure, rebuild, export and numbers."""

from __future__ import annotations

import dataclasses

import numpy as np
import onnx
import pytest
import torch
from pydantic import ValidationError

from compress.codebook import PackCodebookOptions, pack_codebook
from compress.distill import DistillOptions, distill
from compress.ensemble import EnsembleOptions, Member, ensemble
from compress.prune import (
    PruneChannelsOptions,
    PruneLayersOptions,
    PruneMagnitudeOptions,
    prune_channels,
    prune_layers,
    prune_magnitude,
)
from compress.share import ShareWeightsOptions, cluster, share_weights
from compress.sweep import TrainStructureOptions, train_structure
from compress.train import Training, outputs
from edgeopt.core.torch_artifact import load_module
from exporter.torch_export import Exporter, ExportOnnxOptions, export_onnx
from tests.compress.conftest import trained_artifact

QUICK = Training(epochs=1)


def _convs(artifact) -> dict[str, torch.nn.Conv2d]:
    module = load_module(artifact)
    return {name: m for name, m in module.named_modules() if isinstance(m, torch.nn.Conv2d)}


def _exported(artifact, make_context, exporter=Exporter.DYNAMO):
    onnx_artifact = export_onnx(artifact, ExportOnnxOptions(exporter=exporter), make_context())
    assert onnx_artifact.verification.passed
    return onnx_artifact


def test_prune_channels_halves_every_conv_and_exports_smaller(resnet, make_context):
    pruned = prune_channels(resnet, PruneChannelsOptions(ratio=0.5, fine_tune=QUICK), make_context())

    before, after = _convs(resnet), _convs(pruned)
    assert {name: m.out_channels // 2 for name, m in before.items()} == {n: m.out_channels for n, m in after.items()}
    assert pruned.verification.passed
    assert pruned.facts["parameters"] < 0.3 * resnet.facts["parameters"]
    onnx_artifact = _exported(pruned, make_context)
    model = onnx.load(str(onnx_artifact.path))
    stem = next(i for i in model.graph.initializer if tuple(i.dims) == (4, 1, 3, 3))
    assert stem is not None


def test_prune_channels_keeps_concat_and_depthwise_consistent(make_context, digits):
    artifact = trained_artifact(make_context, digits, "coupled_models:ConcatDepthwise", {"width": 8}, epochs=1)

    pruned = prune_channels(artifact, PruneChannelsOptions(ratio=0.5, fine_tune=QUICK), make_context())

    convs = _convs(pruned)
    assert convs["left.0"].out_channels + convs["right.0"].out_channels == convs["depthwise"].in_channels
    assert convs["depthwise"].groups == convs["depthwise"].out_channels == 8
    assert pruned.verification.passed
    _exported(pruned, make_context)


def test_prune_layers_drops_the_cheapest_block_after_channel_pruning(resnet, make_context):
    pruned = prune_channels(resnet, PruneChannelsOptions(ratio=0.5, fine_tune=QUICK), make_context())

    shallower = prune_layers(pruned, PruneLayersOptions(layers=1, fine_tune=QUICK), make_context())

    (dropped,) = shallower.facts["compression"]["dropped"]
    assert isinstance(load_module(shallower).get_submodule(dropped), torch.nn.Identity)
    assert shallower.source.kwargs["layers"] == pruned.source.kwargs["layers"]
    assert shallower.facts["parameters"] < pruned.facts["parameters"]
    assert shallower.verification.passed


def test_prune_magnitude_holds_the_zeros_through_fine_tuning(resnet, make_context):
    sparse = prune_magnitude(resnet, PruneMagnitudeOptions(sparsity=0.6, fine_tune=QUICK), make_context())

    module = load_module(sparse)
    weights = torch.cat(
        [m.weight.flatten() for m in module.modules() if isinstance(m, torch.nn.Conv2d | torch.nn.Linear)]
    )
    assert float((weights == 0).float().mean()) >= 0.6
    assert sparse.facts["compression"]["dense_kernels"]
    assert sparse.facts["parameters"] == resnet.facts["parameters"]


def test_distill_trains_the_student_and_its_baselines(resnet, make_context):
    options = DistillOptions(student_kwargs={"width": 4}, training=Training(epochs=2), baseline_seeds=2)

    student = distill(resnet, options, make_context())

    facts = student.facts["compression"]
    assert student.source.factory == "compress.models:DigitsResNet"
    assert student.facts["parameters"] < resnet.facts["parameters"] / 3
    assert len(facts["baseline_validation_top1"]) == 2
    assert facts["baseline_validation_top1_mean"] == pytest.approx(np.mean(facts["baseline_validation_top1"]))
    assert student.verification.passed


def test_ensemble_mean_is_the_log_of_the_members_mean_probability(resnet, make_context, digits):
    members = [Member(kwargs={"width": 4}, seed=seed) for seed in (0, 1)]
    options = EnsembleOptions(members=members, training=QUICK)

    combined = ensemble(resnet, options, make_context())

    module = load_module(combined)
    names = ["image"]
    probabilities = [outputs(m, digits.test, names).softmax(dim=1) for m in module.members]
    expected = torch.stack(probabilities).mean(dim=0).log()
    torch.testing.assert_close(outputs(module, digits.test, names), expected)
    assert len(combined.facts["compression"]["member_validation_top1"]) == 2
    _exported(combined, make_context)


def test_ensemble_vote_takes_the_majority(resnet, make_context, digits):
    members = [Member(kwargs={"width": 4}, seed=seed) for seed in (0, 1, 2)]
    voted = ensemble(resnet, EnsembleOptions(members=members, combine="vote", training=QUICK), make_context())

    module = load_module(voted)
    answers = torch.stack([outputs(m, digits.test, ["image"]).argmax(dim=1) for m in module.members])
    chosen = outputs(module, digits.test, ["image"]).argmax(dim=1)
    majority, count = torch.mode(answers, dim=0)
    assert bool((chosen[count >= 2] == majority[count >= 2]).all())
    assert bool((count >= 2).any())


@pytest.mark.parametrize(("threshold", "answering"), [(1.0, 1), (0.01, 0)])
def test_ensemble_cascade_sends_unsure_samples_to_the_large_model(resnet, make_context, digits, threshold, answering):
    options = EnsembleOptions(
        mode="cascade", members=[Member(kwargs={"width": 4})], with_input=True, threshold=threshold, training=QUICK
    )

    cascade = ensemble(resnet, options, make_context())

    module = load_module(cascade)
    expected = outputs(module.members[answering], digits.test, ["image"])
    torch.testing.assert_close(outputs(module, digits.test, ["image"]), expected)
    onnx_artifact = _exported(cascade, make_context, Exporter.TORCHSCRIPT)
    ops = {node.op_type for node in onnx.load(str(onnx_artifact.path)).graph.node}
    assert {"NonZero", "Gather"} <= ops


def test_ensemble_stacking_fits_a_meta_model_that_exports(resnet, make_context):
    members = [Member(kwargs={"width": 4}, seed=seed) for seed in (0, 1)]

    stacked = ensemble(resnet, EnsembleOptions(mode="stacking", members=members, training=QUICK), make_context())

    assert load_module(stacked).stacker.in_features == 20
    _exported(stacked, make_context)


def test_ensemble_stacking_weights_do_not_follow_the_thread_count(resnet, make_context):
    """A Ray task runs torch on one thread, this machine on all of its: the same artifact."""
    members = [Member(kwargs={"width": 4}, seed=seed) for seed in (0, 1)]
    options = EnsembleOptions(mode="stacking", members=members, training=QUICK, meta_epochs=20)
    weights = []
    threads = torch.get_num_threads()
    try:
        for count in (1, 4):
            torch.set_num_threads(count)
            weights.append(load_module(ensemble(resnet, options, make_context())).stacker.weight.detach())
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(weights[0], weights[1])


def test_export_does_not_follow_the_probes_memory_layout(resnet, make_context):
    """A size-1 dim's stride means nothing to numpy but did to the export (a stacked ensemble
    traced one node more from a probe whose channel stride was not the canonical one); a Ray
    task gets the probe pickled, canonical, while this process has the dataset's view."""
    members = [Member(kwargs={"width": 4}, seed=seed) for seed in (0, 1)]
    options = EnsembleOptions(mode="stacking", members=members, training=QUICK, meta_epochs=5)
    stacked = ensemble(resnet, options, make_context())
    exported = []
    for canonical in (False, True):
        context = make_context()
        probe = {k: np.array(v) if canonical else v for k, v in context.probe.items()}
        assert canonical or context.probe["image"].strides != np.array(context.probe["image"]).strides
        context = dataclasses.replace(context, probe=probe)
        exported.append(export_onnx(stacked, ExportOnnxOptions(), context).path.read_bytes())
    assert exported[0] == exported[1]


def test_ensemble_options_reject_a_cascade_of_three():
    with pytest.raises(ValidationError, match="exactly 2 models"):
        EnsembleOptions(mode="cascade", members=[Member(), Member()], with_input=True)


def test_cluster_matches_a_kmeans_by_hand_on_two_groups():
    values = np.array([0.0, 0.1, 0.2, 10.0, 10.2], np.float32)

    codebook, indices = cluster(values, 2)

    np.testing.assert_allclose(np.sort(codebook), [0.1, 10.1], rtol=1e-6)
    assert indices[0] == indices[2] != indices[3] == indices[4]


def test_share_weights_leaves_sixteen_values_and_packs_them_into_a_smaller_file(resnet, make_context):
    tie = [["stage1.0.body.0.0.weight", "stage1.0.body.1.weight"]]

    shared = share_weights(resnet, ShareWeightsOptions(clusters=16, tie=tie), make_context())

    module = load_module(shared)
    for conv in (m for m in module.modules() if isinstance(m, torch.nn.Conv2d)):
        assert len(torch.unique(conv.weight)) <= 16
    parameters = dict(module.named_parameters())
    torch.testing.assert_close(parameters[tie[0][0]], parameters[tie[0][1]])
    dense = _exported(shared, make_context)
    packed = pack_codebook(dense, PackCodebookOptions(min_elements=64), make_context())
    assert packed.verification.passed
    codebook = packed.facts["codebook"]
    assert codebook["packed_bytes"] < 0.3 * codebook["dense_bytes"]
    assert packed.facts["size_bytes"] < dense.facts["size_bytes"] - 0.6 * codebook["dense_bytes"]
    graph = onnx.load(str(packed.path)).graph
    assert [node.op_type for node in graph.node].count("Gather") == packed.facts["codebook"]["tensors_packed"] == 6
    convs = [node.input[1] for node in graph.node if node.op_type == "Conv"]
    assert len(set(convs)) == len(convs) - 1  # the tied pair reads one stored tensor


def test_train_structure_rebuilds_the_factory_with_other_kwargs(resnet, make_context):
    options = TrainStructureOptions(kwargs={"width": 4, "activation": "gelu"}, training=QUICK)

    narrower = train_structure(resnet, options, make_context())

    module = load_module(narrower)
    assert module.stem[0].out_channels == 4
    assert isinstance(module.stem[2], torch.nn.GELU)
    assert narrower.source.kwargs == {"width": 4, "activation": "gelu"}
