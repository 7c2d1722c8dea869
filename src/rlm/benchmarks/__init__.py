"""Seeded offline benchmark tasks and the harness behind `rlm bench` (RLM vs direct vs dspy.RLM)."""
