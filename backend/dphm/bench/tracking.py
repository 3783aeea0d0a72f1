"""``dphm bench tracking``: tracking fidelity against simulated ground truth, sweeps, and speed.

Simulated Kinect sequences of held-out ICT-FaceKit heads (:mod:`dphm.simulate`, cached under
``--work``) are preprocessed once per point budget and fitted by three rows:

- ``ours``: the tracker with the shipped diffusion priors (``--preset``);
- ``no_prior``: the same tracker with ``TrackConfig.priors = False`` (ℓ2 regularisers, NPHM-style);
- ``3dmm``: the linear ICT-FaceKit model fitted to the same points (:mod:`dphm.bench.baseline_3dmm`).

Every ``--eval-every``-th frame is scored by :func:`dphm.eval.protocol.frame_fidelity`
(bidirectional CD-L1/L2, NC, F@1/5 mm for the full head and the face; the one-directional
depth → mesh protocol with and without ICP). Sweeps vary the sensor noise multiplier, the points
per frame (the preprocessing budget) and the head distance. The speed part is
:mod:`dphm.bench.tracking_speed`. Everything lands in ``OUT/tracking.json`` (written atomically;
``OUT/bench.log`` is the log, ``OUT/renders.npz`` the error images of a few frames);
``benchmarks/tracking_report.py`` turns them into docs/tracking-benchmark.md.

CPU work (simulation, preprocessing, the 3DMM baseline, metrics) runs in ``--workers`` processes
while the main process tracks on ``--device``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import platform
import signal
import sys
import time
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..devices import resolve_device
from ..executors import InlineExecutor, spawn_pool

HELP = "tracking fidelity vs simulated ground truth (rows, sweeps) and speed per phase"
FORMAT = "dphm-bench-tracking-v1"
ROWS = ("ours", "no_prior", "3dmm")
PARTS = ("fidelity", "sweeps", "speed")
log = logging.getLogger("dphm.bench.tracking")


@dataclass
class Settings:
    """Sizes of one benchmark run (``--quick`` and the defaults differ only here)."""

    preset: str = "fast"
    device: str = "cpu"
    sequences: int = 3  # fidelity sequences (seeds seed0 … seed0+S−1, held-out identities)
    frames: int = 30
    fps: float = 15.0
    mode: str = "nfov_unbinned"
    seed0: int = 100
    eval_every: int = 3
    sweep_sequences: int = 1
    sweep_frames: int = 15
    sweep_eval_every: int = 3
    noise_levels: tuple[float, ...] = (0.5, 1.0, 2.0, 3.0)
    point_budgets: tuple[int, ...] = (500, 1000, 2000, 5000, 10000, 20000)
    distances_m: tuple[float, ...] = (0.4, 0.55, 0.7, 0.85, 1.0)
    nominal_distance_m: float = 0.55
    metric_points: int = 50_000  # surface samples per mesh for the bidirectional metrics
    render_frames: int = 3  # error images of this many frames of the first fidelity sequence
    baseline: dict = field(default_factory=dict)  # Baseline3dmmConfig overrides
    speed_frames: int = 10  # GPU; CPU speed runs use half (at least 2)
    speed_devices: tuple[str, ...] = ("cpu",)
    reference_fraction: dict = field(default_factory=lambda: {"cpu": 0.05, "cuda": 1.0})
    dense_resolution: dict = field(default_factory=lambda: {"cpu": 64, "cuda": 256})
    dense_frames: dict = field(default_factory=lambda: {"cpu": 1, "cuda": 2})
    workers: int = 0
    time_limit_s: float | None = None  # no new tracking run starts after this (partial JSON)
    rescore: bool = False  # score matching finished runs in the work folder again instead of re-tracking


def quick_settings(device: str) -> Settings:
    """A CPU smoke size: minutes on 2 busy cores (tiny preset, 4 frames, one value per sweep
    besides the nominal one)."""
    return Settings(preset="tiny", device=device, sequences=1, frames=4, eval_every=2, sweep_frames=4,
                    sweep_eval_every=2, noise_levels=(3.0,), point_budgets=(500,), distances_m=(1.0,),
                    metric_points=20_000, render_frames=2,
                    baseline={"identity_modes": 40, "steps": 40, "points": 800, "correspondence_every": 8},
                    speed_frames=2, reference_fraction={"cpu": 0.01, "cuda": 0.1},
                    dense_resolution={"cpu": 32, "cuda": 128}, dense_frames={"cpu": 1, "cuda": 1})


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, required=True,
                        help="output folder: tracking.json, bench.log, renders.npz (small; bring it back)")
    parser.add_argument("--work", type=Path, default=None,
                        help="cache of simulated sequences and tracking runs (default ~/.cache/dphm/bench-tracking)")
    parser.add_argument("--device", default="cpu", help="cpu | cuda | auto: where the tracker runs (default cpu)")
    parser.add_argument("--preset", default=None, help="tracking preset of ours/no_prior (default fast; quick: tiny)")
    parser.add_argument("--sequences", type=int, default=None, help="fidelity sequences (default 3)")
    parser.add_argument("--frames", type=int, default=None, help="frames per fidelity sequence (default 30)")
    parser.add_argument("--sweep-sequences", type=int, default=None,
                        help=f"sequences (held-out heads) per sweep setting (default {Settings.sweep_sequences})")
    parser.add_argument("--sweep-frames", type=int, default=None,
                        help=f"frames per sweep sequence (default {Settings.sweep_frames})")
    parser.add_argument("--goal-sweeps", action="store_true",
                        help="sweeps at the goals' settings only (the noisiest, the sparsest, the nominal one): "
                             "with --sweep-sequences, the prior gain over several heads at a fraction of the cost")
    parser.add_argument("--speed-frames", type=int, default=None,
                        help=f"frames of the GPU speed runs; CPU runs use half (default {Settings.speed_frames})")
    parser.add_argument("--eval-every", type=int, default=None, help="score every k-th frame (default 3)")
    parser.add_argument("--metric-points", type=int, default=None, help="surface samples per mesh (default 50k)")
    parser.add_argument("--workers", type=int, default=None,
                        help="CPU worker processes (default: cores − 4 with --device cuda, else 0 = inline)")
    parser.add_argument("--only", default=",".join(PARTS),
                        help="comma-separated parts to run: fidelity, sweeps, speed (default all)")
    parser.add_argument("--time-limit", type=float, default=None,
                        help="seconds after which no new tracking run starts; the JSON then holds what finished")
    parser.add_argument("--rescore", action="store_true",
                        help="score finished tracking runs in --work again instead of re-tracking them (same "
                             "config and model, weights not modified since the run): for metric changes")
    parser.add_argument("--quick", action="store_true",
                        help="CPU smoke size (tiny preset, 1 sequence × 4 frames, sweep end points; minutes)")
    parser.add_argument("--model", type=Path, default=None, help="head model (default: shipped)")
    parser.add_argument("--priors", type=Path, default=None, help="folder of the diffusion priors (default: shipped)")
    parser.add_argument("--prior-weights", default=None, metavar="ID,EX",
                        help="weights of the identity and expression diffusion regularisers in the ours row "
                        "(default: the preset's; for weight sweeps)")


def resolve_settings(args: argparse.Namespace) -> Settings:
    from ..errors import ConfigError

    s = quick_settings(args.device) if args.quick else Settings(device=args.device)
    for name in ("preset", "sequences", "frames", "sweep_sequences", "sweep_frames", "speed_frames", "eval_every",
                 "metric_points"):
        value = getattr(args, name)
        if value is not None:
            setattr(s, name, value)
    if args.goal_sweeps:
        s.noise_levels, s.point_budgets, s.distances_m = (max(s.noise_levels),), (min(s.point_budgets),), ()
    if args.eval_every is not None:
        s.sweep_eval_every = args.eval_every
    s.time_limit_s = args.time_limit
    s.rescore = bool(getattr(args, "rescore", False))
    cuda = args.device.startswith("cuda")
    s.speed_devices = (args.device, "cpu") if cuda else ("cpu",)
    s.workers = args.workers if args.workers is not None else (max(1, min(12, (os.cpu_count() or 2) - 4)) if cuda else 0)
    if min(s.sequences, s.frames, s.sweep_sequences, s.sweep_frames, s.speed_frames, s.eval_every,
           s.metric_points) < 1:
        raise ConfigError("--sequences, --frames, --sweep-sequences, --sweep-frames, --speed-frames, --eval-every "
                          "and --metric-points must be ≥ 1")
    return s


# ------------------------------------------------------------------------------- the plan
@dataclass(frozen=True)
class Sequence:
    seed: int
    frames: int
    noise: float
    distance_m: float
    fps: float
    mode: str

    @property
    def name(self) -> str:
        return f"s{self.seed}-f{self.frames}-n{self.noise:g}-d{self.distance_m:g}-{self.mode}"

    def simulation_config(self):
        from ..simulate.noise import NoiseConfig
        from ..simulate.simulator import SimulationConfig

        return SimulationConfig(frames=self.frames, fps=self.fps, seed=self.seed, mode=self.mode,
                                distance_m=self.distance_m, identity="held-out",
                                noise=NoiseConfig(noise=self.noise))


@dataclass(frozen=True)
class Run:
    """One row fitted to one preprocessed sequence."""

    sequence: Sequence
    budget: int  # preprocessing points per frame
    row: str
    eval_every: int

    @property
    def key(self) -> str:
        return f"{self.sequence.name}-p{self.budget}-{self.row}"

    @property
    def obs_key(self) -> str:
        return f"{self.sequence.name}-p{self.budget}"

    def eval_frames(self) -> list[int]:
        return list(range(0, self.sequence.frames, self.eval_every))


def plan(s: Settings, parts: set[str], nominal_budget: int) -> tuple[list[Run], dict]:
    """All runs (deduplicated) and the layout of the fidelity table and the sweeps."""
    runs: dict[str, Run] = {}
    layout: dict = {"fidelity": [], "sweeps": {},
                    "nominal": {"noise": 1.0, "points": nominal_budget, "distance": s.nominal_distance_m}}

    def add(seq: Sequence, budget: int, eval_every: int) -> dict[str, str]:
        keys = {}
        for row in ROWS:
            r = Run(seq, budget, row, eval_every)
            runs.setdefault(r.key, r)
            keys[row] = r.key
        return keys

    def seq(i: int, frames: int, noise: float = 1.0, distance: float = s.nominal_distance_m) -> Sequence:
        return Sequence(s.seed0 + i, frames, noise, distance, s.fps, s.mode)

    if "fidelity" in parts:
        layout["fidelity"] = [add(seq(i, s.frames), nominal_budget, s.eval_every) for i in range(s.sequences)]
    if "sweeps" in parts:
        makers = {"noise": lambda i, v: (seq(i, s.sweep_frames, noise=v), nominal_budget),
                  "points": lambda i, v: (seq(i, s.sweep_frames), int(v)),
                  "distance": lambda i, v: (seq(i, s.sweep_frames, distance=v), nominal_budget)}
        values = {"noise": sweep_values(s.noise_levels, 1.0), "points": sweep_values(s.point_budgets, nominal_budget),
                  "distance": sweep_values(s.distances_m, s.nominal_distance_m)}
        # The goal settings (noisiest, sparsest) first, so a --time-limit cuts the least telling runs.
        order = [("noise", max(values["noise"])), ("points", min(values["points"]))]
        order += [(n, v) for n in makers for v in values[n] if (n, v) not in order]
        for name in makers:
            layout["sweeps"][name] = [{"value": v, "runs": []} for v in values[name]]
        for name, v in order:
            point = next(p for p in layout["sweeps"][name] if p["value"] == v)
            point["runs"] = [add(*makers[name](i, v), s.sweep_eval_every) for i in range(s.sweep_sequences)]
    return list(runs.values()), layout


def sweep_values(values, nominal) -> list:
    """The sweep's values with the nominal setting included, ascending."""
    return sorted({*values, nominal})


# ------------------------------------------------------------------------------- CPU jobs
def _worker_init() -> None:
    import torch

    torch.set_num_threads(1)


def simulate_sequence(seq: Sequence, folder: Path) -> float:
    """Simulate ``seq`` into ``folder`` unless an identical simulation is already there; seconds."""
    from ..simulate.output import simulate_recording

    cfg = seq.simulation_config()
    info = folder / "simulation.json"
    if info.is_file() and (folder / "gt.npz").is_file():
        try:
            if json.loads(info.read_text())["config"] == json.loads(cfg.to_json()):
                return 0.0
        except (ValueError, KeyError):
            pass
    t0 = time.perf_counter()
    simulate_recording(folder, cfg, fmt="folder", gt_vertices=False)
    return time.perf_counter() - t0


def preprocess_sequence(folder: Path, budget: int, preset_name: str, out: Path) -> float:
    """The tracker's read phase with a point budget → ``out`` (Observations npz); seconds."""
    from ..fit.config import preset
    from ..fit.tracker import read_observations
    from ..progress import Reporter
    from ..recording import open_recording

    cfg = preset(preset_name)
    cfg.max_observed_points = budget
    t0 = time.perf_counter()
    with open_recording(folder) as rec:
        obs = read_observations(rec, cfg, Reporter(), 0, None, 1)
    out.parent.mkdir(parents=True, exist_ok=True)
    obs.save(out)
    return time.perf_counter() - t0


def evaluate_meshes(mesh_of, seq_folder: Path, obs_path: Path, frames: list[int], metric_points: int,
                    render_frames: list[int]) -> dict:
    """Score ``mesh_of(i) -> (vertices m, faces)`` on ``frames``; error images of ``render_frames``."""
    from ..data.ict_facekit import load_ict_facekit
    from ..eval.protocol import GroundTruthSurface, frame_fidelity
    from ..fit.state import Observations
    from ..simulate.ground_truth import load_ground_truth
    from .error_render import crop_box, error_image

    kit = load_ict_facekit()
    gt = load_ground_truth(seq_folder)
    obs = Observations.load(obs_path)
    intr = gt.intrinsics
    per_frame, renders = [], {}
    t0 = time.perf_counter()
    for i in frames:
        surface = GroundTruthSurface.from_ict(kit, gt.camera_vertices(i, kit))
        verts, faces = mesh_of(i)
        a, b = obs.offsets[i], obs.offsets[i + 1]
        m = frame_fidelity((verts, faces), surface, obs.points[a:b], obs.normals[a:b], metric_points, seed=i,
                           bias_m=gt.bias_m)
        per_frame.append({"frame": i, **m})
        if i in render_frames:
            box = crop_box(surface.vertices, surface.faces, intr)
            err, shade = error_image(np.asarray(verts, np.float64), np.asarray(faces), surface.mesh, intr, box)
            _, gt_shade = error_image(surface.vertices, surface.faces, None, intr, box)
            renders[i] = {"error_mm": err, "shade": shade, "gt_shade": gt_shade}
    return {"per_frame": per_frame, "renders": renders, "metrics_s": time.perf_counter() - t0}


def evaluate_tracker_run(result_dir: Path, seq_folder: Path, obs_path: Path, frames: list[int],
                         metric_points: int, render_frames: list[int]) -> dict:
    from ..result.format import load_result

    result, _ = load_result(result_dir)
    return evaluate_meshes(lambda i: (result.vertices[i], result.faces), seq_folder, obs_path, frames,
                           metric_points, render_frames)


def run_baseline(seq_folder: Path, obs_path: Path, overrides: dict, frames: list[int], metric_points: int,
                 render_frames: list[int]) -> dict:
    """Fit the 3DMM baseline and score it (one CPU job)."""
    from ..data.ict_facekit import load_ict_facekit
    from ..fit.state import Observations
    from .baseline_3dmm import Baseline3dmmConfig, fit_3dmm

    kit = load_ict_facekit()
    obs = Observations.load(obs_path)
    t0 = time.perf_counter()
    fit = fit_3dmm(obs, kit, Baseline3dmmConfig(**overrides))
    fit_s = time.perf_counter() - t0

    def mesh_of(i: int):
        surf = kit.head_surface(fit.camera_vertices(kit, i))
        return surf.vertices, surf.faces

    out = evaluate_meshes(mesh_of, seq_folder, obs_path, frames, metric_points, render_frames)
    out["timings_s"] = {"fit": fit_s}
    out["fit_stats"] = fit.stats
    return out


# ------------------------------------------------------------------------------- summaries
def mean_metrics(per_frame: list[dict]) -> dict:
    """Mean of every numeric metric over frames (frames lacking a metric are skipped)."""
    out: dict = {}
    regions = sorted({k for f in per_frame for k in f if isinstance(f[k], dict)})
    for region in regions:
        rows = [f[region] for f in per_frame if region in f]
        keys = sorted({k for r in rows for k, v in r.items() if isinstance(v, int | float)})
        out[region] = {k: float(np.nanmean([r[k] for r in rows if k in r])) for k in keys}
    return out


def mean_of_summaries(summaries: list[dict]) -> dict:
    """Mean over sequences of :func:`mean_metrics` outputs."""
    return mean_metrics([s for s in summaries if s])


def improvement(ours: float, other: float) -> float:
    """Relative error reduction of ours over other (0.15 = 15 % lower error)."""
    return float((other - ours) / other) if other else float("nan")


def goals(result: dict) -> dict:
    """The issue's goals, evaluated on face CD-L1 (mm); each also ``*_bias_free`` (against the
    ground truth as the biased sensor places it, :mod:`dphm.eval.protocol`) where scored."""
    out: dict = {}
    fid = result.get("fidelity", {}).get("summary", {})
    sweeps = result.get("sweeps", {})
    for region, suffix in (("face", ""), ("face_bias_free", "_bias_free")):
        if region in fid.get("ours", {}):
            v = fid["ours"][region]["chamfer_l1_mm"]
            out["face_cd_l1_nominal" + suffix] = {"target_mm": 0.8, "value_mm": v, "met": bool(v <= 0.8)}
        for name, pick in (("noise", max), ("points", min)):
            points = sweeps.get(name, [])
            if not points:
                continue
            worst = next(p for p in points if p["value"] == pick(q["value"] for q in points))
            s = worst["summary"]
            if region in s.get("ours", {}) and region in s.get("no_prior", {}):
                gain = improvement(s["ours"][region]["chamfer_l1_mm"], s["no_prior"][region]["chamfer_l1_mm"])
                out[f"prior_gain_{name}{suffix}"] = {"setting": worst["value"], "target": 0.15, "value": gain,
                                                     "met": bool(gain >= 0.15)}
    return out


def device_info(device: str) -> dict:
    import torch

    info = {"requested": device, "platform": platform.platform(), "processor": platform.processor(),
            "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(), "gpu": None}
    if device.startswith("cuda") and torch.cuda.is_available():
        p = torch.cuda.get_device_properties(torch.device(device))
        info["gpu"] = {"name": p.name, "memory_gib": round(p.total_memory / 2**30, 1),
                       "capability": f"{p.major}.{p.minor}"}
    try:
        info["load_average"] = list(os.getloadavg())
    except OSError:
        pass
    return info


def versions() -> dict:
    import scipy
    import torch
    import trimesh

    from ..fit.tracker import software_versions

    return {**software_versions(), "scipy": scipy.__version__, "trimesh": trimesh.__version__,
            "cuda": torch.version.cuda}


def _model_info(path: Path | None) -> dict:
    from ..model.head import default_weights_path

    p = Path(path) if path else default_weights_path()
    st = p.stat()
    return {"path": str(p), "bytes": st.st_size, "modified": time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(st.st_mtime))}


def _setup_logging(out: Path) -> logging.Handler:
    handler = logging.FileHandler(out / "bench.log", encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    if not any(isinstance(h, logging.StreamHandler) and not isinstance(h, logging.FileHandler) for h in root.handlers):
        console = logging.StreamHandler(sys.stderr)
        console.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S"))
        root.addHandler(console)
    return handler


# ------------------------------------------------------------------------------- main
def run(args: argparse.Namespace) -> int:
    from ..atomic import atomic_write_text
    from ..errors import ConfigError
    from ..fit.config import preset

    parts = {p.strip() for p in args.only.split(",") if p.strip()}
    if not parts or parts - set(PARTS):
        raise ConfigError(f"--only takes a comma-separated subset of {', '.join(PARTS)}")
    args.device = resolve_device(args.device)
    s = resolve_settings(args)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    work = Path(args.work) if args.work else Path.home() / ".cache" / "dphm" / "bench-tracking"
    work.mkdir(parents=True, exist_ok=True)
    handler = _setup_logging(out)
    started = time.perf_counter()
    track_cfg = preset(s.preset)
    if args.prior_weights:
        try:
            w_id, w_ex = (float(v) for v in args.prior_weights.split(","))
        except ValueError:
            raise ConfigError(f"--prior-weights takes two numbers ID,EX, got {args.prior_weights!r}") from None
        track_cfg.losses = dataclasses.replace(track_cfg.losses, prior_identity=w_id, prior_expression=w_ex)
    result: dict = {"format": FORMAT, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                    "command": " ".join(["dphm", *sys.argv[1:]]),
                    "quick": bool(args.quick), "parts": sorted(parts), "device": device_info(args.device),
                    "versions": versions(), "model": _model_info(args.model), "settings": dataclasses.asdict(s),
                    "losses": dataclasses.asdict(track_cfg.losses)}
    log.info("dphm bench tracking: %s on %s, work %s, %d workers", sorted(parts), args.device, work, s.workers)
    state: dict = {}  # run_fidelity's progress, so an interrupted run still reports what finished
    previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        if "speed" in parts:
            from .tracking_speed import run_speed

            seq = Sequence(s.seed0, s.speed_frames, 1.0, s.nominal_distance_m, s.fps, s.mode)
            folder = work / "sequences" / seq.name
            simulate_sequence(seq, folder)
            result["speed"] = run_speed(folder, s, work / "speed", args.model, args.priors)
        if parts & {"fidelity", "sweeps"}:
            deadline = started + s.time_limit_s if s.time_limit_s else None
            result.update(run_fidelity(s, parts, work, out, args.model, args.priors, track_cfg, deadline, state))
    finally:
        signal.signal(signal.SIGTERM, previous)
        if state.get("layout") and "timings" not in result:  # interrupted: keep the finished runs
            for res in state["results"].values():
                res.pop("renders", None)
            result.update(assemble(state["layout"], state["results"], {**state["timings"], "interrupted": True}))
        result["goals"] = goals(result)
        result["total_s"] = time.perf_counter() - started
        atomic_write_text(out / "tracking.json", json.dumps(result, indent=1, default=_json_default))
        log.info("wrote %s (%.0f s)", out / "tracking.json", result["total_s"])
        logging.getLogger().removeHandler(handler)
        handler.close()
    _print_summary(result)
    return 0


def _terminate(signum, frame) -> None:
    raise SystemExit(128 + signum)  # run the finally blocks: the JSON gets written


def _json_default(o):
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    return str(o)


def run_fidelity(s: Settings, parts: set[str], work: Path, out: Path, model: Path | None, priors: Path | None,
                 track_cfg, deadline: float | None = None, state: dict | None = None) -> dict:
    """Fidelity table and sweeps: simulate, preprocess, fit every row, score (see module doc).
    ``state`` receives the layout, finished results and timings as they come."""
    from ..fit.state import Observations
    from ..fit.tracker import track

    runs, layout = plan(s, parts, track_cfg.max_observed_points)
    sequences = {r.sequence.name: r.sequence for r in runs}
    pool = spawn_pool(s.workers, initializer=_worker_init) if s.workers > 0 else InlineExecutor()
    timings = {"simulate_s": 0.0, "preprocess_s": 0.0, "track_s": 0.0}
    render_seq = (Sequence(s.seed0, s.frames, 1.0, s.nominal_distance_m, s.fps, s.mode).name
                  if layout["fidelity"] else None)
    results: dict[str, dict] = {}
    if state is not None:
        state.update(layout=layout, results=results, timings=timings)
    if s.workers > 0:  # leave the cores the workers use to them
        import torch

        torch.set_num_threads(max(2, (os.cpu_count() or 2) - s.workers))
    try:
        t0 = time.perf_counter()
        sims = {name: pool.submit(simulate_sequence, seq, work / "sequences" / name) for name, seq in sequences.items()}
        obs_jobs: dict[str, Future] = {}
        for r in runs:
            if r.obs_key not in obs_jobs:
                sims[r.sequence.name].result()
                obs_jobs[r.obs_key] = pool.submit(preprocess_sequence, work / "sequences" / r.sequence.name, r.budget,
                                                  s.preset, work / "observations" / f"{r.obs_key}.npz")
        timings["simulate_s"] = sum(f.result() for f in sims.values())
        log.info("%d sequences ready (%.0f s simulating, cached ones free; %.0f s wall)", len(sims), timings["simulate_s"],
                 time.perf_counter() - t0)
        jobs: dict[str, Future] = {}
        for r in runs:
            if r.row != "3dmm":
                continue
            obs_jobs[r.obs_key].result()
            jobs[r.key] = pool.submit(run_baseline, work / "sequences" / r.sequence.name,
                                      work / "observations" / f"{r.obs_key}.npz", s.baseline, r.eval_frames(),
                                      s.metric_points, _render_frames(r, s, render_seq))
        track_s: dict[str, dict] = {}
        skipped: list[str] = []
        for r in runs:
            if r.row == "3dmm":
                continue
            if deadline is not None and time.perf_counter() > deadline:
                skipped.append(r.key)
                continue
            obs_path = work / "observations" / f"{r.obs_key}.npz"
            timings["preprocess_s"] += obs_jobs[r.obs_key].result() if r.row == "ours" else 0.0
            cfg = dataclasses.replace(track_cfg, priors=(r.row == "ours"))
            run_dir = work / "runs" / r.key
            previous = finished_run(run_dir, cfg, model, priors) if s.rescore else None
            if previous is not None:
                timings.setdefault("rescored_runs", []).append(r.key)
                log.info("rescoring %s (tracked %s)", r.key, previous["created"])
            else:
                t1 = time.perf_counter()
                summary = track(work / "sequences" / r.sequence.name, run_dir, cfg, device=s.device, model=model,
                                priors_dir=priors, restart=True, observations=Observations.load(obs_path))
                wall = time.perf_counter() - t1
                timings["track_s"] += wall
                meta = json.loads((run_dir / "meta.json").read_text())
                track_s[r.key] = {"wall_s": wall, "phases_s": meta.get("timings_s", {}), "priors": meta.get("priors"),
                                  "inversion_fallback": summary.inversion["fallback"]}
                log.info("tracked %s: %.1f s (%s)", r.key, wall, meta.get("priors"))
            jobs[r.key] = pool.submit(evaluate_tracker_run, run_dir, work / "sequences" / r.sequence.name, obs_path,
                                      r.eval_frames(), s.metric_points, _render_frames(r, s, render_seq))
        if skipped:
            log.warning("time limit reached: %d tracking runs skipped", len(skipped))
            for r in runs:  # their 3DMM rows too, unless already running
                if r.row == "3dmm" and r.key.replace("-3dmm", "-ours") in skipped and jobs[r.key].cancel():
                    skipped.append(r.key)
        timings["skipped_runs"] = skipped
        for key, fut in jobs.items():
            if fut.cancelled():
                continue
            res = fut.result()
            res["summary"] = mean_metrics(res["per_frame"])
            res.setdefault("timings_s", {}).update(track_s.get(key, {}))
            results[key] = res
            log.info("scored %s: face CD-L1 %.3f mm, full %.3f mm", key, res["summary"]["face"]["chamfer_l1_mm"],
                     res["summary"]["full"]["chamfer_l1_mm"])
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    renders = {}
    for key, res in results.items():
        for frame, images in res.pop("renders", {}).items():
            for name, arr in images.items():
                renders[f"{_row_of(key)}|{frame}|{name}"] = arr
    if renders:
        _save_renders(out / "renders.npz", renders)
    return assemble(layout, results, timings)


def finished_run(run_dir: Path, cfg, model: Path | None, priors: Path | None) -> dict | None:
    """The ``meta.json`` of a finished tracking run in ``run_dir`` of this config and model whose
    weights (head model, priors) were not modified after it was made, so its frames can be scored
    again; None otherwise."""
    from ..model.diffusion import PRIOR_FILES, default_priors_dir
    from ..model.head import default_weights_path

    try:
        meta = json.loads((run_dir / "meta.json").read_text())
        made = (run_dir / "frames.npz").stat().st_mtime
    except (OSError, ValueError):
        return None
    model_path = Path(model) if model else default_weights_path()
    weights = [model_path] + [Path(priors or default_priors_dir()) / f for f in PRIOR_FILES.values()]
    same_config = meta.get("config") == json.loads(json.dumps(cfg.to_dict(), default=_json_default))
    unchanged = all(not w.exists() or w.stat().st_mtime < made for w in weights)
    return meta if same_config and meta.get("model") == str(model_path) and unchanged else None


def _row_of(key: str) -> str:
    for row in ROWS:
        if key.endswith("-" + row):
            return row
    return key


def _render_frames(r: Run, s: Settings, render_seq: str | None) -> list[int]:
    """Error images only for the first fidelity sequence at the nominal budget."""
    if render_seq is None or r.sequence.name != render_seq or r.eval_every != s.eval_every:
        return []
    frames = r.eval_frames()
    pick = np.unique(np.round(np.linspace(0, len(frames) - 1, min(s.render_frames, len(frames)))).astype(int))
    return [frames[k] for k in pick]


def _save_renders(path: Path, renders: dict) -> None:
    from ..atomic import atomic_path

    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            np.savez_compressed(fh, **renders)


def assemble(layout: dict, results: dict[str, dict], timings: dict) -> dict:
    """The ``fidelity`` and ``sweeps`` sections from per-run results."""
    out: dict = {"timings": timings}

    def summaries(keys_list: list[dict], row: str) -> list[dict]:
        return [results[k[row]]["summary"] for k in keys_list if k[row] in results]

    if layout["fidelity"]:
        seqs = []
        for keys in layout["fidelity"]:
            seqs.append({"name": keys["ours"].rsplit("-p", 1)[0],
                         "rows": {row: results[k] for row, k in keys.items() if k in results}})
        summary = {row: mean_of_summaries(summaries(layout["fidelity"], row)) for row in ROWS}
        out["fidelity"] = {"sequences": seqs, "summary": summary, "nominal": layout["nominal"]}
    if layout["sweeps"]:
        out["sweeps"] = {}
        out["sweep_nominal"] = layout["nominal"]
        for name, points in layout["sweeps"].items():
            out["sweeps"][name] = [
                {"value": p["value"], "runs": p["runs"],
                 "summary": {row: mean_of_summaries(summaries(p["runs"], row)) for row in ROWS},
                 "per_sequence": [{row: results[keys[row]]["summary"] for row in ROWS if keys[row] in results}
                                  for keys in p["runs"]]}
                for p in points]
    return out


def _print_summary(result: dict) -> None:
    fid = result.get("fidelity", {}).get("summary")
    if fid:
        print("| row | face CD-L1 mm | full CD-L1 mm | face F@1mm | depth→mesh L2 mm |")
        print("|---|---|---|---|---|")
        for row, m in fid.items():
            if "face" not in m:
                continue
            print(f"| {row} | {m['face']['chamfer_l1_mm']:.3f} | {m['full']['chamfer_l1_mm']:.3f} | "
                  f"{m['face']['fscore@1mm']:.3f} | {m.get('depth', {}).get('chamfer_l2_mm', float('nan')):.3f} |")
    for name, g in result.get("goals", {}).items():
        print(f"goal {name}: {'met' if g['met'] else 'NOT met'} ({g})")
    sp = result.get("speed")
    if sp:
        for dev, d in sp.get("devices", {}).items():
            print(f"speed {dev}: ours {d['ours']['end_to_end_fps']:.2f} frames/s, reference "
                  f"{d['reference']['end_to_end_fps']:.3f} frames/s, ratio {d['ratio']:.1f}×")
