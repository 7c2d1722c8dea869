"""The REPL inside the sandbox worker: the model's namespace, its steps, and the functions its code
reaches (FINAL, FINAL_VAR, SUBMIT, llm_query and the other host functions, tools).

Driven by `worker.main`, which owns the process (start-up, jail, limits, the request loop). Loaded
as a top-level module inside the worker, like its siblings.
"""

from __future__ import annotations

import gc
import json
import signal
from typing import Any

import protocol  # type: ignore[import-not-found,unused-ignore]
from output import OutputBuffer, PrintCollector  # type: ignore[import-not-found,unused-ignore]
from policy import ModuleFacade, PolicyError, compile_step, make_globals  # type: ignore[import-not-found,unused-ignore]
from safe_values import (  # type: ignore[import-not-found,unused-ignore]
    NotPlainData,
    clip,
    describe_error,
    exact_str,
    plain,
    short_repr,
    to_text,
    valid_text,
)


class SubcallError(Exception):
    """A host function (llm_query, recursive_llm, ...) failed; the message says why."""


class _FinalSignal(BaseException):
    """Stops the step once FINAL / FINAL_VAR has recorded the answer."""


# The step's timer counts wall time while the model's code runs, paused during host calls. The
# host's hard kill (limit + 1 s) counts wall time too, so on a machine busier than its cores the
# code meets its TimeoutError, and keeps its variables, before the host kills the worker and loses
# them. A CPU timer fell behind the host's clock under load: with three model servers on 2 cores a
# runaway loop with a 2 s limit was killed by the host at 3 s every time, its REPL state gone.
# Wall time also stops code that waits without using CPU (a blocking call is interrupted).
STEP_TIMER = signal.ITIMER_REAL
STEP_SIGNAL = signal.SIGALRM


class _Cutting:
    """Whether the timer's signal may cut the code running now: True while the model's code (or
    its finalizers) runs, False from the first line of the worker's clean-up after it. The timer
    repeats every _AFTER_TIMEOUT_S once past its limit, so code that swallows TimeoutErrors could
    time one to land in that clean-up, before the timer is stopped: it escaped the worker's request
    loop there, and the worker exited (4 of 180 timed tries in the fifth attack round; 0 since)."""

    live = False
    # Set when the signal first cuts the step: from then on the step is past its limit, whatever
    # the code did with the TimeoutError (host calls are refused, and the step reports the timeout).
    expired = False


def on_step_timeout(signum: int, frame: Any) -> None:
    if _Cutting.live:
        _Cutting.expired = True
        raise TimeoutError("the step used up its time limit and was stopped")


HOST_FUNCTIONS = ("llm_query", "llm_query_batched", "recursive_llm", "recursive_llm_batched")


class ReplFunction:
    """A function offered to the model's code, shown by its name only: a bound method's or a
    closure's repr named this module's classes and gave a heap address (a help to memory attacks)."""

    __slots__ = ("_function", "_name")

    def __init__(self, name: str, function: Any) -> None:
        self._name = name
        self._function = function

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._function(*args, **kwargs)

    def __repr__(self) -> str:
        return f"<REPL function {self._name}>"


class Session:
    """The REPL's state and every entry point the model's code reaches (FINAL, llm_query, tools).

    What crosses from the model's objects into this class is copied to exact built-in types (see
    safe_values) while the step's timer runs; nothing here calls a method of the model's after
    the step, and no object of the model's is released outside a step (its destruction could run a
    generator's `finally`), so automatic garbage collection runs only during steps.
    """

    def __init__(self, channel_in: Any, channel_out: Any) -> None:
        self.channel_in = channel_in
        self.channel_out = channel_out
        self.final: str | None = None
        self.submitted: dict[str, Any] | None = None
        self.submit_fields: list[str] = []
        self.max_output_chars = 4000
        # Values of the model's that trusted code replaced (set_variables, define, load): released
        # under a timer, never where their finalizers would run unbounded.
        self.displaced: list[Any] = []
        self.stepping = False

        # Named as the REPL names them: a wrong call's TypeError names FINAL, not this class
        def FINAL(answer: Any) -> None:
            self.final_answer(answer)

        def FINAL_VAR(name: Any) -> None:
            self.final_var(name)

        FINAL.__qualname__, FINAL_VAR.__qualname__ = "FINAL", "FINAL_VAR"
        offered = {
            "FINAL": FINAL,
            "FINAL_VAR": FINAL_VAR,
            **{name: self._host_function(name) for name in HOST_FUNCTIONS},
        }
        self.namespace = make_globals(
            {name: ReplFunction(name, function) for name, function in offered.items()} | {"SubcallError": SubcallError}
        )
        gc.disable()  # collections run only inside steps; see execute

    # --- functions offered to the model's code -------------------------------------------------
    def final_answer(self, answer: Any) -> None:
        self.final = to_text(answer)
        raise _FinalSignal()

    def final_var(self, name: Any) -> None:
        if not issubclass(type(name), str):
            # Models often pass the value itself; accept it rather than fail on a technicality.
            self.final_answer(name)
        name = exact_str(name)
        if name not in self.namespace or name.startswith("_"):
            defined = sorted(
                k
                for k, v in self.namespace.items()
                if not k.startswith("_") and _is_user_value(k) and not isinstance(v, ModuleFacade)
            )
            raise NameError(
                f"FINAL_VAR({clip(name, 200)!r}): no variable named {clip(name, 200)!r} exists. Assign the answer "
                f"first (answer = ...), then call FINAL_VAR('answer'). Your variables: {defined}"
            )
        self.final_answer(self.namespace[name])

    def submit(self, *args: Any, **kwargs: Any) -> None:
        """DSPy's SUBMIT(...): the output fields, by position or by name."""
        if len(args) > len(self.submit_fields):
            raise TypeError(f"SUBMIT takes the fields {self.submit_fields}; got {len(args)} values")
        values = dict(zip(self.submit_fields, plain(list(args), to_text), strict=False))
        values.update(plain(kwargs, to_text))
        missing = [name for name in self.submit_fields if name not in values]
        if missing:
            raise TypeError(f"SUBMIT is missing the fields {missing}")
        self.submitted = values
        raise _FinalSignal()

    def _host_function(self, name: str) -> Any:
        def call(*args: Any, **kwargs: Any) -> Any:
            copied = _positional(name, tuple(_plain_arguments(name, list(args))), _plain_arguments(name, kwargs))
            _check_arguments(name, copied)
            return self._call_host(name, list(copied), {})

        call.__name__ = name
        return call

    def _tool(self, name: str) -> Any:
        def call(*args: Any, **kwargs: Any) -> Any:
            return self._call_host(name, _plain_arguments(name, list(args)), _plain_arguments(name, kwargs))

        call.__name__ = name
        return call

    def _call_host(self, name: str, args: list[Any], kwargs: dict[str, Any]) -> Any:
        if not self.stepping:  # e.g. a finalizer released by `load`
            raise SubcallError(f"{name} can only be called while a step runs")
        # The step timer must not fire inside the protocol code, and host time is not ours to count.
        remaining, interval = _stop_timer()
        if remaining <= 0 or _Cutting.expired:  # no step is running, or its time ran out
            signal.setitimer(STEP_TIMER, _AFTER_TIMEOUT_S, _AFTER_TIMEOUT_S)
            raise TimeoutError("the step used up its time limit and was stopped")
        # No collection while the timer is off: a finalizer of the model's garbage (a generator's
        # `finally`) would run untimed.
        collecting = gc.isenabled()
        gc.disable()
        try:
            protocol.send(self.channel_out, {"type": "call", "fn": name, "args": args, "kwargs": kwargs})
            reply = protocol.receive(self.channel_in)
        finally:
            signal.setitimer(STEP_TIMER, remaining, interval)
            if collecting:
                gc.enable()
        if "error" in reply:
            raise SubcallError(reply["error"])
        return reply["value"]

    # --- host requests ---------------------------------------------------------------------------
    def load(self, request: dict[str, Any]) -> dict[str, Any]:
        # The old context goes before the new one arrives.
        self._displace("context")
        self._release_displaced()
        raw = protocol.read_frame(self.channel_in)
        text = raw.decode("utf-8")
        del raw
        self.namespace["context"] = json.loads(text) if request["kind"] == "json" else text
        del text
        # The context lives as long as the session: leave it out of every later collection.
        gc.freeze()
        self.max_output_chars = int(request.get("max_output_chars", 4000))
        return {"type": "loaded"}  # the worker caps its memory next, above what the context took

    def define(self, request: dict[str, Any]) -> dict[str, Any]:
        """Offer host tools by name, and SUBMIT for the given output fields (DSPy interop)."""
        for name in request.get("tools", []):
            if not isinstance(name, str) or not name.isidentifier() or name.startswith("_"):
                return {"type": "error", "error": f"invalid tool name {name!r}"}
            self._displace(name)
            self.namespace[name] = ReplFunction(name, self._tool(name))
        if request.get("submit_fields") is not None:
            self.submit_fields = [str(n) for n in request["submit_fields"]]
            self._displace("SUBMIT")
            self.namespace["SUBMIT"] = ReplFunction("SUBMIT", self.submit)
        return {"type": "defined"}

    def set_variables(self, request: dict[str, Any]) -> dict[str, Any]:
        variables = json.loads(protocol.read_frame(self.channel_in).decode("utf-8"))
        for name in variables:
            if not name.isidentifier() or name.startswith("_"):
                return {"type": "error", "error": f"invalid variable name {name!r}"}
        for name, value in variables.items():
            self._displace(name)
            self.namespace[name] = value
        return {"type": "set"}

    def _displace(self, name: str) -> None:
        if name in self.namespace:
            self.displaced.append(self.namespace.pop(name))

    def _release_displaced(self) -> None:
        """Drop displaced values now, under a short timer, outside any step."""
        if not self.displaced:
            return
        try:
            _Cutting.live = True
            signal.setitimer(STEP_TIMER, _AFTER_TIMEOUT_S, _AFTER_TIMEOUT_S)
            self.displaced.clear()
            gc.collect()
        except TimeoutError:
            pass  # a finalizer of the model's was cut short; the rest is released at the next step
        finally:
            _Cutting.live = False
            _stop_timer()

    def execute(self, request: dict[str, Any]) -> dict[str, Any]:
        buffer = OutputBuffer(self.max_output_chars)
        self.final = None
        self.submitted = None
        code = request["code"]
        error: str | None
        try:
            body, tail = compile_step(code)
        except PolicyError as exc:
            error = f"SecurityError: the sandbox refused this code:\n{exc}"
        except SyntaxError as exc:
            error = f"SyntaxError: {exc}"
        except (ValueError, RecursionError, MemoryError) as exc:  # the compiler's own limits
            error = f"SyntaxError: the code could not be compiled ({type(exc).__name__}: {exc})"
        else:
            PrintCollector.buffer = buffer
            try:
                error = self._run_timed(body, tail, code, buffer, float(request["timeout"]))
            finally:
                PrintCollector.buffer = None
        if self.final is not None or self.submitted is not None:
            error = None  # FINAL inside a try/except that swallowed the signal still counts
        return {
            "type": "result",
            "output": valid_text(buffer.getvalue()),
            "error": None if error is None else valid_text(clip(error, self.max_output_chars)),
            "final": None if self.final is None else valid_text(self.final),
            "submitted": self.submitted,
        }

    def _run_timed(self, body: Any, tail: Any, code: str, buffer: OutputBuffer, timeout: float) -> str | None:
        """Run the step, describe its outcome and free its garbage, all under the step timer.

        After the limit the timer keeps firing every _AFTER_TIMEOUT_S, so neither the model's code
        nor a finalizer of its can go on for long by catching one TimeoutError.
        """
        error: str | None = _TIMED_OUT
        try:
            _Cutting.live, _Cutting.expired = True, False
            signal.setitimer(STEP_TIMER, timeout, _AFTER_TIMEOUT_S)
            gc.enable()
            self.stepping = True
            error = self._run_step(body, tail, code, buffer)
            self.displaced.clear()
            gc.collect()  # finalizers of the step's garbage (a generator's `finally`) run now, timed
        except BaseException:  # only the timer can cut our own code short; `error` says so
            pass
        finally:
            _Cutting.live = False  # first, and no call before it: a call is where a signal lands
            self.stepping = False
            gc.disable()
            _stop_timer()
        return _TIMED_OUT if error is None and _Cutting.expired else error

    def _run_step(self, body: Any, tail: Any, code: str, buffer: OutputBuffer) -> str | None:
        """The step's error as exact-type text, or None. Every object of the model's dies in here."""
        try:
            exec(body, self.namespace)
            if tail is not None:
                value = eval(tail, self.namespace)
                if value is not None:
                    buffer.write(short_repr(value, self.max_output_chars) + "\n")
        except _FinalSignal:
            return None
        except MemoryError:
            return "MemoryError: the step ran out of the sandbox's memory limit"
        except BaseException as exc:
            return describe_error(exc, code, (body, tail), self.max_output_chars)
        return None


# Seconds between TimeoutErrors once a step is past its limit.
_AFTER_TIMEOUT_S = 0.1
_TIMED_OUT = "TimeoutError: the step used up its time limit and was stopped"


def _stop_timer() -> tuple[float, float]:
    """Stop the step timer; (seconds left, interval) as it was, (0, 0) if it had already fired.

    A SIGALRM that arrived just before is handled here (its TimeoutError raised and dropped), not
    at some later point of the trusted code.
    """
    saved = (0.0, 0.0)
    for attempt in range(2):
        try:
            stopped = signal.setitimer(STEP_TIMER, 0)
            if attempt == 0:
                saved = stopped
            _checkpoint()  # a Python call: a pending signal handler runs here
            return saved
        except TimeoutError:
            saved = (0.0, 0.0)
    return saved


def _checkpoint() -> None:
    pass


def _plain_arguments(name: str, value: Any) -> Any:
    try:
        return plain(value)
    except NotPlainData as exc:
        raise TypeError(f"{name}: arguments must be text, numbers, lists or dicts ({exc})") from None


_PARAMETERS = {
    "llm_query": ("prompt",),
    "llm_query_batched": ("prompts",),
    "recursive_llm": ("query", "sub_context"),
    "recursive_llm_batched": ("pairs",),
}


def _positional(name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, ...]:
    """Accept llm_query(prompt=...) as well as llm_query(...); `kwargs` is plain data already."""
    if not kwargs:
        return args
    names = _PARAMETERS[name]
    unknown = [k for k in kwargs if k not in names[len(args) :]]
    if unknown:
        raise TypeError(f"{name} got unexpected keyword arguments {unknown}; it takes {list(names)}")
    return args + tuple(kwargs[n] for n in names[len(args) :] if n in kwargs)


def _check_arguments(name: str, args: tuple[Any, ...]) -> None:
    """Checks plain-data arguments (see _plain_arguments) against the function's shape."""
    expected = {"llm_query": 1, "llm_query_batched": 1, "recursive_llm": 2, "recursive_llm_batched": 1}
    if len(args) != expected[name]:
        shapes = {
            "llm_query": "llm_query(prompt: str) -> str",
            "llm_query_batched": "llm_query_batched(prompts: list[str]) -> list[str]",
            "recursive_llm": "recursive_llm(query: str, sub_context) -> str",
            "recursive_llm_batched": "recursive_llm_batched([(query, sub_context), ...]) -> list[str]",
        }
        raise TypeError(f"{name} takes {expected[name]} argument(s): {shapes[name]}")
    if name == "llm_query" and type(args[0]) is not str:
        raise TypeError(
            f"llm_query(prompt) needs the prompt as a str, got {type(args[0]).__name__}; "
            "for many prompts use llm_query_batched(prompts)"
        )
    if name.endswith("_batched") and type(args[0]) is not list:
        raise TypeError(f"{name} needs a list, got {type(args[0]).__name__}")


def _is_user_value(name: str) -> bool:
    return name not in {"FINAL", "FINAL_VAR", "SUBMIT", "SubcallError", *HOST_FUNCTIONS}
