"""Subscribers to engine events: usage totals, the call graph, the LLM-call history."""

from rlm.tracking.graph import CallGraph
from rlm.tracking.history import CallHistory
from rlm.tracking.usage import ModelUsage, UsageTotals

__all__ = ["CallGraph", "CallHistory", "ModelUsage", "UsageTotals"]
