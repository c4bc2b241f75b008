"""`python -m search dashboard --study lr`: optuna-dashboard on the study's storage.

Binds 127.0.0.1 unless `--host` says otherwise (the dashboard can edit studies and has no
login), prints the study's URL on stdout, and stops cleanly on Ctrl-C (exit 0). Before
serving it refreshes this project's figures in the study, so the dashboard shows them beside
its own plots even for a study still running (`--no-refresh` to skip on a huge store).
"""

from __future__ import annotations

import argparse
import re
import signal
import sys
import threading
from socketserver import ThreadingMixIn
from types import FrameType
from typing import Any, TextIO
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

__all__ = [
    "DEFAULT_HOST", "DEFAULT_PORT", "HELP", "add_arguments", "main", "quiet_importance", "serve",
    "start", "url_of",
]
# What optuna's PED-ANOVA says on a small or narrow study each time the dashboard's importance
# panel is drawn: nothing a user can act on, and it fills the terminal under the URL.
IMPORTANCE_NOISE = ("Some regimes for parameter", "Target and region quantiles select",
                    "The number of trials is too small to compute importances")

HELP = "open optuna-dashboard on the study's storage (127.0.0.1 unless --host)"
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8080


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True  # a browser's open connection must not keep Ctrl-C from exiting
    block_on_close = False


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass  # one line per request (the UI polls) would drown the URL


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from search.options import add_study_args

    add_study_args(parser)
    parser.add_argument("--host", default=DEFAULT_HOST,
                        help=f"address to bind (default: {DEFAULT_HOST}; 0.0.0.0 for all)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT,
                        help=f"port to listen on (default: {DEFAULT_PORT}; 0 picks a free one)")
    parser.add_argument("--no-refresh", action="store_true",
                        help="serve the figures stored by the last `report` as they are")


def start(storage: Any, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT) -> WSGIServer:
    """A bound (not yet serving) optuna-dashboard server over `storage` (URL or BaseStorage)."""
    from optuna_dashboard import wsgi

    from search.errors import UserError, must

    if not 0 <= port <= 65535:
        raise must("--port", "between 0 and 65535", port, "0 picks a free port")
    try:
        return make_server(host, port, wsgi(storage), server_class=_Server,
                           handler_class=_QuietHandler)
    except OSError as e:  # port in use, address not on this machine, no permission
        raise UserError(f"cannot listen on {host}:{port}: {e.strerror or e}; "
                        "choose another --port (0 picks a free one) or --host") from None


def url_of(server: WSGIServer, study_id: int | None = None) -> str:
    host, port = server.server_address[:2]
    assert isinstance(host, str)  # a bound AF_INET(6) socket's name: a str host
    path = f"/dashboard/studies/{study_id}" if study_id is not None else "/dashboard"
    return f"http://{host}:{port}{path}"


def quiet_importance() -> None:
    """Silence IMPORTANCE_NOISE for the rest of the process (the dashboard's threads too)."""
    import warnings

    for text in IMPORTANCE_NOISE:
        warnings.filterwarnings("ignore", message=re.escape(text), category=UserWarning)


def _stop(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def serve(server: WSGIServer, out: TextIO = sys.stderr) -> int:
    """Serve until Ctrl-C (or SIGTERM, as `docker stop` sends); always closes the socket."""
    previous = {}
    if threading.current_thread() is threading.main_thread():
        # Ctrl-C even where the parent started us with SIGINT ignored (a shell's `&`).
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.signal(sig, _stop)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        print("dashboard stopped", file=out)
    finally:
        server.server_close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0


def main(args: argparse.Namespace) -> int:
    from dashboards._common import storage_label
    from dashboards.figures import STORE_ERRORS, make_figures, save_figures
    from search import compat
    from search.options import open_study

    _cfg, study = open_study(args)
    if not args.no_refresh:
        try:
            save_figures(study, make_figures(study))
        except STORE_ERRORS as e:  # a read-only store: serve what is there
            print(f"warning: could not refresh the figures in the study ({type(e).__name__}); "
                  "serving the stored ones", file=sys.stderr)
        except KeyboardInterrupt:
            print("interrupted before the dashboard started", file=sys.stderr)
            return 130
    quiet_importance()
    # The study's own storage object: the same engine options the core chose (timeouts).
    server = start(compat.storage_of(study), args.host, args.port)
    print(url_of(server, compat.study_id(study)), flush=True)
    where = storage_label(study)
    print(f"optuna-dashboard on {where or 'the study storage'}; Ctrl-C to stop",
          file=sys.stderr, flush=True)
    return serve(server)
