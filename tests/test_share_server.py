"""The "share on this network" server gives the exported page and nothing else, and stops."""

from __future__ import annotations

import http.client
import socket

import pytest

from tl_core.common import TLStudioError
from tl_core.export import ShareServer, lan_address, qr_svg, who_can_reach

PAGE = b"<!doctype html><title>model</title><p>the exported page</p>"


@pytest.fixture
def shared(tmp_path):
    """A workspace-like folder with the page and secrets beside it, shared on loopback."""
    (tmp_path / "runs").mkdir()
    (tmp_path / "runs" / "config.json").write_text('{"secret": 1}')
    (tmp_path / "secret.txt").write_text("do not serve")
    page = tmp_path / "exports" / "model.html"
    page.parent.mkdir()
    page.write_bytes(PAGE)
    server = ShareServer(page, host="127.0.0.1")
    server.start()
    yield server
    server.stop()


def request(server: ShareServer, path: str, method: str = "GET") -> tuple[int, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", server_port(server), timeout=10)
    try:
        # Sent as written: http.client does not normalise "..", unlike a browser.
        connection.putrequest(method, path, skip_accept_encoding=True)
        connection.putheader("Content-Length", "0")
        connection.endheaders()
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def server_port(server: ShareServer) -> int:
    return int(server.url.rstrip("/").rsplit(":", 1)[1])


@pytest.mark.parametrize("path", ["/", "/model.html", "/?from=qr"])
def test_the_page_itself_is_served(shared, path):
    status, body = request(shared, path)
    assert status == 200
    assert body == PAGE


@pytest.mark.parametrize(
    "path",
    [
        "/..",
        "/../",
        "/../secret.txt",
        "/%2e%2e/",
        "/%2e%2e/secret.txt",
        "/%2E%2E%2Fsecret.txt",
        "/..%2fsecret.txt",
        "/model.html/../secret.txt",
        "//secret.txt",
        "/secret.txt",
        "/exports/model.html",
        "/runs/config.json",
        "/runs/",
        "/_stcore/health",
        "/_stcore/stream",
        "/healthz",
        "/static/js/main.js",
        "/favicon.ico",
        "model.html",
        "http://127.0.0.1/secret.txt",
    ],
)
def test_anything_else_is_refused(shared, path):
    status, body = request(shared, path)
    assert status == 404
    assert PAGE not in body and b"secret" not in body and b"do not serve" not in body


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH", "OPTIONS", "PROPFIND"])
def test_other_methods_are_refused(shared, method):
    status, body = request(shared, "/", method)
    assert status in (405, 501)
    assert PAGE not in body


def test_head_gives_no_body(shared):
    assert request(shared, "/", "HEAD") == (200, b"")


def test_the_server_stops_when_asked_and_the_port_closes(tmp_path):
    page = tmp_path / "model.html"
    page.write_bytes(PAGE)
    server = ShareServer(page, host="127.0.0.1")
    url = server.start()
    port = server_port(server)
    assert server.running and url == f"http://127.0.0.1:{port}/"
    assert request(server, "/")[0] == 200

    server.stop()
    assert not server.running and server.url is None
    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", port), timeout=2):
        pass
    server.stop()  # stopping twice is harmless


def test_off_until_started_and_a_changed_file_is_not_served_while_sharing(tmp_path):
    page = tmp_path / "model.html"
    page.write_bytes(PAGE)
    server = ShareServer(page, host="127.0.0.1")
    assert not server.running and server.url is None
    with server:
        # The bytes were read when sharing started: swapping the file shares nothing new.
        page.write_text("something else")
        assert request(server, "/")[1] == PAGE
    assert not server.running


def test_a_missing_page_is_a_sentence(tmp_path):
    with pytest.raises(TLStudioError, match="cannot be read"):
        ShareServer(tmp_path / "gone.html").start()


def test_the_link_is_on_the_lan_address_by_default(tmp_path):
    page = tmp_path / "model.html"
    page.write_bytes(PAGE)
    with ShareServer(page) as server:
        assert server.url.startswith(f"http://{lan_address()}:")
        assert request(server, "/")[0] == 200  # every interface, loopback included


def test_the_qr_code_and_who_can_reach_it():
    svg = qr_svg("http://192.168.1.20:8501/")
    assert svg.startswith("<svg") and "</svg>" in svg
    words = who_can_reach("http://192.168.1.20:8501/")
    assert "same network" in words and "only this page" in words
