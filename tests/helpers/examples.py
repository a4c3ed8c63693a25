"""How many examples a property test draws, and the mutation run's hypothesis profile.

The mutation run (scripts/mutants.py) loads the ``mutants`` profile
(``--hypothesis-profile=mutants``) and runs the property tests once per mutant: the same examples
every time (derandomized, no example database shared between mutants, so that a verdict never
depends on the order the mutants ran in), and a quarter of them, without shrinking: one failing
example kills a mutant, and shrinking a mutant that breaks every example (a TypeError in a
stateful test) outlasted mutmut's time limit, so that such mutants were counted as timeouts.
Every other run draws the counts the tests ask for, and shrinks.
"""

from __future__ import annotations

from hypothesis import Phase, settings

MUTANTS_PROFILE = "mutants"
MUTANTS_DIVISOR = 4
MUTANTS_MIN_EXAMPLES = 5

settings.register_profile(MUTANTS_PROFILE, derandomize=True, database=None,
                          phases=(Phase.explicit, Phase.reuse, Phase.generate))


def examples(count: int) -> int:
    """``count``, or a quarter of it (at least 5) under the mutation run's profile."""
    # get_current_profile_name: hypothesis 6.1xx; an older one never runs the mutation profile
    current = getattr(settings, "get_current_profile_name", lambda: "default")()
    if current != MUTANTS_PROFILE:
        return count
    return max(MUTANTS_MIN_EXAMPLES, count // MUTANTS_DIVISOR)
