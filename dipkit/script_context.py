"""Glue for ``workflow_scripts/``: logging and error reporting around a stage function.

This module never imports snakemake; scripts pass their ``snakemake`` object in.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import traceback


@contextlib.contextmanager
def script_context(smk):
    """Send logging and stderr to the rule's log file; on failure, print one clear line.

    The full traceback goes to the log; the terminal running Snakemake gets
    ``dipkit: <rule> failed: <message>`` so the cause is visible without opening the log.
    Errors whose class sets ``explained = True`` (bad input, failed downloads: the message
    names the file and what to do) are logged as ``<type>: <message>``, without a traceback.
    """
    terminal = sys.stderr
    log_path = smk.log[0] if len(smk.log) else None
    fh = open(log_path, "w", buffering=1, encoding="utf-8") if log_path else terminal  # noqa: SIM115 -- closed on exit below
    sys.stderr = fh
    logging.basicConfig(
        stream=fh, level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", force=True
    )
    try:
        yield logging.getLogger(f"dipkit.{smk.rule}")
    except Exception as err:
        if getattr(err, "explained", False):
            print(f"{type(err).__name__}: {err}", file=fh)
        else:
            traceback.print_exc(file=fh)
        print(f"dipkit: rule {smk.rule} ({dict(smk.wildcards)}) failed: {err}", file=terminal, flush=True)
        raise SystemExit(1) from None
    finally:
        sys.stderr = terminal
        if fh is not terminal:
            fh.close()
