"""The ``robot-rl`` command: each step of the pipeline, the dataset tools and the launch runner."""

from __future__ import annotations

import argparse
import sys
import textwrap
from pathlib import Path

DESCRIPTION = """\
robot_rl: learn manipulation skills on real robots.

The pipeline, step by step (each step reads what the one before wrote):
  robot-rl record   --out runs/valve/dataset.zarr        scripted demonstrations into a zarr dataset
  robot-rl pretrain --dataset runs/valve/dataset.zarr --out runs/valve   offline AWAC
  robot-rl finetune --run runs/valve [--resume]           online fine-tuning in the twin, gated by safety
  robot-rl eval     --checkpoint runs/valve/finetuned.pt  success rate of a policy
  robot-rl report   --run runs/valve                      the demo's report and plot for the run
  robot-rl deploy   runs/valve/finetuned.pt [mode:=real]  the policy on the robot, no training
or all of it at once:
  robot-rl demo                                           the valve task on the MuJoCo twin, with a report
                                                          (twin, safety, learner: nodes over DDS)

Configs are YAML files in robot_rl/configs/ (valve, drawer) or a path; change a value with
--set awac.beta=0.3 (repeatable). Errors name the file, the key and the allowed values.
`robot-rl config` prints every setting of one, with its meaning, range and default.

No command replaces what an earlier one wrote (a dataset, a checkpoint, a run folder) unless it is
given --overwrite; `record` into an existing dataset of the same robot and task appends to it.
"""


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["launch"]:
        # Launch arguments look like name:=value; argparse must not touch them.
        from robot_rl.ros.launch import main as launch_main
        return launch_main(argv[1:])
    parser = build_parser()
    launch_args = []
    if argv[:1] == ["deploy"]:  # NAME:=VALUE launch arguments may come anywhere after it
        launch_args = [a for a in argv[1:] if ":=" in a]
        argv = [a for a in argv if ":=" not in a]
    args = parser.parse_args(argv)
    if launch_args:
        args.launch_args = launch_args
    if not hasattr(args, "handler"):
        parser.print_help()
        return 2
    try:
        return int(args.handler(args) or 0)
    except KeyboardInterrupt:
        print("robot-rl: interrupted; what was committed is kept", file=sys.stderr)
        return 130
    except Exception as err:
        kind = _user_error(err)
        if kind is None:
            raise
        label, code = kind
        print(f"robot-rl: {label}{err}", file=sys.stderr)
        return code


def _user_error(err: Exception) -> tuple[str, int] | None:
    """(label, exit code) of an error that ends a command with its one-line message: bad input
    named by file and key, not a bug (those keep their traceback)."""
    from robot_rl.config import ConfigError
    from robot_rl.data.errors import DatasetError
    from robot_rl.pipeline.outputs import OutputExistsError

    if isinstance(err, ConfigError):
        return "config error: ", 2
    if isinstance(err, DatasetError):
        return "dataset error: ", 1
    if isinstance(err, OutputExistsError):
        return "", 1
    # imported by the commands that load checkpoints (it imports torch): not looked up otherwise
    checkpoint = sys.modules.get("robot_rl.learning.checkpoint")
    if checkpoint is not None and isinstance(err, checkpoint.CheckpointError):
        return "checkpoint error: ", 1
    deploy = sys.modules.get("robot_rl.pipeline.deploy")  # imported by deploy only
    if deploy is not None and isinstance(err, deploy.DeployError):
        return "deploy failed: ", 1
    return None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="robot-rl", description=DESCRIPTION,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"robot-rl {_version()}")
    sub = parser.add_subparsers(title="commands", metavar="COMMAND")

    demo = _command(sub, "demo", "record, pretrain, fine-tune and evaluate; write a report",
                    "Records demonstrations, then runs launch/<task>.launch.yaml mode:=twin in "
                    "simulated time, lockstep: the learner node pretrains, fine-tunes on the "
                    "twin through the safety node, evaluates its policy on the graph every "
                    "finetune.eval_every_env_steps, and stops after finetune.env_steps; "
                    "report.md, report.json and learning_curve.png are written to --out. "
                    "--realtime runs the graph on the wall clock instead; --in-process runs it "
                    "all in one process.")
    demo.add_argument("--out", type=Path, default=Path("runs/valve-demo"),
                      help="run folder (default: %(default)s)")
    demo.add_argument("--in-process", action="store_true",
                      help="one process, the supervisor as an in-process gate (no graph)")
    demo.add_argument("--realtime", action="store_true",
                      help="the graph on the wall clock, as on a robot (default: the twin's "
                           "simulated time, lockstep: as fast as the nodes go)")
    demo.add_argument("--overwrite", action="store_true",
                      help="replace the outputs of an earlier demo in --out (without it, a "
                           "non-empty --out is refused)")
    demo.set_defaults(handler=_demo)

    record = _command(sub, "record", "record scripted demonstrations into a zarr dataset",
                      "Runs the task's scripted expert in the twin (clean, then with noise), every "
                      "command gated by the safety supervisor, and commits each episode atomically."
                      "\n\nAn existing dataset of the same robot, task, calibration and action "
                      "mode is appended to: recording sessions add up, a second run never loses "
                      "the first, and the episode seeds continue after the episodes already there, "
                      "so no episode is recorded twice. A dataset of another robot, task, "
                      "calibration or action mode is refused (one line saying what differs), and "
                      "a path that is not a dataset (a file, another folder) is never deleted.")
    record.add_argument("--out", type=Path, required=True,
                        help="dataset path (.zarr); appended to if it exists")
    record.add_argument("--overwrite", action="store_true",
                        help="replace an existing dataset instead of appending to it")
    record.set_defaults(handler=_record)

    pretrain = _command(sub, "pretrain", "pretrain AWAC offline on a dataset",
                        "Trains AWAC on every transition of the dataset; writes RUN/offline.pt "
                        "(refused if it exists, unless --overwrite). A dataset with a missing "
                        "chunk or a NaN/inf value is refused.")
    pretrain.add_argument("--dataset", type=Path, required=True, help="dataset path (.zarr)")
    pretrain.add_argument("--out", type=Path, required=True, help="run folder")
    pretrain.add_argument("--overwrite", action="store_true",
                          help="replace RUN/offline.pt and the pretrain log")
    pretrain.set_defaults(handler=_pretrain)

    finetune = _command(sub, "finetune", "fine-tune online in the twin, gated by safety",
                        "Starts from RUN/offline.pt with the dataset in the replay buffer; online "
                        "episodes are stored in RUN/online.zarr and the policy in "
                        "RUN/finetuned.pt. Either one from an earlier run is refused unless "
                        "--resume (continue that run: from RUN/finetuned.pt, its online episodes "
                        "kept in the replay and new ones appended, for another "
                        "finetune.env_steps steps; session after session on a robot) or "
                        "--overwrite (start over from RUN/offline.pt).")
    finetune.add_argument("--run", type=Path, required=True, help="run folder from pretrain")
    finetune.add_argument("--dataset", type=Path, help="dataset (default: RUN/dataset.zarr)")
    again = finetune.add_mutually_exclusive_group()
    again.add_argument("--resume", action="store_true",
                       help="continue the run in RUN: from RUN/finetuned.pt, RUN/online.zarr "
                            "kept and appended to")
    again.add_argument("--overwrite", action="store_true",
                       help="replace RUN/online.zarr, RUN/finetuned.pt and the finetune log")
    finetune.set_defaults(handler=_finetune)

    evaluate = _command(sub, "eval", "evaluate a checkpoint's success rate",
                        "Runs the deterministic policy for --episodes episodes on fresh seeds. The "
                        "networks are rebuilt from the settings stored in the checkpoint; the "
                        "task and evaluation settings come from --config, or from the "
                        "checkpoint's stored config without it. A checkpoint of another task is "
                        "refused.", config_default=None)
    evaluate.add_argument("--checkpoint", type=Path, required=True, help="checkpoint (.pt)")
    evaluate.add_argument("--episodes", type=_positive_int,
                          help="default: the config's eval.episodes")
    evaluate.set_defaults(handler=_eval)

    deploy = sub.add_parser(
        "deploy", help="run a finished policy on the robot through the safety supervisor",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=textwrap.dedent("""\
            Run a finished policy on the robot, without training, and report how it did.

            Starts launch/deploy.launch.yaml: the mode's hardware (mode:=twin, the default:
            the MuJoCo twin; hil: the real drivers against emulated hardware; real: the
            robot), the safety node and the actor node acting with CHECKPOINT's policy (its
            mean) through the supervisor. After --episodes episodes it stops the launch and
            writes OUT/deploy.md and deploy.json (success rate, each episode, the
            supervisor's verdicts), OUT/episodes.csv and OUT/graph.log. The task and robot
            come from the checkpoint; launch arguments (NAME:=VALUE) go to the launch file:
              robot-rl deploy runs/valve/finetuned.pt
              robot-rl deploy runs/valve/finetuned.pt mode:=real port:=/dev/ttyUSB0
            On a real robot, go through docs/hardware-checklist.md first."""))
    deploy.add_argument("checkpoint", type=Path, help="the policy (.pt)")
    deploy.add_argument("launch_args", nargs="*", metavar="NAME:=VALUE",
                        help="launch arguments, e.g. mode:=hil (see robot-rl launch "
                             "launch/deploy.launch.yaml --show-args)")
    deploy.add_argument("--episodes", type=_positive_int, default=10,
                        help="episodes to run (default: %(default)s)")
    deploy.add_argument("--out", type=Path, help="report folder (default: CHECKPOINT's folder "
                                                 "/deploy)")
    deploy.add_argument("--overwrite", action="store_true",
                        help="replace the outputs of an earlier deploy in --out")
    deploy.add_argument("--quiet", action="store_true", help="no progress bar")
    deploy.set_defaults(handler=_deploy)

    report = _command(sub, "report", "evaluate a run's policies and write the demo's report",
                      "For a run made step by step (record, pretrain, finetune): evaluates "
                      "RUN/offline.pt and RUN/finetuned.pt as demo does and writes "
                      "RUN/report.md, report.json and learning_curve.png with the dataset's "
                      "success rates, the fine-tuning curve and the safety supervisor's verdicts "
                      "of every finetune session. The config is the one stored in "
                      "RUN/finetuned.pt unless --config is given.", config_default=None)
    report.add_argument("--run", type=Path, required=True,
                        help="run folder (pretrain's --out, finetune's --run)")
    report.add_argument("--dataset", type=Path, help="dataset (default: RUN/dataset.zarr)")
    report.add_argument("--overwrite", action="store_true", help="replace an earlier report")
    report.set_defaults(handler=_report)

    show = _command(sub, "config", "print a config in full: every setting, what it means, its range",
                    "Prints the config (after --profile and --set) as YAML with every setting "
                    "written out, each commented with what it does, what it allows and its default "
                    "where the config changes it. The output is a config: save it, edit it, and "
                    "pass it back with --config FILE.", progress=False)
    show.set_defaults(handler=_show_config)

    try:
        from robot_rl.dataset_cli import add_parser as add_dataset_parser
    except ImportError:
        pass
    else:
        add_dataset_parser(sub)
    from robot_rl.reward.cli import add_parser as add_reward_parser
    add_reward_parser(sub)

    sub.add_parser("launch", help="run a ROS 2 YAML launch file without ROS 2 (FILE [name:=value])")
    return parser


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version
    try:
        return version("robot_rl")
    except PackageNotFoundError:  # run from a source tree that pip never installed
        return "0+unknown"


def _command(sub: argparse._SubParsersAction, name: str, summary: str,
             details: str, progress: bool = True,
             config_default: str | None = "valve") -> argparse.ArgumentParser:
    paragraphs = "\n\n".join(textwrap.fill(p, 90) for p in details.split("\n\n"))
    command = sub.add_parser(name, help=summary, description=f"{summary}.\n\n{paragraphs}",
                             formatter_class=argparse.RawDescriptionHelpFormatter)
    command.add_argument("--config", default=config_default,
                         help="pipeline config: a name in robot_rl/configs or a YAML path "
                              "(default: " + (config_default or "the checkpoint's own") + ")")
    command.add_argument("--profile", help="a profile of the config, e.g. quick")
    command.add_argument("--set", dest="overrides", action="append", default=[],
                         metavar="KEY=VALUE", help="override a config value, e.g. awac.beta=0.3")
    if progress:
        command.add_argument("--quiet", action="store_true", help="no progress bars")
    return command


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}")
    return value


def _config(args: argparse.Namespace):
    from robot_rl.run_config import load_pipeline_config
    return load_pipeline_config(args.config, args.overrides, args.profile)


def _show_config(args: argparse.Namespace) -> int:
    from robot_rl.config import annotated_yaml
    from robot_rl.run_config import EXTENDS, extends_value
    config = _config(args)  # first: a bad config prints its error, not a half-written header
    given = " ".join([f"--config {args.config}", *([f"--profile {args.profile}"] if args.profile
                                                   else []), *(f"--set {o}" for o in args.overrides)])
    # extends: the printout keeps the config's profiles (--profile quick works on it); every
    # setting is written out below, so it does not change when the library's defaults do
    base = f"{EXTENDS}: {extends_value(args.config)}"
    print(f"# robot-rl config {given}\n{base.ljust(43)} # profiles come from here; the settings "
          f"below replace its own\n{annotated_yaml(config)}", end="")
    return 0


def _demo(args: argparse.Namespace) -> int:
    from robot_rl.pipeline.outputs import OutputExistsError
    config = _config(args)
    if args.out.exists() and not args.out.is_dir():
        raise OutputExistsError(args.out, "is a file, not a run folder: --out a folder")
    if args.out.is_dir() and any(args.out.iterdir()) and not args.overwrite:
        names = sorted(p.name for p in args.out.iterdir())
        shown = ", ".join(names[:6]) + (", ..." if len(names) > 6 else "")
        raise OutputExistsError(args.out, f"already holds files ({shown}); pass --overwrite to "
                                          f"replace the demo's outputs in it, or --out a new "
                                          f"folder")
    if args.in_process:
        if args.realtime:
            raise SystemExit("robot-rl demo: --realtime is for the graph; --in-process has no "
                             "clock to keep")
        from robot_rl.pipeline.stages import run_demo
        report = run_demo(config, args.out, progress=not args.quiet, overwrite=args.overwrite)
    else:
        from robot_rl.data.store import remove_store
        from robot_rl.pipeline.graph_demo import run_graph_demo
        from robot_rl.pipeline.stages import DATASET
        # the graph demo records into a new dataset and clears the learner's outputs itself
        remove_store(args.out / DATASET)
        report = run_graph_demo(config, args.out, progress=not args.quiet,
                                realtime=args.realtime)
    print((args.out / "report.md").read_text())
    print(f"report: {args.out / 'report.md'}  plot: {args.out / 'learning_curve.png'}")
    return 0 if report is not None else 1


def _record(args: argparse.Namespace) -> int:
    from robot_rl.pipeline.stages import record
    summary = record(_config(args), args.out, progress=not args.quiet, append=True,
                     overwrite=args.overwrite)
    held = (f" (appended: it now holds {summary.total_episodes} episodes)" if summary.appended
            else "")
    print(f"recorded {summary.episodes} episodes ({summary.steps} steps) to {args.out}{held}: "
          f"demonstrations {_percent(summary.demo_success_rate)} successful, "
          f"noisy {_percent(summary.noisy_success_rate)}")
    return 0


def _percent(rate: float) -> str:
    """A success rate; '-' when there was nothing to rate (no episodes of that kind)."""
    return "-" if rate != rate else f"{rate:.0%}"


def _pretrain(args: argparse.Namespace) -> int:
    from robot_rl.pipeline.stages import pretrain
    checkpoint = pretrain(_config(args), args.dataset, args.out, progress=not args.quiet,
                          overwrite=args.overwrite)
    print(f"offline policy: {checkpoint}")
    return 0


def _finetune(args: argparse.Namespace) -> int:
    from robot_rl.pipeline.stages import DATASET, finetune
    dataset = args.dataset or args.run / DATASET
    result = finetune(_config(args), args.run, dataset, progress=not args.quiet,
                      overwrite=args.overwrite, resume=args.resume)
    print(f"fine-tuned policy: {result.checkpoint} "
          f"(success {result.curve[-1].success_rate:.0%} at the last evaluation, "
          f"{result.curve[-1].env_steps} online steps in all)")
    return 0


def _deploy(args: argparse.Namespace) -> int:
    from robot_rl.pipeline.deploy import deploy
    launch_args = {}
    for item in args.launch_args:
        name, sep, value = item.partition(":=")
        if not sep or not name:
            from robot_rl.config import ConfigError
            raise ConfigError(f"launch argument {item!r}: expected NAME:=VALUE, e.g. mode:=hil")
        launch_args[name] = value
    out = args.out or args.checkpoint.parent / "deploy"
    report = deploy(args.checkpoint, out, episodes=args.episodes, launch_args=launch_args,
                    progress=not args.quiet, overwrite=args.overwrite)
    print((out / "deploy.md").read_text())
    print(f"report: {out / 'deploy.md'}")
    return 0 if report.episodes else 1


def _report(args: argparse.Namespace) -> int:
    from robot_rl.pipeline.stages import FINETUNED_CHECKPOINT, eval_config, report_run
    config = eval_config(args.run / FINETUNED_CHECKPOINT, args.config, args.overrides,
                         args.profile)
    report_run(config, args.run, dataset_path=args.dataset, progress=not args.quiet,
               overwrite=args.overwrite)
    print((args.run / "report.md").read_text())
    print(f"report: {args.run / 'report.md'}  plot: {args.run / 'learning_curve.png'}")
    return 0


def _eval(args: argparse.Namespace) -> int:
    from robot_rl.pipeline.stages import eval_config, evaluate_checkpoint
    config = eval_config(args.checkpoint, args.config, args.overrides, args.profile)
    result = evaluate_checkpoint(config, args.checkpoint, args.episodes or config.eval.episodes,
                                 progress=not args.quiet)
    print(f"{args.checkpoint}: success {result.success_rate:.0%} over {result.episodes} episodes, "
          f"mean return {result.mean_return:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
