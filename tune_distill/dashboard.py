"""`tune-distill dashboard` (`make dashboard`): a sweep's study in the Optuna dashboard, read-only, on this machine.

What it does: serves `study.journal` of a sweep folder with optuna-dashboard's WSGI app (`optuna_dashboard.wsgi`)
behind a guard, on 127.0.0.1 only (a threaded wsgiref server, as `optuna-dashboard` itself runs by default):

- Only GET and HEAD pass: everything the page needs to read (the study list, a study with its trials, parameter
  importances, plots, the CSV download, the page and its static files) is a GET. Any other method (the dashboard's
  own create / rename / delete study, notes, tell, user attributes, artifacts, preferences) gets 405 and one line
  saying the dashboard is read-only. Deleting the study from the dashboard during a live sweep used to make the
  sweep fail with no results, and every later report too.
- Only a Host header naming this server passes: 127.0.0.1:PORT, localhost:PORT or [::1]:PORT. Anything else gets
  403 and one line naming the Host: a web page that rebinds its own name to 127.0.0.1 (DNS rebinding) reaches the
  server under that name, and this is what tells it apart from a page opened here. From another machine, forward
  the same port (`ssh -L PORT:127.0.0.1:PORT host`, then http://127.0.0.1:PORT there).
- It binds 127.0.0.1 and nothing else: `--host` takes 127.0.0.1 only (there is no authentication, so no other
  address is offered; another machine goes through ssh -L as above).
- Defence in depth, should a write get past the guard: the study is opened through a journal backend whose one
  write path (`append_logs`) raises, so no request can change the file. Chosen over a snapshot copied into an
  InMemoryStorage on a timer because Optuna's JournalStorage already re-reads the file's new lines on every
  request: the dashboard follows a live sweep as trials finish, exactly as `optuna-dashboard study.journal` did,
  with nothing to refresh, and it never creates, locks or appends to the file (Optuna's own file backend creates a
  missing journal; this one refuses it with one line).

What it must not know: how the study is written (study.py), Ray, the sweep's records, the report.

Example (CPU, seconds; any sweep folder with study.journal; then open http://127.0.0.1:8080):
    tune-distill dashboard --sweep sweeps/smoke --port 8080
"""

from __future__ import annotations

import argparse
import socketserver
import sys
from pathlib import Path
from typing import Any, Callable, Iterable
from wsgiref.simple_server import WSGIServer, make_server

from tune_distill.study import STUDY_FILE

LOOPBACK = "127.0.0.1"
LOOPBACK_NAMES = ("127.0.0.1", "localhost", "[::1]")
READ_METHODS = ("GET", "HEAD")
MAX_ECHOED_HOST = 100  # a refused Host is quoted back up to this many characters

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


class ReadOnlyStudy(RuntimeError):
    """A write reached the dashboard's storage (the guard should have refused it first)."""


def journal_path(sweep: str | Path) -> Path:
    """The study journal of a sweep folder (or the journal file itself); one line if it is not there."""
    path = Path(sweep)
    journal = path if path.is_file() else path / STUDY_FILE
    if not journal.is_file():
        raise FileNotFoundError(f"{journal}: no study journal (make sweep writes it; for a sweep made before the "
                                f"study existed: tune-distill report --sweep {path})")
    return journal


def read_only_storage(journal: str | Path) -> Any:
    """An Optuna JournalStorage over `journal` that reads its new lines on every request and cannot write to it."""
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    journal = Path(journal)
    if not journal.is_file():  # JournalFileBackend would create it
        raise FileNotFoundError(f"{journal}: no study journal")

    class ReadOnlyJournal(JournalFileBackend):
        """Optuna's file backend with its one write path refused."""

        def append_logs(self, logs: list[dict[str, Any]]) -> None:
            raise ReadOnlyStudy(f"{journal}: the dashboard opens the study read-only; nothing was written")

    try:
        return JournalStorage(ReadOnlyJournal(str(journal)))
    except OSError as error:
        raise ValueError(f"{journal}: cannot read the study journal ({error.strerror or error})") from None
    except (ValueError, KeyError, TypeError, AssertionError) as error:  # (AssertionError: an unknown operation)
        raise ValueError(f"{journal}: not an Optuna journal (one JSON operation a line expected): "
                         f"{type(error).__name__}: {error}") from None


def allowed_hosts(port: int) -> frozenset[str]:
    """The Host headers this server answers to: its loopback names with its port (bare too on port 80)."""
    hosts = {f"{name}:{port}" for name in LOOPBACK_NAMES}
    return frozenset(hosts | (set(LOOPBACK_NAMES) if port == 80 else set()))


def _refuse(start_response: Callable[..., Any], status: str, line: str, *extra: tuple[str, str]) -> list[bytes]:
    body = (line + "\n").encode()
    start_response(status, [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(body))),
                            ("X-Content-Type-Options", "nosniff"), *extra])
    return [body]


def guard(app: WsgiApp, port: int) -> WsgiApp:
    """`app` answering only reads (GET, HEAD; else 405) under this server's own Host names (else 403)."""
    hosts = allowed_hosts(port)
    names = ", ".join(sorted(f"{name}:{port}" for name in LOOPBACK_NAMES))

    def guarded(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        host = str(environ.get("HTTP_HOST", ""))
        if host.lower() not in hosts:
            shown = repr(host[:MAX_ECHOED_HOST]) if host else "(none)"
            return _refuse(start_response, "403 Forbidden",
                           f"Host {shown} refused: this dashboard answers only to {names} (another name is how a "
                           f"web page reaches a local server by DNS rebinding; through ssh -L, forward port {port} "
                           f"to the same port {port})")
        method = str(environ.get("REQUEST_METHOD", ""))
        if method not in READ_METHODS:
            return _refuse(start_response, "405 Method Not Allowed",
                           f"{method[:20]} refused: the dashboard is read-only (GET and HEAD only); the sweep alone "
                           "writes its study", ("Allow", ", ".join(READ_METHODS)))
        return app(environ, start_response)

    return guarded


def dashboard_app(sweep: str | Path, port: int) -> WsgiApp:
    """The guarded, read-only dashboard of a sweep folder's study, for a server on `port`."""
    import optuna_dashboard

    return guard(optuna_dashboard.wsgi(read_only_storage(journal_path(sweep))), port)


class _ThreadedServer(socketserver.ThreadingMixIn, WSGIServer):
    daemon_threads = True  # Ctrl-C does not wait for the page's open requests


def serve(sweep: str | Path, port: int = 8080, host: str = LOOPBACK) -> None:
    """Serve the sweep's study read-only on 127.0.0.1:`port` until interrupted."""
    if host != LOOPBACK:
        raise ValueError(f"--host {host}: the dashboard binds {LOOPBACK} only (it has no authentication); from "
                         f"another machine: ssh -L {port}:{LOOPBACK}:{port} this-host, then http://{LOOPBACK}:{port}")
    if not 0 <= port <= 65535:
        raise ValueError(f"--port {port}: a port number 0-65535 expected (0: any free one)")
    journal = journal_path(sweep)
    import optuna_dashboard

    app = optuna_dashboard.wsgi(read_only_storage(journal))  # the journal is read here: a bad one fails first
    try:
        server = make_server(LOOPBACK, port, guard(app, port), server_class=_ThreadedServer)
    except OSError as error:
        raise ValueError(f"{LOOPBACK}:{port}: cannot listen ({error.strerror or error}); try another --port") from None
    server.set_app(guard(app, server.server_port))  # --port 0: the port the system chose (nothing served yet)
    print(f"Optuna dashboard (read-only) on {journal}: http://{LOOPBACK}:{server.server_port}/  (Ctrl-C stops it; "
          f"another machine: ssh -L {server.server_port}:{LOOPBACK}:{server.server_port} this-host)",
          file=sys.stderr, flush=True)
    with server:
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            pass


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of `tune-distill dashboard`."""
    parser.add_argument("--sweep", required=True, help=f"sweep folder (holds {STUDY_FILE}), or the journal itself")
    parser.add_argument("--port", type=int, default=8080, help="port on 127.0.0.1 (default 8080)")
    parser.add_argument("--host", default=LOOPBACK,
                        help=f"{LOOPBACK} only (no other address is served; another machine: ssh -L)")


def command(args: argparse.Namespace) -> None:
    """Serve the dashboard as the parsed options say."""
    serve(args.sweep, args.port, args.host)
