"""Constrained decoding: grammars (JSON schema, regex, tool calls) as ``TokenConstraint`` objects.

Built on llguidance (chosen by measurement, see ``bench/bench_constrain.py``): it compiles a grammar
lazily in about a millisecond, computes a 49k-token mask in tens of microseconds, reports the tokens
a grammar forces (fed by the engine as a mini-prefill), and mixes free text with embedded JSON
schemas in one Lark grammar, which is how ``tool_choice="auto"`` is expressed.
"""

from corral.inference.constrain.compiler import ConstraintCompiler
from corral.inference.constrain.grammars import (
    TOOL_CALL_CLOSE,
    TOOL_CALL_OPEN,
    json_object_grammar,
    json_schema_grammar,
    regex_grammar,
    tool_call_schema,
    tools_grammar,
)
from corral.inference.constrain.matcher import GrammarConstraint

__all__ = [
    "TOOL_CALL_CLOSE",
    "TOOL_CALL_OPEN",
    "ConstraintCompiler",
    "GrammarConstraint",
    "json_object_grammar",
    "json_schema_grammar",
    "regex_grammar",
    "tool_call_schema",
    "tools_grammar",
]
