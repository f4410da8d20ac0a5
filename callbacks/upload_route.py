"""The chunked upload route: files go to disk in chunks, and a cut transfer resumes where it stopped.

    POST /upload                              {"purpose", "names", "sizes"} -> 201 {"upload_id", "chunk_bytes", "received"}
    GET|HEAD /upload/<upload_id>              -> {"received": [bytes per file], "sizes", "complete", "staged"}
    POST /upload/<upload_id>/chunk?file=i&offset=N   raw bytes -> {"received": N + length}

``purpose`` is the box (:data:`callbacks.uploads.PURPOSES`); what the names and sizes tell is checked at
creation (:func:`uploads.begin`), the rest when the page's callback stages the finished upload. Errors
answer ``{"error": <message for the page>, "received": [...]}`` with 400, 404, 409 (another offset: resume
from ``received``), 413 (over a limit) or 507 (disk). The ids are the server's own (``runstore.new_id``);
stored names are the server's too, resolved with ``runstore.inside``.

Access is the app's: with a password set, every request needs the login (``callbacks.auth``). Every POST
also needs the header ``X-Hercules-Upload: 1`` and, when the browser names one, this site's Origin: a
form or a plain request from another site cannot set a custom header without a CORS preflight, which
this server never grants (the session cookie is SameSite=Strict as well).
"""

from __future__ import annotations

from flask import Response, jsonify, request

from hercules_core import InputError

from . import auth, chunked, uploads

CSRF_HEADER = "X-Hercules-Upload"


class _Body:
    """The request body for :func:`chunked.append`: a cut connection reads as its end."""

    def __init__(self, stream):
        self._stream = stream

    def read(self, n: int) -> bytes:
        try:
            return self._stream.read(n)
        except Exception:  # werkzeug's ClientDisconnected, a reset socket: what arrived is kept
            return b""


def _error(message: str, status: int, received: list[int] | None = None) -> Response:
    body = {"error": message}
    if received is not None:
        body["received"] = received
    resp = jsonify(body)
    resp.status_code = status
    resp.headers["Cache-Control"] = "no-store"
    return resp


def _forged() -> Response | None:
    """403 for a POST that another site could have sent."""
    if request.headers.get(CSRF_HEADER) != "1" or not auth.same_origin():
        return _error(f"Refused: upload requests must come from this site's page (header {CSRF_HEADER}).", 403)
    site = request.headers.get("Sec-Fetch-Site")
    if site is not None and site not in ("same-origin", "none"):
        return _error("Refused: a cross-site upload request.", 403)
    return None


def register(server, ctx) -> None:
    @server.route("/upload", methods=["POST"])
    def hercules_upload_create():
        refused = _forged()
        if refused:
            return refused
        doc = request.get_json(silent=True) if (request.content_length or 0) <= 1024**2 else None
        if not isinstance(doc, dict):
            return _error("Send {purpose, names, sizes} as JSON.", 400)
        try:
            transfer = uploads.begin(ctx.runs_dir, doc.get("purpose"), doc.get("names"), doc.get("sizes"))
        except chunked.TransferError as e:
            return _error(str(e), e.status)
        except InputError as e:
            return _error(str(e), 400)
        resp = jsonify({"upload_id": transfer["upload_id"], "chunk_bytes": chunked.CHUNK_BYTES,
                        "received": [0] * len(transfer["files"])})
        resp.status_code = 201
        return resp

    @server.route("/upload/<upload_id>", methods=["GET", "HEAD"])
    def hercules_upload_status(upload_id: str):
        try:
            st = chunked.status(ctx.runs_dir, upload_id)
        except chunked.TransferError as e:
            return _error(str(e), e.status)
        resp = jsonify(st)
        resp.headers["Upload-Offset"] = str(sum(st["received"]))
        resp.headers["Cache-Control"] = "no-store"
        return resp

    @server.route("/upload/<upload_id>/chunk", methods=["POST"])
    def hercules_upload_chunk(upload_id: str):
        refused = _forged()
        if refused:
            return refused
        length = request.content_length
        if length is None:
            return _error("A chunk needs a Content-Length.", 411)
        if length > chunked.MAX_CHUNK_BYTES:
            resp = _error(f"A chunk may carry at most {chunked.MAX_CHUNK_BYTES // 1024**2} MB.", 413)
            resp.headers["Connection"] = "close"
            return resp
        try:
            at = chunked.append(ctx.runs_dir, upload_id, request.args.get("file", "0"), request.args.get("offset"),
                                _Body(request.stream), length)
        except chunked.TransferError as e:
            if e.status == 413:  # unread body: close the connection rather than drain it
                resp = _error(str(e), 413, e.received)
                resp.headers["Connection"] = "close"
                return resp
            return _error(str(e), e.status, e.received)
        if at < (request.args.get("offset", type=int) or 0) + length:
            return _error("The connection was cut during the chunk; resume from the offset received.", 400, None)
        resp = jsonify({"received": at})
        resp.headers["Cache-Control"] = "no-store"
        return resp
