"""Glue shared by the workflow's scripts: logging to the rule's log and clean errors.

Every script under ``scripts/`` is a ``main(snakemake)`` function run through
:func:`run`. Progress goes to the rule's log file and to stderr; an
:class:`~cohortnorm.errors.InputError` becomes a short message naming the problem
(no traceback), and the job fails so that Snakemake removes its outputs.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable
from typing import Any

from cohortnorm.errors import InputError

LOG_FORMAT = "%(asctime)s %(levelname)s [%(name)s] %(message)s"


def setup_logging(log_path: str | None, name: str) -> logging.Logger:
    """Log to ``log_path`` (if given) and to stderr, and return the script's logger."""
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log_path:
        handlers.append(logging.FileHandler(log_path, mode="w"))
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT, handlers=handlers, force=True)
    logging.captureWarnings(True)
    return logging.getLogger(name)


def run(main: Callable[[Any, logging.Logger], None], smk: Any) -> None:
    """Run a script's ``main(snakemake, logger)`` with logging and clean error reporting.

    Parameters
    ----------
    main
        The script body; it receives the ``snakemake`` object and a logger.
    smk
        The ``snakemake`` object Snakemake injects into scripts.
    """
    log_path = smk.log[0] if len(smk.log) else None
    logger = setup_logging(log_path, smk.rule)
    started = time.perf_counter()
    logger.info("rule %s started (%d thread(s))", smk.rule, smk.threads)
    try:
        main(smk, logger)
    except InputError as error:
        logger.error("%s", error)
        sys.stderr.write(f"\nERROR in rule {smk.rule}: {error}\n")
        sys.exit(1)
    except Exception:
        logger.exception("rule %s failed unexpectedly; please report this with the log", smk.rule)
        raise
    logger.info("rule %s finished in %.1f s", smk.rule, time.perf_counter() - started)
