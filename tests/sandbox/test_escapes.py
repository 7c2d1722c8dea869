"""Escape attempts against the restricted sandbox: each one is refused with an error the model reads.

Public RLM ports have been escaped through objects they handed to the model's code (a module such as
`re` whose attributes lead to `sys` and `os`); each case here is a distinct route out.
"""

from __future__ import annotations

import pytest

from tests.sandbox.conftest import assert_refused_and_box_intact, no_calls

ESCAPES = {
    # imports of dangerous modules, every spelling
    "import-os": "import os",
    "import-sys": "import sys",
    "import-subprocess": "import subprocess",
    "import-socket": "import socket",
    "import-ctypes": "import ctypes",
    "import-importlib": "import importlib",
    "import-builtins": "import builtins",
    "import-signal": "import signal",
    "import-pickle": "import pickle",
    "import-marshal": "import marshal",
    "import-gc": "import gc",
    "import-inspect": "import inspect",
    "import-threading": "import threading",
    "import-multiprocessing": "import multiprocessing",
    "from-os-import": "from os import system",
    "import-dotted": "import os.path",
    "relative-import": "from . import worker",
    "dunder-import-call": "__import__('os')",
    # builtins that open doors
    "open-file": "open('/etc/passwd').read()",
    "open-proc-environ": "open('/proc/self/environ').read()",
    "exec": "exec('import os')",
    "eval": "eval('1 + 1')",
    "compile": "compile('1', 'f', 'eval')",
    "globals": "globals()",
    "locals": "locals()",
    "vars": "vars()",
    "breakpoint": "breakpoint()",
    "input": "input()",
    "memoryview": "memoryview(b'x')",
    "type-three-args": "type('X', (object,), {'y': 1})",
    # dunder walks
    "class-bases-subclasses": "().__class__.__bases__[0].__subclasses__()",
    "object-subclasses": "object.__subclasses__()",
    "mro-method": "type(()).mro()",
    "function-globals": "llm_query.__globals__",
    "function-closure": "llm_query.__closure__",
    "bound-method-self": "FINAL.__self__",
    "lambda-code": "(lambda: 0).__code__",
    "builtins-name": "__builtins__",
    "exception-traceback": "try:\n    1 / 0\nexcept Exception as e:\n    e.__traceback__",
    "generator-frame": "g = (x for x in [1])\ng.gi_frame",
    "generator-code": "g = (x for x in [1])\ng.gi_code",
    "frame-globals-name": "def f():\n    pass\nf.f_globals",
    "async-coroutine": "async def f():\n    pass\nf().cr_frame",
    "nfkc-normalised-dunder": "().__\uff43lass__",
    "fstring-dunder": "f'{context.__class__}'",
    "match-class-pattern": "match context:\n    case str(__class__=c):\n        print(c)",
    # computed attribute access
    "getattr-dunder": "getattr(context, '__class__')",
    "getattr-computed-name": "getattr(1, '_' + '_class__')",
    "getattr-frame-name": "g = (x for x in [1])\ngetattr(g, 'gi_' + 'frame')",
    "setattr-on-host-function": "setattr(FINAL, 'x', 1)",
    "delattr-on-host-function": "delattr(llm_query, 'x')",
    # format-string attribute access
    "str-format-attribute": "'{0.__class__}'.format(context)",
    "str-format-map": "'{x.__class__}'.format_map({'x': 1})",
    "str-type-format": "str.format('{0.__class__}', 1)",
    # paths out through handed-out modules and objects
    "re-module-enum": "import re\nre.enum",
    "re-private-compiler": "import re\nre._compiler",
    "json-decoder-submodule": "import json\njson.decoder",
    "collections-abc": "import collections\ncollections.abc",
    "random-private-os": "import random\nrandom._os",
    "facade-internal-names": "import math\nmath._names",
    "facade-write": "import math\nmath.pi = 3",
    "module-function-globals": "import json\njson.loads.__globals__",
    "class-init-globals": "import difflib\ndifflib.SequenceMatcher.__init__.__globals__",
    "string-formatter": "import string\nstring.Formatter",
    "subcall-error-mro": "SubcallError.mro()",
    "pickle-reduce": "(1).__reduce_ex__(2)",
    "foreign-attribute-write": "import re\np = re.compile('a')\np.flags = 0",
}


def test_suite_has_at_least_forty_distinct_attempts():
    assert len(ESCAPES) >= 40
    assert len(set(ESCAPES.values())) == len(ESCAPES)


@pytest.mark.parametrize("code", list(ESCAPES.values()), ids=list(ESCAPES))
def test_escape_attempt_is_refused_with_a_clear_error(restricted, code):
    error = assert_refused_and_box_intact(restricted, code)  # the session survives every attempt
    assert any(word in error for word in ("Error", "refused", "not allowed", "restricted")), error


def test_fork_bomb_cannot_start(restricted):
    result = restricted.execute("import os\nwhile True:\n    os.fork()", no_calls)
    assert "not allowed" in result.error
    result = restricted.execute("import multiprocessing\nmultiprocessing.Process()", no_calls)
    assert "not allowed" in result.error
