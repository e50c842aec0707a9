"""``python -m orchestrator``: serve the session API (production entry point; Triton and the
Arena server run elsewhere). ``python -m local_stack`` runs the whole local stack."""

from __future__ import annotations

import logging
import sys

import uvicorn

from orchestrator.api.app import create_app
from orchestrator.settings import settings_from_cli


def main(argv: list[str] | None = None) -> None:
    settings = settings_from_cli(argv if argv is not None else sys.argv[1:], "act-orchestrator")
    logging.basicConfig(
        level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    if settings.triton_url is None:
        logging.getLogger(__name__).error(
            "ORCHESTRATOR_TRITON_URL (or --triton-url) is required; `python -m "
            "local_stack` starts a local Triton server instead"
        )
        raise SystemExit(2)
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port,
                log_level=settings.log_level.lower())


if __name__ == "__main__":
    main()
