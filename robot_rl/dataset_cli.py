"""``robot-rl dataset ...``: the dataset tools on the command line.

``add_parser(subparsers)`` plugs the ``dataset`` command into the project's CLI; each
subcommand sets ``handler(args) -> int`` (and the same as ``func``) as its default.
``main(argv)`` runs the subcommands standalone (``python -m robot_rl.dataset_cli info data.zarr``).
``replay`` renders an episode in the twin (sim_twin.episode_replay, imported only when it runs).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from robot_rl.data import tools
from robot_rl.data.calibration import calibration_digest
from robot_rl.data.errors import DatasetError
from robot_rl.data.lerobot import VIDEO_CODECS

Handler = Callable[[argparse.Namespace], int]
EXPORT_FORMATS = ("lerobot", "robomimic")


def add_parser(subparsers: Any) -> None:
    """Add the ``dataset`` command (with its subcommands) to an argparse subparsers object."""
    parser = subparsers.add_parser(
        "dataset", help="inspect, check, combine, convert recorded datasets (zarr stores)",
        description="Inspect, validate, merge, split, filter, summarise, import and export "
                    "robot_rl datasets (zarr episode stores).")
    _add_subcommands(parser)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="robot-rl dataset",
                                     description="robot_rl dataset tools")
    _add_subcommands(parser)
    args = parser.parse_args(argv)
    return args.func(args)


def _add_subcommands(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="dataset_command", metavar="SUBCOMMAND", required=True)

    p = _command(sub, "info", _info, "show a dataset's attributes, episodes and keys")
    p.add_argument("path", help="dataset (zarr directory)")
    p.add_argument("--json", action="store_true", help="print JSON instead of text")

    p = _command(sub, "validate", _validate,
                 "check a dataset: commit marks, info rows, schema, every chunk present, every "
                 "float finite (exit 1 on errors)")
    p.add_argument("path", help="dataset (zarr directory)")
    p.add_argument("--quick", action="store_true",
                   help="read only float keys (for NaN/inf); chunk presence is still checked "
                        "for every key")
    p.add_argument("--quiet", action="store_true", help="no progress bar")

    p = _command(sub, "merge", _merge, "concatenate datasets of the same robot, task and units")
    p.add_argument("inputs", nargs="+", help="input datasets, in order")
    p.add_argument("-o", "--out", dest="output", required=True, help="new dataset to write")
    p.add_argument("--force", action="store_true",
                   help="merge even if robot, task or units differ (--overwrite is what "
                        "replaces an existing output)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output")
    p.add_argument("--quiet", action="store_true", help="no progress bar")

    p = _command(sub, "split", _split, "deal shuffled episodes into several datasets by fraction")
    p.add_argument("input", help="dataset to split")
    p.add_argument("--out", action="append", required=True, metavar="PATH=FRACTION",
                   help="an output and its fraction, e.g. --out train.zarr=0.9 "
                        "--out val.zarr=0.1 (fractions sum to 1)")
    p.add_argument("--seed", type=int, default=0, help="shuffle seed (default 0)")
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    p.add_argument("--quiet", action="store_true", help="no progress bar")

    p = _command(sub, "filter", _filter, "copy the episodes whose episode info matches")
    p.add_argument("input", help="dataset to read")
    p.add_argument("-o", "--out", dest="output", required=True, help="new dataset to write")
    p.add_argument("--where", action="append", required=True, metavar="FIELD=VALUE",
                   help="required episode-info value; VALUE is JSON (true, 3, \"ann\") or a "
                        "plain string; repeat to require several")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output")
    p.add_argument("--quiet", action="store_true", help="no progress bar")

    p = _command(sub, "stats", _stats, "per-dimension mean, std, min, max of keys (streamed)")
    p.add_argument("path", help="dataset (zarr directory)")
    p.add_argument("--keys", action="extend", type=_key_list, metavar="KEY[,KEY...]",
                   help="keys, comma-separated or repeated (default: all numeric keys; "
                        "camera frames per channel)")
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    p.add_argument("--quiet", action="store_true", help="no progress bar")

    p = _command(sub, "import-rosbag", _import_rosbag,
                 "resample rosbag2 recordings (sqlite3 or mcap) onto a control clock")
    p.add_argument("bags", nargs="+", help="rosbag2 directories; each is one episode unless "
                                           "--marker-topic splits it")
    p.add_argument("-o", "--out", dest="output", required=True, help="dataset to write")
    p.add_argument("--topic", action="append", required=True, metavar="TOPIC=KEY[:FIELDS]",
                   help="map a topic to a key, e.g. /hand/joint_states=observation:position+"
                        "velocity or /hand/command=action; topics mapped to one key are "
                        "concatenated")
    p.add_argument("--period", type=float, required=True, metavar="SECONDS",
                   help="control period of the output clock, s (e.g. 0.05 for 20 Hz)")
    p.add_argument("--marker-topic", help="every message on this topic starts a new episode")
    p.add_argument("--robot", default="unknown", help="robot name stored in the dataset")
    p.add_argument("--task", default="unknown", help="task name stored in the dataset")
    cal = p.add_mutually_exclusive_group()
    cal.add_argument("--calibration", help="calibration YAML to digest")
    cal.add_argument("--calibration-digest", default="unknown", help="digest to store as is")
    p.add_argument("--unit", action="append", default=[], metavar="KEY=UNIT",
                   help="unit of a key, e.g. observation=rad")
    p.add_argument("--append", action="store_true",
                   help="append to the dataset if it exists (it must be of the same robot, "
                        "task and calibration); without it an existing output is refused")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output")
    label = p.add_mutually_exclusive_group()
    label.add_argument("--success-classifier", metavar="FILE",
                       help="label success, reward and terminated with a success classifier "
                            "(robot-rl reward train) on each row's keys")
    label.add_argument("--success-rule", action="append", metavar="RULE",
                       help="label them with a rule on a row's keys, e.g. "
                            "'object_position[0] >= 0.15' (repeat: all must hold)")
    p.add_argument("--threshold", type=float,
                   help="with --success-classifier: its threshold (default: the classifier's)")
    p.add_argument("--debounce-frames", type=int,
                   help="with --success-classifier: rows in a row that must show success "
                        "(default: the classifier's)")

    p = _command(sub, "export", _export, "convert a dataset to LeRobot v3.0 or robomimic HDF5")
    p.add_argument("input", help="dataset to read")
    p.add_argument("-o", "--out", dest="output", required=True,
                   help="what to write: a folder (lerobot) or a file (robomimic, e.g. demos.hdf5)")
    p.add_argument("--format", choices=EXPORT_FORMATS, default="robomimic",
                   help="lerobot: a LeRobotDataset v3.0 folder (parquet, one MP4 per camera); "
                        "robomimic: an HDF5 file (default robomimic)")
    p.add_argument("--obs-key", action="append", dest="obs_keys",
                   help="robomimic: observation key to export (default: all but "
                        "action/reward/done)")
    p.add_argument("--fps", type=int, help="lerobot: frames per second (default: the rate of "
                                           "the dataset's stamp_s key)")
    p.add_argument("--task-text", help="lerobot: the task's description, LeRobot's per-frame "
                                       "task string (default: the dataset's task name)")
    p.add_argument("--video-codec", choices=tuple(VIDEO_CODECS), default="lossless",
                   help="lerobot: camera videos lossless (H.264 RGB, pixel-exact; default) or "
                        "lossy h264/av1 (smaller)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output")
    p.add_argument("--quiet", action="store_true", help="no progress bar")

    p = _command(sub, "import", _import,
                 "read a LeRobot v3.0 folder or a robomimic HDF5 file into a new dataset")
    p.add_argument("input", help="LeRobot dataset folder (meta/info.json) or robomimic .hdf5 file")
    p.add_argument("-o", "--out", dest="output", required=True, help="dataset to write (.zarr)")
    p.add_argument("--format", choices=("auto", *EXPORT_FORMATS), default="auto",
                   help="auto (default): a folder is LeRobot, a file robomimic")
    p.add_argument("--robot", help="robot name stored in the dataset (default: what the input "
                                   "names, else 'unknown')")
    p.add_argument("--task", help="task name stored in the dataset (default: what the input "
                                  "names, else 'unknown')")
    p.add_argument("--calibration-digest", help="calibration digest stored in the dataset "
                                                "(default: what the input names, else 'unknown')")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output")
    p.add_argument("--quiet", action="store_true", help="no progress bar")

    p = _command(sub, "replay", _replay,
                 "replay a recorded episode in the MuJoCo twin and write a video (.mp4 or .gif)")
    p.add_argument("path", help="dataset (zarr directory)")
    p.add_argument("--episode", type=int, required=True, metavar="I",
                   help="episode index (negative counts from the end)")
    p.add_argument("--out", help="video file, .mp4 or .gif (default: "
                                 "<dataset name>_episode<I>.mp4 in the current directory)")
    p.add_argument("--fps", type=float, help="frames per second (default: the recording's rate)")
    p.add_argument("--width", type=int, default=640, help="frame width, px (default 640)")
    p.add_argument("--height", type=int, default=480, help="frame height, px (default 480)")
    p.add_argument("--camera", default="realsense", help="MJCF camera (default realsense)")
    p.add_argument("--source", choices=("auto", "state", "observation", "actions", "frames"),
                   default="auto",
                   help="state: recorded joint positions + object (kinematic); observation: "
                        "the task observation (kinematic); actions: re-run the recorded "
                        "actions from the recorded seed (dynamic); auto: the first usable, in "
                        "that order; frames: a pixel task's recorded camera view, enlarged "
                        "(what its policy saw)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--overwrite", action="store_true", help="replace an existing video")


def _command(sub: Any, name: str, handler: Handler, help_text: str) -> argparse.ArgumentParser:
    p = sub.add_parser(name, help=help_text, description=help_text[0].upper() + help_text[1:])
    # robot_rl.cli dispatches on ``handler``; ``func`` is the argparse idiom for other hosts
    p.set_defaults(func=_guarded(handler), handler=_guarded(handler))
    return p


def _guarded(handler: Handler) -> Handler:
    """Bad input ends with one clear line on stderr and exit code 1, not a traceback."""

    def run(args: argparse.Namespace) -> int:
        try:
            return handler(args)
        except (DatasetError, ValueError, OSError, KeyError) as err:
            print(f"error: {err}", file=sys.stderr)
            return 1

    return run


def _pairs(items: Sequence[str], what: str) -> list[tuple[str, str]]:
    pairs = []
    for item in items:
        left, sep, right = item.rpartition("=")
        if not sep or not left:
            raise ValueError(f"expected {what}, got {item!r}")
        pairs.append((left, right))
    return pairs


def _key_list(text: str) -> list[str]:
    """``reward,action`` -> ['reward', 'action'] (``--keys`` takes one value, so a positional
    argument after it is never taken for a key)."""
    keys = [k.strip() for k in text.split(",")]
    if not all(keys):
        raise argparse.ArgumentTypeError(f"expected KEY[,KEY...], got {text!r}")
    return keys


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(type(value).__name__)


def _info(args: argparse.Namespace) -> int:
    summary = tools.info(args.path)
    if args.json:
        print(json.dumps(summary, indent=2, default=_jsonable))
        return 0
    s = summary
    print(f"dataset      {s['path']}")
    print(f"robot        {s['robot']}    task {s['task']}    calibration "
          f"{s['calibration_digest']}    format {s['format_version']}    "
          f"software {s['software_version']}")
    lengths = s["episode_length"]
    length_text = (f"length min {lengths['min']} / mean {lengths['mean']:.1f} / max "
                   f"{lengths['max']}" if lengths else "no episodes")
    print(f"episodes     {s['n_episodes']} ({s['n_steps']} steps; {length_text}); success "
          f"{s['success']['succeeded']}/{s['success']['labelled']} labelled")
    if s["uncommitted_steps"]:
        print(f"uncommitted  {s['uncommitted_steps']} step rows past the last commit")
    for key, k in s["keys"].items():
        ratio = k["raw_bytes"] / k["stored_bytes"] if k["stored_bytes"] else 0.0
        print(f"  {key:<20} {k['dtype']}{k['step_shape']!s:<16} unit {k['unit'] or '-':<8} "
              f"{k['chunk_steps']:>5} steps/chunk  {k['stored_bytes'] / 2**20:9.2f} MiB "
              f"stored ({ratio:.1f}x)")
    return 0


def _validate(args: argparse.Namespace) -> int:
    problems = tools.validate(args.path, check_all_keys=not args.quick, progress=not args.quiet)
    for problem in problems:
        print(problem)
    errors = sum(p.severity == "error" for p in problems)
    print(f"{args.path}: {errors} error(s), {len(problems) - errors} warning(s)")
    return 1 if errors else 0


def _merge(args: argparse.Namespace) -> int:
    result = tools.merge(args.inputs, args.output, force=args.force, overwrite=args.overwrite,
                         progress=not args.quiet)
    print(f"wrote {result['output']}: {result['n_episodes']} episodes, {result['n_steps']} steps "
          f"from {len(result['sources'])} datasets")
    return 0


def _split(args: argparse.Namespace) -> int:
    outputs = {path: float(fraction) for path, fraction in _pairs(args.out, "PATH=FRACTION")}
    assignment = tools.split(args.input, outputs, seed=args.seed, overwrite=args.overwrite,
                             progress=not args.quiet)
    for path, indices in assignment.items():
        print(f"wrote {path}: {len(indices)} episodes")
    return 0


def _filter(args: argparse.Namespace) -> int:
    wanted = {}
    for field, text in _pairs(args.where, "FIELD=VALUE"):
        try:
            wanted[field] = json.loads(text)
        except ValueError:
            wanted[field] = text
    kept = tools.filter(args.input, args.output, wanted, overwrite=args.overwrite,
                        progress=not args.quiet)
    print(f"wrote {args.output}: {len(kept)} episodes matching {wanted}")
    return 0


def _stats(args: argparse.Namespace) -> int:
    result = tools.stats(args.path, args.keys, progress=not args.quiet)
    if args.json:
        print(json.dumps(result, indent=2, default=_jsonable))
        return 0
    with np.printoptions(precision=4, suppress=True, linewidth=100):
        for key, s in result.items():
            per_channel = f", per channel over {s['pixels']} pixels" if "pixels" in s else ""
            print(f"{key} ({s['count']} steps{per_channel})")
            for name in ("mean", "std", "min", "max"):
                print(f"  {name:<5} {s[name]}")
    return 0


def _import_rosbag(args: argparse.Namespace) -> int:
    topic_map = dict(_pairs(args.topic, "TOPIC=KEY[:FIELDS]"))
    digest = calibration_digest(args.calibration) if args.calibration else args.calibration_digest
    result = tools.import_rosbag(
        args.bags, args.output, topic_map, control_period_s=args.period, robot=args.robot,
        task=args.task, calibration_digest=digest, units=dict(_pairs(args.unit, "KEY=UNIT")),
        episode_marker_topic=args.marker_topic, append=args.append, overwrite=args.overwrite,
        success=_success_labeller(args))
    for ep in result["episodes"]:
        print(f"episode {ep['episode']}: {ep['steps']} steps from {ep['bag']} "
              f"(segment {ep['segment']})")
    print(f"wrote {result['output']}: {result['n_episodes']} episodes, {result['n_steps']} steps")
    return 0


def _success_labeller(args: argparse.Namespace) -> Any:
    """The import's success labeller: a classifier's detector, a rule, or None."""
    if args.success_classifier is None and (args.threshold is not None or
                                            args.debounce_frames is not None):
        raise DatasetError(args.success_classifier or "import-rosbag",
                           "--threshold and --debounce-frames need --success-classifier")
    if args.success_classifier:
        from robot_rl.reward import SuccessDetector, load_classifier
        try:
            return SuccessDetector(load_classifier(args.success_classifier), args.threshold,
                                   args.debounce_frames)
        except ValueError as err:
            raise DatasetError(args.success_classifier, str(err)) from err
    if args.success_rule:
        from robot_rl.reward.rules import SuccessRule
        try:
            return SuccessRule(args.success_rule)
        except ValueError as err:
            raise DatasetError("--success-rule", str(err)) from err
    return None


def _export(args: argparse.Namespace) -> int:
    if args.format == "lerobot":
        from robot_rl.data.lerobot import export_lerobot
        result = export_lerobot(args.input, args.output, fps=args.fps, task_text=args.task_text,
                                video_codec=args.video_codec, overwrite=args.overwrite,
                                progress=not args.quiet)
        videos = f", videos {result['videos']} ({result['video_codec']})" if result["videos"] \
            else ""
        print(f"wrote {result['output']}: LeRobotDataset v3.0, {result['n_episodes']} episodes, "
              f"{result['n_frames']} frames at {result['fps']} fps{videos}")
        return 0
    result = tools.export_robomimic_hdf5(args.input, args.output, obs_keys=args.obs_keys,
                                         overwrite=args.overwrite, progress=not args.quiet)
    print(f"wrote {result['output']}: {result['n_demos']} demos, {result['total']} samples, "
          f"obs {result['obs_keys']}")
    return 0


def _import(args: argparse.Namespace) -> int:
    kind = args.format
    if kind == "auto":
        kind = "lerobot" if Path(args.input).is_dir() else "robomimic"
    names = {"robot": args.robot, "task": args.task,
             "calibration_digest": args.calibration_digest}
    if kind == "lerobot":
        from robot_rl.data.lerobot import import_lerobot
        result = import_lerobot(args.input, args.output, overwrite=args.overwrite,
                                progress=not args.quiet, **names)
        how = ("as exported (robot_rl's meta/robot_rl.json)" if result["exact"]
               else "by LeRobot's feature names")
    else:
        from robot_rl.data.robomimic import import_robomimic_hdf5
        result = import_robomimic_hdf5(args.input, args.output, overwrite=args.overwrite,
                                       progress=not args.quiet, **names)
        how = "from robomimic HDF5"
    print(f"wrote {result['output']}: {result['n_episodes']} episodes, {result['n_steps']} "
          f"steps, keys {result['keys']} ({how})")
    return 0


def _replay(args: argparse.Namespace) -> int:
    from robot_rl.data.video import mp4_available
    from robot_rl.sim_twin.episode_replay import replay_to_video  # MuJoCo only for this subcommand

    out = Path(args.out or f"{Path(args.path).stem}_episode{args.episode}.mp4")
    names = [out]
    if out.suffix.lower() == ".mp4" and mp4_available():  # no ffmpeg: it comes out as a GIF
        names.append(out.with_suffix(".gif"))
    for name in names:
        if (name.exists() or name.is_symlink()) and not args.overwrite:
            raise DatasetError(name, "already exists; pass --overwrite to replace it")
    result = replay_to_video(args.path, args.episode, out, fps=args.fps, width=args.width,
                             height=args.height, camera=args.camera, source=args.source,
                             progress=not args.quiet)
    plan, video = result.plan, result.video
    if video.fallback_reason:
        print(f"note: wrote a GIF instead of MP4: {video.fallback_reason}")
    print(f"episode {plan.episode} of {plan.dataset}: {plan.describe()} ({plan.source})")
    if result.max_observation_error is not None:
        print(f"  largest |replayed - recorded| observation value: "
              f"{result.max_observation_error:.3g}")
    print(f"wrote {video.path}: {video.frames} frames, {video.width}x{video.height} at "
          f"{video.fps:g} fps ({video.format})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
