"""Pull structured data out of messy text: the model writes the parser, you get typed data back.

`output=list[int]` tells the model the shape; a FINAL value that does not fit is refused and the
model told why; `result.value` is the validated list. python examples/data_extraction.py
"""

from __future__ import annotations

from common import exit_for_missing_key, model_settings

from rlm import RLM, APIKeyNotFoundError

EMAILS = "\n---\n".join(
    f"From: customer{i}@example.com\nSubject: order #{1000 + i}\n"
    f"Hi, I paid {i * 3 + 10}.50 EUR but {'the parcel never arrived' if i % 3 == 0 else 'all is fine'}."
    for i in range(300)
)

if __name__ == "__main__":
    try:
        rlm = RLM(**model_settings(), max_iterations=10)
    except APIKeyNotFoundError as exc:
        exit_for_missing_key(exc)
    result = rlm.run("List the order numbers of customers whose parcel never arrived.", EMAILS, output=list[int])
    if result.value is not None:
        print(f"{len(result.value)} orders: {result.value}")
    else:  # the model never gave a list of integers within its steps
        print(f"no typed answer ({result.finish_reason}); the last answer was: {result.answer}")
