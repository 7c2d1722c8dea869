"""`Tree`: what every node of one run shares, built by `RLMModule` and handed to the root `NodeRun`.

The model, predictor and event bus, and the tree-wide limits: the LM-call budget, the slots of
live sandboxes, and the slots of LM requests in flight.
"""

from __future__ import annotations

import itertools
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import dspy

from rlm.config import RLMConfig
from rlm.engine.concurrency import RequestSlots
from rlm.engine.limits import CallBudget
from rlm.engine.slots import SandboxSlots
from rlm.events import EventBus
from rlm.sandbox.base import Sandbox


@dataclass
class Tree:
    """What every node of one run shares."""

    config: RLMConfig
    predictor: dspy.Predict
    root_lm: dspy.BaseLM
    sub_lm: dspy.BaseLM
    bus: EventBus
    budget: CallBudget
    make_sandbox: Callable[[], Sandbox]
    slots: SandboxSlots
    requests: RequestSlots
    # Names this run to providers' prompt caches (OpenAI's prompt_cache_key): its requests share prefixes.
    run_key: str = field(default_factory=lambda: f"rlm-{uuid.uuid4().hex[:16]}")
    _ids: Any = field(default_factory=itertools.count)
    _id_lock: threading.Lock = field(default_factory=threading.Lock)

    def new_node_id(self) -> str:
        with self._id_lock:
            return f"n{next(self._ids)}"
