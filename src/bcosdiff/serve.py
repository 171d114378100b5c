"""``bcosdiff serve``: a local web page to type a prompt and see its explanation.

Built on the standard library's threading HTTP server, no web framework: the page is one
static document with a little script, and the server has three JSON endpoints. A local,
single-user viewer needs nothing more, and gradio (what the field's demos use) would pull
in a large web stack for the same page. The server binds 127.0.0.1 unless told otherwise.

* ``GET /`` — the page (a form, then the explanations as :mod:`bcosdiff.report.html` views).
* ``POST /api/explain`` — ``{"model", "prompt", "compare", "steps", "seed", "guidance",
  "regenerate"}`` → ``{"job": id}``, or status 400 with ``{"error": message}``. ``model``
  names one of the offered models (the one served first when missing).
* ``GET /api/jobs/<id>`` — ``{"status": "queued" | "running" | "done" | "error",
  "progress": text, "html": fragment, "error": message}``.

The page offers the model it was started with and every bundled model (the shapes and the
emoji models); each is loaded on first use. Jobs run one at a time on a worker thread; at
most ``max_jobs`` may wait. Bad input (a malformed request or ``Content-Length``) is
answered with one clear message and status 400, never a traceback; a client that sends
less than it announced is dropped after ``read_timeout`` seconds, and one that leaves before
its answer is sent is one line on stderr.
"""

from __future__ import annotations

import html
import json
import queue
import sys
import threading
import time
import traceback
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from .errors import BcosdiffError
from .request import RunRequest

__all__ = ["Limits", "ViewerServer", "make_server"]

KEEP_FINISHED = 32  # finished jobs (and their pages) kept for polling


@dataclass(frozen=True)
class Limits:
    max_prompt: int = 300  # characters
    max_steps: int = 100
    max_regenerate: int = 5
    max_jobs: int = 4  # waiting or running at once
    max_guidance: float = 20.0
    read_timeout: float = 30.0  # seconds a client may take to send its request


@dataclass
class Job:
    request: ViewerRequest
    status: str = "queued"
    progress: str = "waiting for the model"
    html: str = ""
    error: str = ""
    started: float = field(default_factory=time.monotonic)


# A prompt to start from per kind of bundled model (the page fills it in on a switch).
EXAMPLES = {
    "emoji": ("a cat face and a rocket", "a cat face and a zeppelin"),
    "": ("a red circle", "a red circle and a shark"),
}


def example_prompts(model: str) -> tuple[str, str]:
    return next(v for k, v in EXAMPLES.items() if k in model)


@dataclass(frozen=True)
class ViewerRequest:
    """One request of the page: the model, the run of the prompt (and of a second prompt to
    compare, if any), and how many further seeds ``--regenerate`` may try."""

    model: str | None
    runs: tuple[RunRequest, ...]
    regenerate: int


def parse_request(body: bytes, limits: Limits, models: tuple[str, ...] = ()) -> ViewerRequest:
    """The explain request, checked; a :class:`BcosdiffError` names the first problem.
    ``models`` are the names offered (the first is the default). The viewer's own limits
    (prompt length, steps, retries, guidance) are checked here; everything else a run
    request checks, :class:`~bcosdiff.request.RunRequest` checks as for the CLI."""
    try:
        data = json.loads(body or b"{}")
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise BcosdiffError("the request is not JSON") from None
    if not isinstance(data, dict):
        raise BcosdiffError("the request must be a JSON object")
    prompt = data.get("prompt", "")
    compare = data.get("compare", "") or ""
    for name, text in (("prompt", prompt), ("second prompt", compare)):
        if not isinstance(text, str):
            raise BcosdiffError(f"the {name} must be text")
        if len(text) > limits.max_prompt:
            raise BcosdiffError(
                f"the {name} is {len(text)} characters long; the limit is {limits.max_prompt}"
            )

    def number(name: str, kind, high, default):
        value = data.get(name, default)
        try:
            value = kind(value)
        except (TypeError, ValueError, OverflowError):
            raise BcosdiffError(f"{name} must be a number") from None
        if high is not None and not 0 <= value <= high:
            raise BcosdiffError(f"{name} must be between 0 and {high}, got {value}")
        return value

    steps = number("steps", int, limits.max_steps, 25)
    seed = number("seed", int, None, 0)  # its range is the run request's
    guidance = None  # the model's own
    if data.get("guidance") not in (None, ""):
        guidance = number("guidance", float, limits.max_guidance, None)
    regenerate = number("regenerate", int, limits.max_regenerate, 0)
    model = data.get("model") or (models[0] if models else None)
    if models and model not in models:
        raise BcosdiffError(f"unknown model {model!r}; choose from {', '.join(models)}")
    texts = [prompt] + ([compare] if compare.strip() else [])
    runs = tuple(
        RunRequest(prompt=text.strip(), steps=steps, seed=seed, guidance=guidance) for text in texts
    )
    return ViewerRequest(model, runs, regenerate)


class ViewerServer(ThreadingHTTPServer):
    """The HTTP server with the pipeline and its job queue."""

    daemon_threads = True

    def __init__(self, address, pipe, limits: Limits = Limits(), offer_bundled: bool = True):
        super().__init__(address, _Handler)
        from .pipeline import bundled_models

        self.pipe = pipe  # the model served first
        self.pipes = {pipe.name: pipe}  # loaded so far, by name
        others = bundled_models() if offer_bundled else []
        self.models = (pipe.name, *[m for m in others if m != pipe.name])
        self.limits = limits
        self.jobs: dict[str, Job] = {}
        self.lock = threading.Lock()
        self.queue: queue.Queue[str] = queue.Queue()
        self.worker = threading.Thread(target=self._work, daemon=True)
        self.worker.start()

    def handle_error(self, request, client_address) -> None:
        """A client that went away mid-answer is one line on stderr, not a traceback."""
        error = sys.exc_info()[1]
        if isinstance(error, ConnectionError | TimeoutError):
            _log(
                client_address,
                f"client gone before the answer was sent ({error.strerror or error})",
            )
            return
        super().handle_error(request, client_address)

    def submit(self, request: ViewerRequest) -> str:
        with self.lock:
            active = sum(j.status in ("queued", "running") for j in self.jobs.values())
            if active >= self.limits.max_jobs:
                raise BcosdiffError("the server is busy; try again when a job has finished")
            finished = [k for k, j in self.jobs.items() if j.status in ("done", "error")]
            for old in finished[: max(0, len(finished) - KEEP_FINISHED)]:
                del self.jobs[old]  # oldest first: dicts keep insertion order
            job_id = uuid.uuid4().hex[:12]
            self.jobs[job_id] = Job(request)
        self.queue.put(job_id)
        return job_id

    def _work(self) -> None:
        while True:
            job_id = self.queue.get()
            job = self.jobs[job_id]
            job.status = "running"
            try:
                job.html = self._explain(job)
                job.status = "done"
                job.progress = f"done in {time.monotonic() - job.started:.1f} s"
            except BcosdiffError as exc:
                job.status, job.error = "error", str(exc)
            except Exception as exc:  # noqa: BLE001 - reported in the page, logged below
                job.status, job.error = "error", f"the explanation failed: {exc}"
                traceback.print_exc()

    def pipeline(self, name: str | None):
        """The pipeline of an offered model, loaded on first use (on the worker thread)."""
        from .pipeline import load_pipeline

        name = name or self.pipe.name
        if name not in self.pipes:
            self.pipes[name] = load_pipeline(name).to(self.pipe.device)
        return self.pipes[name]

    def _explain(self, job: Job) -> str:
        from .report.html import explanation_html
        from .service import default_method, explain_request

        request = job.request
        job.progress = f"loading {request.model or self.pipe.name}"
        pipe = self.pipeline(request.model)
        method = default_method(pipe)
        views = []
        count = len(request.runs)
        for k, run in enumerate(request.runs):
            job.progress = f"prompt {k + 1} of {count}: starting"

            def progress(done: int, total: int, k: int = k) -> None:
                job.progress = f"prompt {k + 1} of {count}: step {done} of {total}"

            exp = explain_request(
                pipe,
                pipe.request(run),
                method=method,
                regenerate=request.regenerate if method == "bcos" else 0,
                progress=progress,
            )
            views.append(explanation_html(exp, element_id=f"view-{uuid.uuid4().hex[:8]}"))
        cells = "".join(f'<div class="cell">{v}</div>' for v in views)
        return f'<div class="compare">{cells}</div>'


_PAGE = """<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">
<title>bcosdiff</title><style>
body{font-family:system-ui,sans-serif;margin:16px;color:#222}
form{display:flex;gap:10px;flex-wrap:wrap;align-items:end;margin-bottom:12px}
label{display:flex;flex-direction:column;font-size:13px;color:#444}
input{font-size:14px;padding:4px}input.prompt{width:300px}input.num{width:80px}
#status{margin:8px 0;font-size:14px}#status.error{color:#c0392b;font-weight:600}
.compare{display:flex;gap:24px;flex-wrap:wrap}.cell{flex:1 1 460px}
</style></head><body>
<h1 style="font-size:20px">bcosdiff</h1>
<form id="form">
<label>model<select name="model" id="model">%(options)s</select></label>
<label>prompt<input class="prompt" name="prompt" value="%(prompt)s"></label>
<label>compare with (same seed, optional)<input class="prompt" name="compare"
 value="%(compare)s"></label>
<label>steps<input class="num" name="steps" type="number" value="25" min="1"
 max="%(max_steps)d"></label>
<label>seed<input class="num" name="seed" type="number" value="0" min="0"></label>
<label>guidance<input class="num" name="guidance" type="number" step="0.5"
 placeholder="%(guidance)s"></label>
<label>regenerate<input class="num" name="regenerate" type="number" value="0" min="0"
 max="%(max_regenerate)d"></label>
<button type="submit">explain</button></form>
<div id="status"></div><div id="result"></div>
<script>
var form=document.getElementById('form'),statusBox=document.getElementById('status'),
 result=document.getElementById('result'),examples=%(examples)s;
document.getElementById('model').addEventListener('change',function(e){
 var pair=examples[e.target.value];form.prompt.value=pair[0];form.compare.value=pair[1];});
function say(text,error){statusBox.textContent=text;statusBox.className=error?'error':'';}
function run(fragment){result.innerHTML=fragment;
 result.querySelectorAll('script').forEach(function(old){var s=document.createElement('script');
 s.textContent=old.textContent;old.replaceWith(s);});}
function poll(id){fetch('/api/jobs/'+id).then(function(r){return r.json();}).then(function(j){
 if(j.status==='done'){say(j.progress,false);run(j.html);}
 else if(j.status==='error'){say(j.error,true);}
 else{say(j.progress+' …',false);setTimeout(function(){poll(id);},400);}});}
form.addEventListener('submit',function(e){e.preventDefault();
 var data={};new FormData(form).forEach(function(v,k){data[k]=v;});
 say('sending …',false);
 fetch('/api/explain',{method:'POST',headers:{'Content-Type':'application/json'},
  body:JSON.stringify(data)}).then(function(r){return r.json();}).then(function(j){
  if(j.error){say(j.error,true);}else{poll(j.job);}})
  .catch(function(){say('the server did not answer',true);});});
</script></body></html>
"""


class _Handler(BaseHTTPRequestHandler):
    server: ViewerServer

    def setup(self) -> None:
        # A read that waits longer than this ends the connection (the base class applies
        # ``timeout`` to the socket), so a body shorter than its Content-Length cannot hold
        # a thread for ever.
        self.timeout = self.server.limits.read_timeout
        super().setup()

    def log_message(self, format: str, *args) -> None:  # noqa: A002 - the base signature
        pass  # quiet: one line per request would drown the terminal

    def log_error(self, format: str, *args) -> None:  # noqa: A002 - the base signature
        _log(self.client_address, format % args)  # a timed-out or malformed request

    def _send(self, status: int, body: str, kind: str = "application/json") -> None:
        data = body.encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", f"{kind}; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:  # noqa: N802 - the base class's name
        if self.path in ("/", "/index.html"):
            pipe, limits, models = self.server.pipe, self.server.limits, self.server.models
            prompt, compare = example_prompts(pipe.name)
            options = "".join(
                f'<option value="{html.escape(m)}">{html.escape(m)}</option>' for m in models
            )
            examples = json.dumps({m: example_prompts(m) for m in models}).replace("<", "\\u003c")
            page = _PAGE % {
                "options": options,
                "examples": examples,
                "prompt": html.escape(prompt),
                "compare": html.escape(compare),
                "max_steps": limits.max_steps,
                "max_regenerate": limits.max_regenerate,
                "guidance": f"{pipe.guidance:g}",
            }
            self._send(200, page, "text/html")
        elif self.path.startswith("/api/jobs/"):
            job = self.server.jobs.get(self.path.rsplit("/", 1)[-1])
            if job is None:
                self._send(404, json.dumps({"error": "no such job"}))
                return
            answer = {"status": job.status, "progress": job.progress}
            if job.status == "done":
                answer["html"] = job.html
            if job.status == "error":
                answer["error"] = job.error
            self._send(200, json.dumps(answer))
        else:
            self._send(404, json.dumps({"error": "not found"}))

    def do_POST(self) -> None:  # noqa: N802 - the base class's name
        if self.path != "/api/explain":
            self._send(404, json.dumps({"error": "not found"}))
            return
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if length < 0:
            self.close_connection = True  # the body's end is unknown: read nothing more
            self._send(400, json.dumps({"error": "Content-Length must be a whole number >= 0"}))
            return
        if length > 64 * 1024:
            self._send(413, json.dumps({"error": "the request is too large"}))
            return
        try:
            request = parse_request(self.rfile.read(length), self.server.limits, self.server.models)
            job_id = self.server.submit(request)
        except BcosdiffError as exc:
            self._send(400, json.dumps({"error": str(exc)}))
            return
        self._send(200, json.dumps({"job": job_id}))


def _log(client_address, message: str) -> None:
    host, port = client_address[:2] if isinstance(client_address, tuple) else (client_address, "")
    print(f"bcosdiff serve: {host}:{port}: {message}", file=sys.stderr, flush=True)


def make_server(pipe, host: str = "127.0.0.1", port: int = 7860, limits: Limits = Limits()):
    """A :class:`ViewerServer` for ``pipe`` (port 0: any free port); call
    ``serve_forever()``."""
    try:
        return ViewerServer((host, port), pipe, limits)
    except OSError as exc:
        raise BcosdiffError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
