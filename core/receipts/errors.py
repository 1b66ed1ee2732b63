"""ReceiptError: bad receipt input, key material or key file, as an InvalidArgument."""

from __future__ import annotations

import re

from core.errors import InvalidArgument

# A problem starts with the field it is about: "units < 0", "metadata.result: ...".
_FIELD = re.compile(r"[A-Za-z_][\w.\[\]]*")


class ReceiptError(InvalidArgument, ValueError):
    """A receipt, claim, key or key file that cannot be used.

    It is an `InvalidArgument` (one error hierarchy, gRPC code INVALID_ARGUMENT with the field
    violations) and a `ValueError`, so callers parsing configuration can catch the builtin.
    """

    @classmethod
    def from_problems(cls, what: str, problems: list[str]) -> ReceiptError:
        """One error naming every problem; each becomes a (field, description) violation."""
        violations = []
        for problem in problems:
            match = _FIELD.match(problem)
            _, sep, desc = problem.partition(": ")
            violations.append((match.group() if match else what, desc if sep else problem))
        return cls(f"invalid {what}: " + "; ".join(problems), violations)
