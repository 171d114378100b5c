"""The viewer server's HTTP interface (the page itself is driven in test_browser)."""

import json
import threading
import time
import urllib.error
import urllib.request

import pytest
from conftest import TINY_UNET

from bcosdiff.errors import BcosdiffError
from bcosdiff.pipeline import create_model_directory
from bcosdiff.serve import Limits, make_server, parse_request
from bcosdiff.service import explain_prompt


def test_requests_are_checked_with_one_clear_message():
    limits = Limits()
    ok = parse_request(b'{"prompt": " a red circle ", "steps": "5", "guidance": ""}', limits)
    (run,) = ok.runs
    assert run.prompt == "a red circle" and run.steps == 5 and run.guidance is None
    pair = parse_request(b'{"prompt": "a", "compare": " b ", "seed": 7}', limits)
    assert [r.prompt for r in pair.runs] == ["a", "b"] and {r.seed for r in pair.runs} == {7}
    bad = [
        (b"not json", "not JSON"),
        (b"[1]", "JSON object"),
        (b'{"prompt": "  "}', "empty"),
        (json.dumps({"prompt": "x" * 301}).encode(), "limit is 300"),
        (b'{"prompt": "a", "steps": 0}', "steps"),
        (b'{"prompt": "a", "steps": "many"}', "steps must be a number"),
        (b'{"prompt": "a", "guidance": -1}', "guidance"),
        (b'{"prompt": 5}', "must be text"),
        (b'{"prompt": "a", "seed": -1}', "seed must be between 0 and 9223372036854775807"),
        (b'{"prompt": "a", "seed": 1e300}', "seed must be"),
    ]
    for body, message in bad:
        with pytest.raises(BcosdiffError, match=message):
            parse_request(body, limits)


def _call(url, body=None):
    request = urllib.request.Request(url, data=body, method="POST" if body else "GET")
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_a_job_runs_to_an_explanation_and_errors_are_json(tmp_path):
    pipe = create_model_directory(
        tmp_path / "m", "bcos-x0", unet=TINY_UNET, text={"max_length": 12}
    )
    server = make_server(pipe, port=0, limits=Limits(max_jobs=1))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        status, answer = _call(base + "/api/explain", b'{"prompt": "a red circle", "steps": 2}')
        assert status == 200
        job = answer["job"]
        for _ in range(600):
            status, state = _call(f"{base}/api/jobs/{job}")
            if state["status"] in ("done", "error"):
                break
            time.sleep(0.1)
        assert state["status"] == "done" and 'data-word="circle"' in state["html"]
        assert _call(base + "/api/explain", b"{}")[0] == 400
        assert _call(f"{base}/api/jobs/nope")[0] == 404
        assert _call(base + "/nothing")[0] == 404
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize("method", ["bcos", "xattn"])
def test_explain_reports_progress_per_step(tmp_path, method):
    pipe = create_model_directory(
        tmp_path / "m", "bcos-x0", unet=TINY_UNET, text={"max_length": 12}
    )
    seen = []
    explain_prompt(pipe, "a red circle", steps=3, method=method, progress=lambda *a: seen.append(a))
    assert seen == [(1, 3), (2, 3), (3, 3)]


def test_malformed_content_length_and_unknown_models_get_a_400(tmp_path):
    import http.client

    from bcosdiff.pipeline import bundled_models

    pipe = create_model_directory(tmp_path / "m", "bcos-x0", unet=TINY_UNET)
    server = make_server(pipe, port=0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = server.server_address[1]
    try:
        for length in ("abc", "-5", "1e3"):
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            connection.putrequest("POST", "/api/explain")
            connection.putheader("Content-Length", length)
            connection.endheaders()
            answer = connection.getresponse()
            assert answer.status == 400, length
            assert "Content-Length" in json.loads(answer.read())["error"]
            connection.close()
        base = f"http://127.0.0.1:{port}"
        status, answer = _call(base + "/api/explain", b'{"prompt": "a", "model": "nope"}')
        assert status == 400 and "unknown model 'nope'" in answer["error"]
        # The page offers the served model first, then every bundled one.
        assert server.models == ("m", *[m for m in bundled_models() if m != "m"])
        with urllib.request.urlopen(base + "/", timeout=30) as page:
            text = page.read().decode()
        assert all(f'<option value="{m}">' in text for m in server.models)
    finally:
        server.shutdown()
        server.server_close()
    assert parse_request(b'{"prompt": "a"}', Limits(), ("x", "y")).model == "x"


def test_a_short_body_times_out_and_a_vanished_client_is_one_line(tmp_path, capfd):
    import socket

    pipe = create_model_directory(tmp_path / "m", "bcos-x0", unet=TINY_UNET)
    server = make_server(pipe, port=0, limits=Limits(read_timeout=0.5))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = server.server_address[1]
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=30) as client:
            client.sendall(b'POST /api/explain HTTP/1.1\r\nContent-Length: 100\r\n\r\n{"pro')
            start = time.monotonic()
            assert client.recv(1024) == b""  # the server closes the connection ...
            assert time.monotonic() - start < 10  # ... after its read timeout, not never
        time.sleep(0.2)
        err = capfd.readouterr().err
        assert "timed out" in err and len(err.strip().splitlines()) == 1
        # A client that leaves mid-answer: the error as the server sees it, handled.
        try:
            raise BrokenPipeError(32, "Broken pipe")
        except BrokenPipeError:
            server.handle_error(None, ("127.0.0.1", 5555))
        err = capfd.readouterr().err
        assert err == (
            "bcosdiff serve: 127.0.0.1:5555: client gone before the answer was sent (Broken pipe)\n"
        )
    finally:
        server.shutdown()
        server.server_close()
