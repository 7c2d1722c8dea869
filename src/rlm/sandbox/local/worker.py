"""The sandbox worker: a separate process that holds `context` and runs the model's code.

Started by `LocalSandbox` as `python -I -c ...` with an empty environment; it imports only the
standard library, RestrictedPython and its two sibling modules, never the `rlm` package (fast
start, and no API keys or host objects within reach). It speaks `protocol` frames on fds 0/1.
"""

from __future__ import annotations

import json
import os
import reprlib
import resource
import signal
import traceback
from typing import Any

import protocol  # type: ignore[import-not-found,unused-ignore]
from policy import (  # type: ignore[import-not-found,unused-ignore]
    OutputBuffer,
    PolicyError,
    PrintCollector,
    compile_step,
    make_globals,
)


class SubcallError(Exception):
    """A host function (llm_query, recursive_llm, ...) failed; the message says why."""


class _FinalSignal(BaseException):
    """Stops the step once FINAL / FINAL_VAR has recorded the answer."""


def _on_cpu_timeout(signum: int, frame: Any) -> None:
    raise TimeoutError("the step used up its time limit and was stopped")


class Session:
    def __init__(self, channel_in: Any, channel_out: Any) -> None:
        self.channel_in = channel_in
        self.channel_out = channel_out
        self.final: str | None = None
        self.submitted: dict[str, Any] | None = None
        self.submit_fields: list[str] = []
        self.max_output_chars = 4000
        self.namespace = make_globals(
            {
                "FINAL": self.final_answer,
                "FINAL_VAR": self.final_var,
                "llm_query": self._host_function("llm_query"),
                "llm_query_batched": self._host_function("llm_query_batched"),
                "recursive_llm": self._host_function("recursive_llm"),
                "recursive_llm_batched": self._host_function("recursive_llm_batched"),
                "SubcallError": SubcallError,
            }
        )

    # --- functions offered to the model's code -------------------------------------------------
    def final_answer(self, answer: Any) -> None:
        self.final = answer if isinstance(answer, str) else _to_text(answer)
        raise _FinalSignal()

    def final_var(self, name: Any) -> None:
        if not isinstance(name, str):
            # Models often pass the value itself; accept it rather than fail on a technicality.
            self.final_answer(name)
        if name not in self.namespace or name.startswith("_"):
            defined = sorted(k for k in self.namespace if not k.startswith("_") and _is_user_value(k))
            raise NameError(
                f"FINAL_VAR({name!r}): no variable named {name!r} exists. Assign the answer first "
                f"(answer = ...), then call FINAL_VAR('answer'). Your variables: {defined}"
            )
        self.final_answer(self.namespace[name])

    def submit(self, *args: Any, **kwargs: Any) -> None:
        """DSPy's SUBMIT(...): the output fields, by position or by name."""
        if len(args) > len(self.submit_fields):
            raise TypeError(f"SUBMIT takes the fields {self.submit_fields}; got {len(args)} values")
        values = dict(zip(self.submit_fields, args, strict=False))
        values.update(kwargs)
        missing = [name for name in self.submit_fields if name not in values]
        if missing:
            raise TypeError(f"SUBMIT is missing the fields {missing}")
        self.submitted = json.loads(json.dumps(values, default=str))
        raise _FinalSignal()

    def _host_function(self, name: str) -> Any:
        def call(*args: Any, **kwargs: Any) -> Any:
            args = _positional(name, args, kwargs)
            _check_arguments(name, args)
            return self._call_host(name, list(args), {})

        call.__name__ = name
        return call

    def _tool(self, name: str) -> Any:
        def call(*args: Any, **kwargs: Any) -> Any:
            try:
                json.dumps([args, kwargs])
            except (TypeError, ValueError) as exc:
                raise TypeError(f"{name}: arguments must be text, numbers, lists or dicts ({exc})") from None
            return self._call_host(name, list(args), kwargs)

        call.__name__ = name
        return call

    def _call_host(self, name: str, args: list[Any], kwargs: dict[str, Any]) -> Any:
        # The CPU timer must not fire inside the protocol code, and host time is not ours to count.
        remaining, _ = signal.setitimer(signal.ITIMER_PROF, 0)
        try:
            protocol.send(self.channel_out, {"type": "call", "fn": name, "args": args, "kwargs": kwargs})
            reply = protocol.receive(self.channel_in)
        finally:
            if remaining:
                signal.setitimer(signal.ITIMER_PROF, remaining)
        if "error" in reply:
            raise SubcallError(reply["error"])
        return reply["value"]

    # --- host requests ---------------------------------------------------------------------------
    def load(self, request: dict[str, Any]) -> dict[str, Any]:
        # Lift the previous step cap while the new context arrives; it is set again below.
        _, hard = resource.getrlimit(resource.RLIMIT_AS)
        resource.setrlimit(resource.RLIMIT_AS, (hard, hard))
        self.namespace.pop("context", None)  # the old context goes before the new one arrives
        raw = protocol.read_frame(self.channel_in)
        text = raw.decode("utf-8")
        del raw
        self.namespace["context"] = json.loads(text) if request["kind"] == "json" else text
        del text
        self.max_output_chars = int(request.get("max_output_chars", 4000))
        _cap_memory(int(request["memory_limit_mb"]))
        return {"type": "loaded"}

    def define(self, request: dict[str, Any]) -> dict[str, Any]:
        """Offer host tools by name, and SUBMIT for the given output fields (DSPy interop)."""
        for name in request.get("tools", []):
            if not isinstance(name, str) or not name.isidentifier() or name.startswith("_"):
                return {"type": "error", "error": f"invalid tool name {name!r}"}
            self.namespace[name] = self._tool(name)
        if request.get("submit_fields") is not None:
            self.submit_fields = [str(n) for n in request["submit_fields"]]
            self.namespace["SUBMIT"] = self.submit
        return {"type": "defined"}

    def set_variables(self, request: dict[str, Any]) -> dict[str, Any]:
        variables = json.loads(protocol.read_frame(self.channel_in).decode("utf-8"))
        for name in variables:
            if not name.isidentifier() or name.startswith("_"):
                return {"type": "error", "error": f"invalid variable name {name!r}"}
        self.namespace.update(variables)
        return {"type": "set"}

    def execute(self, request: dict[str, Any]) -> dict[str, Any]:
        buffer = OutputBuffer(self.max_output_chars)
        PrintCollector.buffer = buffer
        self.final = None
        self.submitted = None
        error = None
        try:
            body, tail = compile_step(request["code"])
            signal.setitimer(signal.ITIMER_PROF, float(request["timeout"]))
            try:
                exec(body, self.namespace)
                if tail is not None:
                    value = eval(tail, self.namespace)
                    if value is not None:
                        buffer.write(_short_repr(value, self.max_output_chars) + "\n")
            finally:
                signal.setitimer(signal.ITIMER_PROF, 0)
        except _FinalSignal:
            pass
        except PolicyError as exc:
            error = f"SecurityError: the sandbox refused this code:\n{exc}"
        except SyntaxError as exc:
            error = f"SyntaxError: {exc}"
        except MemoryError:
            error = "MemoryError: the step ran out of the sandbox's memory limit"
        except BaseException as exc:
            error = _describe_error(exc)
        finally:
            PrintCollector.buffer = None
        if self.final is not None or self.submitted is not None:
            error = None  # FINAL inside a try/except that swallowed the signal still counts
        return {
            "type": "result",
            "output": buffer.getvalue(),
            "error": error,
            "final": self.final,
            "submitted": self.submitted,
        }


_PARAMETERS = {
    "llm_query": ("prompt",),
    "llm_query_batched": ("prompts",),
    "recursive_llm": ("query", "sub_context"),
    "recursive_llm_batched": ("pairs",),
}


def _positional(name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, ...]:
    """Accept llm_query(prompt=...) as well as llm_query(...)."""
    if not kwargs:
        return args
    names = _PARAMETERS[name]
    unknown = [k for k in kwargs if k not in names[len(args) :]]
    if unknown:
        raise TypeError(f"{name} got unexpected keyword arguments {unknown}; it takes {list(names)}")
    return args + tuple(kwargs[n] for n in names[len(args) :] if n in kwargs)


def _check_arguments(name: str, args: tuple[Any, ...]) -> None:
    expected = {"llm_query": 1, "llm_query_batched": 1, "recursive_llm": 2, "recursive_llm_batched": 1}
    if len(args) != expected[name]:
        shapes = {
            "llm_query": "llm_query(prompt: str) -> str",
            "llm_query_batched": "llm_query_batched(prompts: list[str]) -> list[str]",
            "recursive_llm": "recursive_llm(query: str, sub_context) -> str",
            "recursive_llm_batched": "recursive_llm_batched([(query, sub_context), ...]) -> list[str]",
        }
        raise TypeError(f"{name} takes {expected[name]} argument(s): {shapes[name]}")
    if name == "llm_query" and not isinstance(args[0], str):
        raise TypeError(
            f"llm_query(prompt) needs the prompt as a str, got {type(args[0]).__name__}; "
            "for many prompts use llm_query_batched(prompts)"
        )
    if name.endswith("_batched") and not isinstance(args[0], (list, tuple)):
        raise TypeError(f"{name} needs a list, got {type(args[0]).__name__}")
    try:
        json.dumps(args)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{name}: arguments must be text, numbers, lists or dicts ({exc})") from None


def _to_text(value: Any) -> str:
    if isinstance(value, (dict, list, tuple)):
        try:
            return json.dumps(value, ensure_ascii=False)
        except (TypeError, ValueError):
            pass
    return str(value)


def _is_user_value(name: str) -> bool:
    return name not in {
        "FINAL", "FINAL_VAR", "SUBMIT", "llm_query", "llm_query_batched", "recursive_llm",
        "recursive_llm_batched", "SubcallError",
    }  # fmt: skip


def _short_repr(value: Any, limit: int) -> str:
    shortener = reprlib.Repr()
    shortener.maxstring = limit
    shortener.maxother = limit
    shortener.maxlist = shortener.maxtuple = shortener.maxset = shortener.maxdict = 50
    shortener.maxlevel = 4
    return shortener.repr(value)


def _describe_error(exc: BaseException) -> str:
    lines = [
        f"line {frame.lineno}: {frame.line}" if frame.line else f"line {frame.lineno}"
        for frame in traceback.extract_tb(exc.__traceback__)
        if frame.filename == "<step>"
    ]
    where = f" (at {lines[-1]})" if lines else ""
    return f"{type(exc).__name__}: {exc}{where}"


def _cap_memory(extra_mb: int) -> None:
    with open("/proc/self/statm") as statm:
        pages = int(statm.read().split()[0])
    limit = pages * os.sysconf("SC_PAGE_SIZE") + extra_mb * 1024 * 1024
    # Soft limit only, so a later load can move it; the model's code cannot reach `resource`.
    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    resource.setrlimit(resource.RLIMIT_AS, (limit, hard))


def _harden_process() -> None:
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    # No file may grow: the model's code has no `open`, and this closes the door twice.
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (0, 0))
    signal.signal(signal.SIGPROF, _on_cpu_timeout)


def main() -> None:
    # Keep private copies of the channel and point fds 0/1 at /dev/null so nothing else can
    # write into the frame stream.
    channel_in = os.fdopen(os.dup(0), "rb")
    channel_out = os.fdopen(os.dup(1), "wb")
    devnull = os.open(os.devnull, os.O_RDWR)
    os.dup2(devnull, 0)
    os.dup2(devnull, 1)
    _harden_process()
    session = Session(channel_in, channel_out)
    protocol.send(channel_out, {"type": "ready", "pid": os.getpid()})
    handlers = {
        "load": session.load,
        "exec": session.execute,
        "define": session.define,
        "set": session.set_variables,
    }
    while True:
        try:
            request = protocol.receive(channel_in)
        except protocol.ProtocolError:
            return  # the host closed the channel
        op = request.get("op")
        if op == "close":
            return
        handler = handlers.get(op)
        reply = handler(request) if handler else {"type": "error", "error": f"unknown op {op!r}"}
        protocol.send(channel_out, reply)


if __name__ == "__main__":
    main()
