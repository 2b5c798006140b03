"""Whole answers from streams, and streams from whole answers, in each provider's own format.

The response cache keeps one whole answer per request (a streamed answer is assembled from its
events); a streaming client gets it back as a well-formed stream with the events its SDK expects:
Anthropic `message_start … message_stop`, Chat Completions chunks ending in `[DONE]`, Responses
`response.created … response.completed`.
"""

from __future__ import annotations

import copy
from typing import Any

import orjson

from agenttrail.gateway.sse import SSESplitter, event_json
from agenttrail.usage import Usage

# -- assembling ------------------------------------------------------------------------------------


def assemble(endpoint: str, stream: bytes) -> dict[str, Any] | None:
    """The whole answer a complete stream carried, or None when it is not a complete answer."""
    events = []
    for ev in SSESplitter().feed(stream if stream.endswith(b"\n\n") else stream + b"\n\n"):
        if ev.data == b"[DONE]":
            events.append((ev.event, None))
            continue
        try:
            events.append((ev.event, event_json(ev)))
        except orjson.JSONDecodeError:
            return None
    if endpoint == "messages":
        return _assemble_anthropic(events)
    if endpoint == "chat":
        return _assemble_chat(events)
    if endpoint == "responses":
        for _, obj in events:
            if isinstance(obj, dict) and obj.get("type") == "response.completed":
                resp = obj.get("response")
                return resp if isinstance(resp, dict) else None
    return None


def _assemble_anthropic(events: list[tuple[str | None, Any]]) -> dict[str, Any] | None:
    msg: dict[str, Any] | None = None
    partial: dict[int, str] = {}
    done = False
    for _, obj in events:
        if not isinstance(obj, dict):
            continue
        kind = obj.get("type")
        if kind == "message_start":
            msg = copy.deepcopy(obj.get("message") or {})
            msg["content"] = []
        elif msg is None:
            continue
        elif kind == "content_block_start":
            block = copy.deepcopy(obj.get("content_block") or {})
            idx = int(obj.get("index", len(msg["content"])))
            while len(msg["content"]) <= idx:
                msg["content"].append({})
            msg["content"][idx] = block
        elif kind == "content_block_delta":
            idx = int(obj.get("index", 0))
            if idx >= len(msg["content"]):
                return None
            block, d = msg["content"][idx], obj.get("delta") or {}
            dt = d.get("type")
            if dt == "text_delta":
                block["text"] = block.get("text", "") + d.get("text", "")
            elif dt == "input_json_delta":
                partial[idx] = partial.get(idx, "") + d.get("partial_json", "")
            elif dt == "thinking_delta":
                block["thinking"] = block.get("thinking", "") + d.get("thinking", "")
            elif dt == "signature_delta":
                block["signature"] = d.get("signature", "")
            elif dt == "citations_delta":
                block.setdefault("citations", []).append(d.get("citation"))
        elif kind == "content_block_stop":
            idx = int(obj.get("index", 0))
            if idx in partial and idx < len(msg["content"]):
                try:
                    msg["content"][idx]["input"] = orjson.loads(partial[idx] or "{}")
                except orjson.JSONDecodeError:
                    return None
        elif kind == "message_delta":
            d = obj.get("delta") or {}
            for k in ("stop_reason", "stop_sequence"):
                if k in d:
                    msg[k] = d[k]
            if isinstance(obj.get("usage"), dict):
                msg["usage"] = {**(msg.get("usage") or {}), **{k: v for k, v in obj["usage"].items() if v is not None}}
        elif kind == "message_stop":
            done = True
        elif kind == "error":
            return None
    return msg if done else None


def _assemble_chat(events: list[tuple[str | None, Any]]) -> dict[str, Any] | None:
    head: dict[str, Any] | None = None
    choices: dict[int, dict[str, Any]] = {}
    usage: Any = None
    done = False
    for _, obj in events:
        if obj is None:
            done = True
            continue
        if not isinstance(obj, dict) or "error" in obj:
            return None
        if head is None:
            head = {k: obj.get(k) for k in ("id", "created", "model", "service_tier", "system_fingerprint")}
        if obj.get("usage"):
            usage = obj["usage"]
        for ch in obj.get("choices") or []:
            i = int(ch.get("index", 0))
            c = choices.setdefault(
                i,
                {
                    "index": i,
                    "message": {"role": "assistant", "content": None, "refusal": None, "annotations": []},
                    "logprobs": None,
                    "finish_reason": None,
                },
            )
            d = ch.get("delta") or {}
            m = c["message"]
            if d.get("content") is not None:
                m["content"] = (m["content"] or "") + d["content"]
            if d.get("refusal") is not None:
                m["refusal"] = (m["refusal"] or "") + d["refusal"]
            for tc in d.get("tool_calls") or []:
                calls = m.setdefault("tool_calls", [])
                j = int(tc.get("index", len(calls)))
                while len(calls) <= j:
                    calls.append({"id": None, "type": "function", "function": {"name": "", "arguments": ""}})
                if tc.get("id"):
                    calls[j]["id"] = tc["id"]
                f = tc.get("function") or {}
                calls[j]["function"]["name"] += f.get("name") or ""
                calls[j]["function"]["arguments"] += f.get("arguments") or ""
            if ch.get("finish_reason"):
                c["finish_reason"] = ch["finish_reason"]
    if not done or head is None:
        return None
    body = {**head, "object": "chat.completion", "choices": [choices[i] for i in sorted(choices)]}
    if usage is not None:
        body["usage"] = usage
    return {k: v for k, v in body.items() if v is not None or k in ("choices",)}


# -- synthesising ----------------------------------------------------------------------------------


def _sse(event: str | None, obj: Any) -> bytes:
    head = f"event: {event}\n".encode() if event else b""
    return head + b"data: " + orjson.dumps(obj) + b"\n\n"


def synthesize(endpoint: str, body: dict[str, Any], usage: Usage | None, include_usage: bool) -> bytes:
    if endpoint == "messages":
        return _anthropic_stream(body)
    if endpoint == "chat":
        return _chat_stream(body, usage, include_usage)
    if endpoint == "responses":
        return _responses_stream(body)
    raise ValueError(f"no stream format for {endpoint}")


def _anthropic_stream(msg: dict[str, Any]) -> bytes:
    usage = dict(msg.get("usage") or {})
    start = {**msg, "content": [], "stop_reason": None, "stop_sequence": None, "usage": {**usage, "output_tokens": 1}}
    out = [_sse("message_start", {"type": "message_start", "message": start})]
    for i, block in enumerate(msg.get("content") or []):
        kind = block.get("type")
        if kind == "text":
            opening: dict[str, Any] = {**block, "text": ""}
            opening.pop("citations", None)
            deltas = [{"type": "text_delta", "text": block.get("text", "")}]
            deltas += [{"type": "citations_delta", "citation": c} for c in block.get("citations") or []]
        elif kind in ("tool_use", "server_tool_use"):
            opening = {**block, "input": {}}
            deltas = [{"type": "input_json_delta", "partial_json": orjson.dumps(block.get("input", {})).decode()}]
        elif kind == "thinking":
            opening = {**block, "thinking": "", "signature": ""}
            deltas = [{"type": "thinking_delta", "thinking": block.get("thinking", "")}]
            if block.get("signature"):
                deltas.append({"type": "signature_delta", "signature": block["signature"]})
        else:  # redacted thinking and server tool results arrive whole in their start event
            opening, deltas = block, []
        out.append(_sse("content_block_start", {"type": "content_block_start", "index": i, "content_block": opening}))
        if i == 0:
            out.append(_sse("ping", {"type": "ping"}))
        out += [_sse("content_block_delta", {"type": "content_block_delta", "index": i, "delta": d}) for d in deltas]
        out.append(_sse("content_block_stop", {"type": "content_block_stop", "index": i}))
    out.append(
        _sse(
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": msg.get("stop_reason"), "stop_sequence": msg.get("stop_sequence")},
                "usage": usage,
            },
        )
    )
    out.append(_sse("message_stop", {"type": "message_stop"}))
    return b"".join(out)


def _openai_usage(u: Usage) -> dict[str, Any]:
    prompt = u.prompt_tokens
    return {
        "prompt_tokens": prompt,
        "completion_tokens": u.output_tokens,
        "total_tokens": prompt + u.output_tokens,
        "prompt_tokens_details": {"cached_tokens": u.cache_read_tokens, "audio_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": u.reasoning_tokens, "audio_tokens": 0},
    }


def _chat_stream(body: dict[str, Any], usage: Usage | None, include_usage: bool) -> bytes:
    head = {
        "id": body.get("id"),
        "object": "chat.completion.chunk",
        "created": body.get("created"),
        "model": body.get("model"),
        "service_tier": body.get("service_tier"),
        "system_fingerprint": body.get("system_fingerprint"),
    }
    out: list[bytes] = []

    def chunk(index: int, delta: dict[str, Any], finish: str | None = None) -> None:
        obj: dict[str, Any] = {
            **head,
            "choices": [{"index": index, "delta": delta, "logprobs": None, "finish_reason": finish}],
        }
        if include_usage:
            obj["usage"] = None
        out.append(_sse(None, obj))

    for ch in body.get("choices") or []:
        i = int(ch.get("index", 0))
        m = ch.get("message") or {}
        chunk(i, {"role": "assistant", "content": "" if m.get("content") is not None else None, "refusal": None})
        if m.get("content"):
            chunk(i, {"content": m["content"]})
        if m.get("refusal"):
            chunk(i, {"refusal": m["refusal"]})
        for j, tc in enumerate(m.get("tool_calls") or []):
            f = tc.get("function") or {}
            chunk(
                i,
                {
                    "tool_calls": [
                        {
                            "index": j,
                            "id": tc.get("id"),
                            "type": tc.get("type", "function"),
                            "function": {"name": f.get("name", ""), "arguments": f.get("arguments", "")},
                        }
                    ]
                },
            )
        chunk(i, {}, ch.get("finish_reason") or "stop")
    if include_usage:
        u = body.get("usage") or (_openai_usage(usage) if usage is not None else None)
        out.append(_sse(None, {**head, "choices": [], "usage": u}))
    out.append(b"data: [DONE]\n\n")
    return b"".join(out)


def _responses_stream(resp: dict[str, Any]) -> bytes:
    seq = 0
    out: list[bytes] = []

    def ev(kind: str, payload: dict[str, Any]) -> None:
        nonlocal seq
        out.append(_sse(kind, {"type": kind, "sequence_number": seq, **payload}))
        seq += 1

    in_progress = {**resp, "status": "in_progress", "output": [], "usage": None, "completed_at": None}
    ev("response.created", {"response": in_progress})
    ev("response.in_progress", {"response": in_progress})
    for i, item in enumerate(resp.get("output") or []):
        kind = item.get("type")
        ids = {"item_id": item.get("id"), "output_index": i}
        if kind == "message":
            ev(
                "response.output_item.added",
                {"output_index": i, "item": {**item, "status": "in_progress", "content": []}},
            )
            for ci, part in enumerate(item.get("content") or []):
                pids = {**ids, "content_index": ci}
                if part.get("type") == "output_text":
                    ev("response.content_part.added", {**pids, "part": {**part, "text": "", "annotations": []}})
                    ev("response.output_text.delta", {**pids, "delta": part.get("text", ""), "logprobs": []})
                    ev("response.output_text.done", {**pids, "text": part.get("text", ""), "logprobs": []})
                else:
                    ev("response.content_part.added", {**pids, "part": part})
                ev("response.content_part.done", {**pids, "part": part})
        elif kind in ("function_call", "custom_tool_call"):
            field = "arguments" if kind == "function_call" else "input"
            prefix = (
                "response.function_call_arguments" if kind == "function_call" else "response.custom_tool_call_input"
            )
            opening = {**item, field: ""}
            if "status" in item:
                opening["status"] = "in_progress"
            ev("response.output_item.added", {"output_index": i, "item": opening})
            ev(f"{prefix}.delta", {**ids, "delta": item.get(field, "")})
            ev(f"{prefix}.done", {**ids, field: item.get(field, "")})
        else:
            ev("response.output_item.added", {"output_index": i, "item": item})
        ev("response.output_item.done", {"output_index": i, "item": item})
    ev("response.completed", {"response": resp})
    return b"".join(out)
