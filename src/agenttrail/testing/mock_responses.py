"""The OpenAI Responses API as the mock speaks it: the response object and its streaming events."""

from __future__ import annotations

import time
from typing import Any

from agenttrail.testing.mock_wire import (
    Reply,
    SSEEvent,
    new_id,
    openai_error,
    responses_usage,
    split_json,
    split_text,
    sse,
)


def validate(body: Any) -> str | None:
    if not isinstance(body, dict):
        return "We could not parse the JSON body of your request."
    if "model" not in body:
        return "Missing required parameter: 'model'."
    return None


def _items(reply: Reply) -> list[dict[str, Any]]:
    """Completed output items: a message for the text, then one item per tool call."""
    items: list[dict[str, Any]] = []
    if reply.turn.text is not None:
        items.append(
            {
                "id": new_id("msg_resp"),
                "type": "message",
                "status": "completed",
                "content": [{"type": "output_text", "annotations": [], "logprobs": [], "text": reply.turn.text}],
                "role": "assistant",
            }
        )
    for call in reply.turn.calls:
        if isinstance(call.input, str):
            items.append(
                {
                    "id": new_id("ctc"),
                    "type": "custom_tool_call",
                    "call_id": new_id("call"),
                    "input": call.input,
                    "name": call.name,
                }
            )
        else:
            items.append(
                {
                    "id": new_id("fc"),
                    "type": "function_call",
                    "status": "completed",
                    "arguments": call.arguments_json(),
                    "call_id": new_id("call"),
                    "name": call.name,
                }
            )
    return items


class ResponseBuilder:
    """Builds one response, streamed or not, echoing the request's settings as the API does."""

    def __init__(self, reply: Reply, request: dict[str, Any], response_id: str | None = None) -> None:
        self.reply = reply
        self.request = request
        self.id = response_id or new_id("resp")
        self.created_at = int(time.time())
        self.items = _items(reply)
        self._seq = 0

    def response(self, status: str, output: list[dict[str, Any]], with_usage: bool) -> dict[str, Any]:
        req = self.request
        asked = req.get("reasoning")
        reasoning: dict[str, Any] = asked if isinstance(asked, dict) else {}
        return {
            "id": self.id,
            "object": "response",
            "created_at": self.created_at,
            "status": status,
            "background": False,
            "completed_at": int(time.time()) if status == "completed" else None,
            "error": None,
            "incomplete_details": None,
            "instructions": req.get("instructions"),
            "max_output_tokens": req.get("max_output_tokens"),
            "max_tool_calls": None,
            "model": self.reply.model,
            "output": output,
            "parallel_tool_calls": req.get("parallel_tool_calls", True),
            "previous_response_id": req.get("previous_response_id"),
            "prompt_cache_key": req.get("prompt_cache_key"),
            "reasoning": {"effort": reasoning.get("effort"), "summary": reasoning.get("summary")},
            "safety_identifier": None,
            "service_tier": "default",
            "store": req.get("store", True),
            "temperature": req.get("temperature", 1.0),
            "text": {"format": {"type": "text"}, "verbosity": "medium"},
            "tool_choice": req.get("tool_choice", "auto"),
            "tools": req.get("tools") or [],
            "top_logprobs": 0,
            "top_p": req.get("top_p", 1.0),
            "truncation": "disabled",
            "usage": responses_usage(self.reply.usage) if with_usage else None,
            "user": None,
            "metadata": req.get("metadata") or {},
        }

    def body(self) -> dict[str, Any]:
        return self.response("completed", self.items, with_usage=True)

    def _event(self, type_: str, payload: dict[str, Any], delta: bool = False) -> SSEEvent:
        obj = {"type": type_, "sequence_number": self._seq, **payload}
        self._seq += 1
        return sse(type_, obj, delta=delta)

    def events(self) -> list[SSEEvent]:
        """created, in_progress, each item's added/.../done sequence, completed (with usage)."""
        in_progress = self.response("in_progress", [], with_usage=False)
        out = [
            self._event("response.created", {"response": in_progress}),
            self._event("response.in_progress", {"response": in_progress}),
        ]
        for index, item in enumerate(self.items):
            if item["type"] == "message":
                out.extend(self._message_events(index, item))
            elif item["type"] == "function_call":
                out.extend(self._call_events(index, item, "arguments", "response.function_call_arguments"))
            else:
                out.extend(self._call_events(index, item, "input", "response.custom_tool_call_input"))
        out.append(self._event("response.completed", {"response": self.body()}))
        return out

    def _message_events(self, index: int, item: dict[str, Any]) -> list[SSEEvent]:
        text = item["content"][0]["text"]
        ids = {"item_id": item["id"], "output_index": index}
        part_ids = {**ids, "content_index": 0}
        empty_part = {"type": "output_text", "annotations": [], "logprobs": [], "text": ""}
        out = [
            self._event(
                "response.output_item.added",
                {"output_index": index, "item": {**item, "status": "in_progress", "content": []}},
            ),
            self._event("response.content_part.added", {**part_ids, "part": empty_part}),
        ]
        for piece in split_text(text, self.reply.chunks):
            out.append(
                self._event("response.output_text.delta", {**part_ids, "delta": piece, "logprobs": []}, delta=True)
            )
        out += [
            self._event("response.output_text.done", {**part_ids, "text": text, "logprobs": []}),
            self._event("response.content_part.done", {**part_ids, "part": item["content"][0]}),
            self._event("response.output_item.done", {"output_index": index, "item": item}),
        ]
        return out

    def _call_events(self, index: int, item: dict[str, Any], field: str, prefix: str) -> list[SSEEvent]:
        ids = {"item_id": item["id"], "output_index": index}
        opening = {**item, field: ""}
        if "status" in item:
            opening["status"] = "in_progress"
        out = [self._event("response.output_item.added", {"output_index": index, "item": opening})]
        for piece in split_json(item[field]):
            out.append(self._event(f"{prefix}.delta", {**ids, "delta": piece}, delta=True))
        out += [
            self._event(f"{prefix}.done", {**ids, field: item[field]}),
            self._event("response.output_item.done", {"output_index": index, "item": item}),
        ]
        return out

    def failed_event(self, status: int, message: str | None, type_: str | None, sequence_number: int) -> SSEEvent:
        """A late failure ends the stream with `response.failed`, the error inside the response."""
        err = openai_error(status, message, type_)["error"]
        failed = self.response("failed", [], with_usage=False)
        failed["error"] = {"code": err["code"] or err["type"], "message": err["message"]}
        obj = {"type": "response.failed", "sequence_number": sequence_number, "response": failed}
        return sse("response.failed", obj)
