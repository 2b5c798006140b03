"""Agent-native sources: Claude Code transcripts, Codex rollouts, OTLP logs and metrics.

Pure parsing: every function here reads input and returns neutral records (`ImportBatch`,
`TranscriptSession`, `TranscriptCall`, `agenttrail.events.Event`, `MetricPoint`); storing them, joining
them to traced sessions and pricing them are done elsewhere. See docs/importers.md.

The OTLP names load `agenttrail.importers.otlp` (and protobuf with it, ~30 ms) on first use only: a
transcript import never needs them.
"""

from typing import TYPE_CHECKING, Any

from agenttrail.importers.claude_code import (
    ClaudeCodeParser,
    claude_projects_dirs,
    find_claude_code_files,
    import_claude_code,
    iter_claude_code,
)
from agenttrail.importers.codex import CodexParser, codex_home, find_codex_files, import_codex, iter_codex
from agenttrail.importers.incremental import FileState, MemoryStateStore, StateStore
from agenttrail.importers.records import (
    CLAUDE_CODE,
    CODEX,
    ImportBatch,
    LineError,
    TranscriptCall,
    TranscriptSession,
)

if TYPE_CHECKING:
    from agenttrail.importers.otlp import (
        CumulativeToDelta,
        MetricPoint,
        OtlpDecodeError,
        logs_to_batch,
        metrics_to_points,
        parse_otlp_logs,
        parse_otlp_metrics,
    )

_OTLP = frozenset(
    {
        "CumulativeToDelta",
        "MetricPoint",
        "OtlpDecodeError",
        "logs_to_batch",
        "metrics_to_points",
        "parse_otlp_logs",
        "parse_otlp_metrics",
    }
)


def __getattr__(name: str) -> Any:
    if name in _OTLP:
        from agenttrail.importers import otlp

        return getattr(otlp, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "CLAUDE_CODE",
    "CODEX",
    "ClaudeCodeParser",
    "CodexParser",
    "CumulativeToDelta",
    "FileState",
    "ImportBatch",
    "LineError",
    "MemoryStateStore",
    "MetricPoint",
    "OtlpDecodeError",
    "StateStore",
    "TranscriptCall",
    "TranscriptSession",
    "claude_projects_dirs",
    "codex_home",
    "find_claude_code_files",
    "find_codex_files",
    "import_claude_code",
    "import_codex",
    "iter_claude_code",
    "iter_codex",
    "logs_to_batch",
    "metrics_to_points",
    "parse_otlp_logs",
    "parse_otlp_metrics",
]
