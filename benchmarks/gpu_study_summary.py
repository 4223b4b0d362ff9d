"""Summarise benchmarks/gpu_study.sh: loss, zero-shot scores, tokens/s and MFU per role.

    python benchmarks/gpu_study_summary.py STUDY_DIR BENCH_JSONL > summary.md

STUDY_DIR is the study folder (``rep0/MODEL/metrics.json`` per model); BENCH_JSONL is the output
of ``bench_train.py`` in the same script, whose measured bf16 matrix-product peak is the MFU
denominator. MFU counts 6N FLOPs per token for a pretrained model and 6N + 2N per teacher for a
student (N = all parameters), as ``bench_train.py`` does; tokens/s is tokens seen over training
wall time (evaluations during training included, so it is a lower bound on step throughput).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def _peak_flops(bench_jsonl: Path) -> float:
    """The bf16 matrix-product peak (FLOP/s) measured by bench_train.py."""
    for line in bench_jsonl.read_text().splitlines():
        row = json.loads(line)
        if row.get("event") == "matmul_peak":
            return row["bfloat16"] * 1e9
    raise SystemExit(f"{bench_jsonl}: no matmul_peak row")


def _metrics(study_dir: Path) -> dict[str, dict]:
    """Model name (``repR/MODEL``) -> its metrics.json, for every finished model."""
    found = {f"{p.parent.parent.name}/{p.parent.name}": json.loads(p.read_text())
             for p in sorted(study_dir.glob("rep*/*/metrics.json"))}
    if not found:
        raise SystemExit(f"{study_dir}: no finished model (rep*/MODEL/metrics.json)")
    return found


def summary_table(study_dir: Path, bench_jsonl: Path) -> str:
    """A Markdown table: one row per finished model."""
    peak = _peak_flops(bench_jsonl)
    models = _metrics(study_dir)
    tasks = sorted({task for m in models.values() for task in (m.get("zero_shot") or {})})
    head = ["model", "parameters", "tokens seen", "val loss", "test loss", *tasks, "tokens/s", "MFU", "train s"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, m in models.items():
        flops_per_token = (6 + 2 * len(m.get("teachers") or [])) * m["parameters"]
        tokens_per_s = m.get("tokens_per_s") or 0.0
        scores = [f"{m['zero_shot'][t]:.4f}" if t in (m.get("zero_shot") or {}) else "not run" for t in tasks]
        test = f"{m['test_loss']:.4f}" if m.get("test_loss") is not None else "none"
        lines.append("| " + " | ".join([name, f"{m['parameters']:,}", f"{m['tokens_seen']:,}", f"{m['val_loss']:.4f}",
                                        test, *scores, f"{tokens_per_s:,.0f}",
                                        f"{100 * flops_per_token * tokens_per_s / peak:.1f}%",
                                        f"{m['wall_time_s']:.0f}"]) + " |")
    lines.append(f"\nMFU against the measured bf16 matrix-product peak, {peak / 1e12:.1f} TFLOP/s.")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    if len(sys.argv) != 3:
        raise SystemExit("usage: gpu_study_summary.py STUDY_DIR BENCH_JSONL")
    sys.stdout.write(summary_table(Path(sys.argv[1]), Path(sys.argv[2])))
