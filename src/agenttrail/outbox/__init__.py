"""Durable local queue of client events and their uploader (docs/outbox.md)."""

from agenttrail.outbox.queue import Outbox, default_path
from agenttrail.outbox.uploader import Uploader, UploadError, UploadRefused

__all__ = ["Outbox", "UploadError", "UploadRefused", "Uploader", "default_path"]
