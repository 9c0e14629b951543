"""The report of a parity check: one row per compared quantity, a verdict, a diagnosis.

Printed as a table by `parity check`, written as JSON by `--json`; the test suite asserts on
the same object. Each row also says how much of its tolerance it used, so the report gives the
tightest tolerance that would still pass, not only pass/fail.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from parity.check.harness import KIND_ORDER, Comparison

NAME_WIDTH = 44


@dataclass
class Report:
    rows: list[Comparison]
    #: Why it failed: the first difference and the alternative that explains it (if any).
    diagnosis: list[str] = field(default_factory=list)
    #: What the check assumed or skipped (conversion notes, dropped activation points).
    notes: list[str] = field(default_factory=list)
    device: str = "cpu"
    dtype: str = "float32"

    @property
    def passed(self) -> bool:
        return bool(self.rows) and all(row.passed for row in self.rows)

    @property
    def first_failure(self) -> Comparison | None:
        """The first failing row in model order: activations come before outputs."""
        return next((row for row in self.rows if not row.passed), None)

    def tightest(self) -> dict[str, dict[str, float | None]]:
        """Per kind, the tightest (atol, rtol) of the table's shape that every row passes."""
        found: dict[str, dict[str, float | None]] = {}
        for kind in KIND_ORDER:
            rows = [row for row in self.rows if row.kind == kind]
            if not rows:
                continue
            worst = max(rows, key=lambda r: r.ratio)
            finite = math.isfinite(worst.ratio)
            found[kind] = {
                "atol": worst.tightest_atol if finite else None,
                "rtol": worst.tightest_rtol if finite else None,
                "table_atol": worst.atol,
                "table_rtol": worst.rtol,
            }
        return found

    def as_dict(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "device": self.device,
            "dtype": self.dtype,
            "rows": [row.as_dict() for row in self.rows],
            "tightest": self.tightest(),
            "diagnosis": list(self.diagnosis),
            "notes": list(self.notes),
        }

    def table(self) -> str:
        """The layer-by-layer table, then the tightest passing tolerances and the verdict."""
        head = (
            f"{'name':{NAME_WIDTH}} {'kind':10} {'max abs':>9} {'max rel':>9}  "
            f"{'where':14} {'atol/rtol':13} {'used':>7}  result"
        )
        lines = [head, "-" * len(head)]
        for row in self.rows:
            name = row.name if len(row.name) <= NAME_WIDTH else "..." + row.name[-NAME_WIDTH + 3 :]
            result = "ok" if row.passed else "FAIL"
            if row.problem:
                lines.append(f"{name:{NAME_WIDTH}} {row.kind:10} {row.problem}  {result}")
                continue
            where = "[" + ",".join(map(str, row.where)) + "]"
            used = f"{row.ratio:.2g}" if math.isfinite(row.ratio) else "inf"
            lines.append(
                f"{name:{NAME_WIDTH}} {row.kind:10} {row.max_abs:9.2e} {row.max_rel:9.2e}  "
                f"{where:14} {f'{row.atol:g}/{row.rtol:g}':13} {used:>7}  {result}"
            )
        lines.append("")
        for kind, tol in self.tightest().items():
            if tol["atol"] is None:
                lines.append(f"tightest passing tolerance, {kind}: none (a row cannot be compared)")
            else:
                lines.append(
                    f"tightest passing tolerance, {kind}: atol {tol['atol']:.2g}, "
                    f"rtol {tol['rtol']:.2g} (table: {tol['table_atol']:g}, {tol['table_rtol']:g})"
                )
        lines += [f"note: {note}" for note in self.notes]
        failed = sum(not row.passed for row in self.rows)
        verdict = "PASS" if self.passed else f"FAIL ({failed} of {len(self.rows)} rows)"
        lines.append(f"{verdict}: {len(self.rows)} rows on {self.device}, {self.dtype}")
        lines += [f"diagnosis: {line}" for line in self.diagnosis]
        return "\n".join(lines)
