#!/usr/bin/env python3
"""tests/gpu/run_on_gpu.sh's bookkeeping: execution-provider proof, result merging, the summary.

    gpu_report.py providers --step NAME --dir DIR --log LOG --device cuda|cpu --tsv FILE
    gpu_report.py merge --out FILE PYTHON.json...
    gpu_report.py summary --run RUNDIR --out OUTDIR

Standard library only: it must work on a machine where no wheel could be installed.
"""

from __future__ import annotations

import argparse
import csv
import json
import re
import sys
import time
from pathlib import Path

ANSI = re.compile(r"\x1b\[[0-9;]*m")
PROVIDER_IN_LOG = re.compile(r'provider="?([A-Za-z]+ExecutionProvider)')
# livefill's and ONNX Runtime's words for work that went to the CPU instead (livefill says so when
# `--device auto` finds no usable CUDA; ONNX Runtime when a session silently lost its CUDA EP) ...
FALLBACK_WORDS = ("running on CPU", "has no CUDA execution provider", "Failed to create CUDAExecutionProvider",
                  "CUDA_PATH is set but CUDA wasn't able to be loaded")
# ... and for a CUDA EP that could not be had at all (livefill then stops: no silent fallback).
UNAVAILABLE_WORDS = ("could not be registered",)
NOTE_WORDS = {
    "were not assigned to the preferred execution providers": "ONNX Runtime put some nodes on the CPU "
    "(it does so for shape computations on purpose)",
    "Memcpy nodes are added": "ONNX Runtime added device↔host copies to a graph",
    "CUDA graph capture is not possible": "CUDA graph capture refused, loaded without it",
    "has no effect on": "--cuda-graph has no effect on this device",
}
BAD = ("FALLBACK", "CUDA FAILED", "NO EVIDENCE")
GOALS = {"live_ms": 15.0, "inpaint_ms": 40.0, "diffusers_x": 5.0, "optimum_x": 1.3}


def load_json(path: Path):
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def read_lines(path: Path) -> list[str]:
    try:
        return [ANSI.sub("", line) for line in path.read_text(errors="replace").splitlines()]
    except OSError:
        return []


# --------------------------------------------------------------------------- providers


def provider_rows(step: str, folder: Path, logs: list[Path], device: str, step_ok: bool = True) -> list[dict]:
    expected = "CUDAExecutionProvider" if device == "cuda" else "CPUExecutionProvider"
    rows = []

    def add(source, what, found, want=expected, weak=False):
        # weak: says what was asked for, not what a session got (ONNX Runtime's start-up line).
        verdict = ("info" if weak else "ok") if found == want else "FALLBACK"
        rows.append({"step": step, "source": source, "what": what, "expected": want, "found": found,
                     "verdict": verdict})

    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        data = load_json(path)
        if not isinstance(data, dict):
            continue
        if data.get("implementation") == "livefill":
            if "execution_provider" in data:
                add(path.name, "livefill in process (bench report)", data["execution_provider"])
            daemon = (data.get("socket") or {}).get("daemon")
            if daemon:
                add(path.name, "livefill daemon (its hello)", daemon.get("execution_provider"))
        for impl, run in (data.get("runs") or {}).items():
            for session, got in (run.get("session_providers") or {}).items():
                add(path.name, f"{impl} {session} session", got[0] if got else None)
            if "weights_on" in run:
                want = "cuda:0" if device == "cuda" else "cpu"
                add(path.name, f"{impl} UNet weights ({run.get('dtype')})", run["weights_on"], want)
    notes = {}
    seen = set()
    for log in logs:
        for line in read_lines(log):
            m = PROVIDER_IN_LOG.search(line)
            if m:
                ready = "ONNX Runtime ready" in line
                what = "ONNX Runtime ready (the device asked for)" if ready else (
                    "model loaded + warmed up" if "warmed up" in line else
                    "model loaded" if "model loaded" in line else "log line")
                add(log.name, f"log: {what}", m.group(1), weak=ready)
            if device == "cuda":
                for words, found, verdict in ((FALLBACK_WORDS, "CPU fallback", "FALLBACK"),
                                              (UNAVAILABLE_WORDS, "CUDA EP not registered", "CUDA FAILED")):
                    hit = next((w for w in words if w in line), None)
                    key = (log.name, verdict, line.strip()[-120:])
                    if hit and key not in seen:
                        seen.add(key)
                        rows.append({"step": step, "source": log.name, "what": "log: …" + line.strip()[-150:],
                                     "expected": expected, "found": found, "verdict": verdict})
            for word, meaning in NOTE_WORDS.items():
                if word in line:
                    notes[meaning] = notes.get(meaning, 0) + 1
    for meaning, n in notes.items():
        rows.append({"step": step, "source": "logs", "what": f"note: {meaning} ({n}×)", "expected": "",
                     "found": "", "verdict": "note"})
    if not any(r["verdict"] not in ("note", "info") for r in rows):
        # A step that failed before loading anything shows nothing: its failure is recorded as such.
        rows.append({"step": step, "source": str(folder.name), "what": "no provider evidence found",
                     "expected": expected, "found": None,
                     "verdict": "NO EVIDENCE" if step_ok else "none (step failed)"})
    return rows


def cmd_providers(args) -> int:
    logs = [Path(p) for p in args.log] + sorted(Path(args.dir).glob("*.log")) + sorted(Path(args.dir).glob("*.txt"))
    rows = provider_rows(args.step, Path(args.dir), logs, args.device, args.step_ok == 1)
    with open(args.tsv, "a", newline="") as f:
        w = csv.writer(f, delimiter="\t")
        for r in rows:
            w.writerow([r["step"], r["source"], r["what"], r["expected"], r["found"], r["verdict"]])
    bad = [r for r in rows if r["verdict"] in BAD]
    ok = [r for r in rows if r["verdict"] == "ok"]
    for r in bad:
        print(f"!!! {args.step}: {r['what']} ({r['source']}): expected {r['expected']}, found {r['found']}")
    print(f"{args.step}: {len(ok)} provider checks ok, {len(bad)} failed")
    return 1 if bad else 0


# --------------------------------------------------------------------------- merge


def cmd_merge(args) -> int:
    merged = None
    for p in args.inputs:
        data = load_json(Path(p))
        if not data:
            continue
        if merged is None:
            merged = data
        else:
            merged.setdefault("runs", {}).update(data.get("runs", {}))
    if merged is None:
        print("merge: no baseline results", file=sys.stderr)
        return 1
    Path(args.out).write_text(json.dumps(merged, indent=1))
    return 0


# --------------------------------------------------------------------------- summary


def fmt(ms) -> str:
    if ms is None:
        return "—"
    return f"{ms:,.1f}" if ms >= 100 else f"{ms:.2f}"


def pp(entry) -> str:
    return f"{fmt(entry['p50'])} / {fmt(entry['p95'])}" if entry else "—"


def ratio(a, b) -> float | None:
    return a / b if a and b else None


def fx(x) -> str:
    return f"{x:.2f}×" if x else "—"


def read_tsv(path: Path, columns: int) -> list[list[str]]:
    """The rows of a tab-separated file the script appends to that have at least ``columns``
    fields (a row cut short by a killed step is skipped); none when the file is missing."""
    try:
        with open(path) as f:
            return [row for row in csv.reader(f, delimiter="\t") if len(row) >= columns]
    except OSError:
        return []


def read_steps(run: Path) -> list[dict]:
    return [{"step": row[0], "status": row[1], "rc": row[2], "start": float(row[3] or 0),
             "end": float(row[4] or 0), "seconds": int(float(row[5] or 0)), "note": row[6]}
            for row in read_tsv(run / "steps.tsv", 7)]


def read_providers(run: Path) -> list[dict]:
    names = ("step", "source", "what", "expected", "found", "verdict")
    return [dict(zip(names, row)) for row in read_tsv(run / "providers.tsv", len(names))]


def livefill_modes(data) -> dict:
    return (data or {}).get("modes", {})


def socket_modes(data) -> dict:
    return ((data or {}).get("socket") or {}).get("modes", {})


def gpu_memory(run: Path, steps: list[dict]) -> dict:
    samples = []
    try:
        for line in (run / "gpu-mem.csv").read_text().splitlines():
            parts = [p.strip() for p in line.split(",")]
            if len(parts) >= 3:
                samples.append((float(parts[0]), float(parts[1]), float(parts[2])))
    except (OSError, ValueError):
        pass
    apps = []
    try:
        for line in (run / "gpu-apps.csv").read_text().splitlines():
            parts = line.split(",", 3)
            if len(parts) == 4:
                apps.append((float(parts[0]), int(parts[1]), float(parts[2]), parts[3].strip()))
    except (OSError, ValueError):
        pass
    out = {"samples": len(samples), "total_mib": samples[0][2] if samples else None,
           "idle_mib": min(s[1] for s in samples) if samples else None, "per_step": {}, "processes": {}}
    for st in steps:
        inside = [s[1] for s in samples if st["start"] <= s[0] <= st["end"]]
        if inside:
            out["per_step"][st["step"]] = {"peak_mib": max(inside), "samples": len(inside)}
        kinds = {}
        for t, pid, used, cmd in apps:
            if st["start"] <= t <= st["end"]:
                kind = ("livefill serve (daemon)" if " serve " in f" {cmd} " else
                        "livefill bench (in process)" if " bench " in f" {cmd} " and "--socket-only" not in cmd else
                        "python (baseline)" if "python" in cmd else cmd.split(" ")[0] or f"pid {pid}")
                kinds[kind] = max(kinds.get(kind, 0.0), used)
        if kinds:
            out["processes"][st["step"]] = kinds
    return out


def goal_verdict(measured, target, higher_better: bool, comparable: bool) -> str:
    if measured is None:
        return "not measured"
    met = measured >= target if higher_better else measured <= target
    word = "met" if met else "NOT met"
    return word if comparable else f"({word}; not the target setup)"


def cmd_summary(args) -> int:
    run, out = Path(args.run), Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    meta = load_json(run / "meta.json") or {}
    steps = read_steps(run)
    providers = read_providers(run)
    device = meta.get("device", "?")
    size = meta.get("size")
    comparable = device == "cuda" and size == 512 and not meta.get("tiny_model")
    main = load_json(run / "main" / "full-livefill.json")
    sock_json = load_json(run / "main" / "full-socket.json")
    if main is not None and "socket" not in main and sock_json and "socket" in sock_json:
        main["socket"] = sock_json["socket"]  # the step stopped before run_bench.sh merged them
    py = {impl: (load_json(run / impl / "full-python.json") or {}).get("runs", {}).get(impl)
          for impl in ("diffusers", "optimum")}
    graph = load_json(run / "graph" / "full-livefill.json")
    fp32 = load_json(run / "fp32" / "full-livefill.json")
    layer = load_json(run / "main" / "full-layer.json")
    lf, sock = livefill_modes(main), socket_modes(main)

    def p50(d, mode, key="e2e_ms"):
        m = d.get(mode) if d else None
        if not m:
            return None
        return (m.get(key) or m).get("p50") if key else m.get("p50")

    # Goals.
    goals = []
    for mode, key, label in (("live", "live_ms", "live img2img, 2 UNet passes + TAESD decode"),
                             ("inpaint", "inpaint_ms", "inpaint, strength 1, 4 steps, full VAE")):
        m = lf.get(mode)
        shape = ""
        if m:
            stages = m.get("stages_ms", {})
            want_steps, want_stage = (2, "taesd_decode") if mode == "live" else (4, "vae_decode")
            if m.get("unet_steps") != want_steps or want_stage not in stages:
                shape = f" (ran {m.get('unet_steps')} UNet passes, stages {sorted(stages)})"
        for where, val in (("in process", p50(lf, mode)), ("through the daemon socket", (sock.get(mode) or {}).get("p50"))):
            goals.append({"goal": f"{label}, {size}², {where}{shape}", "target": f"≤ {GOALS[key]:g} ms p50",
                          "measured": val, "unit": "ms",
                          "verdict": goal_verdict(val, GOALS[key], False, comparable and not shape)})
    for impl, key in (("diffusers", "diffusers_x"), ("optimum", "optimum_x")):
        run_ = py.get(impl)
        per_mode = {}
        for mode, m in lf.items():
            b = ((run_ or {}).get("modes", {}).get(mode) or {}).get("e2e_ms", {}).get("p50")
            per_mode[mode] = ratio(b, m["e2e_ms"]["p50"])
        vals = [v for v in per_mode.values() if v]
        worst = min(vals) if vals else None
        detail = ", ".join(f"{k} {fx(v)}" for k, v in per_mode.items() if v)
        if impl == "diffusers":
            name = f"diffusers (torch, {(run_ or {}).get('dtype', 'fp16 on cuda')})"
        else:
            name = f"optimum's ONNX Runtime pipelines ({(run_ or {}).get('provider', 'CUDA EP on cuda')})"
        goals.append({"goal": f"faster than {name}, end to end, every mode (worst of: {detail or '—'})",
                      "target": f"≥ {GOALS[key]:g}×", "measured": worst, "unit": "×",
                      "verdict": goal_verdict(worst, GOALS[key], True, comparable)})

    mem = gpu_memory(run, steps)
    bad_providers = [r for r in providers if r["verdict"] in BAD]
    failed = [s for s in steps if s["status"] not in ("ok", "skipped", "not started", "timeout")]
    stopped = [s for s in steps if s["status"] == "timeout"]
    not_started = [s for s in steps if s["status"] == "not started"]
    if bad_providers:
        headline = f"FAILED: {len(bad_providers)} execution-provider checks did not show {meta.get('expected_provider')}"
        if failed:
            headline += f"; {len(failed)} step(s) failed: " + ", ".join(s["step"] for s in failed)
    elif failed:
        headline = f"{len(failed)} step(s) failed: " + ", ".join(s["step"] for s in failed)
    else:
        headline = "every step that ran succeeded" if not stopped else "no step failed"
    if stopped:
        headline += f"; {len(stopped)} stopped at the budget: " + ", ".join(s["step"] for s in stopped)
    if not_started:
        headline += f"; {len(not_started)} not started (budget): " + ", ".join(s["step"] for s in not_started)
    if not bad_providers and any(r["verdict"] == "ok" for r in providers):
        headline += f"; {meta.get('expected_provider')} shown for every session checked"

    w = []
    w.append(f"# livefill GPU benchmark — {meta.get('started', '?')}")
    w.append("")
    w.append(f"**{headline}.**")
    w.append("")
    w.append(f"- device `{device}`; {meta.get('gpu') or 'no GPU'}; model `{meta.get('main_model')}`; {size}×{size}; "
             f"{meta.get('iters')} timed runs (+{meta.get('warmup')} warm-up) per mode; 4 steps; "
             f"{meta.get('threads')} ONNX Runtime threads")
    w.append(f"- budget {meta.get('budget')} s, used {meta.get('elapsed', '?')} s; script exit status {meta.get('exit', '?')}")
    w.append(f"- livefill: {meta.get('build') or meta.get('livefill_version', '?')}")
    ort_lib = meta.get("ort_lib") or next((m.group(1) for name in ("main.log", "layer.log", "graph.log")
                                           for line in read_lines(run / name)
                                           for m in [re.search(r"library=(\S+)", line)] if m), "?")
    w.append(f"- ONNX Runtime library: `{ort_lib}`")
    w.append(f"- Python: {meta.get('python_versions', '?')}")
    if not comparable:
        w.append(f"- **Not the issue's target setup** (device {device}, size {size}"
                 f"{', tiny model' if meta.get('tiny_model') else ''}): verdicts in brackets are for the record only.")
    w.append("")
    w.append("## Goals (issue #11)")
    w.append("")
    w.append("| goal | target | measured | verdict |")
    w.append("|---|---|---|---|")
    for g in goals:
        val = "—" if g["measured"] is None else (f"{fmt(g['measured'])} ms" if g["unit"] == "ms" else fx(g["measured"]))
        w.append(f"| {g['goal']} | {g['target']} | {val} | {g['verdict']} |")
    w.append("")
    w.append("## Steps (in priority order)")
    w.append("")
    w.append("| step | status | seconds | note |")
    w.append("|---|---|---|---|")
    for s in steps:
        w.append(f"| {s['step']} | {s['status']} | {s['seconds']} | {s['note']} |")
    w.append("")
    w.append(f"## Execution provider (expected `{meta.get('expected_provider')}` everywhere)")
    w.append("")
    if providers:
        w.append("| step | evidence | source | found | verdict |")
        w.append("|---|---|---|---|---|")
        for r in providers:
            w.append(f"| {r['step']} | {r['what']} | {r['source']} | {r['found']} | {r['verdict']} |")
    else:
        w.append("No step ran that could show it.")
    w.append("")
    w.append("## End to end, ms p50 / p95")
    w.append("")
    impls = [i for i in ("diffusers", "optimum") if py.get(i)]
    w.append("| mode | UNet passes | livefill in process | livefill via socket | " +
             "".join(f"{i} | " for i in impls) + "".join(f"{i} / livefill | " for i in impls))
    w.append("|---|---|---|---|" + "---|" * (2 * len(impls)))
    for mode, m in lf.items():
        cells = [pp(m["e2e_ms"]), pp(sock.get(mode))]
        rs = []
        for i in impls:
            b = py[i]["modes"].get(mode)
            cells.append(pp(b["e2e_ms"]) if b else "—")
            rs.append(fx(ratio(b["e2e_ms"]["p50"], m["e2e_ms"]["p50"])) if b else "—")
        w.append(f"| {mode} | {m.get('unet_steps')} | " + " | ".join(cells + rs) + " |")
    if not lf:
        w.append("| — | livefill's main run produced no results | | |")
    if main:
        extra = []
        if "taesd_decode_ms" in main:
            extra.append(f"TAESD decode p50 {fmt(main['taesd_decode_ms']['p50'])} ms")
        if "text_encode_first_ms" in main:
            extra.append(f"text encoder, new prompt, p50 {fmt(main['text_encode_first_ms']['p50'])} ms")
        if "load_ms" in main:
            extra.append(f"model load {main['load_ms'] / 1000:.1f} s")
        w.append("")
        w.append("livefill: " + "; ".join(extra) + ".")
    table = run / "compare" / "table.md"
    if table.exists():
        w.append("")
        w.append("<details><summary>compare.py: per stage, livefill vs the baselines</summary>")
        w.append("")
        w.append(table.read_text().strip())
        w.append("")
        w.append("</details>")
    w.append("")
    w.append("## CUDA graphs (`--cuda-graph`), livefill alone, ms p50 / p95")
    w.append("")
    if graph:
        gl, gs = livefill_modes(graph), socket_modes(graph)
        w.append("| mode | in process, plain | in process, graphs | gain | socket, plain | socket, graphs | gain |")
        w.append("|---|---|---|---|---|---|---|")
        for mode, m in gl.items():
            a, b = lf.get(mode), m
            sa, sb = sock.get(mode), gs.get(mode)
            w.append(f"| {mode} | {pp(a['e2e_ms']) if a else '—'} | {pp(b['e2e_ms'])} | "
                     f"{fx(ratio(a['e2e_ms']['p50'], b['e2e_ms']['p50'])) if a else '—'} | {pp(sa)} | {pp(sb)} | "
                     f"{fx(ratio(sa['p50'], sb['p50'])) if sa and sb else '—'} |")
    else:
        w.append("Not measured (see Steps).")
    w.append("")
    w.append("## fp32 vs fp16, livefill in process, ms p50 / p95")
    w.append("")
    if fp32:
        w.append(f"fp32 model `{fp32.get('model')}` vs the main run's `{(main or {}).get('model')}`.")
        w.append("")
        w.append("| mode | fp16 (main) | fp32 | fp32 / fp16 |")
        w.append("|---|---|---|---|")
        for mode, m in livefill_modes(fp32).items():
            a = lf.get(mode)
            w.append(f"| {mode} | {pp(a['e2e_ms']) if a else '—'} | {pp(m['e2e_ms'])} | "
                     f"{fx(ratio(m['e2e_ms']['p50'], a['e2e_ms']['p50'])) if a else '—'} |")
    else:
        w.append("Not measured (see Steps).")
    w.append("")
    w.append(f"## A {meta.get('layer')}² layer through the daemon's socket (`bench --layer`), ms p50 / p95")
    w.append("")
    if layer:
        lm = socket_modes(layer)
        w.append("| mode | layer via socket | same mode at the model size via socket | difference (pixel work + transfer) |")
        w.append("|---|---|---|---|")
        for mode, m in lm.items():
            base = sock.get(mode)
            diff = m["p50"] - base["p50"] if base else None
            w.append(f"| {mode} | {pp(m)} | {pp(base)} | {fmt(diff) + ' ms' if diff is not None else '—'} |")
    else:
        w.append("Not measured (see Steps).")
    mem_txt = run / "main" / "full-gpu-memory.txt"
    w.append("")
    w.append("## GPU memory (nvidia-smi)")
    w.append("")
    if mem["samples"]:
        w.append(f"{mem['samples']} samples, one a second; card total {mem['total_mib']:.0f} MiB; lowest seen "
                 f"(idle) {mem['idle_mib']:.0f} MiB.")
        w.append("")
        w.append("| step | peak used (MiB, whole card) | peak per process (MiB) |")
        w.append("|---|---|---|")
        for st in steps:
            ps = mem["per_step"].get(st["step"])
            if ps:
                procs = mem["processes"].get(st["step"], {})
                w.append(f"| {st['step']} | {ps['peak_mib']:.0f} | " +
                         ("; ".join(f"{k}: {v:.0f}" for k, v in procs.items()) or "not listed") + " |")
    else:
        w.append("No nvidia-smi samples (no nvidia-smi on this machine).")
    if mem_txt.exists():
        w.append("")
        w.append(f"Resident while the main step's daemon was up (model `{meta.get('main_model')}`):")
        w.append("")
        w.append("```")
        w.append(mem_txt.read_text().strip())
        w.append("```")
    w.append("")
    w.append("## Commands")
    w.append("")
    w.append("```")
    try:
        w.append((run / "commands.txt").read_text().strip())
    except OSError:
        w.append("(none recorded)")
    w.append("```")
    tails = [s for s in steps if s["status"] not in ("ok", "skipped", "not started")]
    if tails:
        w.append("")
        w.append("## Failed steps: the end of their logs")
        for s in tails:
            w.append("")
            w.append(f"### {s['step']} ({s['status']}, rc {s['rc']})")
            w.append("")
            w.append("```")
            w.extend(read_lines(run / f"{s['step']}.log")[-25:])
            w.append("```")
    w.append("")
    w.append(f"Everything else: logs.tar.gz (the run folder: step logs, daemon logs, JSON with every sample, "
             f"nvidia-smi samples, versions in machine.txt).")
    (out / "summary.md").write_text("\n".join(w) + "\n")
    summary = {"headline": headline, "meta": meta, "goals": goals, "steps": steps, "providers": providers,
               "gpu_memory": {k: v for k, v in mem.items()},
               "results": {"main_in_process": {k: v["e2e_ms"] | {"samples": None} for k, v in lf.items()},
                           "main_socket": {k: v | {"samples": None} for k, v in sock.items()},
                           "baselines": {i: {k: v["e2e_ms"] | {"samples": None} for k, v in (py[i] or {}).get("modes", {}).items()}
                                         for i in impls},
                           "cuda_graph_in_process": {k: v["e2e_ms"] | {"samples": None}
                                                     for k, v in livefill_modes(graph).items()},
                           "cuda_graph_socket": {k: v | {"samples": None} for k, v in socket_modes(graph).items()},
                           "fp32_in_process": {k: v["e2e_ms"] | {"samples": None} for k, v in livefill_modes(fp32).items()},
                           "layer_socket": {k: v | {"samples": None} for k, v in socket_modes(layer).items()}},
               "written": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    (out / "summary.json").write_text(json.dumps(summary, indent=1, default=str))
    return 1 if bad_providers else 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("providers")
    p.add_argument("--step", required=True)
    p.add_argument("--dir", required=True)
    p.add_argument("--log", action="append", default=[])
    p.add_argument("--device", choices=("cuda", "cpu"), required=True)
    p.add_argument("--step-ok", type=int, default=1, help="1 if the step succeeded")
    p.add_argument("--tsv", required=True)
    m = sub.add_parser("merge")
    m.add_argument("--out", required=True)
    m.add_argument("inputs", nargs="+")
    s = sub.add_parser("summary")
    s.add_argument("--run", required=True)
    s.add_argument("--out", required=True)
    args = ap.parse_args()
    return {"providers": cmd_providers, "merge": cmd_merge, "summary": cmd_summary}[args.cmd](args)


if __name__ == "__main__":
    sys.exit(main())
