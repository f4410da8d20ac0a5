"""Downloads of the reuse features: the standalone HTML report of a run, and the CSV of an assignment.

Ids in the URL are checked with the strict run-id pattern before they touch a path (an assignment
id is made on the server the same way); anything else is a 404.
"""

from __future__ import annotations

from flask import abort, send_file

from hercules_core.report import report_html

from . import runstore
from .routes import attachment, download_name, model_or_404

ASSIGN_DIR = "assign"


def assignment_dir(runs_dir, run_id, assign_id):
    """``<run dir>/assign/<assign_id>`` for checked ids (ValueError otherwise)."""
    return runstore.run_dir(runs_dir, run_id) / ASSIGN_DIR / runstore.check_id(assign_id)


def register(server, ctx) -> None:
    @server.route("/files/<run_id>/report.html")
    def hercules_report(run_id: str):
        return attachment(report_html(model_or_404(ctx, run_id).h), "text/html", run_id, "report.html")

    @server.route("/files/<run_id>/assign/<assign_id>.csv")
    def hercules_assignment(run_id: str, assign_id: str):
        if not (runstore.valid_id(run_id) and runstore.valid_id(assign_id)):
            abort(404)
        path = assignment_dir(ctx.runs_dir, run_id, assign_id) / "assignments.csv"
        if not path.is_file():
            abort(404)
        return send_file(path, mimetype="text/csv", as_attachment=True, max_age=0,
                         download_name=download_name(run_id, f"assigned-{assign_id[:8]}.csv"))
