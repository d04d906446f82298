"""Tree-sitter languages, chosen by file extension.

Python comes from ``tree-sitter-python``; other languages from
``tree-sitter-language-pack`` (0.13, whose grammars ship inside the wheel, so nothing is
downloaded at run time). An unknown extension has no language: the document is then
handled as plain text.
"""

from __future__ import annotations

import functools
from pathlib import PurePath

import tree_sitter

# Extension -> tree-sitter-language-pack name. Python is handled separately.
_PACK_LANGUAGES: dict[str, str] = {
    ".js": "javascript",
    ".mjs": "javascript",
    ".cjs": "javascript",
    ".jsx": "javascript",
    ".ts": "typescript",
    ".tsx": "tsx",
    ".go": "go",
    ".rs": "rust",
    ".java": "java",
    ".c": "c",
    ".h": "c",
    ".cc": "cpp",
    ".cpp": "cpp",
    ".hpp": "cpp",
    ".cs": "csharp",
    ".rb": "ruby",
    ".php": "php",
    ".lua": "lua",
    ".sh": "bash",
    ".json": "json",
    ".toml": "toml",
    ".yaml": "yaml",
    ".yml": "yaml",
}

_PYTHON_EXTENSIONS = frozenset({".py", ".pyi", ".pyw"})


def language_name_for_path(path: str | PurePath) -> str | None:
    """The language name for a file path, or None for plain text."""
    suffix = PurePath(path).suffix.lower()
    if suffix in _PYTHON_EXTENSIONS:
        return "python"
    return _PACK_LANGUAGES.get(suffix)


@functools.cache
def get_language(name: str) -> tree_sitter.Language:
    """The tree-sitter ``Language`` for a language name (cached)."""
    if name == "python":
        import tree_sitter_python

        return tree_sitter.Language(tree_sitter_python.language())
    import tree_sitter_language_pack

    # The pack types its argument as a Literal of its names; ours come from the table above.
    language: tree_sitter.Language = tree_sitter_language_pack.get_language(name)  # type: ignore[arg-type]
    return language


def make_parser(name: str) -> tree_sitter.Parser:
    """A new parser for a language name (parsers are not thread-safe: one per user)."""
    return tree_sitter.Parser(get_language(name))


def parse_python(source: str | bytes) -> tree_sitter.Tree:
    """Parse Python source (a convenience for tools and tests)."""
    data = source.encode("utf-8") if isinstance(source, str) else source
    return make_parser("python").parse(data)
