""" "Share on this network": a read-only web server for one exported page, and nothing else.

It answers GET (and HEAD) of ``/`` or of the page's own name with the page's bytes, read once
when sharing starts, and refuses everything else: any other path (no file system lookup is ever
made, so ``..``, encoded dots and the workspace cannot be reached), any other method. It knows
nothing of the app, its workspace or its routes. It runs on its own port in a daemon thread,
off until :meth:`ShareServer.start`, and stops on :meth:`ShareServer.stop` or when the process
ends. A phone on the same network opens the link (or scans :func:`qr_svg`) and classifies with
its camera: the page needs no HTTPS for that (``<input capture>``), and nothing comes back.
"""

from __future__ import annotations

import atexit
import socket
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import quote

from tl_core.common import TLStudioError

# Every interface, so that other devices on the network can reach it.
ALL_INTERFACES = "0.0.0.0"
# A routable address that is never contacted: connecting a UDP socket sends no packet, it only
# makes the system pick the interface (and address) it would route through.
_PROBE_ADDRESS = ("10.255.255.255", 1)


def lan_address() -> str:
    """This computer's address on its local network (what a phone on the same Wi-Fi uses);
    127.0.0.1 when it has none."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(_PROBE_ADDRESS)
            return probe.getsockname()[0]
        except OSError:
            return "127.0.0.1"


def qr_svg(url: str) -> str:
    """The QR code of ``url`` as an inline SVG element (segno), for phones to scan."""
    import segno

    return segno.make(url, error="m").svg_inline(scale=6, border=2)


def who_can_reach(url: str) -> str:
    """Who can open the shared page, in words, for the screen."""
    return (
        f"Anyone on the same network as this computer (the same Wi-Fi or cable) can open {url} "
        "while sharing is on, and only this page: not your workspace, your images, your runs or "
        "this app. The page classifies on their own device and sends nothing back. Guest "
        "networks that keep devices apart may block it; nobody outside your network can reach "
        "it unless your router forwards the port."
    )


def _handler(page: bytes, served_paths: frozenset[str]) -> type[BaseHTTPRequestHandler]:
    class PageOnly(BaseHTTPRequestHandler):
        server_version = "TL-Studio-share"
        sys_version = ""

        def _refuse(self, status: HTTPStatus) -> None:
            body = f"{status.value} {status.phrase}: only the shared page is served here.\n"
            self.send_response(status)
            if status is HTTPStatus.METHOD_NOT_ALLOWED:
                self.send_header("Allow", "GET, HEAD")
            self.send_header("Content-Type", "text/plain; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body.encode())

        def _page(self) -> None:
            # The raw request path, compared as a string: never decoded, never joined to a
            # folder, so no spelling of ".." can name another file.
            if self.path.split("?", 1)[0] not in served_paths:
                self._refuse(HTTPStatus.NOT_FOUND)
                return
            self.send_response(HTTPStatus.OK)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(page)))
            self.send_header("Cache-Control", "no-store")
            self.send_header("X-Content-Type-Options", "nosniff")
            self.send_header("Referrer-Policy", "no-referrer")
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(page)

        do_GET = do_HEAD = _page

        def _not_allowed(self) -> None:
            self._refuse(HTTPStatus.METHOD_NOT_ALLOWED)

        do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = do_TRACE = do_CONNECT = _not_allowed

        def log_message(self, format: str, *args) -> None:  # noqa: A002 (the base's name)
            pass  # a classroom of phones would fill the app's log

    return PageOnly


class ShareServer:
    """Serves one exported page, read-only, on the local network.

    Args:
        page: The exported HTML page.
        port: The port to listen on; 0 picks a free one.
        host: The interface to listen on; every interface by default.
    """

    def __init__(self, page: str | Path, port: int = 0, host: str = ALL_INTERFACES) -> None:
        self.page = Path(page)
        self.port = port
        self.host = host
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def running(self) -> bool:
        return self._server is not None

    @property
    def url(self) -> str | None:
        """The link to hand out (this computer's LAN address), while running."""
        if self._server is None:
            return None
        host = lan_address() if self.host == ALL_INTERFACES else self.host
        return f"http://{host}:{self._server.server_address[1]}/"

    def start(self) -> str:
        """Starts serving (if not already) and returns the link.

        Raises:
            TLStudioError: The page cannot be read, or the port cannot be opened.
        """
        if self._server is not None:
            return self.url or ""
        try:
            page = self.page.read_bytes()
        except OSError as exc:
            raise TLStudioError(
                f"The page {self.page} cannot be read: {exc.strerror or exc}.",
                "Export the web page again, then share it.",
            ) from exc
        served = frozenset({"/", "/" + quote(self.page.name)})
        try:
            server = ThreadingHTTPServer((self.host, self.port), _handler(page, served))
        except OSError as exc:
            raise TLStudioError(
                f"Port {self.port} cannot be opened for sharing: {exc.strerror or exc}.",
                "Pick another port, or stop the program that uses it.",
            ) from exc
        server.daemon_threads = True
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, name="tl-studio-share", daemon=True
        )
        self._thread.start()
        atexit.register(self.stop)
        return self.url or ""

    def stop(self) -> None:
        """Stops serving and closes the port (nothing happens when it is not running)."""
        server, thread = self._server, self._thread
        self._server = self._thread = None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        if thread is not None:
            thread.join(timeout=5)
        atexit.unregister(self.stop)

    def __enter__(self) -> ShareServer:
        self.start()
        return self

    def __exit__(self, *_exc) -> None:
        self.stop()
