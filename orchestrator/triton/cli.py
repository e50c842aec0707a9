"""``local-triton``: serve a model repository with a local tritonserver until stopped.

SIGINT/SIGTERM stop it cleanly; SIGHUP re-syncs the derived repository and
reloads the models; with ``--watch`` new exports are synced by themselves.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from collections.abc import Sequence

from orchestrator.triton.launcher import LocalTriton
from orchestrator.triton.triton_env import ENV_VAR, LauncherError


def _say(message: str, error: bool = False) -> None:
    print(message, file=sys.stderr if error else sys.stdout, flush=True)


def run(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="local-triton",
        description="Serve an exported model repository with a local tritonserver "
        "(python backend + ONNX Runtime). SIGHUP re-syncs and reloads the models.",
    )
    parser.add_argument("--model-repository", default="model_repository")
    parser.add_argument("--work-dir", default="build/local-triton",
                        help="derived repository, backend, log, pid file")
    parser.add_argument("--triton-env", default=None, help=f"default: ${ENV_VAR} or .venv-triton")
    parser.add_argument("--model", action="append", dest="models", help="load only these")
    # The stack's defaults (Settings.local_triton_port_base); 0 picks a free port.
    parser.add_argument("--http-port", type=int, default=8100)
    parser.add_argument("--grpc-port", type=int, default=8101)
    parser.add_argument("--metrics-port", type=int, default=8102)
    parser.add_argument("--ort-threads", type=int, default=1)
    parser.add_argument("--watch", type=float, default=2.0, metavar="SECONDS",
                        help="re-sync the derived repository when the source changes "
                        "(then load a new version through Triton's API); 0: never")
    parser.add_argument("--timeout", type=float, default=60.0)
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING)
    try:
        triton = LocalTriton(
            args.model_repository,
            work_dir=args.work_dir,
            triton_env=args.triton_env,
            models=args.models,
            grpc_port=args.grpc_port,
            http_port=args.http_port,
            metrics_port=args.metrics_port,
            ort_threads=args.ort_threads,
            watch_s=args.watch or None,
        )
    except (LauncherError, ValueError) as exc:
        _say(f"local-triton: {exc}", error=True)
        return 2
    stop = threading.Event()
    reload = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGHUP, lambda *_: reload.set())
    try:
        triton.start(args.timeout)
        models = ", ".join(triton.model_names()) or "(none)"
        _say(f"tritonserver ready: grpc {triton.grpc_url}  http {triton.http_url}  "
             f"metrics {triton.metrics_url}  models {models}  log {triton.log_path}")
        while not stop.wait(0.5):
            if reload.is_set():
                reload.clear()
                try:
                    triton.load()
                    _say("re-synced and reloaded the models")
                except (LauncherError, ValueError) as exc:  # keep serving what is loaded
                    _say(f"local-triton: reload failed: {exc}", error=True)
            if not triton.is_running():
                _say(f"tritonserver died; log tail:\n{triton.log_tail()}", error=True)
                return 1
    except (LauncherError, ValueError) as exc:
        _say(f"local-triton: {exc}", error=True)
        return 1
    finally:
        triton.close()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """The ``local-triton`` command."""
    return run(argv)


if __name__ == "__main__":
    sys.exit(main())
