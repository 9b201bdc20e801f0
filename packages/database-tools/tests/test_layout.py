"""Who may import whom: libraries import no app, no app imports another app, and only tests,
the demo and the benchmarks start an app as a process."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
APPS = {"whale_tracker", "alert_service"}
LIBRARIES = {"database", "database_tools", "service_kit"}


def _sources(top: Path) -> list[Path]:
    return [p for p in top.rglob("*.py") if "tests" not in p.relative_to(top).parts]


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def _package_of(path: Path) -> str:
    src = path.parts.index("src")
    return path.parts[src + 1]


def _code_files() -> list[Path]:
    return [*_sources(ROOT / "packages"), *_sources(ROOT / "apps")]


def test_libraries_import_no_app_and_apps_import_no_other_app() -> None:
    problems = []
    for path in _code_files():
        owner = _package_of(path)
        imported = _imports(path) & APPS
        allowed = {owner} if owner in APPS else set()
        for name in sorted(imported - allowed):
            problems.append(f"{path.relative_to(ROOT)} imports {name}")
    assert problems == []


def test_no_library_or_app_starts_an_app() -> None:
    # An app started as a child process: `-m whale_tracker…`, `whale-tracker` on PATH, …
    spawns = ("whale_tracker.cli", "alert_service.cli", "whale-tracker", "alert-service")
    problems = []
    for path in _code_files():
        text = path.read_text(encoding="utf-8")
        if "subprocess" not in text and "Popen" not in text:
            continue
        for needle in spawns:
            if f'"{needle}"' in text or f"'{needle}'" in text:
                problems.append(f"{path.relative_to(ROOT)} starts {needle}")
    assert problems == []


def test_the_checks_see_real_imports() -> None:
    # The walk finds the imports it is about: an app that imports the contract is seen.
    api = ROOT / "apps" / "whale-tracker" / "src" / "whale_tracker" / "api.py"
    assert {"database", "service_kit"} <= _imports(api)
    assert len(_code_files()) > 30
