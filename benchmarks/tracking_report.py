#!/usr/bin/env python3
"""Turn a ``dphm bench tracking`` output folder into docs/tracking-benchmark.md + PNG plots.

    python benchmarks/tracking_report.py RESULT_DIR [RESULT_DIR …] [--docs docs] [--label "H100 full run"]

A RESULT_DIR holds ``tracking.json`` (and ``renders.npz`` for the error images); with several,
each part comes from the first run that has it and the report says which run gave what. Writes
``DOCS/tracking-benchmark.md`` and ``DOCS/images/tracking-*.png`` (needs matplotlib: the
``bench`` extra, ``pip install -e "./backend[bench]"``). Works on partial results (any subset
of fidelity / sweeps / speed).
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np

ROWS = ("ours", "no_prior", "3dmm")
ROW_NAMES = {"ours": "DPHM priors (ours)", "no_prior": "no prior (ℓ2, NPHM-style)", "3dmm": "ICT-FaceKit 3DMM"}
ROW_COLOURS = {"ours": "#d62728", "no_prior": "#1f77b4", "3dmm": "#7f7f7f"}
SWEEP_AXES = {"noise": "sensor noise (× the Kinect model's σ)", "points": "observed points per frame",
              "distance": "head distance (m)"}
PHASES = ("read", "identity", "repose", "track", "refine", "mesh_canonical", "mesh")
ONE_OFF = ("identity", "mesh_canonical")  # phases paid once per take, not per frame
ERROR_RANGE_MM = 6.0  # the recipe's colour range for error renderings
BIAS_FREE = "_bias_free"  # region suffix: against the GT as the biased sensor places it (dphm.eval.protocol)


def fmt(v, digits: int = 3) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "–"
    return f"{v:.{digits}f}"


def device_line(result: dict) -> str:
    dev = result.get("device", {})
    gpu = dev.get("gpu")
    where = f"GPU {gpu['name']} ({gpu['memory_gib']} GiB)" if gpu else "CPU only"
    return (f"tracker device `{dev.get('requested', '?')}` — {where}; host {dev.get('cpu_count')} CPU cores "
            f"({dev.get('processor') or dev.get('platform', '?')}); load average at start "
            f"{', '.join(f'{x:.1f}' for x in dev.get('load_average', [])) or '?'}")


def default_label(result: dict) -> str:
    gpu = result.get("device", {}).get("gpu")
    size = "quick (smoke size)" if result.get("quick") else "full"
    return f"{'GPU ' + gpu['name'] if gpu else 'CPU'} {size} run"


# ------------------------------------------------------------------------------ tables
def table_head(*columns: str) -> list[str]:
    return ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]


def fidelity_table(summary: dict, suffix: str = "") -> list[str]:
    lines = table_head("row", *(f"{region} {m}" for region in ("face", "full")
                                for m in ("CD-L1 (mm)", "CD-L2 (mm²)", "NC", "F@1mm", "F@5mm")))
    for row in ROWS:
        m = summary.get(row, {})
        if "face" + suffix not in m:
            continue
        cells = []
        for region in ("face" + suffix, "full" + suffix):
            r = m[region]
            cells += [fmt(r["chamfer_l1_mm"]), fmt(r["chamfer_l2_mm2"]), fmt(r["normal_consistency"]),
                      fmt(r["fscore@1mm"]), fmt(r["fscore@5mm"])]
        lines.append(f"| {ROW_NAMES[row]} | " + " | ".join(cells) + " |")
    return lines


def depth_table(summary: dict) -> list[str]:
    lines = table_head("row", "L1 (mm, Σ\\|dx\\|)", "L2 (mm, Euclidean)", "normal \\|cos\\|", "recall@1mm",
                       "recall@2.5mm", "recall@5mm", "L2 without ICP (mm)", "ICP scale")
    for row in ROWS:
        m = summary.get(row, {})
        d, raw = m.get("depth"), m.get("depth_raw", {})
        if not d or "chamfer_l1_mm" not in d:
            continue
        lines.append(f"| {ROW_NAMES[row]} | {fmt(d['chamfer_l1_mm'])} | {fmt(d['chamfer_l2_mm'])} | "
                     f"{fmt(d['normal_cosine'])} | {fmt(d['recall@1mm'])} | {fmt(d['recall@2.5mm'])} | "
                     f"{fmt(d['recall@5mm'])} | {fmt(raw.get('chamfer_l2_mm'))} | {fmt(d.get('icp_scale'), 4)} |")
    return lines


def per_sequence_table(sequences: list[dict]) -> list[str]:
    """Face / full CD-L1 per sequence and row; bias-free values in brackets where scored."""
    lines = table_head("sequence", *(f"{ROW_NAMES[r]} face / full CD-L1 (mm)" for r in ROWS))
    for seq in sequences:
        cells = []
        for row in ROWS:
            s = seq["rows"].get(row, {}).get("summary", {})
            cell = "–"
            if "face" in s:
                cell = f"{fmt(s['face']['chamfer_l1_mm'], 2)} / {fmt(s['full']['chamfer_l1_mm'], 2)}"
            if "face" + BIAS_FREE in s:
                cell += (f" ({fmt(s['face' + BIAS_FREE]['chamfer_l1_mm'], 2)} / "
                         f"{fmt(s['full' + BIAS_FREE]['chamfer_l1_mm'], 2)})")
            cells.append(cell)
        lines.append(f"| `{seq['name']}` | " + " | ".join(cells) + " |")
    return lines


def sweep_table(name: str, points: list[dict], nominal) -> list[str]:
    """Face CD-L1 per row and the prior's gain; the same bias-free where scored."""
    suffixes = ("", BIAS_FREE) if any("face" + BIAS_FREE in p["summary"].get("ours", {}) for p in points) else ("",)
    columns = []
    for suffix in suffixes:
        tag = ", bias-free" if suffix else ""
        columns += [f"{ROW_NAMES[r]} face CD-L1{tag}" for r in ROWS] + [f"prior gain vs no prior{tag}"]
    lines = table_head(SWEEP_AXES[name], *columns)
    for p in points:
        s, cells = p["summary"], []
        for suffix in suffixes:
            vals = {r: s.get(r, {}).get("face" + suffix, {}).get("chamfer_l1_mm") for r in ROWS}
            gain = (1 - vals["ours"] / vals["no_prior"]) if vals["ours"] and vals["no_prior"] else None
            cells += [fmt(vals[r]) for r in ROWS] + [fmt(100 * gain, 1) + " %" if gain is not None else "–"]
        mark = " (nominal)" if p["value"] == nominal else ""
        lines.append(f"| {p['value']:g}{mark} | " + " | ".join(cells) + " |")
    return lines


def goals_table(goals: dict) -> list[str]:
    names = {"face_cd_l1_nominal": "face CD-L1 ≤ 0.8 mm at nominal noise (ours)",
             "prior_gain_noise": "prior beats no prior by ≥ 15 % (face CD-L1) at the noisiest setting",
             "prior_gain_points": "prior beats no prior by ≥ 15 % (face CD-L1) at the sparsest setting"}
    names.update({k + BIAS_FREE: v.replace("face CD-L1", "face CD-L1, bias-free") for k, v in names.items()})
    lines = table_head("goal", "value", "met")
    for key, g in goals.items():
        value = (f"{fmt(g['value_mm'])} mm" if "value_mm" in g
                 else f"{fmt(100 * g['value'], 1)} % (at {g['setting']:g})")
        lines.append(f"| {names.get(key, key)} | {value} | {'yes' if g['met'] else '**no**'} |")
    return lines


def speed_tables(speed: dict) -> list[str]:
    lines = []
    for device, d in speed.get("devices", {}).items():
        ours, ref = d["ours"], d["reference"]
        kind = "GPU" if device.startswith("cuda") else "CPU"
        lines += [f"#### {kind} (`{device}`, {ours['frames']} frames, torch threads {ours.get('threads')})", "",
                  *table_head("phase", "ours: s total", "ours: frames/s", "reference: s total", "reference: frames/s")]
        for ph in PHASES:
            o, r = ours["phases_s"].get(ph), ref["phases_s"].get(ph)
            if o is None and r is None:
                continue
            fo, fr = ours["fps"].get(ph), ref["fps"].get(ph)
            name = {"mesh": "mesh (ours: inversion per frame; reference: dense 256³ per frame)",
                    "mesh_canonical": "canonical mesh (once)"}.get(ph, ph)
            scaled = f" (×{ref['scaled'][ph]:g} scaled)" if ph in ref.get("scaled", {}) else ""
            lines.append(f"| {name} | {fmt(o, 2)} | {fmt(fo, 2)} | {fmt(r, 2)}{scaled} | {fmt(fr, 3)} |")
        lines.append(f"| **end to end (phase sum)** | {fmt(ours['total_s'], 1)} | **{fmt(ours['end_to_end_fps'], 3)}** | "
                     f"{fmt(ref['total_s'], 1)} | **{fmt(ref['end_to_end_fps'], 4)}** |")
        lines.append(f"| wall (incl. model load, result writing) | {fmt(ours['wall_s'], 1)} | | {fmt(ref['wall_s'], 1)} "
                     f"(scaled schedule not applied) | |")
        if "startup_s" in ours:
            lines.append(f"| start-up before the run (once per backend process; not in the sums) | "
                         f"{fmt(ours['startup_s'], 1)} | | {fmt(ref.get('startup_s'), 1)} | |")
        per_frame = {k: sum(v for ph, v in run["phases_s"].items() if ph not in ONE_OFF) / run["frames"]
                     for k, run in (("ours", ours), ("reference", ref))}
        lines.append(f"| per frame once identity and canonical mesh are done (long takes) | "
                     f"{fmt(1000 * per_frame['ours'], 0)} ms | **{fmt(1 / per_frame['ours'], 2)}** | "
                     f"{fmt(1000 * per_frame['reference'], 0)} ms | {fmt(1 / per_frame['reference'], 3)} |")
        dense = ref.get("dense_mesh", {})
        canon = ours.get("canonical_mesh") or {}
        mem_o = ours.get("peak_cuda_mb") if kind == "GPU" else ours.get("peak_rss_mb")
        mem_r = ref.get("peak_cuda_mb") if kind == "GPU" else ref.get("peak_rss_mb")
        mem_kind = "torch.cuda.max_memory_allocated" if kind == "GPU" else "process ru_maxrss"
        lines += ["", f"- **Ratio** reference / ours (phase sums): **{d['ratio']:.1f}×**.",
                  f"- Canonical meshing (ours, once per sequence): {fmt(canon.get('seconds'), 2)} s at "
                  f"{canon.get('resolution')}³ effective, {100 * canon.get('fraction_evaluated', float('nan')):.1f} % of "
                  f"the grid evaluated, {canon.get('vertices')} vertices.",
                  f"- Dense per-frame marching cubes (reference): {fmt(dense.get('seconds_measured'), 2)} s measured at "
                  f"{dense.get('resolution')}³ on {dense.get('frames_measured')} frame(s)"
                  + (f", × {dense.get('scale_to_256'):g} → {fmt(dense.get('seconds_per_frame'), 1)} s per frame at 256³ "
                     "(extrapolated by the point count)" if dense.get("extrapolated")
                     else f" = {fmt(dense.get('seconds_per_frame'), 2)} s per frame"),
                  f"- Peak memory ({mem_kind}): ours {fmt(mem_o, 0)} MB, reference {fmt(mem_r, 0)} MB"
                  + (f" (dense meshing {fmt(dense.get('peak_cuda_mb'), 0)} MB)" if kind == "GPU" else "") + ".",
                  ""]
        if ref.get("scaled"):
            lines += [f"- The reference ran {', '.join(f'{k} ×1/{v:g}' for k, v in ref['scaled'].items())} of its "
                      "schedule; those phases' times are scaled up by the step ratio (cost per step is constant).", ""]
    return lines


# ------------------------------------------------------------------------------ plots
def plot_sweeps(result: dict, images: Path) -> list[str]:
    import matplotlib.pyplot as plt

    sweeps, nominal = result.get("sweeps", {}), result.get("sweep_nominal", {})
    files = []
    for metric, label, stem in (("face", "face CD-L1 (mm)", "face"), ("full", "full-head CD-L1 (mm)", "full")):
        fig, axes = plt.subplots(1, len(sweeps), figsize=(4.2 * len(sweeps), 3.4), squeeze=False)
        for ax, (name, points) in zip(axes[0], sweeps.items()):
            xs = [p["value"] for p in points]
            for row in ROWS:
                for suffix, style, tag in (("", "o-", ""), (BIAS_FREE, "s--", ", bias-free")):
                    ys = [p["summary"].get(row, {}).get(metric + suffix, {}).get("chamfer_l1_mm", np.nan)
                          for p in points]
                    if np.isfinite(ys).any():
                        ax.plot(xs, ys, style, color=ROW_COLOURS[row], label=ROW_NAMES[row] + tag,
                                alpha=0.6 if suffix else 1.0, markersize=4 if suffix else 6)
            if name in nominal:
                ax.axvline(nominal[name], color="k", lw=0.6, ls=":")
            if name == "points":
                ax.set_xscale("log")
                ax.set_xticks(xs, [f"{x / 1000:g}k" if x >= 1000 else f"{x:g}" for x in xs])
                ax.minorticks_off()
            ax.set_xlabel(SWEEP_AXES[name])
            ax.set_ylabel(label)
            ax.set_ylim(bottom=0)
            ax.grid(alpha=0.3)
        axes[0][0].legend(fontsize=8)
        fig.tight_layout()
        path = images / f"tracking-sweeps-{stem}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        files.append(path.name)
    return files


def plot_per_frame(result: dict, images: Path) -> str | None:
    import matplotlib.pyplot as plt

    seqs = result.get("fidelity", {}).get("sequences", [])
    if not seqs:
        return None
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.2))
    for ax, region in zip(axes, ("face", "full")):
        for k, seq in enumerate(seqs):
            for row in ROWS:
                pf = seq["rows"].get(row, {}).get("per_frame", [])
                if pf:
                    ax.plot([f["frame"] for f in pf], [f[region]["chamfer_l1_mm"] for f in pf], "-", marker=".",
                            color=ROW_COLOURS[row], alpha=1.0 if k == 0 else 0.35,
                            label=ROW_NAMES[row] if k == 0 else None)
        ax.set_xlabel("frame")
        ax.set_ylabel(f"{region} CD-L1 (mm)")
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    path = images / "tracking-per-frame.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path.name


def error_colours(err: np.ndarray, shade: np.ndarray) -> np.ndarray:
    """RGB image: error (mm, NaN = empty) through a colour map, darkened by the shading."""
    from matplotlib import colormaps

    rgb = colormaps["turbo"](np.clip(np.nan_to_num(err.astype(np.float32)) / ERROR_RANGE_MM, 0, 1))[..., :3]
    rgb = rgb * (0.45 + 0.55 * shade.astype(np.float32)[..., None])
    rgb[~np.isfinite(err.astype(np.float32))] = 1.0
    return rgb


def plot_renders(renders_path: Path, images: Path) -> str | None:
    import matplotlib.pyplot as plt
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize

    if not renders_path.is_file():
        return None
    with np.load(renders_path) as z:
        arrays = {k: z[k] for k in z.files}
    frames = sorted({int(k.split("|")[1]) for k in arrays})
    rows = [r for r in ROWS if any(k.startswith(r + "|") for k in arrays)]
    if not frames or not rows:
        return None
    fig, axes = plt.subplots(len(rows) + 1, len(frames), figsize=(2.3 * len(frames) + 0.8, 2.6 * (len(rows) + 1)),
                             squeeze=False)
    for j, frame in enumerate(frames):
        gt = next((arrays[f"{r}|{frame}|gt_shade"] for r in rows if f"{r}|{frame}|gt_shade" in arrays), None)
        if gt is not None:
            g = gt.astype(np.float32)
            axes[0][j].imshow(np.where(g > 0, 0.25 + 0.75 * g, 1.0), cmap="gray", vmin=0, vmax=1)
        axes[0][j].set_title(f"frame {frame}", fontsize=9)
        for i, row in enumerate(rows, start=1):
            key = f"{row}|{frame}|error_mm"
            if key in arrays:
                axes[i][j].imshow(error_colours(arrays[key], arrays[f"{row}|{frame}|shade"]))
    axes[0][0].set_ylabel("ground truth", fontsize=9)
    for i, row in enumerate(rows, start=1):
        axes[i][0].set_ylabel(ROW_NAMES[row], fontsize=8)
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    fig.subplots_adjust(right=0.86, wspace=0.03, hspace=0.08)
    cax = fig.add_axes([0.89, 0.15, 0.025, 0.55])
    fig.colorbar(ScalarMappable(Normalize(0, ERROR_RANGE_MM), "turbo"), cax=cax, label="distance to GT (mm)")
    path = images / "tracking-errors.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path.name


# ------------------------------------------------------------------------------ document
PARTS = ("fidelity", "sweeps", "speed")


def merge_results(result_dirs: list[Path]) -> tuple[dict, Path, list[tuple[dict, list[str]]]]:
    """One result from several ``dphm bench tracking`` runs: each part (fidelity, sweeps, speed)
    from the first run that has it. Returns the merged result, the folder whose error renders
    belong to its fidelity part, and the runs with the parts taken from each."""
    runs = [(d, json.loads((d / "tracking.json").read_text(encoding="utf-8"))) for d in result_dirs]
    merged = {k: v for k, v in runs[0][1].items() if k not in PARTS + ("goals",)}
    renders_dir, used = result_dirs[0], []
    for folder, run in runs:
        taken = [p for p in PARTS if p in run and p not in merged]
        for part in taken:
            merged[part] = run[part]
            if part == "sweeps":
                merged["sweep_nominal"] = run.get("sweep_nominal", {})
        if "fidelity" in taken:
            renders_dir = folder
        if taken:
            used.append((run, taken))
    if len(runs) == 1:
        merged["goals"] = runs[0][1].get("goals", {})
    else:  # the goals depend on fidelity and sweeps, which may now come from different runs
        from dphm.bench.tracking import goals

        merged["goals"] = goals(merged)
    return merged, renders_dir, used


def provenance_lines(used: list[tuple[dict, list[str]]]) -> list[str]:
    """One line per run: which parts it gave, on which device, when, with which model file."""
    lines = []
    for run, parts in used:
        model = run.get("model", {})
        lines.append(f"> **{', '.join(parts)}** (preset `{run.get('settings', {}).get('preset', '?')}`): "
                     f"{device_line(run)}; {run.get('created', '?')}, dphm "
                     f"{run.get('versions', {}).get('dphm')}, torch {run.get('versions', {}).get('torch')}; "
                     f"`{run.get('command', 'dphm bench tracking')}`; head model `{Path(model.get('path', '?')).name}` "
                     f"({model.get('bytes', '?')} bytes, modified {model.get('modified', '?')}).  ")
    return lines


def goal_sweep_lines(run: dict) -> list[str]:
    """The goal settings' sweep tables of a ``--goal-sweeps`` run (mean over its heads)."""
    heads = {len(p.get("runs", [])) for points in run["sweeps"].values() for p in points}
    preset = run.get("settings", {}).get("preset", "?")
    lines = [f"Prior-gain goals from a goal-settings run of preset `{preset}` over {max(heads, default=0)} held-out "
             "head(s) per setting (`dphm bench tracking --only sweeps --goal-sweeps --sweep-sequences N`; mean over "
             "the heads):", ""]
    for name in ("noise", "points"):
        points = run["sweeps"].get(name, [])
        if points:
            lines += [f"*{SWEEP_AXES[name]}*", ""]
            lines += sweep_table(name, points, run.get("sweep_nominal", {}).get(name)) + [""]
    return lines


def build_report(result_dirs: list[Path], docs: Path, label: str | None = None, notes: list[str] = (),
                 goal_dir: Path | None = None) -> Path:
    result, renders_dir, used = merge_results(result_dirs)
    goal_run = None
    if goal_dir is not None:  # the prior-gain goals from a goal-settings run (several heads)
        from dphm.bench.tracking import goals

        goal_run = json.loads((goal_dir / "tracking.json").read_text(encoding="utf-8"))
        result["goals"] = goals({"fidelity": result.get("fidelity", {}), "sweeps": goal_run.get("sweeps", {})})
        used.append((goal_run, ["goal sweeps"]))
    images = docs / "images"
    images.mkdir(parents=True, exist_ok=True)
    label = label or default_label(result)
    s = result.get("settings", {})
    presets = {part: run.get("settings", {}).get("preset") for run, parts in used for part in parts}
    preset_text = (f"`{s.get('preset')}`" if len(set(presets.values())) <= 1 else
                   ", ".join(f"`{name}` ({', '.join(p for p in presets if presets[p] == name)})"
                             for name in dict.fromkeys(presets.values())))
    lines = [
        "# Tracking benchmark",
        "",
        f"> **These are {label} numbers.**  ",
        *provenance_lines(used),
        *[f"> Note: {note}  " for note in notes],
        "",
        f"Generated by `python benchmarks/tracking_report.py` from `tracking.json` of {len(used)} "
        f"`dphm bench tracking` run(s) (above). Protocol and code: "
        "`backend/dphm/bench/tracking.py`, `tracking_speed.py`, `baseline_3dmm.py`, `backend/dphm/eval/protocol.py`.",
        "",
        "## Reproduce",
        "",
        "```sh",
        "# CPU smoke size (tiny preset, 1 sequence × 4 frames, one value per sweep; ~7 min on 2 busy cores)",
        "dphm bench tracking --quick --out out/bench-tracking",
        "# full size on one GPU (speed on GPU and CPU first; no tracking run starts after 300 s; ≤ 7 min on an H100)",
        "dphm bench tracking --device cuda --out out/bench-tracking --work /tmp/dphm-bench --time-limit 300",
        "pip install -e \"./backend[bench]\" && python benchmarks/tracking_report.py out/bench-tracking [MORE_RUNS…] --label \"...\"",
        "```",
        "",
        "Simulated sequences are cached under `--work`; `--only fidelity,sweeps,speed` picks parts; sizes: "
        "`--sequences --frames --sweep-sequences --sweep-frames --speed-frames --eval-every --metric-points --preset`; "
        "`--goal-sweeps` runs only the goal settings (noisiest, sparsest, nominal), e.g. over three heads with "
        "`--sweep-sequences 3`.",
        "",
        "## Protocol",
        "",
        f"- **Data**: `dphm simulate` sequences of held-out ICT-FaceKit identities (seeds from {s.get('seed0')}), "
        f"expressions and head motion, Azure-Kinect noise model, `{s.get('mode')}` at {s.get('fps')} fps; fidelity: "
        f"{s.get('sequences')} sequence(s) × {s.get('frames')} frames, frames 0, {s.get('eval_every')}, "
        f"{2 * (s.get('eval_every') or 0)}, … scored; sweeps: {s.get('sweep_sequences')} sequence(s) × "
        f"{s.get('sweep_frames')} frames, every {s.get('sweep_eval_every')} frames scored. The 3DMM baseline "
        "and the simulator need ICT-FaceKit at run time.",
        f"- **Rows**: *{ROW_NAMES['ours']}* = `dphm track` preset {preset_text} with the shipped diffusion "
        f"priors; *{ROW_NAMES['no_prior']}* = the same with `TrackConfig.priors = False` (ℓ2 regularisers); "
        f"*{ROW_NAMES['3dmm']}* = the linear ICT model (identity + expression weights + pose) fitted to the same "
        "preprocessed points by point-to-plane ICP with Adam. All rows see identical preprocessed points.",
        "- **Caveat on the 3DMM row**: the simulator renders ICT-FaceKit heads, so the 3DMM baseline fits the very "
        "model class that generated the data (the ground truth lies in its span). On simulated data it is an "
        "oracle-class baseline; on real recordings it would not be.",
        f"- **Bidirectional metrics** (recipe §7.1): {s.get('metric_points')} area-weighted samples per mesh vs the exact "
        "GT surface (outer shell of the ICT closed head ∪ eye volumes, `IctFaceKit.head_surface`), CD-L1 = ½(acc + comp), CD-L2 = ½(acc² + comp²), NC, F@τ; *face* = "
        "samples within 1 cm of the GT's face-region vertices; *full* = whole head (the unseen back included).",
        "- **Depth → mesh** (recipe §7.2, MonoNPHM's Kinect protocol): the observed depth points of the face (GT face "
        "triangles within 2 cm, normal facing the sensor |cos| > 0.2), rigid + scale ICP of the mesh onto them, then "
        "one-directional distances to the closest mesh point; \"without ICP\" skips the alignment.",
        "- **Bias-free**: the simulator offsets each sequence's depth by one draw of N(0, 1 mm) (warm-up drift, "
        "subsurface scattering; docs/simulator.md). Depth alone cannot reveal it (a head that much farther and "
        "larger casts the same depth), so every row carries it into its mesh; the *bias-free* metrics score the "
        "same meshes against the GT moved along the camera rays by the sequence's offset, x ↦ x·(1 + b/z): the "
        "error a tracker can remove. The goals are listed both ways.",
        "",
    ]
    if result.get("goals"):
        lines += ["## Goals", ""] + goals_table(result["goals"]) + [""]
        if goal_run is not None:
            lines += goal_sweep_lines(goal_run)
    fid = result.get("fidelity")
    if fid:
        # the fidelity part's own nominal settings (runs before 2026-11-30 lack them: a sweeps part of the
        # same preset has the same ones)
        same_preset_sweeps = [run for run, parts in used if ("sweeps" in parts or "goal sweeps" in parts)
                              and run.get("settings", {}).get("preset") == presets.get("fidelity")]
        nominal = fid.get("nominal") or next((r.get("sweep_nominal") for r in same_preset_sweeps), {})
        lines += ["## Fidelity at the nominal settings", "",
                  f"Noise ×1, head at {s.get('nominal_distance_m')} m, preprocessing budget "
                  f"{nominal.get('points', '?')} points per frame; mean over scored frames, then over sequences.", ""]
        lines += fidelity_table(fid["summary"])
        if "face" + BIAS_FREE in fid["summary"].get("ours", {}):
            lines += ["", "Bias-free (the same meshes against the GT as the biased sensor places it; see the protocol):",
                      ""] + fidelity_table(fid["summary"], BIAS_FREE)
        lines += ["", "Depth → mesh protocol (face points):", ""]
        lines += depth_table(fid["summary"]) + ["", "Per sequence (bias-free in brackets where scored):", ""] + per_sequence_table(fid["sequences"]) + [""]
        per_frame = plot_per_frame(result, images)
        if per_frame:
            lines += ["Per frame (first sequence opaque, others faded):", "", f"![per-frame CD-L1](images/{per_frame})", ""]
        renders = plot_renders(renders_dir / "renders.npz", images)
        if renders:
            lines += [f"Error renders (first sequence, sensor view; per-vertex distance to the GT surface, 0–"
                      f"{ERROR_RANGE_MM:g} mm):", "", f"![error renders](images/{renders})", ""]
    sweeps = result.get("sweeps")
    if sweeps:
        lines += ["## Sweeps", ""]
        for stem in plot_sweeps(result, images):
            lines += [f"![sweeps {stem}](images/{stem})", ""]
        for name, points in sweeps.items():
            lines += [f"### {SWEEP_AXES[name]}", ""] + sweep_table(name, points, result.get("sweep_nominal", {}).get(name)) + [""]
    if result.get("timings", {}).get("skipped_runs"):
        lines += [f"**Skipped by the time limit**: {len(result['timings']['skipped_runs'])} runs "
                  f"({', '.join(result['timings']['skipped_runs'][:6])}…).", ""]
    if result.get("speed"):
        lines += ["## Speed", "",
                  "Ours = the benchmark preset as shipped; reference = the `reference` preset (DPHM's schedule: 201 "
                  "keyframe steps × 10 k points, 20 steps × 10 k points per frame, 30 epochs of 2-frame windows × 5 k "
                  "points, normal term and priors every step) in our code on the same frames, with DPHM's dense 256³ "
                  "marching cubes per frame (measured separately on fitted frames and added per frame in place of our "
                  "canonical mesh + inversion). Identity and canonical mesh are one-off costs: their frames/s is "
                  "amortised over the sequence. Each run is a fresh process, timed after a 2-frame start-up run of the "
                  "same preset (listed separately, not in the sums); the last row is the per-frame cost once the "
                  "one-off phases are paid.", ""]
        lines += speed_tables(result["speed"])
    out = docs / "tracking-benchmark.md"
    out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return out


def main(argv: list[str] | None = None) -> int:
    import matplotlib

    matplotlib.use("Agg")
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("results", type=Path, nargs="+",
                        help="output folder(s) of dphm bench tracking (hold tracking.json); each part "
                        "(fidelity, sweeps, speed) is taken from the first folder that has it")
    parser.add_argument("--docs", type=Path, default=Path(__file__).resolve().parents[1] / "docs",
                        help="docs folder to write into (default: the repository's docs/)")
    parser.add_argument("--label", default=None, help='what these numbers are, e.g. "H100 full run"')
    parser.add_argument("--note", action="append", default=[], help="a caveat printed under the header (repeatable)")
    parser.add_argument("--goal-sweeps", type=Path, default=None, metavar="DIR",
                        help="a `dphm bench tracking --goal-sweeps` output folder: the prior-gain goals are taken "
                        "from its sweeps (several heads) and its tables listed under the goals")
    args = parser.parse_args(argv)
    print(build_report(args.results, args.docs, args.label, args.note, args.goal_sweeps))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
