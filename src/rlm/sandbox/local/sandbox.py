"""Host side of the local sandbox: starts the jailed worker process, loads `context`, runs steps.

The engine calls `execute(code, handler)`; sub-LM calls made by the model's code arrive here as
frames and are answered by `handler` on the host, so the worker never holds a key or a client.
Whatever the worker does (stall, crash, send garbage), `execute` returns a result the model reads
and the worker is restarted with `context`; only the host's own failures raise.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from rlm.errors import SandboxError
from rlm.install_check import install_hint
from rlm.sandbox.base import ExecutionResult, SandboxLimits, SubcallHandler, clip_middle
from rlm.sandbox.host_memory import BASE_FRAME_BYTES
from rlm.sandbox.local.channel import ChannelError, WorkerChannel
from rlm.sandbox.local.kernel_memory import kernel_memory_problem
from rlm.sandbox.local.processes import UNSHARE_FLAGS, network_isolation_available, retire, spawn
from rlm.sandbox.local.spare import SparePool

_WORKER_DIR = Path(__file__).resolve().parent
# Seconds a step may overrun its limit before the worker is killed (it gets a TimeoutError first).
HARD_KILL_GRACE_S = 1.0
START_TIMEOUT_S = 15.0
# Frames from the worker beyond this (plus twice the context, for slices sent to children) are
# refused: only a runaway or hostile step sends more.


def jail_refused(cause: str) -> SandboxError:
    return SandboxError(
        f"The 'restricted' sandbox runs model code inside an OS jail, which cannot be set up here: {cause}. "
        f"Choose sandbox='e2b' (a remote VM; {install_hint('e2b')}, and set E2B_API_KEY), or opt "
        "in to the weaker sandbox='restricted-policy-only' (the Python policy alone: one hole in it would "
        "expose your files, network and environment)."
    )


class LocalSandbox:
    """A persistent RestrictedPython REPL in a separate, jailed, limited worker process.

    `jail=False` is the explicit policy-only mode (sandbox "restricted-policy-only").
    `python_policy=False` runs steps as plain Python: only for tests proving the jail holds alone.
    """

    name = "restricted"

    def __init__(
        self,
        limits: SandboxLimits | None = None,
        isolate_network: bool = True,
        *,
        jail: bool = True,
        python_policy: bool = True,
    ) -> None:
        self.limits = limits or SandboxLimits()
        self.isolate_network = isolate_network
        self.jail = jail
        self.python_policy = python_policy
        self.jail_layers: list[str] = []  # what the running worker entered, as it reported
        self._process: subprocess.Popen[bytes] | None = None
        self._channel: WorkerChannel | None = None
        self._context: Any = None
        self._context_bytes = 0
        self._loaded = False
        self._used = False  # the worker has loaded a context or run code: a new load restarts it
        # Set by close(): a step still running on another thread (its run was cancelled) must not
        # start a new worker when its own is killed; only an explicit start() opens it again.
        self._closed = False

    # --- lifecycle -----------------------------------------------------------------------------------
    def start(self) -> None:
        self._closed = False
        if self._process is not None:
            return
        command = self._command()
        key = tuple(command)
        spare = _spares.take(key)
        process = spare or spawn(command)
        _spares.refill(key, functools.partial(spawn, command))  # for the next sandbox to start
        ready = self._greet(process)
        if ready is None and spare is not None:  # the spare died while taken: start one the usual way
            self._kill()
            ready = self._greet(spawn(command))
        if ready is not None and ready.get("type") == "jail_failed":
            self._kill()
            raise jail_refused(str(ready.get("error")))
        if ready is None or ready.get("type") != "ready":
            self._kill()
            raise SandboxError("the sandbox worker did not start; is RestrictedPython installed?")
        self.jail_layers = [str(layer) for layer in ready.get("jail") or []]
        if self.jail and not self.jail_layers:
            self._kill()
            raise jail_refused("the worker could not enter it on this platform")
        if "unshare" in command[0]:
            self.jail_layers.append("network-namespace")
        self._pause()

    def _command(self) -> list[str]:
        options = {
            "parent": os.getpid(),
            "jail": self.jail,
            "policy": self.python_policy,
            "memory_limit_mb": self.limits.memory_limit_mb,
        }
        namespaced = self.isolate_network and network_isolation_available()
        # Only in a UTS namespace of its own may the worker rename its host: run as the host's root
        # without one, sethostname would rename the machine.
        options["own_host_name"] = namespaced
        bootstrap = f"import sys; sys.path.insert(0, {str(_WORKER_DIR)!r}); import worker; worker.main({options!r})"
        command = [sys.executable, "-I", "-c", bootstrap]
        if namespaced:
            command = ["unshare", *UNSHARE_FLAGS, *command]
        return command

    def _greet(self, process: subprocess.Popen[bytes]) -> dict[str, Any] | None:
        """Adopt `process` as this sandbox's worker and read its first message (None: no greeting)."""
        assert process.stdin is not None and process.stdout is not None
        self._process = process
        self._channel = WorkerChannel(
            process.stdin.fileno(), process.stdout.fileno(), self._max_frame_bytes(), self.limits.frame_budget
        )
        self._used = False
        try:
            greeting = self._channel.receive(time.monotonic() + START_TIMEOUT_S)
        except ChannelError:
            return None
        self._channel.release()
        return greeting

    def load(self, context: Any) -> None:
        if self._used:
            self._kill()  # one context per worker: a new one gets a fresh process
        self._context = context
        self._send_context()
        self._loaded = True

    def close(self) -> None:
        self._closed = True
        self._kill()  # a worker keeps nothing worth a clean exit: killed at once, reaped off this thread

    def interrupt(self) -> None:
        """Kill the worker now, from any thread: a step under way ends at once with an error (the
        sandbox is closed, as by `close`). Without it a cancelled run (an `item_timeout`, a task's
        cancel) waited for its step's own limit, `exec_timeout` + 1 s, for code that only spins."""
        self._closed = True
        self._signal_worker(signal.SIGKILL)

    def __enter__(self) -> LocalSandbox:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- steps ---------------------------------------------------------------------------------------
    def execute(self, code: str, handler: SubcallHandler) -> ExecutionResult:
        self._ensure_worker()
        channel = self._require_channel()
        self._used = True
        timeout = self.limits.exec_timeout
        deadline = time.monotonic() + timeout + HARD_KILL_GRACE_S
        timed_out = f"TimeoutError: the step ran longer than {timeout:g} s and was stopped. Work on smaller pieces."
        try:
            self._resume()
            channel.send({"op": "exec", "code": code, "timeout": timeout}, deadline)
            while True:
                message = channel.receive(deadline)
                if message is None:
                    return self._recover(timed_out)
                self._pause()
                # Checked whenever the worker stops, a sub-call's too: it may wait there for a
                # child's whole run (attack round 14 held 156 MB through one llm_query).
                held = self._kernel_memory_problem()
                if held is not None:
                    return self._recover(held)
                if message.get("type") != "call":
                    result = self._result(message)
                    channel.release()  # the result is copied out: its frame no longer counts
                    return result
                started = time.monotonic()
                reply = _answer_call(handler, message)  # its arguments count until it is answered
                channel.release()
                deadline += time.monotonic() - started  # host time does not count against the step
                self._resume()
                channel.send(reply, deadline)
        except ChannelError as exc:
            # Past the deadline, a frame cut off on its way is the time limit's doing, not a misbehaving worker.
            return self._recover(timed_out if time.monotonic() >= deadline else self._describe_loss(exc))
        except BaseException:
            self._kill()  # interrupted mid-exchange (Ctrl-C): its worker is out of step; the next use starts afresh
            raise

    def define_tools(self, names: list[str], submit_fields: list[str] | None = None) -> None:
        """Offer host functions `names` to the code (called back through `execute`'s handler)."""
        self._request({"op": "define", "tools": list(names), "submit_fields": submit_fields}, "defined")

    def set_variables(self, variables: dict[str, Any]) -> None:
        """Bind JSON-like values as top-level names of the REPL."""
        payload = json.dumps(variables, ensure_ascii=False, default=str).encode("utf-8", "replace")
        self._request({"op": "set"}, "set", payload)

    def _request(self, message: dict[str, Any], expected: str, payload: bytes | None = None) -> None:
        self._ensure_worker()
        channel = self._require_channel()
        deadline = time.monotonic() + START_TIMEOUT_S + (len(payload) / 50e6 if payload else 0)
        try:
            self._resume()
            channel.send(message, deadline)
            if payload is not None:
                channel.send_payload(payload, deadline)
            reply = channel.receive(deadline)
            channel.release()
            self._pause()
        except BaseException as exc:
            self._kill()  # a worker left mid-request (an error, or an interrupt) is never talked to again
            if not isinstance(exc, ChannelError):
                raise
            raise SandboxError(f"the sandbox worker failed during {message['op']!r}: {exc}") from exc
        if reply is None:
            # Its answer may still come, and would be read as the reply to the next request.
            self._kill()
        if reply is None or reply.get("type") != expected:
            detail = (reply or {}).get("error", "no answer")
            raise SandboxError(f"the sandbox worker refused {message['op']!r}: {detail}")

    # --- internals -----------------------------------------------------------------------------------
    def _result(self, message: dict[str, Any]) -> ExecutionResult:
        if message.get("type") != "result":
            raise ChannelError(f"the worker sent an unexpected {str(message.get('type'))[:40]!r} message")
        fields = {name: message.get(name) for name in ("output", "error", "final")}
        if any(value is not None and not isinstance(value, str) for value in fields.values()):
            raise ChannelError("the worker sent a result whose fields are not text")
        submitted = message.get("submitted")
        return ExecutionResult(
            output=clip_middle(fields["output"] or "", self.limits.max_output_chars),
            error=None if fields["error"] is None else clip_middle(fields["error"], self.limits.max_output_chars),
            final_answer=fields["final"],
            submitted=submitted if isinstance(submitted, dict) else None,
        )

    def _send_context(self) -> None:
        self.start()
        channel = self._require_channel()
        context = self._context
        kind, text = (
            ("text", context) if isinstance(context, str) else ("json", json.dumps(context, ensure_ascii=False))
        )
        self._context_bytes = len(text)
        channel.max_frame_bytes = self._max_frame_bytes()
        # Decoding in the worker runs at well over 50 MB/s; allow that plus the start-up margin.
        deadline = time.monotonic() + START_TIMEOUT_S + len(text) / 50e6
        request = {
            "op": "load",
            "kind": kind,
            "memory_limit_mb": self.limits.memory_limit_mb,
            "max_output_chars": self.limits.max_output_chars,
        }
        try:
            self._resume()
            channel.send(request, deadline)
            channel.send_text(text, deadline)
            del text
            reply = channel.receive(deadline)
            channel.release()
            self._pause()
        except ChannelError:
            reply = None
        except BaseException:
            self._kill()  # interrupted mid-load: the next use starts a worker and loads the context again
            raise
        self._used = True
        if reply is None or reply.get("type") != "loaded":
            self._kill()
            raise SandboxError(
                "the sandbox worker could not load the context (too large for its memory limit of "
                f"{self.limits.memory_limit_mb} MB? raise memory_limit_mb)"
            )

    def _max_frame_bytes(self) -> int:
        return BASE_FRAME_BYTES + 2 * self._context_bytes

    def _describe_loss(self, exc: ChannelError) -> str:
        process = self._process
        code = None
        if process is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                code = process.wait(timeout=0.2)
        if code is None:
            return f"SandboxError: the sandbox process misbehaved ({exc}) and was stopped."
        if code < 0:
            name = signal.Signals(-code).name if -code in signal.valid_signals() else str(-code)
            hint = (
                f" This is often memory exhaustion near the limit of {self.limits.memory_limit_mb} MB."
                if -code in (signal.SIGABRT, signal.SIGSEGV, signal.SIGBUS, signal.SIGKILL)
                else ""
            )
            return f"SandboxCrash: the sandbox process was killed by {name}.{hint}"
        return f"SandboxCrash: the sandbox process exited with status {code}."

    def _recover(self, error: str) -> ExecutionResult:
        self._kill()
        if self._closed:  # closed while this step ran (a cancelled run): no new worker behind close()
            return ExecutionResult(output="", error=error + " The sandbox was closed.", restarted=True)
        self.start()
        if self._loaded:
            self._send_context()
        note = " The REPL was restarted: only `context` is defined again; your variables are gone."
        return ExecutionResult(output="", error=error + note, restarted=True)

    def _kernel_memory_problem(self) -> str | None:
        process = self._process
        return None if process is None else kernel_memory_problem(process.pid)

    def _pause(self) -> None:
        """Stop the worker while the host is not waiting for its answer: between steps, and while a
        sub-call of its step runs on the host. Code that got past the policy could leave a signal
        handler or timer behind to spend CPU then (attack round 7: 1.3 s of CPU in 3 s idle, unseen);
        stopped, it runs only inside a request, under that request's deadline. SIGKILL (the host's
        hard kill, the death signal) ends a stopped process as any other.
        """
        self._signal_worker(signal.SIGSTOP)

    def _resume(self) -> None:
        self._signal_worker(signal.SIGCONT)

    def _signal_worker(self, signum: signal.Signals) -> None:
        process = self._process
        if process is not None:
            # send_signal polls first: a worker reaped behind Popen's back (a host application that
            # ignores SIGCHLD) is known dead then, and its pid, maybe another process's now, is left alone.
            process.send_signal(signum)

    def _ensure_worker(self) -> None:
        """Start a worker if there is none; one replaced after an interrupt gets the context again."""
        if self._closed:
            raise SandboxError("this sandbox was closed: start() it again to use it")
        if self._process is None:
            self.start()
            if self._loaded:
                self._send_context()

    def _require_channel(self) -> WorkerChannel:
        if self._channel is None:
            raise SandboxError("the sandbox is not started")
        return self._channel

    def _kill(self) -> None:
        if self._channel is not None:
            self._channel.release()
        process, self._process, self._channel = self._process, None, None
        if process is not None:
            retire(process)


def _answer_call(handler: SubcallHandler, message: dict[str, Any]) -> dict[str, Any]:
    try:
        args, kwargs = message.get("args") or [], message.get("kwargs") or {}
        if not isinstance(args, list) or not isinstance(kwargs, dict):
            raise TypeError("host functions take a list of arguments and a dict of keywords")
        value = handler(str(message.get("fn")), list(args), dict(kwargs))
        json.dumps(value)
        return {"value": value}
    except Exception as exc:  # reported to the model's code as SubcallError, never lost
        return {"error": f"{type(exc).__name__}: {exc}"}


_spares = SparePool(retire, wait_s=START_TIMEOUT_S)
atexit.register(_spares.close)  # the death signal ends a spare with the host anyway; this is quicker
