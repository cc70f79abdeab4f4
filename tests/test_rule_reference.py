"""Every rule's updates on tiny networks at a fixed seed match the fingerprints recorded before
the update seam / toolkit refactor (``tests/reference_updates.py``): a refactor of the rules
must not change a number. Regenerate the file only for a deliberate change of a rule's maths."""

from __future__ import annotations

import json
import math

import pytest

from reference_updates import CASES, PATH, run_case

pytestmark = pytest.mark.usefixtures("one_thread")

REFERENCE = json.loads(PATH.read_text())


@pytest.mark.parametrize("case", sorted(CASES))
def test_rule_updates_match_the_recorded_reference(case):
    got, want = run_case(case), REFERENCE[case]
    assert sorted(got) == sorted(want)
    for name, values in want.items():
        for a, b in zip(got[name], values):
            assert math.isclose(a, b, rel_tol=1e-5, abs_tol=1e-7), (case, name, got[name], values)
