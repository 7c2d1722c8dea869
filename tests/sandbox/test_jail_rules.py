"""The seccomp rules' arithmetic, checked without entering the jail."""

from __future__ import annotations

import pytest

from rlm.sandbox.local import syscall_arguments


@pytest.mark.parametrize("allowed", [0x54, 0x00, 0xFF, 0x66])
def test_the_ioctl_rules_match_every_family_but_the_allowed_one(allowed):
    rules = syscall_arguments.ioctl_families_refused(allowed)
    assert len(rules) == 8
    for kind in range(256):
        # direction and size bits (16-31) and the number (0-7) must not change the outcome
        for command in (kind << 8, 0xC0FF0000 | kind << 8 | 0x7F, 0x40000000 | kind << 8 | 1):
            refused = any(command & mask == value for mask, value in rules)
            assert refused == (kind != allowed), (hex(kind), hex(command))


@pytest.mark.parametrize(
    "allowed", [syscall_arguments.MADV_ALLOWED, syscall_arguments.PR_ALLOWED, frozenset(), frozenset(range(128))]
)
def test_the_action_rules_match_every_value_but_the_allowed_ones(allowed):
    rules = syscall_arguments.values_refused_except(allowed)
    assert len(rules) < 64  # blocks, not a rule per refused value
    values = [*range(1100), 0x53564D41, 0x59616D61, 0x41555856, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF]
    for value in values:
        refused = any(value & mask == want for mask, want in rules)
        assert refused == (value not in allowed), hex(value)


def test_ksm_and_page_cache_advice_and_the_death_signal_are_outside_the_allowlists():
    assert {3, 12, 13, 20, 21, 22, 23, 25}.isdisjoint(syscall_arguments.MADV_ALLOWED)
    assert {1, 35, 36, 62, 67}.isdisjoint(syscall_arguments.PR_ALLOWED)  # PDEATHSIG, MM, SUBREAPER, SCHED_CORE, MERGE
