"""The house: packaging, the `platform` trap, layer contracts, and the linters, checked in the suite."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
CODE_FOLDERS = ("core", "platform", "agents", "inference", "ingestion")
PYTHON = sys.executable


def _run(args: list[str], cwd: Path, timeout: int = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=timeout)


def test_root_folders_are_namespace_portions_without_init() -> None:
    for folder in (*CODE_FOLDERS, "migrations", "tests", "bench"):
        assert (REPO / folder).is_dir(), f"{folder}/ is missing"
    for folder in CODE_FOLDERS:
        assert not (REPO / folder / "__init__.py").exists(), f"{folder}/__init__.py shadows"
    assert (REPO / "docker-compose.yml").is_file()


def test_every_package_folder_is_listed_in_pyproject() -> None:
    config = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(config["packages"])
    mapping = config["package-dir"]
    found: set[str] = set()
    for import_name, folder in mapping.items():
        root = REPO / folder
        found.add(import_name)
        for sub in root.rglob("*"):
            if sub.is_dir() and "__pycache__" not in sub.parts and any(sub.glob("*.py")):
                rel = sub.relative_to(root).parts
                found.add(".".join((import_name, *rel)))
    assert found == listed, f"missing: {sorted(found - listed)}, stale: {sorted(listed - found)}"
    for import_name in listed:
        if import_name.count(".") >= 2 and not import_name.startswith("corral.migrations"):
            folder = REPO / mapping[".".join(import_name.split(".")[:2])]
            sub = folder.joinpath(*import_name.split(".")[2:])
            assert (sub / "__init__.py").exists(), f"{sub} needs an __init__.py"


def test_stdlib_platform_wins_from_the_repo_root() -> None:
    probe = _run([PYTHON, "-c", "import platform; print(platform.__file__); platform.system()"],
                 REPO)
    assert probe.returncode == 0, probe.stderr
    assert Path(probe.stdout.strip()).parent != REPO / "platform"
    assert probe.stdout.strip().endswith("platform.py")


def test_cli_module_runs_from_the_repo_root_with_stdlib_platform() -> None:
    probe = _run([PYTHON, "-m", "corral.platform.cli", "--help"], REPO, timeout=120)
    assert probe.returncode == 0, probe.stderr
    assert "ingest" in probe.stdout and "ask" in probe.stdout
    check = _run([PYTHON, "-c", "import corral.platform.cli.app, platform, sys; "
                  "print(platform.__file__); print(sys.modules['corral.platform'].__path__)"], REPO)
    assert check.returncode == 0, check.stderr
    stdlib_file, portion = check.stdout.splitlines()
    assert stdlib_file.endswith("platform.py") and str(REPO / "platform") in portion


@pytest.mark.parametrize("name", ["agents", "inference", "ingestion", "core"])
def test_no_top_level_module_leaks_from_the_install(name: str, tmp_path: Path) -> None:
    """The installed distribution exposes only `corral.*`, never the bare folder names.

    (Inside the checkout itself, with the checkout on sys.path, Python makes any folder an empty
    namespace package; that is why nothing of ours is ever imported by its bare name.)
    """
    code = (f"import importlib.util as u; print(u.find_spec({name!r})); "
            f"print(u.find_spec('corral.{name}').submodule_search_locations)")
    probe = _run([PYTHON, "-c", code], tmp_path)
    assert probe.returncode == 0, probe.stderr
    bare, portion = probe.stdout.splitlines()
    assert bare == "None"
    assert str(REPO / name) in portion


@pytest.fixture(scope="module")
def source_farm(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder where `corral/<portion>` links to each root folder.

    mypy and import-linter resolve modules from folders, not through the editable install's import
    hook, so they are pointed here to see the code under its real names (`corral.core`, …).
    """
    farm = tmp_path_factory.mktemp("srcfarm")
    (farm / "corral").mkdir()
    for folder in (*CODE_FOLDERS, "migrations"):
        (farm / "corral" / folder).symlink_to(REPO / folder, target_is_directory=True)
    return farm


def test_import_linter_layer_contracts_hold(source_farm: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(source_farm)}
    lint = subprocess.run([str(Path(PYTHON).parent / "lint-imports"), "--no-cache"], cwd=REPO,
                          capture_output=True, text=True, timeout=300, env=env)
    assert lint.returncode == 0, lint.stdout + lint.stderr
    assert "7 kept, 0 broken" in lint.stdout, lint.stdout


def test_ruff_is_clean() -> None:
    ruff = _run([str(Path(PYTHON).parent / "ruff"), "check", "."], REPO)
    assert ruff.returncode == 0, ruff.stdout + ruff.stderr


def test_mypy_is_clean(source_farm: Path) -> None:
    packages = [arg for f in (*CODE_FOLDERS, "migrations") for arg in ("-p", f"corral.{f}")]
    env = {**os.environ, "MYPYPATH": str(source_farm)}
    mypy = subprocess.run([PYTHON, "-m", "mypy", *packages], cwd=REPO, capture_output=True,
                          text=True, timeout=600, env=env)
    assert mypy.returncode == 0, mypy.stdout + mypy.stderr
    checked = int(mypy.stdout.split("no issues found in ")[1].split()[0])
    assert checked > 50, f"mypy saw only {checked} files: is the source farm excluded?"
