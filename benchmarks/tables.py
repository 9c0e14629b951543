"""The README's speed tables, as Markdown, from the benchmarks' JSON results (so a table is
always one run's figures, copied by a program rather than by hand).

    python benchmarks/tables.py speed benchmarks/results/deepmoji_speed.json
    python benchmarks/tables.py real-text benchmarks/results/deepmoji_real_text.json
    python benchmarks/tables.py contention benchmarks/results/deepmoji_speed*.json
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


def contention_table(results: list[dict]) -> list[str]:
    """deepmoji_speed.py runs with --background-load K (0: idle): per K, the inference rows'
    port, Keras 3 and fused nn.LSTM, and the port's ratios, K ascending."""
    head = ["busy processes", "B", "T", "port", "Keras 3", "fused nn.LSTM"]
    head += ["port/Keras", "port/fused"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    rows = [r for result in results for r in result["rows"] if r["mode"] == "inference"]
    rows.sort(key=lambda r: (r["batch"], r["steps"], r.get("background_load", 0)))
    for r in rows:
        s = r["seq_per_s"].get
        cells = [str(r.get("background_load", 0)), str(r["batch"]), str(r["steps"])]
        cells += [number(s(k)) for k in ("port", "keras", "fused")]
        cells += [ratio(s("port"), s("keras")), ratio(s("port"), s("fused"))]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("kind", choices=("speed", "real-text", "contention"))
    parser.add_argument("results", type=Path, nargs="+")
    args = parser.parse_args()
    results = [json.loads(path.read_text()) for path in args.results]
    if args.kind == "contention":
        print("\n".join(contention_table(results)))
        return
    table = speed_table if args.kind == "speed" else real_text_table
    for result in results:
        print("\n".join(table(result)))


if __name__ == "__main__":
    main()
