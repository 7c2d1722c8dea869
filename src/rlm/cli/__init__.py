"""The `rlm` command line: `rlm ask`, `rlm serve-local`."""
