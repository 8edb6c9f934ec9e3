"""What mypyc needs from the modules setup.py compiles, checked on their source."""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

# Module-level upper-case names left assignable, and why.
NOT_FINAL = {
    ("pgpool_py/routing/classify.py", "_MASKED_TOKEN"): "test_classify substitutes it to watch what is masked",
}


def compiled_modules() -> list[str]:
    """setup.py's COMPILED, read from its source (importing setup.py would run setup())."""
    for node in ast.parse((REPO / "setup.py").read_text()).body:
        if isinstance(node, ast.Assign) and [getattr(t, "id", None) for t in node.targets] == ["COMPILED"]:
            value = ast.literal_eval(node.value)
            assert isinstance(value, list)
            return [str(path) for path in value]
    raise AssertionError("setup.py has no COMPILED list")


def is_constant_name(name: str) -> bool:
    return name.lstrip("_")[:1].isupper() and name.upper() == name


def is_final(annotation: ast.expr) -> bool:
    if isinstance(annotation, ast.Subscript):
        annotation = annotation.value
    return isinstance(annotation, ast.Name) and annotation.id == "Final"


def test_module_constants_of_compiled_modules_are_final() -> None:
    # mypyc keeps a Final module name in a C variable; any other one is looked up in the
    # module's dict each time compiled code reads it (about 100 instructions).
    not_final = []
    modules = compiled_modules()
    assert "pgpool_py/child/router.py" in modules
    for path in modules:
        for node in ast.parse((REPO / path).read_text()).body:
            if isinstance(node, ast.Assign):
                names = [n.id for t in node.targets for n in ast.walk(t) if isinstance(n, ast.Name)]
                if isinstance(node.value, ast.Call) and getattr(node.value.func, "id", None) == "TypeVar":
                    continue
                not_final += [(path, name) for name in names if is_constant_name(name)]
            elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
                if is_constant_name(node.target.id) and not is_final(node.annotation):
                    not_final.append((path, node.target.id))
    assert [entry for entry in not_final if entry not in NOT_FINAL] == []
