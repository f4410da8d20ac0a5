"""New run: upload data, pick columns, configure, see the cost, start (progress is in the shell)."""

import dash
import dash_ag_grid as dag
import dash_bootstrap_components as dbc
import flask
from dash import dcc, html

from callbacks import configform, ids, uploads
from callbacks.page_new_run import OWN_VECTORS_NOTE, preview_grid_options

dash.register_page(__name__, path="/", name="New run", title="HERCULES · new run", order=0)


def _select(cid, label, **kw):
    return dbc.Col([dbc.Label(label, className="small fw-semibold mb-0"), dbc.Select(id=cid, size="sm", **kw)], md=3)


def layout(**_):
    data = dbc.Card(dbc.CardBody([
        html.H5("1. Data", className="card-title"),
        uploads.limited(dcc.Upload(id=ids.UPLOAD, multiple=True, className="upload-box", children=html.Div(
            ["Drag and drop files here, or ", html.A("browse", className="link-primary")])),
            uploads.MAX_UPLOAD_BYTES, ids.UPLOAD_SIZE_MSG),
        html.Div(uploads.LIMITS_TEXT, className="form-text small mb-2 upload-limits"),
        html.Div(id=ids.UPLOAD_MSG),
        html.Div(id=ids.DATA_OPTIONS, style={"display": "none"}, children=[
            html.Div(id=ids.TABLE_OPTS, children=[
                dbc.RadioItems(id=ids.WHAT, inline=True, value="text", className="mb-2",
                               options=[{"label": "Cluster a text column", "value": "text"},
                                        {"label": "Cluster numeric columns", "value": "numeric"}]),
                dbc.Row([
                    _select(ids.TEXT_COL, "Text column"),
                    dbc.Col([dbc.Label("Numeric columns", className="small fw-semibold mb-0"),
                             dcc.Dropdown(id=ids.NUM_COLS, multi=True, placeholder="numeric columns")], md=3),
                    _select(ids.ID_COL, "Id column"),
                    _select(ids.LABEL_COL, "Labels column (optional)"),
                ], className="mb-2"),
                dbc.Row(id=ids.VECTOR_BOX, style={"display": "none"}, className="mb-2", children=[
                    _select(ids.VECTOR_COL, "Vector column (your own embeddings)"),
                    dbc.Col(html.Div(OWN_VECTORS_NOTE, className="form-text small"), md=9)]),
            ]),
            html.Div(id=ids.TXT_OPTS, style={"display": "none"}, children=[
                dbc.RadioItems(id=ids.TXT_MODE, inline=True, value="line", className="mb-2",
                               options=[{"label": "One item per line", "value": "line"},
                                        {"label": "One item per file", "value": "file"}]),
            ]),
            dbc.Input(id=ids.PREVIEW_SEARCH, placeholder="Search the preview…", size="sm", className="mb-1",
                      debounce=True),
            # column widths: uploads.preview_column_defs (long text takes the spare width and wraps)
            dag.AgGrid(id=ids.PREVIEW, rowData=[], columnDefs=[], className="ag-theme-alpine preview-grid",
                       style={"height": "400px"}, defaultColDef={"resizable": True, "sortable": True},
                       dashGridOptions=preview_grid_options()),
            html.Div("The first 500 rows are shown.", className="form-text small"),
        ]),
        html.Hr(),
        html.Div([html.Span("Optional ground-truth labels file (columns id,label): ", className="small"),
                  uploads.limited(dcc.Upload(id=ids.LABELS_UPLOAD, className="upload-inline",
                                             children=html.A("choose a labels file", className="link-primary small")),
                                  uploads.MAX_UPLOAD_BYTES, ids.LABELS_SIZE_MSG, purpose="labels")]),
        html.Div(id=ids.LABELS_MSG, className="small"),
        html.Div([html.Span("Optional numeric metadata (JSON {column: {unit, description}}): ", className="small"),
                  uploads.limited(dcc.Upload(id=ids.METADATA_UPLOAD, className="upload-inline",
                                             children=html.A("choose a metadata file", className="link-primary small")),
                                  uploads.MAX_METADATA_BYTES, ids.METADATA_SIZE_MSG, uploads.METADATA_TYPES,
                                  "{name} is not a JSON file: numeric metadata is a .json file.",
                                  purpose="metadata")]),
        html.Div(id=ids.METADATA_MSG, className="small"),
        html.Div([html.Span("Optional own embeddings (.npy/.npz, one row per item, in the data's order): ",
                            className="small"),
                  uploads.limited(dcc.Upload(id=ids.VECTORS_UPLOAD, className="upload-inline",
                                             children=html.A("choose a vectors file", className="link-primary small")),
                                  uploads.MAX_UPLOAD_BYTES, ids.VECTORS_SIZE_MSG, uploads.VECTOR_TYPES,
                                  uploads.WRONG_TYPE["vectors"], purpose="vectors")]),
        html.Div(id=ids.VECTORS_MSG, className="small"),
        dcc.Store(id=ids.UPLOAD_STORE), dcc.Store(id=ids.LABELS_STORE), dcc.Store(id=ids.METADATA_STORE),
        dcc.Store(id=ids.VECTORS_STORE),
    ]), className="mb-3")
    ctx = flask.current_app.config["HERCULES"]  # this app's context (several apps may share a process)
    configure = dbc.Card(dbc.CardBody([html.H5("2. Configure", className="card-title"),
                                       configform.form_layout(ctx.include_test_models)]), className="mb-3")
    start = dbc.Card(dbc.CardBody([
        html.H5("3. Run", className="card-title"),
        html.Div(id=ids.COST, className="mb-2 small"),
        dbc.Button("Start run", id=ids.START, color="primary"),
        html.Div(id=ids.START_MSG, className="mt-2 small"),
    ]), className="mb-3")
    return dbc.Container([html.H3("New run", className="my-3"), data, configure, start], fluid="lg")
