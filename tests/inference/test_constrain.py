"""Constrained decoding (llguidance grammars as TokenConstraints), prompt building, tool parsing and the
transformers reference backend's decode loop, on SmolLM2's real tokenizer and a tiny random model."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

from corral.inference.chat import ChatRequest, ChatService, ResponseFormat, ToolChoice, build_prompt
from corral.inference.chat.tools import parse_tool_calls, parse_tool_choice, parse_tools
from corral.inference.constrain import ConstraintCompiler, GrammarConstraint, tools_grammar
from corral.inference.constrain.compiler import MAX_GRAMMAR_CHARS
from corral.inference.decoding import TextAssembler, sample_token
from corral.inference.errors import ConstraintError, InvalidRequestError
from corral.inference.generation import SamplingParams
from corral.inference.hf import HFChatModel

WEATHER = {
    "type": "object",
    "properties": {"city": {"type": "string"}, "unit": {"enum": ["celsius", "fahrenheit"]}},
    "required": ["city", "unit"],
}
TOOLS = [("get_weather", WEATHER), ("get_time", None)]


@pytest.fixture(scope="module")
def tok(smollm2_tokenizer_dir: Path) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(smollm2_tokenizer_dir)


@pytest.fixture(scope="module")
def compiler(tok: Any) -> ConstraintCompiler:
    c = ConstraintCompiler(tok)
    c.prepare()
    return c


@pytest.fixture(scope="module")
def tiny(tiny_chat_model: Path) -> HFChatModel:
    return HFChatModel(tiny_chat_model)


def ids_of(tok: Any, text: str) -> list[int]:
    return list(tok(text, add_special_tokens=False)["input_ids"])


def walk(tok: Any, constraint: GrammarConstraint, text: str) -> None:
    """Feed ``text`` token by token, checking each token is allowed before it is accepted."""
    for token in ids_of(tok, text):
        mask = constraint.allowed_mask(len(tok))
        assert mask[token], f"token {token} ({tok.decode([token])!r}) refused"
        constraint.advance([token])


def test_json_schema_allows_a_valid_document_then_only_end_of_sequence(
    tok: Any, compiler: ConstraintCompiler
) -> None:
    c = compiler.json_schema(WEATHER)
    walk(tok, c, '{"city": "Paris", "unit": "celsius"}')
    assert c.is_finished() and c.is_accepting()
    mask = c.allowed_mask(len(tok))
    assert mask.dtype == torch.bool and mask.shape == (len(tok),)
    assert mask.nonzero().flatten().tolist() == [tok.eos_token_id]
    c.advance([tok.eos_token_id])  # the engine reports the end token too; it is accepted
    assert c.forced() == []


def test_json_schema_refuses_what_the_schema_forbids(tok: Any, compiler: ConstraintCompiler) -> None:
    c = compiler.json_schema(WEATHER)
    walk(tok, c, '{"city": "Paris", "unit": "')
    mask = c.allowed_mask(len(tok))
    assert not mask[ids_of(tok, "kelvin")[0]]
    assert not mask[tok.eos_token_id]  # an unfinished document cannot end
    assert mask[ids_of(tok, "c")[0]]


def test_forced_tokens_spell_out_the_only_continuation(tok: Any, compiler: ConstraintCompiler) -> None:
    c = compiler.tools([("get_weather", WEATHER)], required=True)
    forced = c.forced()
    # One tool: the tag, the key and the tool's name are all forced, fed without sampling.
    full = ('<tool_call>\n{"name": "get_weather", "arguments": {"city": "Oslo", "unit": "celsius"}}'
            "\n</tool_call>")
    head = tok.decode(forced)
    assert head.startswith('<tool_call>\n{"name": "get_weather') and full.startswith(head)
    c.advance(forced)
    walk(tok, c, full[len(head) :])
    assert c.is_finished()


def test_mask_is_padded_to_the_model_vocabulary(tok: Any, compiler: ConstraintCompiler) -> None:
    mask = compiler.json_schema(None).allowed_mask(len(tok) + 64)
    assert mask.shape == (len(tok) + 64,) and not mask[len(tok) :].any() and mask.any()
    assert compiler.json_schema(None).allowed_mask(100).shape == (100,)


def test_regex_constraint(tok: Any, compiler: ConstraintCompiler) -> None:
    c = compiler.regex(r"\d{3}-[a-z]+/ok")
    walk(tok, c, "123-abc/ok")
    assert c.is_accepting()
    d = compiler.regex(r"\d{3}")
    assert not d.allowed_mask(len(tok))[ids_of(tok, "a")[0]]


def test_auto_tool_choice_allows_an_answer_or_a_whole_call(tok: Any, compiler: ConstraintCompiler) -> None:
    answer = compiler.tools(TOOLS, required=False)
    walk(tok, answer, "It is sunny <tool_call> in text is fine later.")
    assert answer.is_accepting() and answer.allowed_mask(len(tok))[tok.eos_token_id]

    call = compiler.tools(TOOLS, required=False)
    walk(tok, call, '<tool_call>\n{"name": "get_time", "arguments": {}}\n</tool_call>')
    assert call.is_finished()

    started = compiler.tools(TOOLS, required=False)
    walk(tok, started, "<tool_call>\n")
    # Once the tag is out, the rest must be a valid call: no free text, no early end.
    mask = started.allowed_mask(len(tok))
    assert not mask[tok.eos_token_id] and not mask[ids_of(tok, "Hello")[0]]


def test_auto_with_a_json_answer_schema(tok: Any, compiler: ConstraintCompiler) -> None:
    answer_schema = {"type": "object", "properties": {"a": {"type": "integer"}}}
    c = compiler.tools(TOOLS, required=False, text_schema=answer_schema)
    walk(tok, c, '{"a": 5}')
    assert c.is_accepting()
    d = compiler.tools(TOOLS, required=False, text_schema={"type": "object"})
    assert not d.allowed_mask(len(tok))[ids_of(tok, "Hello")[0]]


def test_tool_names_cannot_inject_grammar(tok: Any, compiler: ConstraintCompiler) -> None:
    hostile = 'x"} | /(?s:.*)/ %json {"'
    c = compiler.tools([(hostile, None)], required=True)
    walk(tok, c, '<tool_call>\n{"name": ' + json.dumps(hostile) + ', "arguments": {}}\n</tool_call>')
    assert c.is_finished()


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda c: c.json_schema({"type": "nonsense"}), "Invalid type"),
        (lambda c: c.json_schema({"$ref": "#/definitions/missing"}), "invalid grammar"),
        (lambda c: c.json_schema(["not", "an", "object"]), "JSON object"),
        (lambda c: c.regex("(unclosed"), "unclosed"),
        (lambda c: c.regex(""), "non-empty"),
        (lambda c: c.tools([], required=True), "no tools"),
        (lambda c: c.from_lark("start: nothing_defined"), "invalid grammar"),
        (lambda c: c.from_lark("start: /a/" + " " * MAX_GRAMMAR_CHARS), "limit"),
        (lambda c: c.json_schema({"enum": [f"value-{i}" * 50 for i in range(2000)]}), "limit"),
    ],
)
def test_bad_grammars_raise_constraint_errors(
    compiler: ConstraintCompiler, build: Any, message: str
) -> None:
    with pytest.raises(ConstraintError, match=message):
        build(compiler)


def test_deeply_nested_schema_is_refused_or_compiled_never_crashes(compiler: ConstraintCompiler) -> None:
    schema: dict[str, Any] = {"type": "string"}
    for _ in range(3000):
        schema = {"type": "object", "properties": {"a": schema}, "required": ["a"]}
    try:
        c = compiler.json_schema(schema)
    except ConstraintError:
        return
    assert c.forced()  # compiled: the required keys are forced


def test_tools_grammar_text_is_lark() -> None:
    text = tools_grammar([("f", None)], required=False)
    assert text.startswith("start: tool_call | answer") and "%json" in text


# -- the reference backend's decode loop ---------------------------------------------------------


def test_text_assembler_holds_back_partial_stop_strings(tok: Any) -> None:
    a = TextAssembler(tok, stop=("STOP",))
    out = a.push(ids_of(tok, "hello ST"))
    assert out == "hello " and not a.stopped
    out += a.push(ids_of(tok, "OP and more"))
    assert a.stopped and out + a.finish() == "hello "


def test_text_assembler_waits_for_whole_characters(tok: Any) -> None:
    ids = ids_of(tok, "naïve 🦙 ok")
    a = TextAssembler(tok)
    text = "".join(a.push([i]) for i in ids) + a.finish()
    assert text == "naïve 🦙 ok" and "\ufffd" not in text


def test_sampling_respects_the_mask_and_the_seed() -> None:
    logits = torch.tensor([5.0, 4.0, 3.0, 2.0])
    allowed = torch.tensor([False, False, True, True])
    greedy = SamplingParams(temperature=0.0)
    assert sample_token(logits, greedy, None, allowed) == 2
    hot = SamplingParams(temperature=1.5, top_p=0.9)
    draws = [sample_token(logits, hot, torch.Generator().manual_seed(s), allowed) for s in range(20)]
    assert set(draws) <= {2, 3}
    g1, g2 = torch.Generator().manual_seed(7), torch.Generator().manual_seed(7)
    first = [sample_token(logits, hot, g1) for _ in range(10)]
    assert first == [sample_token(logits, hot, g2) for _ in range(10)]


def test_hf_backend_generates_schema_valid_json(tiny: HFChatModel) -> None:
    compiler = ConstraintCompiler(tiny.tokenizer, eos_token_ids=tiny.eos_token_ids)
    schema = {
        "type": "object",
        "properties": {"ok": {"type": "boolean"}, "unit": {"enum": ["celsius", "fahrenheit"]}},
        "required": ["ok", "unit"],
        "additionalProperties": False,
    }
    prompt = build_prompt(tiny.tokenizer, [{"role": "user", "content": "answer in JSON"}])
    result = tiny.generate(prompt, SamplingParams(max_tokens=40, temperature=1.0, seed=3),
                           compiler.json_schema(schema))
    doc = json.loads(result.text)
    assert set(doc) == {"ok", "unit"} and doc["unit"] in ("celsius", "fahrenheit")
    assert result.finish_reason == "stop" and result.prompt_tokens == len(prompt)


def test_hf_backend_stream_matches_generate_and_honours_limits(tiny: HFChatModel) -> None:
    prompt = build_prompt(tiny.tokenizer, [{"role": "user", "content": "hi"}])
    params = SamplingParams(max_tokens=7, temperature=0.0)
    chunks = list(tiny.stream(prompt, params))
    whole = tiny.generate(prompt, params)
    assert "".join(c.text for c in chunks) == whole.text
    assert [t for c in chunks for t in c.token_ids] == whole.token_ids
    assert chunks[-1].finish_reason == whole.finish_reason == "length" and len(whole.token_ids) == 7
    assert all(c.finish_reason is None for c in chunks[:-1])
    seeded = SamplingParams(max_tokens=6, temperature=1.0, seed=11)
    assert tiny.generate(prompt, seeded).token_ids == tiny.generate(prompt, seeded).token_ids


def test_hf_backend_refuses_overflow_and_empty_prompts(tiny: HFChatModel) -> None:
    from corral.inference.errors import ContextOverflowError, InferenceError

    with pytest.raises(ContextOverflowError):
        tiny.stream([1] * 2000, SamplingParams(max_tokens=100))
    with pytest.raises(InferenceError):
        tiny.stream([], SamplingParams())


# -- prompts and tools ---------------------------------------------------------------------------


def openai_tools() -> list[dict[str, Any]]:
    return [
        {"type": "function", "function": {"name": "get_weather", "description": "Weather now.",
                                          "parameters": WEATHER}},
        {"type": "function", "function": {"name": "get_time"}},
    ]


def test_tools_go_into_the_system_prompt_when_the_template_cannot_render_them(tok: Any) -> None:
    specs = parse_tools(openai_tools())
    ids = build_prompt(tok, [{"role": "developer", "content": "Be brief."},
                             {"role": "user", "content": [{"type": "text", "text": "Weather?"}]}], specs)
    text = tok.decode(ids)
    assert text.count("<|im_start|>system") == 1 and "Be brief." in text
    assert '"name": "get_weather"' in text and "<tool_call>" in text
    assert text.endswith("<|im_start|>assistant\n")


def test_earlier_tool_calls_and_results_are_rendered(tok: Any) -> None:
    messages = [
        {"role": "user", "content": "Weather in Oslo?"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_1", "type": "function",
             "function": {"name": "get_weather", "arguments": '{"city": "Oslo", "unit": "celsius"}'}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "4 degrees"},
    ]
    text = tok.decode(build_prompt(tok, messages, parse_tools(openai_tools())))
    assert '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Oslo"' in text
    assert "<|im_start|>tool\n4 degrees" in text


@pytest.mark.parametrize(
    ("messages", "param"),
    [
        ([], "messages"),
        ("hello", "messages"),
        ([{"role": "wizard", "content": "x"}], "messages[0].role"),
        (["just a string"], "messages[0]"),
        ([{"role": "user", "content": 42}], "messages[0].content"),
        ([{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}],
         "messages[0].content"),
        ([{"role": "assistant", "content": "",
           "tool_calls": [{"function": {"name": "f", "arguments": "{no"}}]}], "messages[0].tool_calls"),
        ([{"role": "assistant", "content": "", "tool_calls": "nope"}], "messages[0].tool_calls"),
    ],
)
def test_malformed_messages_name_the_field(tok: Any, messages: Any, param: str) -> None:
    with pytest.raises(InvalidRequestError) as err:
        build_prompt(tok, messages)
    assert err.value.param == param


@pytest.mark.parametrize(
    "tools",
    [
        "get_weather",
        [{"type": "function"}],
        [{"type": "retrieval", "function": {"name": "x"}}],
        [{"type": "function", "function": {"name": "bad name!"}}],
        [{"type": "function", "function": {"name": "x" * 65}}],
        [{"type": "function", "function": {"name": "f", "parameters": "not a schema"}}],
        [{"type": "function", "function": {"name": "f", "parameters": {"type": "array"}}}],
        [{"type": "function", "function": {"name": "f", "description": 7}}],
        [{"type": "function", "function": {"name": "f"}}] * 2,
        [{"type": "function", "function": {"name": f"f{i}"}} for i in range(200)],
    ],
)
def test_malformed_tools_are_refused(tools: Any) -> None:
    with pytest.raises(InvalidRequestError) as err:
        parse_tools(tools)
    assert err.value.param and err.value.param.startswith("tools")


def test_tool_choice_forms() -> None:
    specs = parse_tools(openai_tools())
    assert parse_tool_choice(None, specs) == ToolChoice("auto")
    assert parse_tool_choice(None, []) == ToolChoice("none")
    assert parse_tool_choice({"type": "function", "function": {"name": "get_time"}}, specs) == ToolChoice(
        "required", "get_time"
    )
    for bad in ("sometimes", {"type": "function", "function": {"name": "nope"}}, 5):
        with pytest.raises(InvalidRequestError):
            parse_tool_choice(bad, specs)
    with pytest.raises(InvalidRequestError):
        parse_tool_choice("required", [])


def test_parse_tool_calls() -> None:
    one = parse_tool_calls('<tool_call>\n{"name": "f", "arguments": {"a": 1}}\n</tool_call>')
    assert one is not None and one[0].name == "f" and json.loads(one[0].arguments) == {"a": 1}
    two = parse_tool_calls('<tool_call>{"name": "f", "arguments": {}}</tool_call>\n'
                           '<tool_call>{"name": "g", "arguments": {}}</tool_call>')
    assert two is not None and [c.name for c in two] == ["f", "g"] and two[0].id != two[1].id
    for text in ("plain answer", '<tool_call>\n{"name": "f", "argu', "<tool_call>[1]</tool_call>",
                 '<tool_call>{"name": "f", "arguments": {}}</tool_call> trailing'):
        assert parse_tool_calls(text) is None


def test_chat_service_required_tool_call_in_process(tiny: HFChatModel) -> None:
    service = ChatService(tiny)
    specs = parse_tools([{"type": "function", "function": {
        "name": "set_unit",
        "parameters": {"type": "object", "properties": {"unit": {"enum": ["c", "f"]}}, "required": ["unit"]},
    }}])
    done = service.complete(ChatRequest(
        messages=[{"role": "user", "content": "use celsius"}], max_tokens=40, tools=specs,
        tool_choice=ToolChoice("required"),
    ))
    assert done.finish_reason == "tool_calls" and done.content is None
    assert done.tool_calls[0].name == "set_unit"
    assert json.loads(done.tool_calls[0].arguments)["unit"] in ("c", "f")
    with pytest.raises(ConstraintError):
        service.complete(ChatRequest(messages=[{"role": "user", "content": "x"}],
                                     response_format=ResponseFormat("json_schema", {"type": 5})))
