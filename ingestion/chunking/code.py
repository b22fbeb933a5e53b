"""Code-aware units from tree-sitter syntax trees (grammars bundled by tree-sitter-language-pack).

A definition (function, class, method, struct, trait, impl, module...) becomes a named
:class:`~corral.ingestion.chunking.units.Unit` with its qualified name (``Class.method``) and kind,
starting at the comments, doc comments and attributes directly above it. Definitions nested inside
statements (``if TYPE_CHECKING:``, ``export``, namespaces, class bodies) are found by descending
through multi-line nodes only, lazily, when the enclosing unit has to be split. A unit with no
definitions inside splits along its statements.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from corral.ingestion.chunking.units import Unit

__all__ = ["TREE_SITTER_LANGUAGES", "code_units", "tree_sitter_language"]

# Our language names (``FileKind.language``, LangChain's names where it has one) → grammar names.
TREE_SITTER_LANGUAGES: dict[str, str] = {
    "python": "python", "js": "javascript", "ts": "typescript", "tsx": "tsx", "java": "java",
    "go": "go", "rust": "rust", "c": "c", "cpp": "cpp", "csharp": "csharp", "ruby": "ruby",
    "php": "php", "kotlin": "kotlin", "scala": "scala", "swift": "swift", "shell": "bash",
    "lua": "lua", "dart": "dart", "julia": "julia", "elixir": "elixir", "haskell": "haskell",
    "zig": "zig", "ocaml": "ocaml", "perl": "perl", "r": "r", "sol": "solidity", "groovy": "groovy",
    "objc": "objc", "proto": "proto", "hcl": "hcl", "erlang": "erlang", "clojure": "clojure",
}

# Node type → kind. Wrappers (decorators, export, template) are resolved to what they wrap.
_DEFINITIONS: dict[str, str] = {
    "function_definition": "function", "function_declaration": "function",
    "function_item": "function", "generator_function_declaration": "function",
    "method_definition": "method", "method_declaration": "method", "method": "method",
    "singleton_method": "method", "constructor_declaration": "method",
    "class_definition": "class", "class_declaration": "class", "class_specifier": "class",
    "abstract_class_declaration": "class", "class": "class", "object_declaration": "class",
    "object_definition": "class", "record_declaration": "class",
    "struct_item": "struct", "struct_specifier": "struct", "struct_declaration": "struct",
    "union_specifier": "struct", "union_item": "struct",
    "enum_item": "enum", "enum_declaration": "enum", "enum_specifier": "enum",
    "interface_declaration": "interface", "protocol_declaration": "interface",
    "trait_item": "trait", "trait_definition": "trait", "trait_declaration": "trait",
    "impl_item": "impl", "mod_item": "module", "module": "module",
    "namespace_definition": "module", "namespace_declaration": "module", "internal_module": "module",
    "type_declaration": "type", "type_alias_declaration": "type", "macro_definition": "macro",
}
_WRAPPERS = frozenset({"decorated_definition", "export_statement", "template_declaration"})
_CANDIDATES = frozenset(_DEFINITIONS) | _WRAPPERS | {"lexical_declaration", "variable_declaration"}
_CLASS_LIKE = frozenset({"class", "struct", "interface", "trait", "impl", "enum"})
_DECLARATOR_WRAPPERS = frozenset({
    "function_declarator", "pointer_declarator", "reference_declarator",
    "parenthesized_declarator", "array_declarator",
})
_NAME_TYPES = frozenset({
    "identifier", "type_identifier", "simple_identifier", "constant", "name", "word",
    "property_identifier", "field_identifier", "namespace_identifier", "qualified_identifier",
    "scoped_identifier", "dot_index_expression",
})
# Siblings directly above a definition that belong to it.
_LEADING = ("comment", "attribute_item", "attribute", "annotation", "decorator")
_FUNCTION_VALUES = frozenset({"arrow_function", "function_expression", "function", "class"})

_local = threading.local()


def tree_sitter_language(language: str | None) -> str | None:
    """The grammar for one of our language names, or ``None`` when there is none."""
    return TREE_SITTER_LANGUAGES.get(language or "")


def _parser(grammar: str) -> Any:
    # Parsers are not thread-safe: one per thread and grammar.
    cache: dict[str, Any] = _local.__dict__.setdefault("parsers", {})
    if grammar not in cache:
        from tree_sitter_language_pack import get_parser

        cache[grammar] = get_parser(grammar)  # type: ignore[arg-type]
    return cache[grammar]


def code_units(text: str, grammar: str, n_lines: int) -> Unit:
    """The file as a root unit whose children are its top-level definitions.

    Raises ``LookupError``/``ValueError`` when the grammar cannot be loaded (the caller falls back).
    """
    tree = _parser(grammar).parse(text.encode("utf-8", "surrogatepass"))
    root = tree.root_node
    return Unit(0, n_lines, None, None, expand=_expander(root, None, None, n_lines))


def _expander(node: Any, owner: str | None, owner_kind: str | None, n_lines: int) -> Callable[[], list[Unit]]:
    def expand() -> list[Unit]:
        found = _definitions(node, owner, owner_kind, n_lines, 0)
        return found or _statements(node, owner, owner_kind, n_lines)

    return expand


def _definitions(
    node: Any, owner: str | None, owner_kind: str | None, n_lines: int, depth: int
) -> list[Unit]:
    """Definitions among ``node``'s descendants, not looking inside definitions themselves."""
    out: list[Unit] = []
    leading_start: int | None = None
    prev_end_row = -2
    for child in node.named_children:
        node_type = child.type
        if node_type.endswith(_LEADING) or node_type in ("line_comment", "block_comment"):
            start_row = child.start_point.row
            if leading_start is None or start_row > prev_end_row + 1:
                leading_start = start_row
            prev_end_row = _end_line(child, n_lines) - 1
            continue
        # Cheap type test first: a flat file of a million one-line statements must stay linear.
        found = _definition(child) if node_type in _CANDIDATES else None
        if found is not None:
            kind, name, inner = found
            if kind in ("function", "method") and owner_kind in _CLASS_LIKE:
                kind = "method"
            qual = f"{owner}.{name}" if owner else name
            start_row = child.start_point.row
            start = start_row
            if leading_start is not None and start_row <= prev_end_row + 1:
                start = leading_start
            out.append(Unit(start, _end_line(child, n_lines), qual, kind,
                            expand=_expander(inner, qual, kind, n_lines)))
        elif depth < 12 and child.end_point.row > child.start_point.row:
            out.extend(_definitions(child, owner, owner_kind, n_lines, depth + 1))
        leading_start, prev_end_row = None, -2
    return out


def _statements(node: Any, owner: str | None, owner_kind: str | None, n_lines: int) -> list[Unit]:
    """The named children of a node with no definitions inside: statements, fields, blocks."""
    out = []
    for child in node.named_children:
        # Only statements spanning lines can be split further; one-line ones are packed as lines.
        if child.end_point.row - child.start_point.row >= 1:
            start, end = child.start_point.row, _end_line(child, n_lines)
            out.append(Unit(start, end, owner, owner_kind, anonymous=True,
                            expand=_statement_expander(child, owner, owner_kind, n_lines)))
    return out


def _statement_expander(node: Any, owner: str | None, owner_kind: str | None,
                        n_lines: int) -> Callable[[], list[Unit]]:
    return lambda: _statements(node, owner, owner_kind, n_lines)


def _end_line(node: Any, n_lines: int) -> int:
    """Exclusive end line: a node that ends at column 0 ends on the line before."""
    end = node.end_point
    return min(end.row + (1 if end.column > 0 else 0), n_lines) or 1


def _definition(node: Any) -> tuple[str, str, Any] | None:
    """(kind, name, the definition node itself) when ``node`` defines something named (a wrapper
    such as ``export`` or a decorator list gives its inner definition), else ``None``."""
    kind = _DEFINITIONS.get(node.type)
    if node.type in _WRAPPERS:
        inner = node.child_by_field_name("definition") or node.child_by_field_name("declaration")
        if inner is None:
            inner = next((c for c in node.named_children if c.type in _DEFINITIONS), None)
        return _definition(inner) if inner is not None else None
    if node.type in ("lexical_declaration", "variable_declaration"):
        for decl in node.named_children:
            value = decl.child_by_field_name("value")
            name = decl.child_by_field_name("name")
            if value is not None and name is not None and value.type in _FUNCTION_VALUES:
                return ("class" if value.type == "class" else "function"), _text(name), value
        return None
    if kind is None:
        return None
    name = _name(node)
    if name is None:
        return None
    if node.type == "method_declaration" and (receiver := node.child_by_field_name("receiver")):
        recv = _first_of_type(receiver, "type_identifier")
        if recv is not None:  # Go: func (s *Server) Start() → Server.Start
            name = f"{_text(recv)}.{name}"
    return kind, name, node


def _name(node: Any) -> str | None:
    for field in ("name", "declarator", "type"):
        n = node.child_by_field_name(field)
        while n is not None and n.type in _DECLARATOR_WRAPPERS:
            n = n.child_by_field_name("declarator")
        if n is not None and (field == "name" or n.type in _NAME_TYPES):
            return _text(n)
    for child in node.named_children:
        if child.type in _NAME_TYPES:
            return _text(child)
        sub = child.child_by_field_name("name")  # Go: type_declaration → type_spec → name
        if sub is not None:
            return _text(sub)
    return None


def _first_of_type(node: Any, type_name: str) -> Any:
    if node.type == type_name:
        return node
    for child in node.named_children:
        found = _first_of_type(child, type_name)
        if found is not None:
            return found
    return None


def _text(node: Any) -> str:
    raw: bytes = node.text or b""
    return raw.decode("utf-8", "replace").split("\n", 1)[0].strip()[:200]
