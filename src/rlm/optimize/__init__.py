"""DSPy optimization of the RLM's step: training items, the metric, compile, and the program file.

    from rlm import RLM
    from rlm.optimize import optimize, training_items

    program = optimize(RLM(model="local", max_iterations=6), training_items(6))
    program.save("program.json")
    RLM(model="local", program="program.json")

`rlm optimize` is the same from a terminal. The facade reads program files through `program_file`.
"""

from rlm.optimize.compile import DEFAULT_MAX_DEMO_TOKENS, OPTIMIZERS, TrajectoryBootstrap, optimize
from rlm.optimize.demos import DemoShape, key_turns, prompt_cost
from rlm.optimize.items import (
    CODE_EVALUATION,
    EVALUATION,
    HeldOut,
    Shape,
    check_disjoint,
    to_example,
    training_items,
)
from rlm.optimize.metric import founded_and_correct, judge, score_with_feedback
from rlm.optimize.program_file import (
    FORMAT_VERSION,
    Program,
    ProgramFileError,
    ProgramModelWarning,
    load_program,
    read_program,
)

__all__ = [
    "CODE_EVALUATION",
    "DEFAULT_MAX_DEMO_TOKENS",
    "EVALUATION",
    "FORMAT_VERSION",
    "OPTIMIZERS",
    "DemoShape",
    "HeldOut",
    "Program",
    "ProgramFileError",
    "ProgramModelWarning",
    "Shape",
    "TrajectoryBootstrap",
    "check_disjoint",
    "founded_and_correct",
    "judge",
    "key_turns",
    "load_program",
    "optimize",
    "prompt_cost",
    "read_program",
    "score_with_feedback",
    "to_example",
    "training_items",
]
