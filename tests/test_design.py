"""The floor plan holds: the layers of docs/design.md, no import cycle, no Streamlit in the library."""
from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "vitviz"


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports() -> dict[str, set[str]]:
    """Module -> the vitviz modules it imports, at the top or inside functions alike."""
    modules = {module_name(path): path for path in PACKAGE.rglob("*.py")}
    found = {}
    for name, path in modules.items():
        targets = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                for alias in node.names:
                    sub = f"{node.module}.{alias.name}"
                    targets.add(sub if sub in modules else node.module)
            elif isinstance(node, ast.Import):
                targets.update(alias.name for alias in node.names)
        found[name] = {t for t in targets if t in modules and t not in (name, "vitviz")}
    return found


def layer_of(module: str) -> str:
    """vitviz.models.fast.compiled -> models; vitviz.errors -> errors."""
    return module.split(".")[1]


def allowed_imports() -> dict[str, set[str]]:
    table = (ROOT / "docs" / "design.md").read_text().split("## The layers")[1]
    rows = re.findall(r"^\| `(\w+)` \|([^|\n]*)\|$", table, flags=re.M)
    return {package: set(re.findall(r"`(\w+)`", may)) for package, may in rows}


def test_every_import_follows_the_layers_of_the_design_doc():
    allowed = allowed_imports()
    assert {"models", "rendering", "quality", "store"} <= set(allowed)
    against = []
    for module, targets in imports().items():
        if module in ("vitviz", "vitviz.__main__"):
            continue
        layer = layer_of(module)
        assert layer in allowed, f"{module}: its package is not in docs/design.md's table"
        against += [f"{module} -> {t}" for t in targets
                    if layer_of(t) != layer and layer_of(t) not in allowed[layer]]
    assert not against, "imports against docs/design.md's layers:\n" + "\n".join(against)


def test_no_import_cycle_between_modules():
    graph = imports()
    cycles, state = [], {}

    def visit(node: str, path: list[str]) -> None:
        state[node] = "open"
        for target in sorted(graph[node]):
            if state.get(target) == "open":
                cycles.append(path[path.index(target):] + [target])
            elif target not in state:
                visit(target, path + [target])
        state[node] = "done"

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_the_library_never_imports_streamlit_or_the_dashboard():
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([node.module or ""] if isinstance(node, ast.ImportFrom)
                     else [a.name for a in node.names] if isinstance(node, ast.Import) else [])
            offenders += [f"{path.relative_to(ROOT)}: {n}" for n in names
                          if n.split(".")[0] in ("streamlit", "ui", "plotly")]
    assert not offenders


def test_the_public_face_imports_as_before_and_a_module_alone_stays_light():
    code = (
        "import sys\n"
        "import vitviz.rendering.presets\n"
        "assert 'torchvision' not in sys.modules, 'presets pulled in torchvision'\n"
        "assert 'vitviz.api' not in sys.modules\n"
        "from vitviz import visualise, load_model, wrap, load_exported, save_exported\n"
        "from vitviz.models import LoadedModel, load_model as again\n"
        "import vitviz\n"
        "assert again is load_model is vitviz.load_model and callable(visualise)\n"
        "assert set(vitviz.__all__) >= {'visualise', 'load_model', 'wrap'}\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
