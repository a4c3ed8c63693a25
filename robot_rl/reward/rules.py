"""A success rule over a frame's keys, for data that has a sensor for success but no reward yet.

``KEY[INDEX] OP NUMBER``, OP one of ``>= <= > <``, e.g. ``object_position[0] >= 0.15`` (an
imported drawer bag with its opening sensor mapped to ``object_position``); several rules must all
hold. The same ``reset``/``step`` as ``SuccessDetector``, so an importer takes either.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Mapping, Sequence

import numpy as np

_RULE = re.compile(r"^\s*(?P<key>[A-Za-z_]\w*)(\[(?P<index>\d+)\])?\s*(?P<op>>=|<=|>|<)\s*"
                   r"(?P<value>[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?)\s*$")
_OPS: dict[str, Callable[[float, float], bool]] = {
    ">=": operator.ge, "<=": operator.le, ">": operator.gt, "<": operator.lt}


class SuccessRule:
    def __init__(self, rules: Sequence[str]) -> None:
        if not rules:
            raise ValueError("success rule: at least one is needed")
        self.text = tuple(rules)
        self._checks = []
        for text in rules:
            match = _RULE.match(text)
            if match is None:
                raise ValueError(f"success rule {text!r}: expected KEY[INDEX] OP NUMBER with OP "
                                 "one of >= <= > < (e.g. 'object_position[0] >= 0.15')")
            self._checks.append((match["key"], int(match["index"] or 0), _OPS[match["op"]],
                                 float(match["value"])))
        self.fired = False

    def reset(self) -> None:
        self.fired = False

    def step(self, frame: Mapping[str, np.ndarray]) -> bool:
        for key, index, compare, value in self._checks:
            if key not in frame:
                raise ValueError(f"success rule '{key}[{index}]': the frame has no key '{key}' "
                                 f"(it has {sorted(frame)})")
            values = np.asarray(frame[key]).reshape(-1)
            if index >= values.size:
                raise ValueError(f"success rule '{key}[{index}]': '{key}' has {values.size} "
                                 "values")
            if not compare(float(values[index]), value):
                return False
        self.fired = True
        return True
