"""Runs `python -m search ...` cases in forked children of one warm process, for many inputs.

Protocol: one JSON request a line on stdin, {"args": [...], "cwd": DIR, "timeout": S}; one JSON
answer a line on stdout, {"code": int | null, "hung": bool, "seconds": float}; the child's
stdout and stderr go to DIR/stdout and DIR/stderr. Each child is a fresh process as far as the
case can tell (`cli.main` exactly as `python -m search` calls it, its own exit code), but
skips the interpreter's start and the imports of torch and optuna (seconds each), so a
generated-input test tries hundreds of study files a minute. This parent runs no torch op:
forking after one would leave the children's thread pools broken.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
import traceback

import optuna  # noqa: F401 (warm imports for the children: seconds each otherwise)
import torch
import torch._dynamo  # noqa: F401 (imported by the first optimizer)

import dashboards.report  # noqa: F401 (the CLI's parser imports every command's module)
import dashboards.serve  # noqa: F401
import objectives.classify  # noqa: F401
import search.engine.array  # noqa: F401
import search.engine.workers  # noqa: F401
import search.progress  # noqa: F401
import search.validation.validate  # noqa: F401
from search import cli


def _child(args: list[str], cwd: str) -> int:
    os.chdir(cwd)
    for fd, name in ((1, "stdout"), (2, "stderr")):
        f = os.open(os.path.join(cwd, name), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.dup2(f, fd)
        os.close(f)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    torch.set_num_threads(1)
    try:
        code = cli.main(args)
    except SystemExit as e:  # argparse, and whatever a command raises itself
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    except BaseException:  # as the interpreter does: the traceback, exit 1
        traceback.print_exc()
        code = 1
    sys.stdout.flush()
    sys.stderr.flush()
    return code


def main() -> None:
    cli.build_parser()  # whatever else it imports
    optuna.storages.RDBStorage("sqlite:///:memory:")  # alembic, sqlalchemy.orm, the dialect
    for line in sys.stdin:
        req = json.loads(line)
        sys.stdout.flush()
        start = time.monotonic()
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                code = _child(req["args"], req["cwd"])
            finally:
                os._exit(code)
        hung, code = False, None
        while True:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                code = os.waitstatus_to_exitcode(status)
                break
            if time.monotonic() - start > req.get("timeout", 60):
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                hung = True
                break
            time.sleep(0.01)
        answer = {"code": code, "hung": hung, "seconds": round(time.monotonic() - start, 3)}
        print(json.dumps(answer), flush=True)


if __name__ == "__main__":
    main()
