from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from edgeopt.core.errors import RecipeError
from edgeopt.recipe import load_recipe, validate_recipe

ROOT = Path(__file__).parents[2]
BASE = {"name": "x", "model": {"builtin": "digits-cnn"}}


@pytest.mark.parametrize("path", sorted((ROOT / "recipes").glob("*.yaml")), ids=lambda p: p.name)
def test_recipe_every_shipped_recipe_loads(path):
    loaded = load_recipe(path)
    assert loaded.recipe.name == path.stem


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"model": {"bulitin": "digits-cnn"}}, "model.bulitin: unknown key (expected one of builtin, factory"),
        ({"model": {"builtin": "digitz"}}, "builtin 'digitz' is not one of digits-cnn"),
        ({"model": {"builtin": "digits-cnn", "onnx": "m.onnx"}}, "give exactly one of builtin, factory, onnx"),
        ({"bench": {"batch_sizes": [0]}}, "bench.batch_sizes.0: Input should be greater than 0"),
        ({"bench": {"threads": "two"}}, "bench.threads: Input should be a valid list"),
        ({"runtimes": ["ort-gpu"]}, "runtime 'ort-gpu' is not one of ort-cpu"),
        ({"variants": {"a": {"stage": "export"}}}, "variants.a: stage 'export' is not one of export_onnx"),
        ({"variants": {"a": {"stage": "export_onnx", "from": "b"}}}, "variants.a: from 'b' names no variant"),
        (
            {"variants": {"a": {"stage": "export_onnx", "runtimes": ["ov-cpu"]}}},
            "variants.a: runtime 'ov-cpu' is not one of the recipe's runtimes",
        ),
        (
            {"variants": {"a": {"stage": "export_onnx", "from": "b"}, "b": {"stage": "export_onnx", "from": "a"}}},
            "variants form a cycle",
        ),
        ({"variants": {"a": {"stage": "export_onnx", "options": {"opset": 3}}}}, "variants.a.options.opset: opset 3"),
        (
            {"variants": {"a": {"stage": "export_onnx", "options": {"tolerance": {"atl": 1}}}}},
            "variants.a.options.tolerance.atl: unknown key (expected one of atol, rtol, min_cosine)",
        ),
        ({"model": {"factory": "pkg.mod:make"}}, "a factory, TorchScript or pickled model needs inputs"),
        (
            {"variants": {"a": {"stage": "export_onnx"}, "b": {"stage": "export_onnx", "from": "a"}}},
            "variants.b: stage export_onnx takes a torch model, but 'a' is onnx",
        ),
        ({"model": {"factory": "no colon"}, "inputs": []}, "is not of the form package.module:function"),
        ({"inputs": [{"name": "x", "shape": [-1]}]}, "inputs.0.shape.0"),
        ({"inputs": [{"name": "x", "shape": [1], "dtype": "float"}]}, "inputs.0.dtype"),
        ({"name": "../escape"}, "name: String should match pattern"),
        ({"model": {"onnx": "missing.onnx"}, "data": {"npz": "d.npz"}}, "model.onnx: file not found"),
        ({"executor": {"ray": "ray://head:10001"}}, "executor.ray: a Ray address is auto"),
        ({"executor": {"dask": "auto"}}, "executor.dask: unknown key (expected one of ray)"),
    ],
)
def test_recipe_invalid_gives_one_line_naming_the_key(tmp_path, change, expected):
    with pytest.raises(RecipeError) as caught:
        validate_recipe({**BASE, **change}, tmp_path / "r.yaml")
    message = str(caught.value)
    assert expected in message
    assert message.startswith(f"{tmp_path / 'r.yaml'}: ")
    assert "\n" not in message


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("name: [unclosed", "not valid YAML at line 1"),
        ("- a\n- b\n", "a recipe is a mapping of keys"),
        ("!!python/object/apply:os.system ['touch pwned']", "not valid YAML"),
    ],
)
def test_recipe_file_unreadable_or_unsafe_is_refused(tmp_path, text, expected):
    path = tmp_path / "r.yaml"
    path.write_text(text)
    with pytest.raises(RecipeError, match=expected):
        load_recipe(path)
    assert not (tmp_path / "pwned").exists()


def test_recipe_missing_file_is_named(tmp_path):
    with pytest.raises(RecipeError, match="recipe file not found"):
        load_recipe(tmp_path / "absent.yaml")


def test_recipe_variants_ordered_after_their_parents(tmp_path):
    loaded = validate_recipe(
        {**BASE, "variants": {"b": {"stage": "export_onnx", "from": "model"}, "a": {"stage": "export_onnx"}}},
        tmp_path / "r.yaml",
    )
    assert set(loaded.order) == {"a", "b"}


_yaml_values = st.recursive(
    st.none() | st.booleans() | st.integers(-3, 300) | st.floats(allow_nan=False) | st.text(max_size=12),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=10), children, max_size=3),
    max_leaves=12,
)
_keys = st.sampled_from(["name", "model", "inputs", "outputs", "data", "variants", "runtimes", "bench", "output", "x"])


@settings(max_examples=150, deadline=None)
@given(st.dictionaries(_keys, _yaml_values, max_size=6))
def test_recipe_arbitrary_mappings_raise_only_recipe_errors(data):
    try:
        validate_recipe(data, Path("r.yaml"))
    except RecipeError as err:
        assert "\n" not in str(err)


@settings(max_examples=60, deadline=None)
@given(st.sampled_from(["bench", "model", "data"]), _yaml_values)
def test_recipe_arbitrary_section_values_raise_only_recipe_errors(section, value):
    data = yaml.safe_load(yaml.safe_dump({**BASE, section: value}))
    try:
        validate_recipe(data, Path("r.yaml"))
    except RecipeError as err:
        assert "\n" not in str(err)


def test_recipe_many_problems_name_the_first_few_and_count_the_rest(tmp_path):
    settings = ("batch_sizes", "threads", "warmup_runs", "min_runs", "min_duration_s", "rounds", "accuracy_batch_size")
    data = {"name": "m", "model": {"builtin": "digits-cnn"}, "bench": {key: "x" for key in settings}}
    with pytest.raises(RecipeError) as raised:
        validate_recipe(data, Path("r.yaml"))
    message = str(raised.value)
    assert message.startswith("r.yaml: bench.batch_sizes: Input should be a valid list (got 'x'); bench.threads: ")
    assert message.count(";") == 3 and message.endswith("; and 4 more")


def test_recipe_problems_stay_within_about_300_characters(tmp_path):
    from edgeopt.problems import summarize

    assert len(summarize(Path("r.yaml"), ["x" * 1000])) <= 300
    line = summarize(Path("r.yaml"), ["a" * 100, "b" * 100, "c" * 100, "d"])
    assert len(line) <= 320 and line.endswith("; and 2 more") and "a" * 100 in line and "c" * 100 not in line


def test_recipe_misspelt_keys_of_one_mapping_make_one_problem(tmp_path):
    with pytest.raises(RecipeError, match=r"model: unknown keys bulitin, factroy \(expected one of builtin, "):
        validate_recipe({"name": "m", "model": {"bulitin": 1, "factroy": 2}}, Path("r.yaml"))


def test_recipe_more_processes_than_rounds_is_one_problem():
    data = {"name": "m", "model": {"builtin": "digits-cnn"}, "bench": {"rounds": 4, "processes": 5}}
    with pytest.raises(RecipeError, match=r"r\.yaml: bench: .*processes \(5\) above rounds \(4\)"):
        validate_recipe(data, Path("r.yaml"))
    assert validate_recipe({**data, "bench": {"rounds": 4, "processes": 4}}, Path("r.yaml")).recipe.bench.processes == 4


def test_recipe_variant_runtimes_choose_where_it_is_measured(tmp_path):
    from edgeopt.core.artifact import IO, Artifact, Format, Precision
    from edgeopt.measure import plan_pairs
    from runtimes.base import Availability

    variants = {
        "onnx": {"stage": "export_onnx", "runtimes": []},
        "simplified": {"stage": "simplify", "from": "onnx", "runtimes": ["ov-cpu"]},
        "fp16": {"stage": "convert_fp16", "from": "onnx"},
    }
    loaded = validate_recipe({**BASE, "variants": variants, "runtimes": ["torch-cpu", "ort-cpu", "ov-cpu"]}, tmp_path)
    artifacts = {
        name: Artifact(
            tmp_path, Format.TORCH if name == "model" else Format.ONNX, Precision.FP32, "s", {}, None, IO((), ())
        )
        for name in ("model", *variants)
    }
    plan, skipped = plan_pairs(loaded, artifacts, lambda runtime: Availability(True, "here"))
    assert plan == [("model", "torch-cpu"), ("simplified", "ov-cpu"), ("fp16", "ort-cpu"), ("fp16", "ov-cpu")]
    assert skipped == []
