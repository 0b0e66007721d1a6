"""The dependency direction: training imports only app.inference; app never imports training."""

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def imported_modules(folder: Path) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for path in folder.rglob("*.py"):
        names: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module:
                names.add(node.module)
        found[str(path.relative_to(REPO))] = names
    return found


def test_training_imports_only_the_inference_layer_of_app() -> None:
    for path, names in imported_modules(REPO / "training").items():
        from_app = {n for n in names if n == "app" or n.startswith("app.")}
        assert all(n.startswith("app.inference") for n in from_app), (path, from_app)


def test_app_never_imports_training() -> None:
    for path, names in imported_modules(REPO / "app").items():
        assert not any(n == "training" or n.startswith("training.") for n in names), path
