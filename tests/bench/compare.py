#!/usr/bin/env python3
"""Side-by-side table from `livefill bench --json` and `bench_python.py --json` (markdown).

    python3 tests/bench/compare.py LIVEFILL.json PYTHON.json [--title NAME]

Ratios are baseline p50 / livefill p50: above 1 = livefill is faster. Standard library only.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys


def fmt(ms: float) -> str:
    if ms != ms:  # NaN
        return "—"
    return f"{ms:,.1f}" if ms >= 100 else f"{ms:.2f}"


def cell(entry: dict | None) -> str:
    if not entry:
        return "—"
    return f"{fmt(entry['p50'])} / {fmt(entry['p95'])}"


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("livefill")
    ap.add_argument("python")
    ap.add_argument("--title", default="")
    args = ap.parse_args()
    lf = json.load(open(args.livefill))
    py = json.load(open(args.python))
    impls = list(py.get("runs", {}).keys())
    out = []
    w = lambda s="": out.append(s)  # noqa: E731
    w(f"### {args.title}: {lf.get('model')} {lf.get('size')}×{lf.get('size')}, {lf.get('steps')} steps, "
      f"guidance {lf.get('guidance')}, {lf.get('threads')} threads, {lf.get('device')}, "
      f"{lf.get('iterations')} timed runs (+{lf.get('warmup')} warm-up)")
    w()
    w("End to end, ms p50 / p95 (ratio = baseline p50 / livefill p50; > 1 = livefill faster):")
    w()
    head = "| mode | UNet passes (lf/" + "/".join(impls) + ") | livefill | " + " | ".join(impls) + " | " + \
        " | ".join(f"{i}/livefill" for i in impls) + " |"
    w(head)
    w("|" + "---|" * (3 + 2 * len(impls)))
    for mode, m in lf.get("modes", {}).items():
        passes = [str(m.get("unet_steps"))]
        cells, ratios = [], []
        for impl in impls:
            pm = py["runs"][impl]["modes"].get(mode)
            passes.append(str(pm["unet_steps"]) if pm else "—")
            cells.append(cell(pm["e2e_ms"] if pm else None))
            ratios.append(f"{pm['e2e_ms']['p50'] / m['e2e_ms']['p50']:.2f}×" if pm else "—")
        w(f"| {mode} | {'/'.join(passes)} | {cell(m['e2e_ms'])} | " + " | ".join(cells) + " | " +
          " | ".join(ratios) + " |")
    socket = lf.get("socket")
    if socket:
        w()
        d = socket["daemon"]
        w(f"livefill through a running daemon ({d.get('device')}, {d.get('execution_provider')}), "
          "request frame written → result "
          "frame read, ms p50 / p95 (ratio = baseline p50 / this p50):")
        w()
        w("| mode | livefill via socket | " + " | ".join(f"{i}/livefill" for i in impls) + " |")
        w("|" + "---|" * (2 + len(impls)))
        for mode, sm in socket["modes"].items():
            ratios = []
            for impl in impls:
                pm = py["runs"][impl]["modes"].get(mode)
                ratios.append(f"{pm['e2e_ms']['p50'] / sm['p50']:.2f}×" if pm else "—")
            w(f"| {mode} | {cell(sm)} | " + " | ".join(ratios) + " |")
    w()
    w("Per stage, ms p50 (livefill's ORT stages include its tensor packing; Python stages are the "
      "wall time of the model call, torch or optimum's ORT wrapper):")
    w()
    w("| mode | stage | livefill | " + " | ".join(impls) + " |")
    w("|" + "---|" * (3 + len(impls)))
    for mode, m in lf.get("modes", {}).items():
        rows = [("text_encode", "text_encode"), ("vae_encode", "vae_encode"), ("taesd_encode", "taesd_encode"),
                ("unet", "unet (all passes)"),
                ("vae_decode", "vae_decode"), ("taesd_decode", "taesd_decode"), ("preprocess", "preprocess"),
                ("postprocess", "postprocess")]
        for key, label in rows:
            lv = m["stages_ms"].get(key)
            pv = [py["runs"][i]["modes"].get(mode, {}).get("stages_ms", {}).get(key) for i in impls]
            if not lv and not any(pv):
                continue
            w(f"| {mode} | {label} | {fmt(lv['p50']) if lv else '—'} | " +
              " | ".join(fmt(p["p50"]) if p else "—" for p in pv) + " |")
        pv = [py["runs"][i]["modes"].get(mode) for i in impls]
        model_calls = m["model_stages_ms"]["samples"]
        rest = [e - c for e, c in zip(m["e2e_ms"]["samples"], model_calls)]
        w(f"| {mode} | model calls (sum) | {fmt(m['model_stages_ms']['p50'])} | " +
          " | ".join(fmt(p["model_calls_ms"]["p50"]) if p else "—" for p in pv) + " |")
        w(f"| {mode} | everything else (e2e − model calls) | {fmt(statistics.median(rest))} | " +
          " | ".join(fmt(p["overhead_ms"]["p50"]) if p else "—" for p in pv) + " |")
        w(f"| {mode} | livefill: inside ONNX Runtime's Run | {fmt(m['ort_run_ms']['p50'])} | " +
          " | ".join("—" for _ in pv) + " |")
        w(f"| {mode} | livefill: e2e − Run (all of livefill's own work) | {fmt(m['overhead_ms']['p50'])} "
          f"({m['overhead_percent']['p50']:.2f} %) | " + " | ".join("—" for _ in pv) + " |")
    if "text_encode_first_ms" in lf:
        w()
        w(f"livefill text encoder on a new prompt: p50 {fmt(lf['text_encode_first_ms']['p50'])} ms; "
          "a repeated prompt is served from the embedding cache.")
    if "taesd_decode_ms" in lf:
        w(f"livefill TAESD decode at {lf['size']}×{lf['size']}: p50 {fmt(lf['taesd_decode_ms']['p50'])} ms "
          f"(p95 {fmt(lf['taesd_decode_ms']['p95'])}).")
    w()
    print("\n".join(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
