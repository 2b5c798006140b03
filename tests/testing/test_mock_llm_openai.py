"""The mock's OpenAI APIs (Chat Completions, Responses, Embeddings, Models) through the official SDK."""

from __future__ import annotations

import json
from typing import Any

import httpx
import openai
import pytest
from openai.types import CreateEmbeddingResponse
from openai.types import Model as OpenAIModel
from openai.types.chat import ChatCompletion, ChatCompletionChunk
from openai.types.responses import Response, ResponseStreamEvent

from agenttrail.testing import MockConfig, MockControl, parse_sse, run_in_thread
from agenttrail.testing.mock_config import DEFAULT_TEXT

MESSAGES: Any = [{"role": "user", "content": "hi"}]
FN_TOOL: Any = {
    "type": "function",
    "function": {
        "name": "Write",
        "parameters": {"type": "object", "properties": {"file_path": {"type": "string"}}},
    },
}
RESP_TOOLS: Any = [
    {"type": "function", "name": "shell", "parameters": {"type": "object", "properties": {}}},
    {"type": "custom", "name": "apply_patch"},
]
PATCH = "*** Begin Patch\n*** Add File: hello.txt\n+hello\n*** End Patch\n"
AUTH = {"authorization": "Bearer sk-test"}


# --------------------------------------------------------------------------------- chat completions


def test_chat_non_streaming(oai: openai.OpenAI) -> None:
    raw = oai.chat.completions.with_raw_response.create(model="gpt-5", messages=MESSAGES)
    assert raw.headers["x-request-id"].startswith("req_")
    c = raw.parse()
    assert c.id.startswith("chatcmpl-") and c.object == "chat.completion" and c.model == "gpt-5"
    assert c.choices[0].message.content == DEFAULT_TEXT
    assert c.choices[0].finish_reason == "stop"
    assert c.usage is not None
    assert (c.usage.prompt_tokens, c.usage.completion_tokens, c.usage.total_tokens) == (1500, 300, 1800)
    assert c.usage.prompt_tokens_details is not None and c.usage.prompt_tokens_details.cached_tokens == 1000
    assert c.usage.completion_tokens_details is not None
    assert c.usage.completion_tokens_details.reasoning_tokens == 0
    ChatCompletion.model_validate(raw.http_response.json())


def test_chat_stream_with_include_usage(oai: openai.OpenAI) -> None:
    chunks = list(
        oai.chat.completions.create(
            model="gpt-5", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
        )
    )
    *content, last = chunks
    assert last.choices == [] and last.usage is not None
    assert (last.usage.prompt_tokens, last.usage.completion_tokens) == (1500, 300)
    assert last.usage.prompt_tokens_details is not None and last.usage.prompt_tokens_details.cached_tokens == 1000
    assert all(c.usage is None for c in content)
    assert "".join(c.choices[0].delta.content or "" for c in content) == DEFAULT_TEXT
    assert content[0].choices[0].delta.role == "assistant"
    assert content[-1].choices[0].finish_reason == "stop"


def test_chat_stream_without_include_usage_has_no_usage_key(raw: httpx.Client) -> None:
    r = raw.post("/v1/chat/completions", headers=AUTH, json={"model": "m", "messages": MESSAGES, "stream": True})
    events = parse_sse(r.content)
    assert events[-1] == (None, "[DONE]")
    chunks = [json.loads(d) for _, d in events[:-1]]
    assert all("usage" not in c for c in chunks), "no usage key at all unless include_usage was asked"
    for c in chunks:
        ChatCompletionChunk.model_validate(c)
    asked = raw.post(
        "/v1/chat/completions",
        headers=AUTH,
        json={"model": "m", "messages": MESSAGES, "stream": True, "stream_options": {"include_usage": True}},
    )
    with_usage = [json.loads(d) for _, d in parse_sse(asked.content)[:-1]]
    assert all("usage" in c for c in with_usage) and [c["usage"] is None for c in with_usage].count(False) == 1
    for c in with_usage:
        ChatCompletionChunk.model_validate(c)


def test_chat_tool_call_streamed(oai: openai.OpenAI, control: MockControl) -> None:
    control.set_scenario([{"tool": "Write", "input": {"file_path": "a.py"}}])
    with oai.chat.completions.stream(model="gpt-5", messages=MESSAGES, tools=[FN_TOOL]) as stream:
        final = stream.get_final_completion()
    choice = final.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    calls = choice.message.tool_calls or []
    assert len(calls) == 1 and calls[0].id.startswith("call_")
    assert calls[0].type == "function"
    assert calls[0].function.name == "Write"
    assert json.loads(calls[0].function.arguments) == {"file_path": "a.py"}


def test_chat_tool_call_non_streaming_with_text(oai: openai.OpenAI, control: MockControl) -> None:
    control.set_scenario([{"text": "Writing.", "tool": "Write", "input": {"file_path": "b.py"}}])
    c = oai.chat.completions.create(model="gpt-5", messages=MESSAGES, tools=[FN_TOOL])
    msg = c.choices[0].message
    assert msg.content == "Writing." and c.choices[0].finish_reason == "tool_calls"
    assert msg.tool_calls is not None
    assert json.loads(msg.tool_calls[0].function.arguments) == {"file_path": "b.py"}  # type: ignore[union-attr]


# ----------------------------------------------------------------------------------------- responses


def _check_responses_usage(usage: Any) -> None:
    assert (usage.input_tokens, usage.output_tokens, usage.total_tokens) == (1500, 300, 1800)
    assert usage.input_tokens_details.cached_tokens == 1000
    assert usage.output_tokens_details.reasoning_tokens == 0


def test_responses_non_streaming(oai: openai.OpenAI) -> None:
    raw = oai.responses.with_raw_response.create(model="gpt-5", input="hi", instructions="be brief")
    r = raw.parse()
    assert r.id.startswith("resp_") and r.status == "completed" and r.instructions == "be brief"
    assert r.output_text == DEFAULT_TEXT
    _check_responses_usage(r.usage)
    Response.model_validate(raw.http_response.json())


def test_responses_stream_helper(oai: openai.OpenAI) -> None:
    with oai.responses.stream(model="gpt-5", input="hi") as stream:
        kinds = [e.type for e in stream]
        final = stream.get_final_response()
    assert kinds[:2] == ["response.created", "response.in_progress"]
    assert kinds[-1] == "response.completed"
    assert final.output_text == DEFAULT_TEXT
    _check_responses_usage(final.usage)


def test_responses_raw_events_strict(raw: httpx.Client, validate_event: Any) -> None:
    r = raw.post("/v1/responses", headers=AUTH, json={"model": "gpt-5", "input": "hi", "stream": True})
    events = parse_sse(r.content)
    objs = [json.loads(d) for _, d in events]
    assert [e for e, _ in events] == [o["type"] for o in objs]
    assert [o["sequence_number"] for o in objs] == list(range(len(objs)))
    kinds = [o["type"] for o in objs]
    assert kinds[:5] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
    ]
    assert kinds[-4:] == [
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    for o in objs:
        validate_event(ResponseStreamEvent, o)
    assert objs[0]["response"]["usage"] is None and objs[-1]["response"]["usage"]["input_tokens"] == 1500


def test_responses_mixed_turn_events_strict(raw: httpx.Client, control: MockControl, validate_event: Any) -> None:
    control.set_scenario(
        [
            {
                "text": "Two things.",
                "calls": [
                    {"tool": "shell", "input": {"command": ["ls"]}},
                    {"custom_tool": "apply_patch", "input": PATCH},
                ],
            }
        ]
    )
    body = {"model": "gpt-5", "input": "hi", "tools": RESP_TOOLS, "stream": True}
    objs = [json.loads(d) for _, d in parse_sse(raw.post("/v1/responses", headers=AUTH, json=body).content)]
    for o in objs:
        validate_event(ResponseStreamEvent, o)
    kinds = {o["type"] for o in objs}
    assert {
        "response.function_call_arguments.delta",
        "response.function_call_arguments.done",
        "response.custom_tool_call_input.delta",
        "response.custom_tool_call_input.done",
    } <= kinds
    final = Response.model_validate(objs[-1]["response"])
    assert [item.type for item in final.output] == ["message", "function_call", "custom_tool_call"]
    added = [o["output_index"] for o in objs if o["type"] == "response.output_item.added"]
    assert added == [0, 1, 2]


def test_responses_function_and_custom_tool_calls(oai: openai.OpenAI, control: MockControl, raw: httpx.Client) -> None:
    control.set_scenario(
        [
            {"tool": "shell", "input": {"command": ["bash", "-lc", "ls"]}},
            {"custom_tool": "apply_patch", "input": PATCH},
        ]
    )
    with oai.responses.stream(model="gpt-5", input="hi", tools=RESP_TOOLS) as stream:
        first = stream.get_final_response()
    call = first.output[0]
    assert call.type == "function_call" and call.name == "shell" and call.call_id.startswith("call_")
    assert json.loads(call.arguments) == {"command": ["bash", "-lc", "ls"]}
    r = raw.post("/v1/responses", headers=AUTH, json={"model": "gpt-5", "input": "hi", "tools": RESP_TOOLS})
    second = Response.model_validate(r.json())
    custom = second.output[0]
    assert custom.type == "custom_tool_call" and custom.name == "apply_patch" and custom.input == PATCH


def test_responses_custom_tool_streamed(oai: openai.OpenAI, control: MockControl) -> None:
    control.set_scenario([{"custom_tool": "apply_patch", "input": PATCH}])
    stream = oai.responses.create(model="gpt-5", input="hi", tools=RESP_TOOLS, stream=True)
    events = list(stream)
    kinds = [e.type for e in events]
    assert "response.custom_tool_call_input.delta" in kinds
    done = [e for e in events if e.type == "response.output_item.done"]
    assert done[0].item.type == "custom_tool_call" and done[0].item.input == PATCH
    completed = events[-1]
    assert completed.type == "response.completed"
    _check_responses_usage(completed.response.usage)


# ---------------------------------------------------------------------------------- embeddings, models


def test_embeddings_base64_default_and_float_agree(oai: openai.OpenAI) -> None:
    # The SDK asks for base64 unless told otherwise and decodes it itself.
    b64 = oai.embeddings.create(model="text-embedding-3-small", input=["alpha", "beta"])
    flt = oai.embeddings.create(model="text-embedding-3-small", input=["alpha", "beta"], encoding_format="float")
    assert [d.index for d in b64.data] == [0, 1]
    assert len(b64.data[0].embedding) == 1536
    assert b64.data[0].embedding == pytest.approx(flt.data[0].embedding)
    assert b64.data[0].embedding != b64.data[1].embedding
    assert b64.usage.prompt_tokens == b64.usage.total_tokens == 16
    again = oai.embeddings.create(model="m", input="alpha", dimensions=8, encoding_format="float")
    assert len(again.data[0].embedding) == 8
    assert sum(v * v for v in again.data[0].embedding) == pytest.approx(1.0, abs=1e-5)


def test_embeddings_strict(raw: httpx.Client) -> None:
    r = raw.post("/v1/embeddings", headers=AUTH, json={"model": "m", "input": "x", "encoding_format": "float"})
    CreateEmbeddingResponse.model_validate(r.json())


def test_models_in_openai_shape(oai: openai.OpenAI, raw: httpx.Client) -> None:
    ids = [m.id for m in oai.models.list()]
    assert "gpt-5" in ids
    assert oai.models.retrieve("gpt-5").id == "gpt-5"
    with pytest.raises(openai.NotFoundError):
        oai.models.retrieve("no-such-model")
    for item in raw.get("/v1/models", headers=AUTH).json()["data"]:
        OpenAIModel.model_validate(item)


# --------------------------------------------------------------------------------------- credentials


def test_missing_bearer_is_401_in_openai_shape(raw: httpx.Client) -> None:
    for headers in ({}, {"authorization": "Bearer"}, {"x-api-key": "not-how-openai-authenticates"}):
        r = raw.post("/v1/chat/completions", headers=headers, json={"model": "m", "messages": MESSAGES})
        assert r.status_code == 401
        err = r.json()["error"]
        assert set(err) == {"message", "type", "param", "code"}
        assert err["type"] == "invalid_request_error" and err["code"] is None and err["param"] is None


def test_expected_key_openai() -> None:
    with run_in_thread(MockConfig(expected_key="sk-right")) as url:
        wrong = openai.OpenAI(base_url=url + "/v1", api_key="sk-wrong-key-1234", max_retries=0)
        with pytest.raises(openai.AuthenticationError) as err:
            wrong.chat.completions.create(model="m", messages=MESSAGES)
        assert err.value.code == "invalid_api_key"
        right = openai.OpenAI(base_url=url + "/v1", api_key="sk-right", max_retries=0)
        assert right.responses.create(model="m", input="hi").output_text == DEFAULT_TEXT


@pytest.mark.parametrize("dims", [-1, 0, "8", 3.5, True, 100_000_000])
def test_embeddings_dimensions_out_of_range_are_a_400(raw: httpx.Client, dims: object) -> None:
    # -1 answered an empty vector, "8" worked, and 100,000,000 made the mock build a 100-million-float
    # vector on its event loop: one typo in a test stalled every other request to it.
    body = {"model": "text-embedding-3-small", "input": "x", "dimensions": dims}
    r = raw.post("/v1/embeddings", headers=AUTH, json=body)
    assert r.status_code == 400 and "dimensions" in r.json()["error"]["message"]
