"""The ``robot-rl`` command: each step of the pipeline, the dataset tools and the launch runner."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

DESCRIPTION = """\
robot_rl: learn manipulation skills on real robots.

The pipeline, step by step (each step reads what the one before wrote):
  robot-rl record   --out runs/valve/dataset.zarr        scripted demonstrations into a zarr dataset
  robot-rl pretrain --dataset runs/valve/dataset.zarr --out runs/valve   offline AWAC
  robot-rl finetune --run runs/valve                      online fine-tuning in the twin, gated by safety
  robot-rl eval     --checkpoint runs/valve/finetuned.pt  success rate of a policy
or all of it at once:
  robot-rl demo                                           the valve task on the MuJoCo twin, with a report
                                                          (twin, safety, learner: nodes over DDS)

Configs are YAML files in robot_rl/configs/ (valve, drawer) or a path; change a value with
--set awac.beta=0.3 (repeatable). Errors name the file, the key and the allowed values.
`robot-rl config` prints every setting of one, with its meaning, range and default.
"""


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["launch"]:
        # Launch arguments look like name:=value; argparse must not touch them.
        from robot_rl.ros.launch import main as launch_main
        return launch_main(argv[1:])
    parser = build_parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "handler"):
        parser.print_help()
        return 2
    from robot_rl.config import ConfigError
    from robot_rl.data.errors import DatasetError
    try:
        return int(args.handler(args) or 0)
    except ConfigError as err:
        print(f"robot-rl: config error: {err}", file=sys.stderr)
        return 2
    except DatasetError as err:
        print(f"robot-rl: dataset error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("robot-rl: interrupted; what was committed is kept", file=sys.stderr)
        return 130


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="robot-rl", description=DESCRIPTION,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
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
    demo.set_defaults(handler=_demo)

    record = _command(sub, "record", "record scripted demonstrations into a zarr dataset",
                      "Runs the task's scripted expert in the twin (clean, then with noise), every "
                      "command gated by the safety supervisor, and commits each episode atomically.")
    record.add_argument("--out", type=Path, required=True, help="dataset path (.zarr)")
    record.set_defaults(handler=_record)

    pretrain = _command(sub, "pretrain", "pretrain AWAC offline on a dataset",
                        "Trains AWAC on every transition of the dataset; writes RUN/offline.pt.")
    pretrain.add_argument("--dataset", type=Path, required=True, help="dataset path (.zarr)")
    pretrain.add_argument("--out", type=Path, required=True, help="run folder")
    pretrain.set_defaults(handler=_pretrain)

    finetune = _command(sub, "finetune", "fine-tune online in the twin, gated by safety",
                        "Continues from RUN/offline.pt (or the last RUN/finetuned.pt) with the "
                        "dataset in the replay buffer; online episodes are stored in RUN/online.zarr.")
    finetune.add_argument("--run", type=Path, required=True, help="run folder from pretrain")
    finetune.add_argument("--dataset", type=Path, help="dataset (default: RUN/dataset.zarr)")
    finetune.set_defaults(handler=_finetune)

    evaluate = _command(sub, "eval", "evaluate a checkpoint's success rate",
                        "Runs the deterministic policy for --episodes episodes on fresh seeds.")
    evaluate.add_argument("--checkpoint", type=Path, required=True, help="checkpoint (.pt)")
    evaluate.add_argument("--episodes", type=int, help="default: the config's eval.episodes")
    evaluate.set_defaults(handler=_eval)

    show = _command(sub, "config", "print a config in full: every setting, what it means, its range",
                    "Prints the config (after --profile and --set) as YAML with every setting "
                    "written out, each commented with what it does, what it allows and its default "
                    "where the config changes it. The output is a config: save it, edit it, and "
                    "pass it back with --config FILE.", progress=False)
    show.set_defaults(handler=_show_config)

    try:
        from robot_rl.data.cli import add_parser as add_dataset_parser
    except ImportError:
        pass
    else:
        add_dataset_parser(sub)

    sub.add_parser("launch", help="run a ROS 2 YAML launch file without ROS 2 (FILE [name:=value])")
    return parser


def _command(sub: argparse._SubParsersAction, name: str, summary: str,
             details: str, progress: bool = True) -> argparse.ArgumentParser:
    command = sub.add_parser(name, help=summary, description=f"{summary}.\n\n{details}",
                             formatter_class=argparse.RawDescriptionHelpFormatter)
    command.add_argument("--config", default="valve",
                         help="pipeline config: a name in robot_rl/configs or a YAML path "
                              "(default: %(default)s)")
    command.add_argument("--profile", help="a profile of the config, e.g. quick")
    command.add_argument("--set", dest="overrides", action="append", default=[],
                         metavar="KEY=VALUE", help="override a config value, e.g. awac.beta=0.3")
    if progress:
        command.add_argument("--quiet", action="store_true", help="no progress bars")
    return command


def _config(args: argparse.Namespace):
    from robot_rl.pipeline.config import load_pipeline_config
    return load_pipeline_config(args.config, args.overrides, args.profile)


def _show_config(args: argparse.Namespace) -> int:
    from robot_rl.config import annotated_yaml
    config = _config(args)  # first: a bad config prints its error, not a half-written header
    given = " ".join([f"--config {args.config}", *([f"--profile {args.profile}"] if args.profile
                                                   else []), *(f"--set {o}" for o in args.overrides)])
    print(f"# robot-rl config {given}\n{annotated_yaml(config)}", end="")
    return 0


def _demo(args: argparse.Namespace) -> int:
    if args.in_process:
        if args.realtime:
            raise SystemExit("robot-rl demo: --realtime is for the graph; --in-process has no "
                             "clock to keep")
        from robot_rl.pipeline.stages import run_demo
        report = run_demo(_config(args), args.out, progress=not args.quiet)
    else:
        from robot_rl.pipeline.graph_demo import run_graph_demo
        report = run_graph_demo(_config(args), args.out, progress=not args.quiet,
                                realtime=args.realtime)
    print((args.out / "report.md").read_text())
    print(f"report: {args.out / 'report.md'}  plot: {args.out / 'learning_curve.png'}")
    return 0 if report is not None else 1


def _record(args: argparse.Namespace) -> int:
    from robot_rl.pipeline.stages import record
    summary = record(_config(args), args.out, progress=not args.quiet)
    print(f"recorded {summary.episodes} episodes ({summary.steps} steps) to {args.out}: "
          f"demonstrations {summary.demo_success_rate:.0%} successful, "
          f"noisy {summary.noisy_success_rate:.0%}")
    return 0


def _pretrain(args: argparse.Namespace) -> int:
    from robot_rl.pipeline.stages import pretrain
    checkpoint = pretrain(_config(args), args.dataset, args.out, progress=not args.quiet)
    print(f"offline policy: {checkpoint}")
    return 0


def _finetune(args: argparse.Namespace) -> int:
    from robot_rl.pipeline.stages import finetune
    dataset = args.dataset or args.run / "dataset.zarr"
    result = finetune(_config(args), args.run, dataset, progress=not args.quiet)
    print(f"fine-tuned policy: {result.checkpoint} "
          f"(success {result.curve[-1].success_rate:.0%} at the last evaluation)")
    return 0


def _eval(args: argparse.Namespace) -> int:
    from robot_rl.pipeline.stages import evaluate_checkpoint
    config = _config(args)
    result = evaluate_checkpoint(config, args.checkpoint, args.episodes or config.eval.episodes,
                                 progress=not args.quiet)
    print(f"{args.checkpoint}: success {result.success_rate:.0%} over {result.episodes} episodes, "
          f"mean return {result.mean_return:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
