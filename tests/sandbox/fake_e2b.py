"""A faithful fake of the e2b-code-interpreter SDK surface the E2B adapter uses.

E2B's service cannot be reached from these machines. This fake keeps the SDK's own data classes
(`Execution`, `Logs`, `Result`, `ExecutionError`, `OutputMessage`) and exceptions, runs code like a
Jupyter kernel (persistent globals, the last expression as the main result, stdout streamed line by
line to `on_stdout` while the code runs, `TimeoutException` past `timeout`), and keeps files on the
local disk at the paths given.
"""

from __future__ import annotations

import ast
import contextlib
import io
import threading
import time
import traceback
from pathlib import Path
from typing import Any, ClassVar

from e2b.exceptions import TimeoutException
from e2b_code_interpreter.models import Execution, ExecutionError, Logs, OutputMessage, Result


class _LineWriter(io.TextIOBase):
    def __init__(self, on_line: Any, logs: list[str]) -> None:
        self.on_line, self.logs, self.buffer_text = on_line, logs, ""

    def write(self, text: str) -> int:
        self.buffer_text += text
        while "\n" in self.buffer_text:
            line, self.buffer_text = self.buffer_text.split("\n", 1)
            self._emit(line + "\n")
        return len(text)

    def flush(self) -> None:
        if self.buffer_text:
            self._emit(self.buffer_text)
            self.buffer_text = ""

    def _emit(self, line: str) -> None:
        self.logs.append(line)
        if self.on_line is not None:
            self.on_line(OutputMessage(line=line, timestamp=time.time_ns(), error=False))


class _Files:
    def __init__(self, owner: FakeSandbox) -> None:
        self.owner = owner

    def write(self, path: str, data: str | bytes, **kwargs: Any) -> None:
        self.owner.writes.append(path)
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data.encode() if isinstance(data, str) else data)


class FakeSandbox:
    created: ClassVar[list[FakeSandbox]] = []

    def __init__(self, api_key: str | None, template: str | None, timeout: int | None) -> None:
        self.api_key, self.template, self.lifetime = api_key, template, timeout
        self.sandbox_id = f"fake-{len(FakeSandbox.created)}"
        self.namespace: dict[str, Any] = {"__name__": "__main__"}
        self.files = _Files(self)
        self.writes: list[str] = []
        self.codes: list[str] = []
        self.killed = False
        self._stdout_lock = threading.Lock()

    @classmethod
    def create(cls, template: str | None = None, timeout: int | None = None, **opts: Any) -> FakeSandbox:
        box = cls(opts.get("api_key"), template, timeout)
        cls.created.append(box)
        return box

    def kill(self, **opts: Any) -> bool:
        self.killed = True
        return True

    def run_code(self, code: str, on_stdout: Any = None, on_stderr: Any = None, timeout: float | None = None,
                 **kwargs: Any) -> Execution:  # fmt: skip
        if self.killed:
            raise RuntimeError("sandbox was killed")
        self.codes.append(code)
        stdout: list[str] = []
        stderr: list[str] = []
        outcome: dict[str, Any] = {}

        def kernel() -> None:
            writer = _LineWriter(on_stdout, stdout)
            try:
                tree = ast.parse(code)
                last = tree.body.pop() if tree.body and isinstance(tree.body[-1], ast.Expr) else None
                with contextlib.redirect_stdout(writer):
                    exec(compile(tree, "<cell>", "exec"), self.namespace)
                    if last is not None:
                        value = eval(compile(ast.Expression(last.value), "<cell>", "eval"), self.namespace)
                        if value is not None:
                            outcome["result"] = Result(text=repr(value), is_main_result=True)
            except BaseException as exc:  # the kernel reports every error, as Jupyter does
                outcome["error"] = ExecutionError(type(exc).__name__, str(exc), traceback.format_exc())
            finally:
                writer.flush()

        thread = threading.Thread(target=kernel, daemon=True)
        thread.start()
        thread.join(timeout)
        if thread.is_alive():
            raise TimeoutException("Execution timed out — the 'timeout' option can be used to increase this timeout")
        results = [outcome["result"]] if "result" in outcome else []
        return Execution(results=results, logs=Logs(stdout=stdout, stderr=stderr), error=outcome.get("error"))
