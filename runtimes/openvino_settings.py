"""What edgeopt asks of OpenVINO's CPU plugin when it compiles a model, and how the answers
and errors are put into words."""

from __future__ import annotations

import re

from runtimes.base import SessionOptions

# read back from every compiled model into session.settings
READ_BACK = (
    "INFERENCE_NUM_THREADS",
    "NUM_STREAMS",
    "PERFORMANCE_HINT",
    "INFERENCE_PRECISION_HINT",
    "EXECUTION_MODE_HINT",
    "ENABLE_CPU_PINNING",
    "SCHEDULING_CORE_TYPE",
)


def compile_config(options: SessionOptions) -> dict[str, object]:
    """Every property that decides speed, set, so that no default differs between machines."""
    config: dict[str, object] = {
        "PERFORMANCE_HINT": "LATENCY",
        "NUM_STREAMS": 1,
        # f32 unless bf16 is asked for: the plugin's default is bf16 on CPUs with
        # AVX-512-BF16 or AMX (f16 on some ARM ones), which would change the arithmetic
        # from machine to machine; INT8 layers stay INT8 either way
        "INFERENCE_PRECISION_HINT": "bf16" if options.bf16 else "f32",
        # pinned threads cannot move away from other load; ONNX Runtime pins none either
        "ENABLE_CPU_PINNING": False,
        "SCHEDULING_CORE_TYPE": "ANY_CORE",
        "ENABLE_HYPER_THREADING": False,
    }
    if not options.optimize:
        # no switch turns the graph transformations off; ACCURACY keeps every layer in the
        # model's own precision (and takes no precision hint)
        config["EXECUTION_MODE_HINT"] = "ACCURACY"
        del config["INFERENCE_PRECISION_HINT"]
    if options.threads is not None:
        config["INFERENCE_NUM_THREADS"] = options.threads
    if options.verbose:
        config["LOG_LEVEL"] = "LOG_INFO"
    return config


def static_shapes(model, profile: dict | None) -> dict:
    """Input name → shape (-1 for a dim left symbolic) for the inputs with a symbolic dim that
    has one size in `profile` (min/opt/max per input, as SessionOptions carries it); {}
    where nothing would change."""
    shapes = {}
    for port in model.inputs:
        name = port.get_any_name()
        if name not in (profile or {}):
            continue
        low, _, high = profile[name]
        dims = list(port.get_partial_shape())
        if len(dims) != len(low):
            continue  # feeds of another rank: the session's own check reports it
        fixed = [
            dim.get_length() if dim.is_static else (lo if lo == hi else -1)
            for dim, lo, hi in zip(dims, low, high, strict=True)
        ]
        if any(not dim.is_static and size != -1 for dim, size in zip(dims, fixed, strict=True)):
            shapes[name] = fixed
    return shapes


_LOCATION = re.compile(r"^(Exception from |Check '.*' failed at )?\S*src/\S+:\d+:?\s*$")


def message(err: BaseException, limit: int = 240) -> str:
    """OpenVINO's messages open with lines naming its own source files ('Exception from
    src/inference/src/cpp/core.cpp:84:'); the other lines say what went wrong, e.g.
    'FrontEnd API failed with OpConversionFailure: Model wasn't fully converted. No
    conversion rule found for operations: com.microsoft.QAttention'."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    useful = [
        re.sub(r"^(-- |Check '.*' failed at \S+:\d+:\s*)", "", line)
        for line in lines
        if not _LOCATION.match(line) and line != "Summary:"
    ]
    line = " ".join(useful[:3]) if useful else (lines[0] if lines else type(err).__name__)
    return line if len(line) <= limit else line[: limit - 1] + "…"


def plain(value) -> str:
    """A property's value as text: 'f32', not "<Type: 'float32'>"; 'LATENCY', not
    'PerformanceMode.LATENCY'."""
    if hasattr(value, "get_type_name"):
        return value.get_type_name()
    text = str(value)
    return text.split(".", 1)[1] if re.fullmatch(r"[A-Za-z]+\.[A-Z_]+", text) else text
