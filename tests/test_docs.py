"""The README's commands and CI's script stay true."""

import re
from pathlib import Path

ROOT = Path(__file__).parents[1]


def test_readme_gives_the_two_commands_and_ci_runs_the_test_one():
    readme = (ROOT / "README.md").read_text()
    assert "make demo" in readme and "make test" in readme
    assert "make test" in (ROOT / ".ci" / "run").read_text()


def test_makefile_has_every_target_the_readme_and_design_name():
    targets = set(re.findall(r"^([a-z]+):", (ROOT / "Makefile").read_text(), re.M))
    assert {"setup", "demo", "test", "bench", "lint"} <= targets


def test_readme_recipe_paths_exist():
    readme = (ROOT / "README.md").read_text()
    for path in set(re.findall(r"recipes/[\w.-]+\.yaml", readme)):
        assert (ROOT / path).is_file(), path


def test_readme_names_the_results_schema_version():
    from bench.results import SCHEMA_VERSION

    readme = (ROOT / "README.md").read_text()
    assert re.findall(r"schema_version (\d+)", readme) == [str(SCHEMA_VERSION)]


def test_readme_layout_names_every_module_of_the_command_line_layer():
    readme = (ROOT / "README.md").read_text()
    picture = readme[readme.index("## Layout") : readme.index("## Measured choices")]
    for path in (ROOT / "edgeopt").glob("*.py"):
        if path.stem != "__init__":
            assert path.stem in picture, path.name
    for path in (ROOT / "edgeopt" / "core").glob("*.py"):
        if path.stem != "__init__":
            assert f"`{path.stem}`" in picture, path.name
