"""Tiny graphs shaped like the classic ONNX model-zoo models, in their legacy form: IR
version 3, opset 7 to 9, every initializer also listed as a graph input, a fixed batch of
one (`data_0: [1, 3, 32, 32]`), BatchNormalization, Gemm, Sum, LRN, Dropout, and the
attribute forms of Pad and Upsample. Random weights at a scale that keeps activations
near one, so FP16 and INT8 are judged on realistic values."""

from __future__ import annotations

import itertools

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

INPUT = "data_0"
SHAPE = (1, 3, 32, 32)
CLASSES = 10


class _Graph:
    """Appends nodes and their weights; names tensors as the zoo's Caffe2 exports do."""

    def __init__(self, opset: int, seed: int):
        self.opset = opset
        self.nodes: list[onnx.NodeProto] = []
        self.weights: list[onnx.TensorProto] = []
        self.rng = np.random.default_rng(seed)
        self.count = itertools.count()

    def _name(self, prefix: str) -> str:
        return f"{prefix}_{next(self.count)}"

    def weight(self, shape, fan_in: int | None = None, value=None) -> str:
        name = self._name("w")
        if value is None:
            value = self.rng.standard_normal(shape) * np.sqrt(2.0 / (fan_in or shape[-1]))
        self.weights.append(
            numpy_helper.from_array(np.asarray(value, np.float32 if value.dtype.kind == "f" else value.dtype), name)
        )
        return name

    def op(self, op_type: str, inputs: list[str], **attributes) -> str:
        output = self._name(op_type.lower())
        self.nodes.append(helper.make_node(op_type, inputs, [output], name=output, **attributes))
        return output

    def conv(self, x: str, c_in: int, c_out: int, k: int, stride: int = 1, group: int = 1, bias: bool = True) -> str:
        w = self.weight((c_out, c_in // group, k, k), fan_in=c_in // group * k * k)
        inputs = [x, w, self.weight((c_out,), value=self.rng.standard_normal(c_out) * 0.1)] if bias else [x, w]
        pads = [k // 2] * 4
        return self.op("Conv", inputs, kernel_shape=[k, k], strides=[stride, stride], pads=pads, group=group)

    def bn(self, x: str, c: int) -> str:
        scale = self.weight((c,), value=1 + 0.1 * self.rng.standard_normal(c))
        shift = self.weight((c,), value=0.1 * self.rng.standard_normal(c))
        mean = self.weight((c,), value=0.1 * self.rng.standard_normal(c))
        var = self.weight((c,), value=1 + 0.2 * self.rng.random(c))
        extra = {"spatial": 1} if self.opset < 9 else {}  # BatchNormalization-7's attribute, gone in 9
        return self.op("BatchNormalization", [x, scale, shift, mean, var], epsilon=1e-5, **extra)

    def conv_bn_relu(self, x: str, c_in: int, c_out: int, k: int, stride: int = 1, group: int = 1) -> str:
        return self.op("Relu", [self.bn(self.conv(x, c_in, c_out, k, stride, group, bias=False), c_out)])

    def maxpool(self, x: str, k: int = 2, stride: int = 2) -> str:
        return self.op("MaxPool", [x], kernel_shape=[k, k], strides=[stride, stride])

    def avgpool(self, x: str, k: int = 2, stride: int = 2) -> str:
        return self.op("AveragePool", [x], kernel_shape=[k, k], strides=[stride, stride])

    def lrn(self, x: str) -> str:
        return self.op("LRN", [x], size=5, alpha=1e-4, beta=0.75, bias=1.0)

    def pad(self, x: str, amount: int) -> str:
        """Pad-2: pads as an attribute (an input since opset 11)."""
        return self.op("Pad", [x], pads=[0, 0, amount, amount, 0, 0, amount, amount], mode="constant", value=0.0)

    def upsample(self, x: str) -> str:
        """Upsample: scales as an attribute in opset 7 and 8, an input in 9 (Resize since 10)."""
        if self.opset < 9:
            return self.op("Upsample", [x], scales=[1.0, 1.0, 2.0, 2.0], mode="nearest")
        scales = self.weight((4,), value=np.array([1.0, 1.0, 2.0, 2.0]))
        return self.op("Upsample", [x, scales], mode="nearest")

    def classifier(self, x: str, c: int, hidden: int | None = None, spatial: int = 1) -> str:
        """Reshape (a shape initializer, as Caffe2 wrote it) → [Gemm → Relu → Dropout] → Gemm → Softmax."""
        shape = self.weight((2,), value=np.array([1, -1], np.int64))
        x = self.op("Reshape", [x, shape])
        features = c * spatial * spatial
        if hidden:
            x = self.op("Relu", [self.gemm(x, features, hidden)])
            x = self.op("Dropout", [x], ratio=0.5)
            features = hidden
        x = self.op("Dropout", [self.gemm(x, features, CLASSES)], ratio=0.5)
        return self.op("Softmax", [x], axis=1)

    def gemm(self, x: str, c_in: int, c_out: int) -> str:
        w = self.weight((c_out, c_in), fan_in=c_in)
        b = self.weight((c_out,), value=self.rng.standard_normal(c_out) * 0.1)
        return self.op("Gemm", [x, w, b], transB=1)

    def model(self, name: str, output: str) -> onnx.ModelProto:
        data = [helper.make_tensor_value_info(INPUT, TensorProto.FLOAT, list(SHAPE))]
        weights = [helper.make_tensor_value_info(w.name, w.data_type, list(w.dims)) for w in self.weights]
        self.nodes[-1].output[0] = "prob_1"
        outputs = [helper.make_tensor_value_info("prob_1", TensorProto.FLOAT, [1, CLASSES])]
        graph = helper.make_graph(self.nodes, name, data + weights, outputs, self.weights)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", self.opset)], ir_version=3)
        onnx.checker.check_model(model)
        return model


def resnet50(opset: int = 9) -> onnx.ModelProto:
    """Stem, then bottleneck blocks (1×1 → 3×3 → 1×1, projection shortcut), Sum, global pool, FC."""
    g = _Graph(opset, 1)
    x = g.maxpool(g.conv_bn_relu(INPUT, 3, 8, 7, stride=2), 3, 2)
    c = 8
    for width, stride in ((4, 1), (8, 2)):
        out = width * 4
        y = g.conv_bn_relu(x, c, width, 1)
        y = g.conv_bn_relu(y, width, width, 3, stride)
        y = g.bn(g.conv(y, width, out, 1, bias=False), out)
        shortcut = g.bn(g.conv(x, c, out, 1, stride, bias=False), out)
        x, c = g.op("Relu", [g.op("Sum", [y, shortcut])]), out
    return g.model("resnet50", g.classifier(g.op("GlobalAveragePool", [x]), c))


def densenet121(opset: int = 9) -> onnx.ModelProto:
    """Dense blocks (BN → Relu → 1×1 → BN → Relu → 3×3, concatenated) and a transition."""
    g = _Graph(opset, 2)
    x = g.maxpool(g.conv_bn_relu(INPUT, 3, 8, 7, stride=2), 3, 2)
    c, growth = 8, 4
    for block in range(2):
        for _ in range(2):
            y = g.conv(g.op("Relu", [g.bn(x, c)]), c, 4 * growth, 1, bias=False)
            y = g.conv(g.op("Relu", [g.bn(y, 4 * growth)]), 4 * growth, growth, 3, bias=False)
            x, c = g.op("Concat", [x, y], axis=1), c + growth
        if block == 0:
            x = g.avgpool(g.conv(g.op("Relu", [g.bn(x, c)]), c, c // 2, 1, bias=False))
            c //= 2
    x = g.op("Relu", [g.bn(x, c)])
    return g.model("densenet121", g.classifier(g.op("GlobalAveragePool", [x]), c))


def _inception(g: _Graph, x: str, c: int, widths: tuple[int, int, int, int], batch_norm: bool) -> tuple[str, int]:
    """Four branches: 1×1; 1×1 → 3×3; 1×1 → 3×3 → 3×3 (v2) or 5×5 (v1); pool → 1×1."""

    def unit(y: str, c_in: int, c_out: int, k: int) -> str:
        return g.conv_bn_relu(y, c_in, c_out, k) if batch_norm else g.op("Relu", [g.conv(y, c_in, c_out, k)])

    a, b, d, e = widths
    one = unit(x, c, a, 1)
    three = unit(unit(x, c, b, 1), b, b, 3)
    five = unit(unit(unit(x, c, d, 1), d, d, 3), d, d, 3) if batch_norm else unit(unit(x, c, d, 1), d, d, 5)
    pooled = g.op("MaxPool", [x], kernel_shape=[3, 3], strides=[1, 1], pads=[1, 1, 1, 1])
    if batch_norm:  # BN-Inception averages in its pool branch, padding counted
        pooled = g.op("AveragePool", [x], kernel_shape=[3, 3], strides=[1, 1], pads=[1, 1, 1, 1], count_include_pad=1)
    return g.op("Concat", [one, three, five, unit(pooled, c, e, 1)], axis=1), a + b + d + e


def inception_v1(opset: int = 8) -> onnx.ModelProto:
    """GoogLeNet: convolutions with bias, LRN, inception modules, average pool, dropout, FC."""
    g = _Graph(opset, 3)
    x = g.lrn(g.maxpool(g.op("Relu", [g.conv(INPUT, 3, 8, 7, stride=2)]), 3, 2))
    x, c = _inception(g, x, 8, (4, 4, 2, 2), batch_norm=False)
    x, c = _inception(g, g.maxpool(x), c, (4, 6, 2, 4), batch_norm=False)
    return g.model("inception_v1", g.classifier(g.avgpool(x, 4, 4), c))


def inception_v2(opset: int = 9) -> onnx.ModelProto:
    """BN-Inception: BatchNormalization after every convolution, 3×3 pairs for 5×5, a padded stem."""
    g = _Graph(opset, 4)
    x = g.maxpool(g.conv_bn_relu(g.pad(INPUT, 1), 3, 8, 3, stride=2))
    x, c = _inception(g, x, 8, (4, 4, 2, 2), batch_norm=True)
    x, c = _inception(g, g.maxpool(x), c, (4, 6, 2, 4), batch_norm=True)
    return g.model("inception_v2", g.classifier(g.op("GlobalAveragePool", [x]), c))


def shufflenet(opset: int = 9) -> onnx.ModelProto:
    """Grouped 1×1 convolutions, channel shuffle (Reshape → Transpose → Reshape), depthwise 3×3."""
    g = _Graph(opset, 5)
    x = g.maxpool(g.conv_bn_relu(INPUT, 3, 12, 3, stride=2))
    c, groups = 12, 3
    size = 8  # the shuffle comes before each unit's strided depthwise convolution
    for stride in (1, 2):
        y = g.conv_bn_relu(x, c, c, 1, group=groups)
        split = g.weight((5,), value=np.array([1, groups, c // groups, size, size], np.int64))
        merged = g.weight((4,), value=np.array([1, c, size, size], np.int64))
        y = g.op("Reshape", [g.op("Transpose", [g.op("Reshape", [y, split])], perm=[0, 2, 1, 3, 4]), merged])
        y = g.bn(g.conv(y, c, c, 3, stride, group=c, bias=False), c)
        y = g.bn(g.conv(y, c, c, 1, group=groups, bias=False), c)
        if stride == 1:
            x = g.op("Relu", [g.op("Add", [x, y])])
        else:
            pooled = g.op("AveragePool", [x], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])
            x, c = g.op("Relu", [g.op("Concat", [pooled, y], axis=1)]), 2 * c
    return g.model("shufflenet", g.classifier(g.op("GlobalAveragePool", [x]), c))


def squeezenet(opset: int = 7) -> onnx.ModelProto:
    """Fire modules (squeeze 1×1, expand 1×1 and 3×3, concatenated), dropout, a 1×1 classifier conv."""
    g = _Graph(opset, 6)
    x = g.maxpool(g.op("Relu", [g.conv(INPUT, 3, 8, 3, stride=2)]), 3, 2)
    c = 8
    for squeeze, expand in ((2, 4), (4, 8)):
        s = g.op("Relu", [g.conv(x, c, squeeze, 1)])
        one, three = g.op("Relu", [g.conv(s, squeeze, expand, 1)]), g.op("Relu", [g.conv(s, squeeze, expand, 3)])
        x, c = g.op("Concat", [one, three], axis=1), 2 * expand
    x = g.op("Relu", [g.conv(g.op("Dropout", [x], ratio=0.5), c, CLASSES, 1)])
    x = g.op("Reshape", [g.op("GlobalAveragePool", [x]), g.weight((2,), value=np.array([1, -1], np.int64))])
    g.op("Softmax", [x], axis=1)
    return g.model("squeezenet", g.nodes[-1].output[0])


def vgg19(opset: int = 9) -> onnx.ModelProto:
    """Stacks of 3×3 convolutions with Relu and max pooling, then two FC layers with dropout."""
    g = _Graph(opset, 7)
    x, c = INPUT, 3
    for width, repeats in ((4, 2), (8, 2), (8, 4)):
        for _ in range(repeats):
            x, c = g.op("Relu", [g.conv(x, c, width, 3)]), width
        x = g.maxpool(x)
    return g.model("vgg19", g.classifier(x, c, hidden=16, spatial=4))


def alexnet(opset: int = 7) -> onnx.ModelProto:
    """Large strided first convolution, LRN, grouped convolution, three FC layers with dropout."""
    g = _Graph(opset, 8)
    x = g.maxpool(g.lrn(g.op("Relu", [g.conv(g.pad(INPUT, 2), 3, 8, 5, stride=2)])), 3, 2)
    x = g.maxpool(g.lrn(g.op("Relu", [g.conv(x, 8, 12, 3, group=2)])), 3, 2)
    x = g.op("Relu", [g.conv(x, 12, 8, 3)])
    return g.model("alexnet", g.classifier(x, 8, hidden=16, spatial=3))


def zfnet512(opset: int = 8) -> onnx.ModelProto:
    """AlexNet's layout with a smaller first stride, LRN after the first two stages, an upsampled tail."""
    g = _Graph(opset, 9)
    x = g.maxpool(g.lrn(g.op("Relu", [g.conv(INPUT, 3, 8, 7, stride=2)])), 3, 2)
    x = g.maxpool(g.lrn(g.op("Relu", [g.conv(x, 8, 12, 5)])))
    x = g.upsample(g.op("Relu", [g.conv(x, 12, 8, 3)]))
    return g.model("zfnet512", g.classifier(g.maxpool(x), 8, hidden=16, spatial=3))


ZOO = {
    "resnet50": resnet50,
    "densenet121": densenet121,
    "inception_v1": inception_v1,
    "inception_v2": inception_v2,
    "shufflenet": shufflenet,
    "squeezenet": squeezenet,
    "vgg19": vgg19,
    "alexnet": alexnet,
    "zfnet512": zfnet512,
}


def upsampling_head(opset: int) -> onnx.ModelProto:
    """A segmentation-style head: the opset's own Upsample form and Pad-2, with a classifier."""
    g = _Graph(opset, 10 + opset)
    x = g.maxpool(g.conv_bn_relu(g.pad(INPUT, 1), 3, 8, 3, stride=2))
    x = g.op("Relu", [g.conv(g.upsample(x), 8, 8, 3)])
    return g.model(f"upsampling_opset{opset}", g.classifier(g.op("GlobalAveragePool", [x]), 8))


def probe(count: int = 4, seed: int = 0) -> dict[str, np.ndarray]:
    return {INPUT: np.random.default_rng(seed).standard_normal((count, *SHAPE[1:])).astype(np.float32)}
