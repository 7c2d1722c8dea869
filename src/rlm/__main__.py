"""`python -m rlm ...`: the `rlm` command, for when the console script is not on PATH."""

from rlm.cli.main import main

raise SystemExit(main())
