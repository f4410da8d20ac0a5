"""Component ids of the whole app, in one place (pages and callbacks import them from here).

Pattern-matching ids are dicts ``{"type": <one of the *_T constants>, ...}``.
"""

# --- app shell (app.py): present on every page
URL = "url"
ACTIVE_RUN = "active-run"  # session store: {"run_id", "token"} of the run started in this browser tab
JOB_START = "job-start"  # memory store: {"run_id", "token"} set by Start only; starts the background job
JOB_POLL = "job-poll"  # interval: a rejoined run (after a reload) follows its status.json
JOB_SCROLL = "job-scroll"  # store written by a clientside callback only (brings the panel into view)
JOB_DONE = "job-done"  # store: {"run_id", "state", "message"} written when the background job ends
JOB_PANEL = "job-panel"
JOB_TITLE = "job-title"
PROGRESS = "job-progress"
STAGE = "job-stage"
LOG = "job-log"
CANCEL = "job-cancel"
JOB_RESULT = "job-result"

# --- new run page
UPLOAD = "data-upload"
UPLOAD_MSG = "data-upload-msg"
UPLOAD_SIZE_MSG = "data-upload-size-msg"  # written by assets/03_upload_limit.js only (never by a callback)
UPLOAD_STORE = "data-upload-store"  # {"upload_id", "kind", "names", "columns", "n_rows"}
DATA_OPTIONS = "data-options"
WHAT = "data-what"  # "text" | "numeric" for tables
TEXT_COL = "data-text-col"
NUM_COLS = "data-num-cols"
ID_COL = "data-id-col"
LABEL_COL = "data-label-col"
VECTOR_COL = "data-vector-col"  # the items' own embeddings: a Parquet column of vectors
VECTOR_BOX = "data-vector-box"
TXT_MODE = "data-txt-mode"
TABLE_OPTS = "data-table-opts"
TXT_OPTS = "data-txt-opts"
PREVIEW = "data-preview"
PREVIEW_SEARCH = "data-preview-search"
LABELS_UPLOAD = "labels-upload"
LABELS_MSG = "labels-upload-msg"
LABELS_SIZE_MSG = "labels-upload-size-msg"
LABELS_STORE = "labels-store"
METADATA_UPLOAD = "metadata-upload"
METADATA_MSG = "metadata-upload-msg"
METADATA_SIZE_MSG = "metadata-upload-size-msg"
METADATA_STORE = "metadata-store"
VECTORS_UPLOAD = "vectors-upload"  # the items' own embeddings: a .npy/.npz beside the data
VECTORS_MSG = "vectors-upload-msg"
VECTORS_SIZE_MSG = "vectors-upload-size-msg"
VECTORS_STORE = "vectors-store"
CFG_T = "cfg"  # pattern: {"type": CFG_T, "name": <HerculesConfig field or form-only name>}
MODEL_T = "model"  # pattern: {"type": MODEL_T, "kind": <registry kind>}
LEVELS_MODE = "cfg-levels-mode"
FIXED_BOX = "cfg-fixed-box"
AUTO_BOX = "cfg-auto-box"
ADVANCED_TOGGLE = "cfg-advanced-toggle"
ADVANCED = "cfg-advanced"
COST = "cost-preview"
START = "start-run"
START_MSG = "start-msg"

# --- runs page
RUNS_TABLE = "runs-table"
RUNS_MSG = "runs-msg"
RUNS_CANCEL_T = "runs-cancel"  # {"type", "run"}: Cancel of a queued/running run started in this browser
RUNS_REFRESH = "runs-refresh"
RUNS_INTERVAL = "runs-interval"
MODEL_UPLOAD = "model-upload"
MODEL_UPLOAD_MSG = "model-upload-msg"
MODEL_SIZE_MSG = "model-upload-size-msg"

# --- run page (/run/<run_id>)
RUN_VIEW = "run-view"  # store: {"run_id"} of the page
RUN_POLL = "run-poll"
RUN_PROGRESS = "run-progress"
RUN_STAGE = "run-stage"
RUN_LOG = "run-log"
RUN_CANCEL = "run-cancel"
RUN_CANCEL_NOTE = "run-cancel-note"
RUN_RESULT = "run-result"

# --- explore page
EXPLORE_RUN = "explore-run"  # store: {"run_id"}
EXPLORE_HEADER = "explore-header"
EXPLORE_MSG = "explore-msg"
LEVEL = "explore-level"
SPACE = "explore-space"
COLOR_LEVEL = "explore-color-level"
SIZE_SCALE = "explore-size-scale"
CLEAR = "explore-clear"
SCATTER = "explore-scatter"
VIEW = "explore-view"  # store: {"level", "space", "items_shown"} of the drawn scatter
SELECTION = "explore-selection"  # store: {"key": "L2:3"} or None
PANE = "explore-pane"
TREE = "explore-tree"
SUNBURST = "explore-sunburst"
SEARCH = "explore-search"
SEARCH_RESULTS = "explore-search-results"
DOWNLOADS = "explore-downloads"
TREE_TOGGLE_T = "tree-toggle"  # {"type", "key"}: the ▸ of a node
TREE_KIDS_T = "tree-kids"
TREE_SELECT_T = "tree-select"
PANE_LINK_T = "pane-link"
SEARCH_HIT_T = "search-hit"

# --- evaluate page
EVAL_RUN = "eval-run"
EVAL_TABLE = "eval-table"
EVAL_CHART = "eval-chart"
EVAL_AUTO_K = "eval-auto-k"
EVAL_CONFUSION = "eval-confusion"
EVAL_CONFUSION_LEVEL = "eval-confusion-level"
EVAL_MSG = "eval-msg"

# --- explore page: reuse (callbacks/edit.py, callbacks/assign_panel.py)
EDIT_BOX = "edit-box"
EDIT_KEY = "edit-key"  # store: {"key": "L2:3"} of the cluster the form was filled for
EDIT_TITLE = "edit-title"
EDIT_DESC = "edit-description"
EDIT_SAVE = "edit-save"
EDIT_MSG = "edit-msg"
ASSIGN_UPLOAD = "assign-upload"
ASSIGN_MSG = "assign-msg"
ASSIGN_SIZE_MSG = "assign-upload-size-msg"
ASSIGN_UPLOAD_STORE = "assign-upload-store"  # {"upload_id", ...} of the staged new data
ASSIGN_OPTIONS = "assign-options"
ASSIGN_TEXT_COL = "assign-text-col"
ASSIGN_ID_COL = "assign-id-col"
ASSIGN_START = "assign-start"
ASSIGN_RESULT = "assign-result"  # store: {"run_id", "assign_id"} of the last assignment
ASSIGN_TABLE = "assign-table"
ASSIGN_TABLE_BOX = "assign-table-box"  # the grid is made here with the first result (its 0.9 MB chunk waits till then)
ASSIGN_SUMMARY = "assign-summary"
TREE_PAGE_T = "tree-page"  # {"type", "key", "page"}: a pager button of a node's item list
PANE_PAGE_T = "pane-page"
PANE_ITEMS_T = "pane-items"  # {"type", "key"}: the pane's paged item list

# --- explore page: curation (callbacks/curate.py)
CURATE_SEL = "curate-selection"  # store: {"ids": ["L1_3", ...]} the clusters chosen for a structural edit
CURATE_CHIPS = "curate-chips"
CURATE_ADD = "curate-add"  # adds the clicked cluster (SELECTION) to CURATE_SEL
CURATE_CLEAR = "curate-clear"
CURATE_MERGE = "curate-merge"
CURATE_SPLIT = "curate-split"
CURATE_SPLIT_K = "curate-split-k"
CURATE_MOVE = "curate-move"
CURATE_MOVE_TO = "curate-move-to"
CURATE_DISSOLVE = "curate-dissolve"
CURATE_UNDO = "curate-undo"
CURATE_REDO = "curate-redo"
CURATE_MSG = "curate-msg"  # the last edit's outcome (written by the edit callback only)
CURATE_RETITLE_MSG = "curate-retitle-msg"  # the background re-titling's outcome (written by its polling)
CURATE_PENDING = "curate-pending"  # store: the edit waiting for the user's OK of its LLM cost
CURATE_CONFIRM = "curate-confirm"  # modal asking that OK
CURATE_CONFIRM_TEXT = "curate-confirm-text"
CURATE_CONFIRM_OK = "curate-confirm-ok"
CURATE_CONFIRM_CANCEL = "curate-confirm-cancel"
CURATE_POLL = "curate-poll"  # interval: on while re-titling runs in the background
CURATE_LOG = "curate-log"
CURATE_REPLAY_TARGET = "curate-replay-target"
CURATE_REPLAY = "curate-replay"
CURATE_REPLAY_MSG = "curate-replay-msg"

# --- compare page
COMPARE_A = "compare-a"
COMPARE_B = "compare-b"
COMPARE_OUT = "compare-out"
