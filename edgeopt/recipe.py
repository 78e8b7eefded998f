"""The recipe: a YAML file validated against this schema before any stage runs.

Relative paths in a recipe are relative to the recipe's folder.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, PositiveInt, ValidationError, model_validator

from edgeopt.core.errors import RecipeError
from edgeopt.core.targets import Target
from edgeopt.device_spec import LOCAL, NAME, DeviceSpec
from edgeopt.huggingface import PRETRAINED, Pooling
from edgeopt.images import Preprocess
from edgeopt.problems import problems, summarize
from edgeopt.text import TextSource

DTYPES = ("float32", "float16", "int64", "int32", "int8", "uint8", "bool")
_IDENTIFIER = r"^[A-Za-z_][A-Za-z0-9_]*$"
Dim = PositiveInt | Annotated[str, Field(pattern=_IDENTIFIER)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


MODEL_SOURCES = ("builtin", "factory", "onnx", "torchscript", "exported", "pickled", "huggingface")


class ModelSource(_Strict):
    builtin: str | None = Field(
        None,
        description="a built-in model: digits-cnn, digits-resnet-wide, resnet18-photos, resnet18-narrow-photos, or the pretrained all-minilm-l6-v2",
    )
    factory: str | None = Field(
        None, description="package.module:function returning a torch.nn.Module, looked up beside the recipe first"
    )
    kwargs: dict[str, Any] = Field({}, description="keyword arguments for the factory")
    weights: Path | None = Field(
        None, description="a state-dict file for the factory's module, loaded with weights_only=True"
    )
    onnx: Path | None = Field(None, description="an ONNX file")
    huggingface: Path | None = Field(
        None, description="a Hugging Face model directory (config.json, model.safetensors, tokenizer.json)"
    )
    pooling: Pooling = Field(
        Pooling.MEAN,
        description="Hugging Face encoders: mean (sentence embedding: masked mean, L2-normalised) or none",
    )
    torchscript: Path | None = Field(
        None, description="a TorchScript archive (torch.jit.save); loading it runs the archive's TorchScript code"
    )
    exported: Path | None = Field(
        None,
        description="an exported program (torch.export.save, .pt2); a graph of torch operators, no code is run; "
        "its inputs are read from it unless given",
    )
    pickled: Path | None = Field(
        None, description="a whole pickled nn.Module (torch.save(model)); loading it runs code from the file"
    )
    trust_pickle: bool = Field(False, description="required with pickled: you made the file, or trust who did")

    @model_validator(mode="after")
    def _one_source(self) -> ModelSource:
        from edgeopt.models import BUILTIN_MODELS

        given = [k for k in MODEL_SOURCES if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(f"give exactly one of {', '.join(MODEL_SOURCES)} (got {', '.join(given) or 'none'})")
        if self.pickled is not None and not self.trust_pickle:
            raise ValueError(
                "loading a pickled model runs code from the file: set trust_pickle: true only for a file "
                "you trust, or give factory with a state-dict weights file instead"
            )
        if self.trust_pickle and self.pickled is None:
            raise ValueError("trust_pickle goes with pickled only")
        if self.builtin is not None and self.builtin not in (*BUILTIN_MODELS, *PRETRAINED):
            raise ValueError(f"builtin '{self.builtin}' is not one of {', '.join((*BUILTIN_MODELS, *PRETRAINED))}")
        if self.pooling is not Pooling.MEAN and not self.is_huggingface:
            raise ValueError("pooling goes with huggingface (or a pretrained builtin) only")
        if self.factory is None and (self.weights is not None or self.kwargs):
            raise ValueError("weights and kwargs go with factory only")
        if self.factory is not None and not re.match(r"^[\w.]+:\w+$", self.factory):
            raise ValueError(f"factory '{self.factory}' is not of the form package.module:function")
        return self

    @property
    def is_huggingface(self) -> bool:
        return self.huggingface is not None or self.builtin in PRETRAINED

    @property
    def file(self) -> tuple[str, Path] | None:
        """A whole-model torch file: (its kind, as ModelFile names it, and its path)."""
        for key, kind in (("torchscript", "torchscript"), ("exported", "exported"), ("pickled", "pickle")):
            if getattr(self, key) is not None:
                return kind, getattr(self, key)
        return None


class InputSpec(_Strict):
    name: str = Field(description="the input's name in the exported graph")
    shape: list[Dim] = Field(min_length=1, description="dims; a name such as batch or sequence marks a symbolic dim")
    dtype: Literal[DTYPES] = Field("float32", description="numpy dtype name")


class DataSource(_Strict):
    builtin: str | None = Field(None, description="a built-in dataset: digits, photo-crops")
    npz: Path | None = Field(None, description="an .npz with one array per input and optional labels")
    images: Path | None = Field(
        None, description="a folder of images (one subfolder per class for labels), read batch by batch"
    )
    preprocess: Preprocess | None = Field(None, description="with images: resize, crop, mean, std, layout")
    text: TextSource | None = Field(None, description="passages tokenised with the model's tokenizer")

    @model_validator(mode="after")
    def _one_source(self) -> DataSource:
        from edgeopt.models import BUILTIN_DATASETS

        given = [k for k in ("builtin", "npz", "images", "text") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(f"give exactly one of builtin, npz, images, text (got {', '.join(given) or 'none'})")
        if self.preprocess is not None and self.images is None:
            raise ValueError("preprocess goes with images only")
        if self.builtin is not None and self.builtin not in BUILTIN_DATASETS:
            raise ValueError(f"builtin '{self.builtin}' is not one of {', '.join(BUILTIN_DATASETS)}")
        return self


class Variant(_Strict):
    stage: str = Field(description="the stage that makes this variant")
    from_: str = Field("model", alias="from", description="the variant it is made from; 'model' is the source model")
    options: dict[str, Any] = Field({}, description="the stage's options (see edgeopt recipe --schema)")
    runtimes: list[str] | None = Field(
        None,
        description="measure it on these of the recipe's runtimes only (default: all of them; []: a step "
        "toward other variants, built and verified but not measured)",
    )


class ServerScenario(_Strict):
    load: float = Field(0.7, gt=0, description="arrival rate as a fraction of the single-stream capacity")
    requests: PositiveInt = Field(200, description="requests, arriving at random (Poisson)")
    concurrency: PositiveInt = Field(2, description="threads serving them, sharing one session")


class BenchSettings(_Strict):
    batch_sizes: list[PositiveInt] = Field([1], min_length=1, description="batch sizes to time")
    threads: list[PositiveInt] = Field([1], min_length=1, description="intra-op thread counts to time")
    warmup_runs: int = Field(10, ge=0, description="untimed runs before timing")
    min_runs: PositiveInt = Field(20, description="timed runs at least")
    min_duration_s: float = Field(1.0, ge=0, description="timed seconds at least")
    accuracy_batch_size: PositiveInt = Field(64, description="batch size for the accuracy pass")
    rounds: int = Field(
        20,
        ge=2,
        description="each measurement is timed in this many rounds, interleaved across artifacts "
        "(short rounds: the machine's slow and fast spells then land on every artifact alike)",
    )
    processes: PositiveInt = Field(
        1,
        description="worker processes per measurement, each started fresh and taking every Nth round, their "
        "samples pooled: a process's memory layout, which can shift a microsecond call's median for the process's "
        "whole life, becomes one draw of N (they run side by side: N times the memory)",
    )
    stability_threshold: float = Field(
        0.05, gt=0, description="a measurement whose even and odd rounds' medians differ by more is flagged unstable"
    )
    harness_overhead: bool = Field(
        False,
        description="also time a bare loop to measure the harness's overhead, at each measurement's smallest batch "
        "(its fastest call, where the harness's fixed cost per call weighs most)",
    )
    server: ServerScenario | None = Field(
        ServerScenario(), description="the server scenario at batch 1 (null: skip it)"
    )
    max_accuracy_drop: float = Field(
        0.01, ge=0, description="recommendations only consider artifacts within this drop (top-1, else agreement)"
    )

    @model_validator(mode="after")
    def _every_process_times(self) -> BenchSettings:
        if self.processes > self.rounds:
            raise ValueError(f"processes ({self.processes}) above rounds ({self.rounds}): each process takes a round")
        return self


RAY_ADDRESS = re.compile(r"^(auto|local|[A-Za-z0-9_.\-\[\]:]+:\d{1,5})$")
RAY_ADDRESS_HELP = "auto (the running cluster RAY_ADDRESS or this machine names), local (start one here for the run), or HOST:PORT of its head"


def check_ray_address(address: str) -> str:
    if not RAY_ADDRESS.match(address):
        raise ValueError(f"a Ray address is {RAY_ADDRESS_HELP}")
    return address


class Executor(_Strict):
    ray: Annotated[str, AfterValidator(check_ray_address)] = Field(
        description=f"run stage builds and device sessions as Ray tasks on this cluster: {RAY_ADDRESS_HELP}"
    )


class Recipe(_Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", description="names the run directory")
    model: ModelSource
    inputs: list[InputSpec] | None = Field(
        None,
        description="required for factory, TorchScript and pickled models; built-in, ONNX and exported models "
        "declare their own",
    )
    outputs: list[str] | None = Field(None, description="output names for a factory model")
    data: DataSource | None = Field(None, description="held-out samples; a built-in model defaults to its own dataset")
    calibration: DataSource | None = Field(
        None, description="samples that calibrate INT8 (default: the dataset's train split, else its test split)"
    )
    variants: dict[str, Variant] = Field({}, description="artifacts to build, each one stage applied to a parent")
    target: Target = Field(
        Target.AUTO,
        description="the machine the models will run on: x86-avx2, x86-vnni, arm64, tensorrt, or auto (this host); "
        "decides the INT8 flavour",
    )
    runtimes: list[str] = Field(["torch-cpu", "ort-cpu"], min_length=1, description="runtime ids to benchmark on")
    bench: BenchSettings = BenchSettings()
    devices: dict[Annotated[str, Field(pattern=NAME)], DeviceSpec] = Field(
        {}, description="machines reached over SSH that can measure the artifacts (edgeopt run --device NAME)"
    )
    output: Path | None = Field(None, description="run directory (default: runs/<name> in the current folder)")
    executor: Executor | None = Field(
        None, description="where builds and measurements run: here (the default), or a Ray cluster ({ray: ADDRESS})"
    )

    @model_validator(mode="after")
    def _consistent(self) -> Recipe:
        from edgeopt.stages import STAGES
        from runtimes import RUNTIMES

        if (self.model.factory or self.model.torchscript or self.model.pickled) is not None and self.inputs is None:
            raise ValueError("a factory, TorchScript or pickled model needs inputs (name, shape, dtype for each)")
        if self.model.factory is None and self.model.file is None and self.outputs is not None:
            raise ValueError("outputs go with a factory, TorchScript, exported or pickled model only")
        if self.model.builtin is None and self.model.huggingface is None and self.data is None:
            raise ValueError("data is required (a built-in dataset, an .npz, images or text)")
        if LOCAL in self.devices:
            raise ValueError(f"devices.{LOCAL}: '{LOCAL}' names this machine; pick another device name")
        unknown = [r for r in self.runtimes if r not in RUNTIMES]
        if unknown:
            raise ValueError(f"runtime '{unknown[0]}' is not one of {', '.join(RUNTIMES)}")
        for name, variant in self.variants.items():
            if name == "model":
                raise ValueError("'model' names the source model; pick another variant name")
            if variant.stage not in STAGES:
                raise ValueError(f"variants.{name}: stage '{variant.stage}' is not one of {', '.join(STAGES)}")
            if variant.from_ != "model" and variant.from_ not in self.variants:
                raise ValueError(f"variants.{name}: from '{variant.from_}' names no variant")
            foreign = [r for r in variant.runtimes or [] if r not in self.runtimes]
            if foreign:
                raise ValueError(f"variants.{name}: runtime '{foreign[0]}' is not one of the recipe's runtimes")
        formats = {"model": "onnx" if self.model.onnx is not None else "torch"}
        for name in build_order(self.variants):
            variant = self.variants[name]
            stage = STAGES[variant.stage]
            if formats[variant.from_] != stage.accepts:
                raise ValueError(
                    f"variants.{name}: stage {variant.stage} takes a {stage.accepts} model, "
                    f"but '{variant.from_}' is {formats[variant.from_]}"
                )
            formats[name] = stage.produces
        return self


def build_order(variants: dict[str, Variant]) -> tuple[str, ...]:
    """Variants ordered so each comes after its parent; a cycle is an error."""
    order: list[str] = []
    state: dict[str, str] = {}

    def visit(name: str, trail: tuple[str, ...]) -> None:
        if state.get(name) == "done" or name == "model":
            return
        if state.get(name) == "visiting":
            raise ValueError(f"variants form a cycle: {' → '.join((*trail, name))}")
        state[name] = "visiting"
        visit(variants[name].from_, (*trail, name))
        state[name] = "done"
        order.append(name)

    for name in variants:
        visit(name, ())
    return tuple(order)


@dataclass(frozen=True)
class LoadedRecipe:
    """A validated recipe, where it came from, and each variant's parsed stage options."""

    recipe: Recipe
    path: Path
    options: dict[str, BaseModel]
    order: tuple[str, ...]

    def resolve(self, path: Path) -> Path:
        return path if path.is_absolute() else (self.path.parent / path).resolve()


def load_recipe(path: Path) -> LoadedRecipe:
    """Read and validate a recipe; every problem found is reported in one line."""
    if not path.is_file():
        raise RecipeError(f"{path}: recipe file not found")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise RecipeError(f"{path}: not valid YAML{where}: {getattr(err, 'problem', err)}") from err
    except UnicodeDecodeError as err:
        raise RecipeError(f"{path}: not a text file ({err.reason})") from err
    return validate_recipe(data, path)


def validate_recipe(data: Any, path: Path) -> LoadedRecipe:
    from edgeopt.stages import STAGES

    if not isinstance(data, dict):
        raise RecipeError(f"{path}: a recipe is a mapping of keys (name, model, ...), got {type(data).__name__}")
    try:
        recipe = Recipe.model_validate(data)
    except ValidationError as err:
        raise RecipeError(summarize(path, problems(err, Recipe))) from err
    options: dict[str, BaseModel] = {}
    found = []
    for name, variant in recipe.variants.items():
        stage = STAGES[variant.stage]
        try:
            options[name] = stage.options.model_validate(variant.options)
        except ValidationError as err:
            found += problems(err, stage.options, prefix=("variants", name, "options"))
    loaded = LoadedRecipe(recipe, path, options, build_order(recipe.variants))
    for key, file in (
        ("model.weights", recipe.model.weights),
        ("model.onnx", recipe.model.onnx),
        ("model.huggingface", recipe.model.huggingface and recipe.model.huggingface / "config.json"),
        ("model.pickled", recipe.model.pickled),
        ("model.torchscript", recipe.model.torchscript),
        ("model.exported", recipe.model.exported),
        ("data.npz", recipe.data and recipe.data.npz),
    ):
        if file is not None and not loaded.resolve(file).is_file():
            found.append(f"{key}: file not found: {loaded.resolve(file)}")
    if found:
        raise RecipeError(summarize(path, found))
    return loaded


def schema() -> dict:
    """The recipe's JSON schema, with each stage's options (`variants.*.options`) and what it
    takes and makes: the reference for everything a recipe may hold."""
    from edgeopt.stages import STAGES

    stages = {
        name: {
            "description": stage.description,
            "takes": str(stage.accepts),
            "makes": str(stage.produces),
            "options": stage.options.model_json_schema(),
        }
        for name, stage in STAGES.items()
    }
    return {"recipe": Recipe.model_json_schema(), "stages": stages}
