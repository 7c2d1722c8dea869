"""The seccomp rules' arithmetic, checked without entering the jail."""

from __future__ import annotations

import pytest

from rlm.sandbox.local import jail


@pytest.mark.parametrize("allowed", [0x54, 0x00, 0xFF, 0x66])
def test_the_ioctl_rules_match_every_family_but_the_allowed_one(allowed):
    rules = jail._ioctl_families_refused(allowed)
    assert len(rules) == 8
    for kind in range(256):
        # direction and size bits (16-31) and the number (0-7) must not change the outcome
        for command in (kind << 8, 0xC0FF0000 | kind << 8 | 0x7F, 0x40000000 | kind << 8 | 1):
            refused = any(command & mask == value for mask, value in rules)
            assert refused == (kind != allowed), (hex(kind), hex(command))
