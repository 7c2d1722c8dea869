"""The benchmark harness, from a checkout: `python -m bench.run --task needle --size 60k ...`.

Same as `rlm bench ...`; the harness itself lives in `rlm.benchmarks` so installed users have it.
"""

from __future__ import annotations

import sys

from rlm.benchmarks.harness import main

if __name__ == "__main__":
    sys.exit(main())
