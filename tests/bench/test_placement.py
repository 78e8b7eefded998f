from bench.report.placement import placement_lines


def _document(executor):
    artifacts = {
        "model": {"facts": {"built_on": "a (ray node 11111111)"}},
        "onnx": {"facts": {"built_on": "b (ray node 22222222)"}},
        "int8": {"facts": {"built_on": "a (ray node 11111111)"}},
    }
    rows = [{"variant": name, "measured_on": "c (ray node 33333333)"} for name in ("model", "onnx", "onnx")]
    return {"executor": executor, "artifacts": artifacts, "rows": rows}


def test_placement_names_where_each_artifact_was_built_and_each_row_measured():
    lines = placement_lines(_document({"kind": "ray", "address": "10.0.0.5:6379", "asked": "auto", "nodes": 3}))
    assert lines == [
        "Ray cluster at 10.0.0.5:6379 (asked for: auto), 3 nodes.",
        "Built on a (ray node 11111111): model, int8.",
        "Built on b (ray node 22222222): onnx.",
        "Measured on c (ray node 33333333): model, onnx.",
    ]


def test_placement_is_silent_for_a_run_here():
    assert placement_lines(_document({"kind": "local"})) == []
