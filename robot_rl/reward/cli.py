"""``robot-rl reward ...``: label success frames, train a success classifier, evaluate, export.

    robot-rl reward label DATASET -o labels.yaml --success 3:27-29 --failure 4   (by hand)
    robot-rl reward label DATASET -o labels.yaml --from-reward --episodes 0-19    (ground truth)
    robot-rl reward train DATASET --labels labels.yaml -o success.safetensors \
        --input observation.error_cos_sin
    robot-rl reward train PIXELS.zarr --labels labels.yaml -o success.safetensors \
        --input camera_color                           (an image classifier on the camera view)
    robot-rl reward train PIXELS.zarr --labels labels.yaml -o success.safetensors \
        --input camera_color --input observation.goal_cos_sin      (the view and the goal)
    robot-rl reward eval success.safetensors HELD_OUT.zarr --from-reward
    robot-rl reward export success.safetensors -o success.pt2

A frame is the state a step's reward judges (``reward.labels``): in a transition store the view of
frame t is the next row's, and an episode's last step has no view. ``add_parser`` plugs the command
into the project's CLI; ``main(argv)`` runs it alone (``python -m robot_rl.reward.cli``).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from collections.abc import Sequence
from typing import Any

import numpy as np

from robot_rl.config import ConfigError
from robot_rl.data import DatasetError, EpisodeStore


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "reward", help="a learned reward: label success frames, train a classifier, evaluate it",
        description="Label which frames of recorded episodes show success, train a success "
                    "classifier on them, evaluate it on held-out episodes, export it. A task "
                    "takes its reward from it with reward.source=classifier (in process) or the "
                    "learner's reward_classifier parameter (on the graph).")
    _add_subcommands(parser)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="robot-rl reward")
    _add_subcommands(parser)
    args = parser.parse_args(argv)
    try:
        return args.handler(args)
    except (DatasetError, ConfigError) as err:
        print(f"robot-rl reward: {err}", file=sys.stderr)
        return 1


def _add_subcommands(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="reward_command", metavar="SUBCOMMAND", required=True)

    p = sub.add_parser("label", help="write success labels for a dataset's frames")
    p.add_argument("dataset", help="dataset (zarr)")
    p.add_argument("-o", "--output", required=True, help="labels file to write (YAML)")
    p.add_argument("--success", action="append", default=[], metavar="EPISODE:FIRST-LAST",
                   help="frames FIRST..LAST (both included, counted within the episode) of "
                        "EPISODE show success; repeat for more ranges and episodes")
    p.add_argument("--failure", action="append", default=[], type=int, metavar="EPISODE",
                   help="EPISODE never shows success (its frames are failure examples)")
    p.add_argument("--from-reward", action="store_true",
                   help="label automatically from the dataset's ground-truth reward")
    p.add_argument("--success-reward", type=float, default=0.0,
                   help="with --from-reward: a reward at least this is success (default 0, "
                        "the tasks' sparse reward)")
    p.add_argument("--episodes", metavar="LIST", help="with --from-reward: only these episodes, "
                                                      "e.g. 0-19,25 (default: all)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing labels file")
    p.set_defaults(handler=_label)

    p = sub.add_parser("train", help="train a success classifier on labelled frames (vectors, "
                                     "or a camera view: --input camera_color)")
    p.add_argument("dataset", help="dataset (zarr) the labels are for")
    p.add_argument("--labels", required=True, help="labels file (robot-rl reward label)")
    p.add_argument("-o", "--output", required=True, help="classifier file to write")
    p.add_argument("--input", action="append", dest="inputs", metavar="INPUT",
                   help="what the classifier reads: KEY, KEY[a:b] or observation.FIELD (a "
                        "field of the task's observation); repeat to concatenate "
                        "(default: observation). A camera view key (camera_color: uint8 "
                        "H,W,3 in the dataset) trains an image classifier (conv encoder, DrQ "
                        "shifts), the other inputs (e.g. observation.goal_cos_sin) read beside "
                        "the view; the view of frame t is the next step's, so record its "
                        "data with the task's terminate_on_success false")
    p.add_argument("--task", help="task whose observation fields --input names (default: the "
                                  "dataset's)")
    p.add_argument("--hidden", default="64,64", help="hidden layer sizes (default 64,64)")
    p.add_argument("--updates", type=int, help="training steps (default 2000 full-batch steps; "
                                               "an image classifier 400 minibatch steps)")
    p.add_argument("--threshold", type=float, default=0.0,
                   help="success when p >= threshold; 0 (default): chosen by cross-validation "
                        "over the labelled episodes")
    p.add_argument("--debounce-frames", type=int, default=1,
                   help="success once this many frames in a row show it (default 1)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--overwrite", action="store_true", help="replace an existing classifier")
    p.set_defaults(handler=_train)

    p = sub.add_parser("eval", help="precision, recall and confusion on labelled frames")
    p.add_argument("classifier", help="classifier file (vector or image)")
    p.add_argument("dataset", help="dataset (zarr) of held-out episodes")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--labels", help="labels file for this dataset")
    source.add_argument("--from-reward", action="store_true",
                        help="score against the dataset's ground-truth reward")
    p.add_argument("--success-reward", type=float, default=0.0)
    p.add_argument("--episodes", metavar="LIST", help="only these episodes, e.g. 20-49")
    p.add_argument("--threshold", type=float, help="default: the classifier's")
    p.add_argument("--debounce-frames", type=int, help="default: the classifier's")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(handler=_eval)

    p = sub.add_parser("export", help="write the classifier as a torch.export program (.pt2)")
    p.add_argument("classifier", help="classifier file (vector: (N, inputs) -> p; image: uint8 "
                                      "(N, H, W, 3) views -> p)")
    p.add_argument("-o", "--output", required=True, help="program to write (.pt2)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing file")
    p.set_defaults(handler=_export)


# ---- handlers ------------------------------------------------------------------------------
def _label(args: argparse.Namespace) -> int:
    from robot_rl.reward.labels import FrameLabels

    with EpisodeStore.open(args.dataset, "r") as store:
        if args.from_reward:
            if args.success or args.failure:
                raise ConfigError("reward label: --from-reward labels every chosen episode; "
                                  "give it or --success/--failure, not both")
            labels = FrameLabels.from_reward(store, _episode_list(args.episodes, store),
                                             args.success_reward)
        else:
            if not (args.success or args.failure):
                raise ConfigError("reward label: give --success EPISODE:FIRST-LAST (and "
                                  "--failure EPISODE), or --from-reward")
            labels = FrameLabels.from_ranges(store, _ranges(args.success), args.failure)
    labels.save(args.output, overwrite=args.overwrite)
    print(f"wrote {args.output}: {len(labels.episodes)} episodes labelled, "
          f"{labels.success_frames} success frames")
    return 0


def _train(args: argparse.Namespace) -> int:
    from robot_rl.reward.classifier import ClassifierConfig, fit_classifier, parse_inputs
    from robot_rl.reward.labels import FrameLabels, frame_features, frame_key, is_view_key

    labels = FrameLabels.load(args.labels)
    with EpisodeStore.open(args.dataset, "r") as store:
        specs = args.inputs or ["observation"]
        views = [s for s in specs if is_view_key(store, s)]
        if len(views) > 1:
            raise ConfigError(f"reward train: an image classifier reads one camera view, got "
                              f"{views}")
        others = [s for s in specs if s not in views]
        inputs = []
        if others:
            widths = {key: _width(store, frame_key(store, key)) for key in store.keys
                      if not is_view_key(store, key)}
            layouts = _layouts(store, args.task) if any("." in s for s in others) else None
            try:
                inputs = parse_inputs(others, widths, layouts=layouts)
            except ValueError as err:
                raise ConfigError(f"reward train: {err}") from err
        if views:
            return _train_image(args, store, labels, views[0], inputs)
        config = ClassifierConfig(hidden_sizes=_sizes(args.hidden),
                                  updates=args.updates or 2000, threshold=args.threshold,
                                  debounce_frames=args.debounce_frames, seed=args.seed)
        features = frame_features(store, inputs)
        rows, flags, ids = labels.frames(store)
        try:
            classifier = fit_classifier(features[rows], flags, ids, inputs, config,
                                        {"inputs_named": specs, "dataset": str(store.path),
                                         "labels": str(args.labels),
                                         "labelled_episodes": sorted(labels.episodes)})
        except ValueError as err:
            raise DatasetError(args.labels, str(err)) from err
    classifier.save(args.output, overwrite=args.overwrite)
    print(f"wrote {args.output}: {classifier.meta['success_frames']} success and "
          f"{classifier.meta['failure_frames']} failure frames, inputs {specs} "
          f"({classifier.width} values), threshold {classifier.threshold:g}, debounce "
          f"{classifier.debounce_frames}")
    return 0


def _train_image(args: argparse.Namespace, store: EpisodeStore, labels: Any, key: str,
                 vectors: Sequence[tuple[str, int, int]] = ()) -> int:
    from robot_rl.data.transition_arrays import store_observation
    from robot_rl.reward.classifier import fit_classifier
    from robot_rl.reward.image_classifier import (
        ImageClassifierConfig,
        ImageInput,
        train_image_classifier,
        view_from_store,
    )
    from robot_rl.reward.labels import labelled_image_frames

    config = ImageClassifierConfig(updates=args.updates or 400, threshold=args.threshold,
                                   debounce_frames=args.debounce_frames, seed=args.seed)
    view = view_from_store(store_observation(store)[1], store.specs[key].step_shape)
    frames, flags, ids, left_out = labelled_image_frames(store, labels, key, vectors)
    try:
        classifier = fit_classifier(frames, flags, ids, ImageInput(key, view, tuple(vectors)),
                                    config,
                                    {"inputs_named": args.inputs, "dataset": str(store.path),
                                     "labels": str(args.labels),
                                     "labelled_episodes": sorted(labels.episodes),
                                     "frames_without_view": left_out},
                                    trainer=train_image_classifier)
    except ValueError as err:
        raise DatasetError(args.labels, str(err)) from err
    classifier.save(args.output, overwrite=args.overwrite)
    beside = f" and {classifier.inputs[1:]} ({classifier.vector_width} values)" if vectors else ""
    print(f"wrote {args.output}: image classifier on '{key}' ({view.height}x{view.width})"
          f"{beside}, {classifier.meta['success_frames']} success and "
          f"{classifier.meta['failure_frames']} failure frames ({left_out} labelled frames "
          f"without a view left out), threshold {classifier.threshold:g}, debounce "
          f"{classifier.debounce_frames}")
    return 0


def _frames(classifier: Any, store: EpisodeStore, labels: Any
            ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(inputs, success flags, episode of each) of the labelled frames, for either kind."""
    from robot_rl.reward.labels import frame_features, labelled_image_frames

    if getattr(classifier, "kind", "vector") == "image":
        frames, flags, ids, _ = labelled_image_frames(store, labels, classifier.key,
                                                      classifier.vectors)
        return frames, flags, ids
    features = frame_features(store, classifier.inputs)
    rows, flags, ids = labels.frames(store)
    return features[rows], flags, ids


def _eval(args: argparse.Namespace) -> int:
    from robot_rl.reward.classifier import evaluate_classifier, load_classifier
    from robot_rl.reward.labels import FrameLabels

    classifier = load_classifier(args.classifier)
    with EpisodeStore.open(args.dataset, "r") as store:
        if args.labels:
            labels = FrameLabels.load(args.labels)
            chosen = _episode_list(args.episodes, store)
            if chosen is not None:
                labels.episodes = {k: v for k, v in labels.episodes.items() if k in chosen}
        else:
            labels = FrameLabels.from_reward(store, _episode_list(args.episodes, store),
                                             args.success_reward)
        features, flags, ids = _frames(classifier, store, labels)
    scores = evaluate_classifier(classifier, features, flags, ids, args.threshold,
                                 args.debounce_frames)
    if args.json:
        print(json.dumps(scores, indent=1))
        return 0
    f, e = scores["frames"], scores["episodes"]
    print(f"{args.classifier} on {args.dataset}: {len(flags)} frames of {len(set(ids))} "
          f"episodes, threshold {scores['threshold']:g}, debounce {scores['debounce_frames']}")
    print("frames          predicted success  predicted failure")
    print(f"  success       {f['tp']:>17}  {f['fn']:>17}")
    print(f"  failure       {f['fp']:>17}  {f['tn']:>17}")
    print(f"precision {f['precision']:.3f}  recall {f['recall']:.3f}  accuracy "
          f"{f['accuracy']:.3f}")
    print(f"episodes: {e['tp']} successes detected, {e['fn']} missed, {e['fp']} false "
          f"successes, {e['tn']} failures rejected; {e['early_detections']} detected before "
          f"their first success frame")
    return 0


def _export(args: argparse.Namespace) -> int:
    from robot_rl.reward.classifier import load_classifier

    classifier = load_classifier(args.classifier)
    path = classifier.export(args.output, overwrite=args.overwrite)
    what = "(N, inputs)"
    if getattr(classifier, "kind", "vector") == "image":
        what = f"(N, {', '.join(map(str, classifier.image_shape))}) uint8 views"
        if classifier.vectors:
            what += (f" and (N, {classifier.vector_width}) float32 vectors "
                     f"({' + '.join(classifier.inputs[1:])})")
    print(f"wrote {path}: torch.export program, {what} -> (N,) probabilities")
    return 0


# ---- parsing ---------------------------------------------------------------------------------
def _ranges(items: Sequence[str]) -> dict[int, list[tuple[int, int]]]:
    out: dict[int, list[tuple[int, int]]] = {}
    for item in items:
        try:
            episode, _, span = item.partition(":")
            first, _, last = span.partition("-")
            out.setdefault(int(episode), []).append((int(first), int(last or first)))
        except ValueError as err:
            raise ConfigError(f"reward label: --success {item!r}: expected "
                              "EPISODE:FIRST-LAST (e.g. 3:27-29) or EPISODE:FRAME") from err
    return out


def _episode_list(text: str | None, store: EpisodeStore) -> list[int] | None:
    if not text:
        return None
    chosen: list[int] = []
    try:
        for part in text.split(","):
            first, _, last = part.partition("-")
            chosen += list(range(int(first), int(last or first) + 1))
    except ValueError as err:
        raise ConfigError(f"--episodes {text!r}: expected e.g. 0-19,25") from err
    missing = [k for k in chosen if not 0 <= k < store.n_episodes]
    if missing:
        raise DatasetError(store.path, f"--episodes: {missing} do not exist (episodes "
                                       f"0-{store.n_episodes - 1})")
    return chosen


def _sizes(text: str) -> tuple[int, ...]:
    try:
        sizes = tuple(int(v) for v in text.split(",") if v)
    except ValueError as err:
        raise ConfigError(f"reward train: --hidden {text!r}: expected e.g. 64,64") from err
    if not sizes or min(sizes) < 1:
        raise ConfigError(f"reward train: --hidden {text!r}: expected e.g. 64,64")
    return sizes


def _width(store: EpisodeStore, key: str) -> int:
    """Values per frame of ``key`` (its step shape, flattened)."""
    return max(1, int(np.prod(store.specs[key].step_shape)))


def _layouts(store: EpisodeStore, task: str | None) -> dict[str, dict[str, slice]]:
    """The observation layouts of ``task`` (default: the dataset's task), on its robot, for the
    dataset's observation kind: ``observation`` (and ``next_observation``) is the task's
    observation as recorded (a pixel dataset's: joints, previous action and goal), and
    ``state_observation`` (kept beside a pixel dataset's) the task's state layout."""
    from robot_rl.data.transition_arrays import store_observation
    from robot_rl.registry import env_id_task, make_task
    from robot_rl.robot_config import load_robot

    name = task or env_id_task(store.attrs.get("task", "")) or store.attrs.get("task", "")
    mode = store_observation(store)[0]
    try:
        made = make_task(name, load_robot(store.attrs.get("robot", "")),
                         {"observation": mode} if mode != "state" else None)
        layouts = {"observation": made.layout}
        with contextlib.suppress(NotImplementedError):  # a task that observes its state only
            layouts["state_observation"] = made.state_layout()
        return layouts
    except (ValueError, OSError, ConfigError) as err:
        raise ConfigError(f"reward train: named inputs need the task's observation layout: "
                          f"{err} (pass --task)") from err


if __name__ == "__main__":
    sys.exit(main())
