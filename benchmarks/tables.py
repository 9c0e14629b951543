"""The README's speed tables, as Markdown, from the benchmarks' JSON results (so a table is
always one run's figures, copied by a program rather than by hand).

    python benchmarks/tables.py speed benchmarks/results/deepmoji_speed.json
    python benchmarks/tables.py real-text benchmarks/results/deepmoji_real_text.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

#: deepmoji_speed.py contender -> column title, in the table's order.
SPEED_COLUMNS = {
    "port": "port",
    "exported": "exported",
    "compiled": "compiled",
    "onnxruntime": "onnxruntime",
    "reference": "reference",
    "keras": "Keras 3",
    "fused": "fused nn.LSTM",
    "naive": "naive",
}
REAL_TEXT_COLUMNS = {
    "packed": "port (length-aware)",
    "compiled": "compiled",
    "masked": "masked",
    "keras": "Keras 3",
    "torch_pack": "nn.LSTM PackedSequence",
}


def number(value: float | None) -> str:
    """Three significant figures, thousands separated; "-" for a missing value."""
    if value is None:
        return "-"
    if value >= 1000:
        return f"{value:,.0f}"
    return f"{value:.3g}"


def ratio(a: float | None, b: float | None) -> str:
    return "-" if a is None or b is None else f"{a / b:.2f}x"


def speed_table(result: dict) -> list[str]:
    columns = [k for k in SPEED_COLUMNS if any(k in r["seq_per_s"] for r in result["rows"])]
    head = ["mode", "B", "T", *(SPEED_COLUMNS[k] for k in columns), "floor"]
    head += ["port/Keras", "port/fused", "compiled/port", "port % of floor", "peak MB port / fused"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in result["rows"]:
        s = r["seq_per_s"].get
        peak = r["peak_mb"]
        cells = [r["mode"], str(r["batch"]), str(r["steps"])]
        cells += [number(s(k)) for k in columns] + [number(r["floor_seq_per_s"])]
        cells += [ratio(s("port"), s("keras")), ratio(s("port"), s("fused"))]
        cells += [ratio(s("compiled"), s("port")), f"{100 * s('port') / r['floor_seq_per_s']:.0f}%"]
        cells += [f"{peak.get('port', 0):.0f} / {peak.get('fused', 0):.0f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def real_text_table(result: dict) -> list[str]:
    rows = result["rows"]
    columns = [k for k in REAL_TEXT_COLUMNS if any(k in r["seq_per_s"] for r in rows)]
    head = ["mode", "padding", *(REAL_TEXT_COLUMNS[k] for k in columns)]
    head += ["port vs masked / Keras / PackedSequence", "max diff"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        s = r["seq_per_s"].get
        versus = " / ".join(ratio(s("packed"), s(k)) for k in ("masked", "keras", "torch_pack"))
        diffs = r["max_abs_diff"]
        if r["mode"] == "inference":
            diff = f"{diffs.get('packed_vs_keras', float('nan')):.1e} (outputs vs Keras)"
        else:
            diff = f"{diffs['packed_vs_masked_grad']:.1e} (gradients vs masked)"
        cells = [r["mode"], r["padding"], *(number(s(k)) for k in columns), versus, diff]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("kind", choices=("speed", "real-text"))
    parser.add_argument("result", type=Path)
    args = parser.parse_args()
    result = json.loads(args.result.read_text())
    table = speed_table if args.kind == "speed" else real_text_table
    print("\n".join(table(result)))


if __name__ == "__main__":
    main()
