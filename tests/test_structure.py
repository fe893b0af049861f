"""The package's shape (DESIGN §1): surfaces and transforms in their own folders, and no import circle."""

from __future__ import annotations

import ast
from pathlib import Path

import chat_middleware

PACKAGE = Path(chat_middleware.__file__).parent


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports() -> dict[str, set[str]]:
    """Each module → the chat_middleware modules it imports, at run time or for type checking alike."""
    graph: dict[str, set[str]] = {}
    modules = {module_name(path): path for path in PACKAGE.rglob("*.py")}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        found = graph.setdefault(name, set())
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                target = f"{base}.{node.module}" if node.module else base
                for alias in node.names:
                    child = f"{target}.{alias.name}"
                    found.add(child if child in modules else target)
    return graph


def test_no_module_imports_itself_through_others():
    graph = imports()

    def reaches(start: str, goal: str, seen: set[str]) -> bool:
        for nxt in graph.get(start, ()):
            if nxt == goal or nxt not in seen and (seen.add(nxt) or reaches(nxt, goal, seen)):
                return True
        return False

    circles = sorted(name for name in graph if reaches(name, name, set()))
    assert circles == [], f"import circles through: {circles}"


def test_every_client_api_is_a_surface_and_every_upstream_api_a_transform():
    surfaces = {p.stem for p in (PACKAGE / "surfaces").glob("*.py")}
    for api in ("native", "chat", "responses", "anthropic", "ollama"):
        assert {api, f"{api}_request", f"{api}_render"} <= surfaces
    from chat_middleware.transforms import TRANSFORMS
    assert set(TRANSFORMS) == {"openai", "anthropic", "ollama_chat", "ollama_generate"}
