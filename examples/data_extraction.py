"""Pull structured data out of messy text: the model writes the parser, you get JSON back.

python examples/data_extraction.py
"""

from __future__ import annotations

import json

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
    answer = rlm.completion(
        "List the order numbers of customers whose parcel never arrived, as a JSON list of integers.", EMAILS
    )
    try:
        print(json.loads(answer))
    except json.JSONDecodeError:
        print(answer)
