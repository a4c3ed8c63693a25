"""What robot_rl finds: ``python -m robot_rl.catalog`` lists every robot, task and driver (and
where each comes from); ``--task NAME [--robot NAME]`` describes one task on one robot."""

from __future__ import annotations

import sys

from robot_rl import registry


def main(argv: list[str] | None = None) -> int:
    """``python -m robot_rl.catalog``: every robot, task and driver robot_rl finds, and where
    from; ``--task NAME [--robot NAME]`` describes one task on one robot."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m robot_rl.catalog",
                                     description=main.__doc__.splitlines()[0])
    parser.add_argument("--task", help="describe this task (a name or a gymnasium id)")
    parser.add_argument("--robot", help="on this robot (default: the task's own)")
    args = parser.parse_args(argv)
    if args.task:
        print(registry.describe_task(args.task, args.robot))
        return 0
    print("robots (load_robot NAME):")
    for name, path in registry.registered_robots().items():
        print(f"  {name:16s} {path}")
    print("tasks:")
    for name, spec in registry.registered_tasks().items():
        print(f"  {name:16s} {spec.env_id:28s} default robot {spec.default_robot or '-'}; "
              f"{registry.task_origin(name)}")
    print("drivers (a calibration's kind):")
    for kind, (reference, origin) in sorted(registry.registered_drivers().items()):
        print(f"  {kind:16s} {reference}; {origin}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
