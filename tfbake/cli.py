"""``tfbake``: run a configured pipeline, or one stage of it.

    tfbake run CONFIG [BEAM FLAGS...]        transform -> train -> export
    tfbake transform CONFIG [BEAM FLAGS...]  the Beam job alone
    tfbake train CONFIG                      train and evaluate on the transformed data
    tfbake export CONFIG                     export the trained model for TF Serving

Unknown ``--flags`` after the config are Beam pipeline options (``--runner``,
``--direct_num_workers``, ``--setup_file ./setup.py``, Dataflow options...).
"""

from __future__ import annotations

import argparse
import json
import sys

from tfbake import stages
from tfbake.config import ConfigError, load_config
from transform import TransformError

COMMANDS = {
    "run": "transform -> train -> export, in one go",
    "transform": "run the Beam/tf.Transform job (analyze + transform + write)",
    "train": "train and evaluate the configured model on the transformed data",
    "export": "export the trained model (SavedModel for TF Serving)",
}
TAKES_BEAM_FLAGS = ("run", "transform")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tfbake", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, help_text in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.add_argument("config", help="the pipeline's YAML config, e.g. configs/penguins.yaml")
        if name in TAKES_BEAM_FLAGS:
            p.epilog = "Other --flags are passed to Beam as pipeline options."
    return parser


def _print(title: str, value) -> None:
    print(f"{title}: {json.dumps(value, indent=2, default=str)}")


def main(argv: list[str] | None = None) -> int:
    """The ``tfbake`` console script."""
    argv = sys.argv[1:] if argv is None else argv
    args, extra = _parser().parse_known_args(argv)
    if extra and args.command not in TAKES_BEAM_FLAGS:
        _parser().error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        config = load_config(args.config)
    except ConfigError as err:
        print(f"tfbake: {err}", file=sys.stderr)
        return 2
    try:
        if args.command == "run":
            summary = stages.run_all(config, extra)
            _print("rows", summary["transform"])
            _print("eval metrics", summary["eval_metrics"])
            print(f"exported: {summary['export']}")
        elif args.command == "transform":
            _print("rows", stages.run_transform(config, extra))
        elif args.command == "train":
            _print("eval metrics", stages.run_training(config)[1])
        elif args.command == "export":
            print(f"exported: {stages.run_export(config)}")
    except (TransformError, FileNotFoundError) as err:
        print(f"tfbake {args.command}: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
