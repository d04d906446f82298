"""A tree grammar for structural edits (Yao et al. 2021), in tree-sitter's node-types format.

Yao et al. mask every edit action to what an ASDL grammar allows. For tree-sitter that
grammar is ``node-types.json``: for every node type, its fields (each with the child types
it accepts, whether it holds ``multiple`` children and whether it is ``required``) and its
named children that sit in no field (``children``). tree-sitter-python's wheel does not
ship that file, so ripple derives one in the same format from a corpus
(``Grammar.derive``): every file is parsed and mirrored with ``tree.from_tree_sitter`` (so
the grammar describes ripple's trees: a plain string literal is one leaf, an anonymous
token counts only where it sits in a field), and for every node type it records what was
seen. Only concrete types are listed (no supertypes). ``Grammar.load`` reads any
node-types.json, the grammar's own included (supertypes are expanded then).

Each entry may carry one extra key, ``"ripple"``, that tree-sitter's readers ignore::

    "ripple": {
      "leaf": true,           # seen as a leaf (a token with a value)
      "inner": true,          # seen as an inner node (value None, maybe no children)
      "order": ["function", "arguments"],   # field order ("" = unnamed children)
      "separators": {"": [","]},            # tokens between elements of a multiple field
      "layouts": [[shape, count], ...]      # the most common concrete child sequences
    }

A ``shape`` lists what a node's concrete children look like: a string is an anonymous
token written as is (``"("``), ``{"field": f}`` is one child of field ``f`` and
``{"field": f, "sep": [","]}`` a run of two or more children of ``f`` joined by the
separator tokens. Layouts are what lets a node that the editor adds be written back as
text (``treeedit.to_node``). Loaded from a file without them, layouts fall back to the
fields in order.

The shipped ``data/python-node-types.json`` is derived from the Python standard library
of the interpreter ripple runs on (CPython 3.11: 1,790 files, of which 3 fail to parse and
are skipped), with fields widened to the supertypes they mostly hold
(``GrammarBuilder.generalise``). ``python -m ripple.models.edits.grammar --out FILE``
re-derives it; ``--corpus DIR ...`` takes other folders.
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
import sysconfig
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ripple.models.edits.languages import get_language, make_parser
from ripple.models.edits.tree import Node, from_tree_sitter

__all__ = [
    "FRAGMENT",
    "PYTHON_NODE_TYPES",
    "FieldSpec",
    "Grammar",
    "Layout",
    "LayoutItem",
    "python_grammar",
]

FRAGMENT = "<fragment>"  # the virtual root of an edited fragment: one field "" of any type
PYTHON_NODE_TYPES = Path(__file__).parent / "data" / "python-node-types.json"
MAX_LAYOUTS = 8  # layouts kept per node type (the most common ones)

# Types that ripple keeps as one leaf even though tree-sitter gives them children
# (``tree.from_tree_sitter``): used when a node-types.json carries no "ripple" key.
_TEXT_TYPES = frozenset({"string", "string_content"})


@dataclass(frozen=True, slots=True)
class FieldSpec:
    """One field of a node type: what it accepts and how many children it holds."""

    multiple: bool
    required: bool
    types: frozenset[str]  # accepted concrete child types (named and anonymous)
    anonymous: frozenset[str] = frozenset()  # those of ``types`` that are anonymous tokens


@dataclass(frozen=True, slots=True)
class LayoutItem:
    """One item of a layout: an anonymous token (``token``) or a field slot.

    A field slot with ``sep`` is a run of two or more children joined by ``sep``; without
    it, it stands for exactly one child.
    """

    token: str | None = None
    field: str | None = None
    sep: tuple[str, ...] | None = None

    def to_json(self) -> Any:
        if self.token is not None:
            return self.token
        if self.sep is None:
            return {"field": self.field}
        return {"field": self.field, "sep": list(self.sep)}

    @classmethod
    def from_json(cls, data: Any) -> LayoutItem:
        if isinstance(data, str):
            return cls(token=data)
        sep = data.get("sep")
        return cls(field=str(data["field"]), sep=None if sep is None else tuple(sep))


Layout = tuple[LayoutItem, ...]


def node_layout(node: Node) -> Layout:
    """The shape of ``node``'s concrete children (runs of one field collapsed)."""
    items: list[LayoutItem] = []
    for child in node.children:
        name = _field_of(child)
        if name is None:
            items.append(LayoutItem(token=child.value or child.type))
            continue
        # Tokens since the last item of this same field, with no other field between:
        # they separate the elements of a run.
        j = len(items)
        while j > 0 and items[j - 1].token is not None:
            j -= 1
        sep = tuple(t.token for t in items[j:] if t.token is not None)
        if j > 0 and items[j - 1].field == name and items[j - 1].sep in (None, sep):
            del items[j:]
            items[j - 1] = LayoutItem(field=name, sep=sep)
        else:
            items.append(LayoutItem(field=name))
    return tuple(items)


def _field_of(child: Node) -> str | None:
    """The field a child belongs to in ripple's edit trees ("" for a named child without a
    field), or None for an anonymous token outside any field."""
    if child.field is not None:
        return child.field
    return "" if child.named else None


class Grammar:
    """Which children each node type accepts, in the shape of tree-sitter's node-types."""

    def __init__(self, entries: Sequence[Mapping[str, Any]]) -> None:
        self.entries: list[dict[str, Any]] = [dict(e) for e in entries]
        subtypes: dict[str, list[str]] = {}
        for entry in self.entries:
            if entry.get("subtypes"):
                subtypes[entry["type"]] = [s["type"] for s in entry["subtypes"]]

        def concrete(name: str, seen: frozenset[str] = frozenset()) -> Iterator[str]:
            if name in subtypes and name not in seen:
                for sub in subtypes[name]:
                    yield from concrete(sub, seen | {name})
            else:
                yield name

        self._fields: dict[str, dict[str, FieldSpec]] = {}
        self._order: dict[str, list[str]] = {}
        self._layouts: dict[str, list[tuple[Layout, int]]] = {}
        self._separators: dict[tuple[str, str], tuple[str, ...]] = {}
        self._leaf: set[str] = set()
        self._inner: set[str] = set()
        self.named_types: set[str] = set()
        self.anonymous_types: set[str] = set()
        for entry in self.entries:
            name = entry["type"]
            if name in subtypes:
                continue
            (self.named_types if entry.get("named", True) else self.anonymous_types).add(name)
            specs: dict[str, FieldSpec] = {}
            raw_fields = dict(entry.get("fields") or {})
            if entry.get("children"):
                raw_fields[""] = entry["children"]
            for field_name, spec in raw_fields.items():
                types: set[str] = set()
                anonymous: set[str] = set()
                for t in spec.get("types", []):
                    for c in concrete(t["type"]):
                        types.add(c)
                        if not t.get("named", True):
                            anonymous.add(c)
                specs[field_name] = FieldSpec(
                    bool(spec.get("multiple")),
                    bool(spec.get("required")),
                    frozenset(types),
                    frozenset(anonymous),
                )
            self._fields[name] = specs
            extra = entry.get("ripple")
            if extra is not None:
                if extra.get("leaf"):
                    self._leaf.add(name)
                if extra.get("inner"):
                    self._inner.add(name)
                order = [f for f in extra.get("order", []) if f in specs]
                self._order[name] = order + sorted(f for f in specs if f not in order)
                self._layouts[name] = [
                    (tuple(LayoutItem.from_json(i) for i in shape), int(count))
                    for shape, count in extra.get("layouts", [])
                ]
                for field_name, sep in (extra.get("separators") or {}).items():
                    self._separators[(name, field_name)] = tuple(sep)
            else:
                # The grammar's own file: a type without children may be a token or (as
                # ``pass_statement``, whose only child is an anonymous keyword) an inner node.
                if not specs or name in _TEXT_TYPES:
                    self._leaf.add(name)
                if specs or entry.get("named", True):
                    self._inner.add(name)
                self._order[name] = sorted(specs, key=lambda f: (f != "", f))
        self._all_named = frozenset(self.named_types)

    # -- queries ---------------------------------------------------------------------------

    def accepts(self, parent_type: str, field: str, child_type: str) -> bool:
        """Whether ``field`` of a ``parent_type`` node may hold a ``child_type`` node."""
        if parent_type == FRAGMENT:
            return field == "" and child_type in self._all_named
        spec = self._fields.get(parent_type, {}).get(field)
        return spec is not None and child_type in spec.types

    def field_spec(self, parent_type: str, field: str) -> FieldSpec | None:
        """The spec of one field (``""``: the unnamed named children), or None."""
        if parent_type == FRAGMENT:
            return (
                FieldSpec(False, True, self._all_named) if field == "" else None
            )
        return self._fields.get(parent_type, {}).get(field)

    def fields_of(self, parent_type: str) -> list[str]:
        """The fields of a type in source order (``""`` = unnamed children)."""
        if parent_type == FRAGMENT:
            return [""]
        return self._order.get(parent_type, [])

    def is_leaf_type(self, t: str) -> bool:
        """Whether a node of type ``t`` may be a leaf (a token carrying a value)."""
        return t in self._leaf

    def is_inner_type(self, t: str) -> bool:
        """Whether a node of type ``t`` may be an inner node (value None)."""
        return t in self._inner or t == FRAGMENT

    def is_named(self, t: str) -> bool:
        return t in self.named_types

    def known(self, t: str) -> bool:
        return t in self._fields or t == FRAGMENT

    def types(self) -> list[str]:
        """Every concrete type, named ones first, each group sorted."""
        return sorted(self.named_types) + sorted(self.anonymous_types - self.named_types)

    def layouts(self, t: str) -> list[tuple[Layout, int]]:
        """The recorded layouts of a type, most common first (empty if none recorded)."""
        return self._layouts.get(t, [])

    def separator(self, parent_type: str, field: str) -> tuple[str, ...] | None:
        """The tokens usually written between two elements of a multiple field."""
        return self._separators.get((parent_type, field))

    # -- files -----------------------------------------------------------------------------

    @classmethod
    def load(cls, path: str | Path) -> Grammar:
        """Read a node-types.json (ripple's derived file or the grammar's own)."""
        with open(path, encoding="utf-8") as f:
            return cls(json.load(f))

    def save(self, path: str | Path) -> None:
        """Write the grammar as node-types.json, one entry per line."""
        lines = [json.dumps(e, separators=(",", ":"), sort_keys=False) for e in self.entries]
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text("[\n" + ",\n".join(lines) + "\n]\n", encoding="utf-8")

    @classmethod
    def derive(cls, sources: Iterable[bytes], *, generalise: bool = True) -> Grammar:
        """Derive a grammar from Python sources; sources with parse errors are skipped.
        ``generalise``: widen fields to the supertypes they mostly hold
        (``GrammarBuilder.generalise``)."""
        builder = GrammarBuilder()
        parser = make_parser("python")
        for data in sources:
            tree = parser.parse(data)
            if tree.root_node.has_error:
                builder.skipped += 1
                continue
            builder.add(from_tree_sitter(tree, data))
        if generalise:
            builder.generalise(language_supertypes("python"))
        return builder.build()


class GrammarBuilder:
    """Counts what a corpus of trees shows, then writes node-types entries (``build``)."""

    def __init__(self) -> None:
        self.instances: Counter[str] = Counter()  # inner instances per type
        self.leaves: Counter[str] = Counter()
        self.named: dict[str, bool] = {}
        self.field_types: dict[tuple[str, str], dict[tuple[str, bool], None]] = {}
        self.field_present: Counter[tuple[str, str]] = Counter()
        self.field_multiple: set[tuple[str, str]] = set()
        self.layouts: dict[str, Counter[Layout]] = {}
        self.separators: dict[tuple[str, str], Counter[tuple[str, ...]]] = {}
        self.trees = 0
        self.skipped = 0

    def add(self, root: Node) -> None:
        """Count one tree (a file's ``from_tree_sitter`` mirror)."""
        self.trees += 1
        stack = [root]
        while stack:
            node = stack.pop()
            # Anonymous tokens outside fields are part of their parent's layout only (as
            # in ``treeedit.from_node``): the keyword ``lambda`` is no ``lambda`` node.
            stack.extend(c for c in node.children if _field_of(c) is not None)
            self.named.setdefault(node.type, node.named)
            if node.value is not None:
                self.leaves[node.type] += 1
                continue
            self.instances[node.type] += 1
            counts: Counter[str] = Counter()
            for child in node.children:
                name = _field_of(child)
                if name is None:
                    continue
                counts[name] += 1
                key = (node.type, name)
                self.field_types.setdefault(key, {})[(child.type, child.named)] = None
            for name, n in counts.items():
                self.field_present[(node.type, name)] += 1
                if n > 1:
                    self.field_multiple.add((node.type, name))
            layout = node_layout(node)
            self.layouts.setdefault(node.type, Counter())[layout] += 1
            for item in layout:
                if item.sep is not None and item.field is not None:
                    key = (node.type, item.field)
                    self.separators.setdefault(key, Counter())[item.sep] += 1

    def generalise(self, supertypes: Mapping[str, Sequence[str]]) -> None:
        """Widen each field's types to whole supertypes (tree-sitter's ``expression``,
        ``pattern`` ...) when the corpus showed enough of them: a field that held at least
        40% of a supertype's direct subtypes (and 3 or more), or a covered supertype
        among them and one more, accepts all of the supertype's concrete types. The
        grammar's own rules are written over supertypes, so combinations that a corpus
        happens to miss are accepted too. The supertypes come from the compiled grammar
        (``language_supertypes``)."""
        concrete: dict[str, set[str]] = {}

        def expand(name: str) -> set[str]:
            if name not in supertypes:
                return {name}
            if name not in concrete:
                concrete[name] = set()
                concrete[name] = set().union(*(expand(s) for s in supertypes[name]))
            return concrete[name]

        # Innermost supertypes first (primary_expression before expression).
        order = sorted(supertypes, key=lambda s: len(expand(s)))
        for seen in self.field_types.values():
            names = {t for t, named in seen if named}
            covered: set[str] = set()
            for sup in order:
                direct = supertypes[sup]
                hits = sum(1 for d in direct if d in names or d in covered)
                nested = any(d in covered for d in direct)
                if (hits >= 3 and 5 * hits >= 2 * len(direct)) or (nested and hits >= 2):
                    covered.add(sup)
            for sup in covered:
                for t in sorted(expand(sup)):
                    seen.setdefault((t, True), None)

    def build(self) -> Grammar:
        entries = []
        for name in sorted(self.named, key=lambda t: (not self.named[t], t)):
            entry: dict[str, Any] = {"type": name, "named": self.named[name]}
            fields: dict[str, Any] = {}
            children: dict[str, Any] | None = None
            for (parent, field_name), types in sorted(self.field_types.items()):
                if parent != name:
                    continue
                spec = {
                    "multiple": (parent, field_name) in self.field_multiple,
                    "required": self.field_present[(parent, field_name)]
                    == self.instances[parent],
                    "types": [
                        {"type": t, "named": named}
                        for t, named in sorted(types, key=lambda x: (not x[1], x[0]))
                    ],
                }
                if field_name == "":
                    children = spec
                else:
                    fields[field_name] = spec
            if self.instances[name] or fields or children:
                entry["fields"] = fields
            if children is not None:
                entry["children"] = children
            layouts = self.layouts.get(name, Counter())
            ranked = sorted(layouts.items(), key=lambda kv: (-kv[1], _layout_key(kv[0])))
            kept = ranked[:MAX_LAYOUTS]
            order = _field_order([shape for shape, _ in ranked])
            extra: dict[str, Any] = {
                "leaf": self.leaves[name] > 0,
                "inner": self.instances[name] > 0,
            }
            if order:
                extra["order"] = order
            seps = {
                field_name: list(counter.most_common(1)[0][0])
                for (parent, field_name), counter in sorted(self.separators.items())
                if parent == name
            }
            if seps:
                extra["separators"] = seps
            if kept:
                extra["layouts"] = [[[i.to_json() for i in shape], n] for shape, n in kept]
            entry["ripple"] = extra
            entries.append(entry)
        return Grammar(entries)


def _layout_key(layout: Layout) -> str:
    return json.dumps([i.to_json() for i in layout])


def _field_order(layouts: Sequence[Layout]) -> list[str]:
    """Fields in source order, merged over layouts (the most common first)."""
    order: list[str] = []
    for shape in layouts:
        previous: str | None = None
        for item in shape:
            if item.field is None:
                continue
            if item.field not in order:
                at = order.index(previous) + 1 if previous is not None else 0
                order.insert(at, item.field)
            previous = item.field
    return order


def language_supertypes(name: str) -> dict[str, list[str]]:
    """The grammar's supertypes (``expression`` ...) and their direct subtypes, as the
    compiled tree-sitter language lists them."""
    language = get_language(name)
    return {
        language.node_kind_for_id(s) or "": [
            language.node_kind_for_id(t) or "" for t in language.subtypes(s)
        ]
        for s in language.supertypes
    }


@functools.cache
def python_grammar() -> Grammar:
    """The shipped Python grammar (``data/python-node-types.json``), loaded once."""
    return Grammar.load(PYTHON_NODE_TYPES)


def corpus_files(folders: Iterable[str | Path]) -> list[Path]:
    """Every ``*.py`` file under the folders, in a stable order; installed packages
    (``site-packages``, which the standard library's folder may hold) are left out."""
    files: list[Path] = []
    for folder in folders:
        root = Path(folder)
        files.extend(
            path
            for path in sorted(root.rglob("*.py"))
            if "site-packages" not in path.relative_to(root).parts
        )
    return files


def read_sources(files: Iterable[Path], counts: dict[str, int]) -> Iterator[bytes]:
    """The bytes of each readable file (``counts["read"]``/``["unreadable"]`` are kept)."""
    for path in files:
        try:
            data = path.read_bytes()
        except OSError:
            counts["unreadable"] = counts.get("unreadable", 0) + 1
            continue
        counts["read"] = counts.get("read", 0) + 1
        yield data


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m ripple.models.edits.grammar",
        description="Derive a node-types.json for Python from a corpus of .py files.",
    )
    parser.add_argument(
        "--corpus",
        nargs="+",
        default=[sysconfig.get_paths()["stdlib"]],
        help="folders to read (default: this interpreter's standard library)",
    )
    parser.add_argument("--out", default=str(PYTHON_NODE_TYPES), help="file to write")
    args = parser.parse_args(argv)
    counts: dict[str, int] = {}
    builder = GrammarBuilder()
    py = make_parser("python")
    for data in read_sources(corpus_files(args.corpus), counts):
        tree = py.parse(data)
        if tree.root_node.has_error:
            builder.skipped += 1
            continue
        builder.add(from_tree_sitter(tree, data))
    builder.generalise(language_supertypes("python"))
    grammar = builder.build()
    grammar.save(args.out)
    print(
        f"{args.out}: {len(grammar.entries)} types from {builder.trees} files "
        f"({builder.skipped} more skipped for parse errors, "
        f"{counts.get('unreadable', 0)} unreadable)",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
