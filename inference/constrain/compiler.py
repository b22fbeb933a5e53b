"""Turns grammar text into fresh per-request constraints for one tokenizer."""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from typing import Any

from corral.inference.constrain import grammars
from corral.inference.constrain.matcher import GrammarConstraint
from corral.inference.errors import ConstraintError, InferenceError

__all__ = ["ConstraintCompiler"]

# A grammar larger than this (in characters) is refused before llguidance sees it: schemas arrive
# from HTTP clients, and a hostile one should cost a 400, not seconds of CPU.
MAX_GRAMMAR_CHARS = 256 * 1024


class ConstraintCompiler:
    """Builds ``GrammarConstraint`` objects for one tokenizer; thread-safe; build once per model.

    Preparing the tokenizer takes about a second (llguidance indexes the vocabulary), so it happens on
    first use and is kept. ``eos_token_ids`` are the tokens that end generation (the chat template's
    end-of-turn token first); they become legal exactly when the grammar is complete.
    """

    def __init__(self, tokenizer: Any, *, eos_token_ids: Sequence[int] | None = None) -> None:
        eos = list(eos_token_ids) if eos_token_ids else [tokenizer.eos_token_id]
        if not eos or eos[0] is None:
            raise InferenceError("the tokenizer has no end-of-sequence token to end constrained output")
        self._hf_tokenizer = tokenizer
        self.eos_token_ids = [int(t) for t in eos]
        self._ll: Any = None
        self._lock = threading.Lock()

    def _ll_tokenizer(self) -> Any:
        with self._lock:
            if self._ll is None:
                import llguidance.hf

                try:
                    self._ll = llguidance.hf.from_tokenizer(
                        self._hf_tokenizer, eos_token=self.eos_token_ids[0]
                    )
                except ValueError as exc:
                    raise InferenceError(f"constrained decoding needs a fast tokenizer: {exc}") from exc
            return self._ll

    def prepare(self) -> None:
        """Index the vocabulary now rather than on the first constrained request."""
        self._ll_tokenizer()

    def from_lark(self, grammar: str) -> GrammarConstraint:
        """A constraint from llguidance Lark text (the other builders all end here)."""
        import llguidance

        if len(grammar) > MAX_GRAMMAR_CHARS:
            raise ConstraintError(
                f"the grammar is {len(grammar)} characters; the limit is {MAX_GRAMMAR_CHARS}",
                param="grammar",
            )
        ll = self._ll_tokenizer()
        compiled = llguidance.LLMatcher.grammar_from_lark(grammar)
        is_error, messages = llguidance.LLMatcher.validate_grammar_with_warnings(compiled, ll)
        if is_error:
            raise ConstraintError(f"invalid grammar: {messages[0] if messages else 'unknown error'}")
        matcher = llguidance.LLMatcher(ll, compiled, log_level=0)
        if matcher.is_error():
            raise ConstraintError(f"invalid grammar: {matcher.get_error()}")
        return GrammarConstraint(
            matcher, tokenizer_vocab=int(ll.vocab_size), eos_token_ids=self.eos_token_ids
        )

    def json_schema(self, schema: Mapping[str, Any] | None = None) -> GrammarConstraint:
        """One JSON value valid against ``schema``; None means any JSON object."""
        text = grammars.json_object_grammar() if schema is None else grammars.json_schema_grammar(schema)
        return self.from_lark(text)

    def regex(self, pattern: str) -> GrammarConstraint:
        return self.from_lark(grammars.regex_grammar(pattern))

    def tools(
        self,
        tools: Sequence[tuple[str, Mapping[str, Any] | None]],
        *,
        required: bool,
        text_schema: Mapping[str, Any] | None = None,
    ) -> GrammarConstraint:
        """One Hermes-format tool call (``required``), or a call or an answer (``tool_choice="auto"``)."""
        return self.from_lark(grammars.tools_grammar(tools, required=required, text_schema=text_schema))
