"""``tfbake``: run a configured pipeline, or one stage of it.

    tfbake run CONFIG [BEAM FLAGS...]        transform -> train -> export
    tfbake transform CONFIG [BEAM FLAGS...]  the Beam job alone
    tfbake train CONFIG                      train and evaluate on the transformed data
    tfbake export CONFIG                     export the trained model for TF Serving
    tfbake serve [--config CONFIG] [FLAGS]   the TF Serving-compatible model server
    tfbake predict --server URL [--config CONFIG | --model NAME] --input rows.csv|rows.jsonl
    tfbake check CONFIG [--server URL] [--grpc TARGET]   trained vs exported vs served
    tfbake inspect EXPORT_DIR_OR_URL [--model NAME]      signatures, features, samples
    tfbake drift CONFIG --logs DIR [--html FILE]         served traffic vs training data
    tfbake replay --logs DIR --server TARGET [--version N]  logged requests, answers compared

Unknown ``--flags`` after the config are Beam pipeline options (``--runner``,
``--direct_num_workers``, ``--setup_file ./setup.py``, Dataflow options...). A
non-local runner refuses local data and artifacts paths unless
``--workers_see_local_files``. ``--verbose`` anywhere shows TensorFlow's start-up and
C++ logs (hidden otherwise).
``tfbake serve`` takes tensorflow_model_server's flags (``--port``,
``--rest_api_port``, ``--model_name``, ``--model_base_path``, ``--model_config_file``,
``--enable_batching``...); ``--config CONFIG`` fills in the model name and base path
from a pipeline config.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from tfbake.config import ConfigError, load_config
from tfbake.paths import WORKERS_SEE_LOCAL_FILES, LocalPathError
from tfbake.quiet import VERBOSE, tensorflow_import
from tfbake.serving_runtime import import_tensorflow

# Each command imports its own runtime (Beam and tf_keras for the stages, TensorFlow
# and gRPC for the server) once its arguments and config have been read: a typo costs
# no TensorFlow start-up, and `tfbake serve` never loads Beam or tf_keras.

COMMANDS = {
    "run": "transform -> train -> export, in one go",
    "transform": "run the Beam/tf.Transform job (analyze + transform + write)",
    "train": "train and evaluate the configured model on the transformed data",
    "export": "export the trained model (SavedModel for TF Serving)",
}
TAKES_BEAM_FLAGS = ("run", "transform")
# Commands whose flags belong to the model server (tensorflow_model_server's own).
SERVER_COMMANDS = {
    "serve": "the TF Serving-compatible model server (tensorflow_model_server's flags)",
    "predict": "stream a CSV/JSONL file through a model server, JSONL results out",
}


def _add_check(sub) -> None:
    help_text = "parity report: trained model vs export vs TF1 loader vs a live server"
    p = sub.add_parser(
        "check", help=help_text, description=help_text,
        epilog="Exit status: 0 all within tolerance, 1 skew or a failed path, 2 bad config.",
    )
    p.add_argument("config", help="the pipeline's YAML config, e.g. configs/penguins.yaml")
    p.add_argument("--server", help="a live server's REST URL, e.g. http://127.0.0.1:8501")
    p.add_argument("--grpc", help="a live server's gRPC target, e.g. 127.0.0.1:8500")
    p.add_argument("--model", help="the model's name on the server (default: the config's name)")
    p.add_argument("--export_dir", help="the version folder to check (default: the latest)")
    p.add_argument("--rows", type=int, default=None,
                   help="check the first N eval rows (default: all)")
    p.add_argument("--tolerance", type=float, default=None,
                   help="a value differs when |a - b| > T * (1 + |b|) (default: 1e-5)")
    p.add_argument("--allow-skips", action="store_true", dest="allow_skips",
                   help="rows a path cannot take do not fail the check (default: they do)")
    p.add_argument("--format", choices=("text", "json"), default="text")


def _add_inspect(sub) -> None:
    help_text = "an export's signatures, raw feature contract and ready-to-run request samples"
    p = sub.add_parser("inspect", help=help_text, description=help_text)
    p.add_argument("target", metavar="EXPORT_DIR_OR_URL",
                   help="an export version folder or base, or http://host:8501 / grpc://host:8500")
    p.add_argument("--model", help="the model's name (required for a URL; default for a folder: "
                   "the config name it was exported under)")
    p.add_argument("--version", type=int, default=None, help="a server's model version")
    p.add_argument("--rest_url", help="REST address in the samples (default http://localhost:8501)")
    p.add_argument("--grpc_target", help="gRPC address in the samples (default localhost:8500)")
    p.add_argument("--format", choices=("text", "json"), default="text")
    p.add_argument("--serving-docs", action="store_true", dest="serving_docs",
                   help="print docker / models.config / batching commands for this export")


def _add_drift_and_replay(sub) -> None:
    help_text = "the request log's features against the training statistics"
    p = sub.add_parser(
        "drift", help=help_text, description=help_text,
        epilog="Exit status: 0 no drift, 1 a feature over a monitoring threshold, 2 bad config.",
    )
    p.add_argument("config", help="the pipeline's YAML config, e.g. configs/penguins.yaml")
    p.add_argument("--logs", required=True, help="the server's request log folder")
    p.add_argument("--format", choices=("text", "json"), default="text")
    p.add_argument("--html", help="also write an HTML page (one plot per feature) here")
    help_text = "replay logged requests against a server; report the answers that differ"
    p = sub.add_parser(
        "replay", help=help_text, description=help_text,
        epilog="Exit status: 0 every answer as logged, 1 some differ.",
    )
    p.add_argument("--logs", required=True, help="the server's request log folder")
    p.add_argument("--server", required=True, help="gRPC target, e.g. 127.0.0.1:8500")
    p.add_argument("--model", help="send to this model (default: the one each record names)")
    p.add_argument("--version", type=int, default=None,
                   help="send to this version (default: the server's latest)")
    p.add_argument("--tolerance", type=float, default=None,
                   help="numbers differ when |a - b| > T * (1 + |b|) (default: 1e-6)")
    p.add_argument("--format", choices=("text", "json"), default="text")


def _drift(args: argparse.Namespace) -> int:
    """``tfbake drift``: prints the report (and writes the page); 1 when a feature drifts."""
    try:
        config = load_config(args.config, check_files=False, check_imports=False)
    except ConfigError as err:
        print(f"tfbake: {err}", file=sys.stderr)
        return 2
    with tensorflow_import(sys.argv):
        from tfbake import drift
    try:
        report = drift.drift(config, args.logs)
    except FileNotFoundError as err:
        print(f"tfbake drift: {err}", file=sys.stderr)
        return 2
    if args.html:
        with open(args.html, "w", encoding="utf-8") as f:
            f.write(drift.format_html(report))
    print(json.dumps(report.to_dict(), indent=2) if args.format == "json"
          else drift.format_text(report))
    return 1 if report.drifted else 0


def _replay(args: argparse.Namespace) -> int:
    """``tfbake replay``: prints the differing answers; 1 when any differs."""
    with tensorflow_import(sys.argv):
        from tfbake import replay

    try:
        report = replay.replay(
            args.logs, args.server, model_name=args.model, version=args.version,
            tolerance=replay.DEFAULT_TOLERANCE if args.tolerance is None else args.tolerance,
        )
    except FileNotFoundError as err:
        print(f"tfbake replay: {err}", file=sys.stderr)
        return 2
    print(json.dumps(report.to_dict(), indent=2) if args.format == "json"
          else replay.format_text(report))
    return 1 if report.differences else 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tfbake", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, help_text in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.add_argument("config", help="the pipeline's YAML config, e.g. configs/penguins.yaml")
        if name in TAKES_BEAM_FLAGS:
            p.add_argument(
                WORKERS_SEE_LOCAL_FILES, action="store_true",
                help="the Beam workers of a non-local runner see this machine's files "
                "(a shared mount, workers on this machine): allow local data/artifacts paths",
            )
            p.epilog = "Other --flags are passed to Beam as pipeline options."
    for name, help_text in SERVER_COMMANDS.items():
        sub.add_parser(name, help=help_text, add_help=False)
    _add_check(sub)
    _add_inspect(sub)
    _add_drift_and_replay(sub)
    return parser


def _check(args: argparse.Namespace) -> int:
    """``tfbake check``: prints the parity report; 1 when anything is over tolerance."""
    try:
        config = load_config(args.config, check_files=False, check_imports=False)
    except ConfigError as err:
        print(f"tfbake: {err}", file=sys.stderr)
        return 2
    if args.rows is not None and args.rows <= 0:
        print(f"tfbake check: --rows must be a positive number, got {args.rows}", file=sys.stderr)
        return 2
    with tensorflow_import(sys.argv):
        from tfbake import check
    try:
        report = check.check(
            config, export_dir=args.export_dir, server=args.server, grpc_target=args.grpc,
            model_name=args.model, rows=args.rows,
            tolerance=check.DEFAULT_TOLERANCE if args.tolerance is None else args.tolerance,
            allow_skips=args.allow_skips,
        )
    except (check.CheckError, FileNotFoundError) as err:
        print(f"tfbake check: {err}", file=sys.stderr)
        return 1
    if args.format == "json":
        print(json.dumps(report.to_dict(), indent=2))
    else:
        check.print_report(report)
    return 0 if report.ok else 1


def _inspect(args: argparse.Namespace) -> int:
    """``tfbake inspect``: prints the description (text or JSON)."""
    with tensorflow_import(sys.argv):
        from tfbake import inspection
        from tfbake.model_server.client import ServingRequestError

    if args.serving_docs:
        try:
            print(inspection.serving_docs(args.target, args.model))
        except (FileNotFoundError, ValueError) as err:
            print(f"tfbake inspect: {err}", file=sys.stderr)
            return 1
        return 0
    try:
        description = inspection.inspect(
            args.target, model_name=args.model, version=args.version,
            rest_url=args.rest_url, grpc_target=args.grpc_target,
        )
    except (FileNotFoundError, ValueError, ServingRequestError) as err:
        print(f"tfbake inspect: {err}", file=sys.stderr)
        return 1
    text = inspection.format_json(description) if args.format == "json" else (
        inspection.format_text(description))
    print(text)
    return 0


def _serve(argv: list[str]) -> int:
    """``tfbake serve``: ``--config CONFIG`` becomes ``--model_name``/``--model_base_path``."""
    if "--config" in argv or any(a.startswith("--config=") for a in argv):
        parser = argparse.ArgumentParser(add_help=False)
        parser.add_argument("--config")
        known, argv = parser.parse_known_args(argv)
        try:
            config = load_config(known.config, check_files=False, check_imports=False)
        except ConfigError as err:
            print(f"tfbake: {err}", file=sys.stderr)
            return 2
        argv = [
            f"--model_name={config.name}",
            f"--model_base_path={os.path.abspath(config.export_dir_base)}",
            *argv,
        ]
    with tensorflow_import(sys.argv):
        import_tensorflow()
        from tfbake.model_server.server import main as serve_main
    return serve_main(argv)


def _predict(argv: list[str]) -> int:
    """``tfbake predict``: ``--config CONFIG`` names the model and says how its CSV
    files are laid out (``data.csv``), so an input CSV is read as the Beam job reads one,
    and which features a request carries as feature_lists (``data.format:
    sequence_example``)."""
    with tensorflow_import(sys.argv):
        from tfbake.predict import cli_predict

    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--config")
    known, argv = parser.parse_known_args(argv)
    if known.config is None:
        return cli_predict(argv)
    try:
        config = load_config(known.config, check_files=False, check_imports=False)
    except ConfigError as err:
        print(f"tfbake: {err}", file=sys.stderr)
        return 2
    if "--model" not in argv and not any(a.startswith("--model=") for a in argv):
        argv = [f"--model={config.name}", *argv]
    return cli_predict(argv, csv_format=config.data.csv,
                       feature_lists=config.serving_feature_lists())


def _print(title: str, value) -> None:
    print(f"{title}: {json.dumps(value, indent=2, default=str)}")


def _print_analysis_cache(config) -> None:
    from tfbake import stages
    from tfbake.transform.analysis_cache import describe

    report = stages.analysis_cache_report(config)
    if report:
        print(describe(report))


def _print_warm_start(config) -> None:
    from tfbake import stages
    from tfbake.trainer import WarmStartReport

    report = stages.warm_start_report(config)
    if report:
        print(WarmStartReport(**report).summary())


def main(argv: list[str] | None = None) -> int:
    """The ``tfbake`` console script."""
    argv = [a for a in (sys.argv[1:] if argv is None else argv) if a != VERBOSE]
    if argv and argv[0] == "serve":
        return _serve(argv[1:])
    if argv and argv[0] == "predict":
        return _predict(argv[1:])
    args, extra = _parser().parse_known_args(argv)
    if extra and args.command not in TAKES_BEAM_FLAGS:
        _parser().error(f"unrecognized arguments: {' '.join(extra)}")
    if args.command == "check":
        return _check(args)
    if args.command == "inspect":
        return _inspect(args)
    if args.command == "drift":
        return _drift(args)
    if args.command == "replay":
        return _replay(args)
    try:
        with tensorflow_import(sys.argv):  # a preprocessing_fn module may import TensorFlow
            config = load_config(args.config)
    except ConfigError as err:
        print(f"tfbake: {err}", file=sys.stderr)
        return 2
    with tensorflow_import(sys.argv):
        from tfbake import stages
        from tfbake.serving_input.serving_check import ExportCheckError
        from tfbake.transform import TransformError
    local_ok = getattr(args, "workers_see_local_files", False)
    try:
        if args.command == "run":
            summary = stages.run_all(config, extra, workers_see_local_files=local_ok)
            _print("rows", summary["transform"])
            _print_analysis_cache(config)
            _print_warm_start(config)
            _print("eval metrics", summary["eval_metrics"])
            print(f"exported: {summary['export']}")
        elif args.command == "transform":
            _print("rows", stages.run_transform(config, extra, workers_see_local_files=local_ok))
            _print_analysis_cache(config)
        elif args.command == "train":
            metrics = stages.run_training(config)[1]
            _print_warm_start(config)
            _print("eval metrics", metrics)
        elif args.command == "export":
            print(f"exported: {stages.run_export(config)}")
    except (ConfigError, LocalPathError) as err:
        print(f"tfbake {args.command}: {err}", file=sys.stderr)
        return 2
    except (TransformError, ExportCheckError, FileNotFoundError) as err:
        print(f"tfbake {args.command}: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
