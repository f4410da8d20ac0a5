"""What a run is: its data (:class:`DataSpec`), its config and its models (:class:`RunSpec`).

Both front doors build a ``RunSpec``: the command line from its flags, the web app from the new-run
form and its staged uploads (``callbacks.uploads.data_spec``, with server-resolved names only).
:func:`prepare` turns its ``DataSpec`` into the ``Dataset`` for both, so the same file gives the same
items, ids and labels through either door. A run's ``spec.json`` holds :meth:`RunSpec.to_dict`.
"""

from __future__ import annotations

import json
import math
import shutil
import zipfile
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path, PurePath, PurePosixPath
from typing import Any, Mapping

import pandas as pd

from hercules_core import Dataset, HerculesConfig, InputError
from hercules_core import data as core_data
from hercules_core.data import IMAGE_EXTENSIONS, ReadBudget

from .pipeline import ModelIds

__all__ = ["DataSpec", "KINDS", "MODALITIES", "RunSpec", "TXT_MODES", "classify", "dataset_summary",
           "default_txt_mode", "estimate_dataset", "prepare", "read_labels_file", "read_numeric_metadata",
           "settings_summary", "txt_frame"]

KINDS = ("table", "txt", "images", "zip")
MODALITIES = ("auto", "text", "numeric", "image")
TXT_MODES = ("line", "file")  # one item per non-empty line, or per file
TABLE_EXTS = (".csv", ".tsv", ".json", ".jsonl", ".parquet", ".xlsx", ".xls")
TEXT_EXTS = (".txt",)
ZIP_EXTS = (".zip",)
MAX_METADATA_BYTES = 1024**2  # a numeric metadata file: {variable: {unit, description}}


def _ext(name: str) -> str:
    return PurePath(str(name)).suffix.lower()


def default_txt_mode(n_files: int) -> str:
    """One item per line for one .txt file, one per file for several."""
    return "file" if n_files > 1 else "line"


def classify(names: list[str], limits: str = "") -> str:
    """Which kind of data ``names`` (file names) are: table | txt | images | zip; InputError when unusable.

    ``limits`` is appended to the message about an unsupported type (what the front door accepts).
    """
    if not names:
        raise InputError("No data file was given.")
    exts = [_ext(n) for n in names]
    unknown = sorted({n for n, e in zip(names, exts)
                      if e not in TABLE_EXTS + TEXT_EXTS + ZIP_EXTS + IMAGE_EXTENSIONS})
    if unknown:
        raise InputError(f"Unsupported file type: {', '.join(unknown[:5])}. " + limits)
    if all(e in IMAGE_EXTENSIONS for e in exts):
        if len(names) < 2:
            raise InputError("A single image cannot be clustered: give several images or a ZIP of a folder.")
        return "images"
    if all(e in TEXT_EXTS for e in exts):
        return "txt"
    if len(names) > 1:
        raise InputError(f"Give one table or one ZIP at a time, or only .txt files, or only images "
                         f"(got {len(names)} files of mixed kinds: {', '.join(sorted(set(exts)))}).")
    return "zip" if exts[0] in ZIP_EXTS else "table"


def _opt_str(value: Any, what: str) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise InputError(f"The {what} must be a name; got {value!r:.60}.")
    return value


@dataclass(frozen=True)
class DataSpec:
    """The data of a run.

    ``files`` are paths, relative to the ``base_dir`` given to :func:`prepare` (the app: its uploads
    folder, checked to stay inside it) or as given (the command line). ``names`` are what the user
    calls them (ids of .txt and image items, messages); by default the files' own names. ``kind`` is
    table | txt | images | zip (:func:`classify`); ``images`` may also be one folder. ``modality``
    (auto | text | numeric | image) and the columns apply to a table; ``txt_mode`` (line | file) to
    .txt files. Labels come from ``labels_column`` or ``labels_file`` (a table id,label); the numeric
    metadata from ``numeric_metadata_file`` (JSON ``{variable: {"unit", "description"}}``). The items'
    own embeddings come from ``vector_column`` (a Parquet list column) or ``vectors_file`` (.npy/.npz,
    one row per item of a table or of the .txt items, in order); they make the items texts.
    """

    files: tuple[str, ...]
    kind: str
    names: tuple[str, ...] = ()
    modality: str = "auto"
    text_column: str | None = None
    numeric_columns: tuple[str, ...] | None = None
    id_column: str | None = None
    labels_column: str | None = None
    labels_file: str | None = None
    numeric_metadata_file: str | None = None
    txt_mode: str | None = None
    vector_column: str | None = None
    vectors_file: str | None = None

    def __post_init__(self):
        files = (self.files,) if isinstance(self.files, str) else self.files
        if not files or not all(isinstance(f, str) and f for f in files):
            raise InputError("The data spec names no files.")
        set_ = lambda k, v: object.__setattr__(self, k, v)  # noqa: E731 (frozen)
        set_("files", tuple(str(f) for f in files))
        names = (self.names,) if isinstance(self.names, str) else self.names
        set_("names", tuple(str(n) for n in names) if names else tuple(PurePath(f).name for f in self.files))
        if len(self.names) != len(self.files):
            raise InputError("The data spec has not one name per file.")
        if self.kind not in KINDS:
            raise InputError(f"The data kind must be one of {', '.join(KINDS)}; got {self.kind!r}.")
        if self.modality not in MODALITIES:
            raise InputError(f"The modality must be one of {', '.join(MODALITIES)}; got {self.modality!r}.")
        for name, what in (("text_column", "text column"), ("id_column", "id column"),
                           ("labels_column", "labels column"), ("labels_file", "labels file"),
                           ("numeric_metadata_file", "numeric metadata file"), ("vector_column", "vector column"),
                           ("vectors_file", "vectors file")):
            set_(name, _opt_str(getattr(self, name), what))
        cols = self.numeric_columns
        if cols is not None:
            cols = (cols,) if isinstance(cols, str) else cols
            if not all(isinstance(c, str) and c for c in cols):
                raise InputError("The numeric columns must be a list of column names.")
            set_("numeric_columns", tuple(cols))
        if self.kind == "txt":
            mode = self.txt_mode or default_txt_mode(len(self.files))
            if mode not in TXT_MODES:
                raise InputError(f"The text mode must be one of {', '.join(TXT_MODES)}; got {mode!r}.")
            set_("txt_mode", mode)
        elif self.txt_mode is not None:
            set_("txt_mode", None)  # only .txt files have one
        if self.kind != "table" and any(getattr(self, k) is not None for k in
                                        ("text_column", "numeric_columns", "id_column", "labels_column")):
            raise InputError("Text, numeric, id and labels columns apply to a table, not to "
                             + (".txt files (one item per line or per file): save a table as .csv or .tsv."
                                if self.kind == "txt" else "images."))
        if self.labels_column and self.labels_file:
            raise InputError("Labels were given twice: a labels column and a labels file; keep one.")
        if self.numeric_metadata_file and (self.kind != "table" or self.modality in ("text", "image")):
            raise InputError("Numeric metadata describes numeric columns: it applies to a table clustered on "
                             "its numbers, not to texts or images.")
        if self.text_column is not None and self.numeric_columns is not None:
            raise InputError("Give either a text column or numeric columns, not both.")
        if self.vector_column and self.vectors_file:
            raise InputError("Own vectors were given twice: a vector column and a vectors file; keep one.")
        if self.vector_column and self.kind != "table":
            raise InputError("A vector column belongs to a table (Parquet); give .txt items their vectors as a "
                             ".npy/.npz file.")
        if self.vectors_file and self.kind not in ("table", "txt"):
            raise InputError("Own vectors go with a table or .txt items, not with images.")
        if (self.vector_column or self.vectors_file) and (self.modality in ("numeric", "image")
                                                          or self.numeric_columns is not None):
            raise InputError("Own vectors represent texts: they go with a text column, not with numeric columns.")

    def check_columns(self, columns: list[str]) -> None:
        """The chosen columns against a table's ``columns``: InputError says which is wrong."""
        for what, col in (("id column", self.id_column), ("labels column", self.labels_column),
                          ("text column", self.text_column), ("vector column", self.vector_column)):
            if col and col not in columns:
                raise InputError(f"The {what} {col!r} is not a column of the table.")
        bad = [c for c in self.numeric_columns or () if c not in columns]
        if bad:
            raise InputError(f"Unknown numeric columns: {', '.join(bad)}.")
        if self.text_column and self.text_column in (self.id_column, self.labels_column):
            raise InputError("The text column cannot also be the id or labels column.")
        if self.vector_column and self.vector_column in (self.id_column, self.labels_column, self.text_column):
            raise InputError("The vector column cannot also be the text, id or labels column.")
        if self.id_column and self.id_column == self.labels_column:
            raise InputError("The id column and the labels column must differ.")

    @property
    def source(self) -> str:
        """How the data is named to the user: its file, or how many files."""
        return self.names[0] if len(self.names) == 1 else f"{len(self.names)} files"

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["files"], d["names"] = list(self.files), list(self.names)
        if self.numeric_columns is not None:
            d["numeric_columns"] = list(self.numeric_columns)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "DataSpec":
        if not isinstance(d, Mapping):
            raise InputError("The data spec must be an object.")
        known = {f.name for f in fields(cls)}
        return cls(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in d.items() if k in known})


def settings_summary(config: HerculesConfig, models: ModelIds | Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The settings the runs page shows for a run (or an imported model: no models)."""
    if not isinstance(models, ModelIds):
        models = ModelIds.from_dict(models)
    counts = config.level_cluster_counts
    return {"levels": list(counts) if counts else f"auto ({config.auto_k_method})",
            "mode": config.representation_mode, "seed": config.random_state, "topic_seed": config.topic_seed,
            **{k: v for k, v in models.as_dict().items() if v}}


@dataclass(frozen=True)
class RunSpec:
    """A run: its data, config and models (``spec.json`` holds :meth:`to_dict`)."""

    data: DataSpec
    config: HerculesConfig = field(default_factory=HerculesConfig)
    models: ModelIds = field(default_factory=ModelIds)

    def to_dict(self) -> dict[str, Any]:
        return {"data": self.data.to_dict(), "config": self.config.to_dict(), "models": self.models.as_dict()}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "RunSpec":
        return cls(DataSpec.from_dict(d.get("data") or {}), HerculesConfig.from_dict(d.get("config") or {}),
                   ModelIds.from_dict(d.get("models")))

    def summary(self) -> dict[str, Any]:
        return settings_summary(self.config, self.models)


def dataset_summary(ds: Dataset) -> dict[str, Any]:
    """The small data description kept in a run's status and shown on the runs page."""
    out = {"source": ds.source, "modality": ds.modality, "n_items": len(ds), "labelled": ds.labels is not None}
    if ds.modality == "numeric":
        out["features"] = list(ds.feature_names or [])[:20]
    if ds.notes:
        out["notes"] = list(ds.notes)[:5]
    return out


# ----------------------------------------------------------------------------- reading
def _resolve(base_dir: str | Path | None, name: str) -> Path:
    """``name`` as given (no ``base_dir``), or inside ``base_dir`` (InputError when it leaves it)."""
    if base_dir is None:
        return Path(name)
    root = Path(base_dir).resolve()
    path = (root / name).resolve()
    if "\x00" in name or not path.is_relative_to(root) or path == root:
        raise InputError("A data file is not where the run expects it; upload the data again.")
    return path


def _read_text(path: Path) -> str:
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise InputError(f"Cannot read {path.name}: {e.strerror or e}.") from None
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def txt_frame(paths: list[Path], names: list[str], mode: str) -> pd.DataFrame:
    """``id, text`` of .txt files: one item per file (id = its name) or per non-empty line (id = the
    line number, ``stem:line`` for several files)."""
    if mode == "file":
        return pd.DataFrame({"id": list(names), "text": [_read_text(p) for p in paths]})
    ids, texts = [], []
    for name, path in zip(names, paths):
        stem = PurePath(name).stem
        for k, line in enumerate(_read_text(path).splitlines()):
            if line.strip():
                ids.append(f"{stem}:{k + 1}" if len(names) > 1 else str(k + 1))
                texts.append(line.strip())
    return pd.DataFrame({"id": ids, "text": texts})


def read_labels_file(path: str | Path, budget: ReadBudget | None = None) -> dict[str, str]:
    """``{id: label}`` of a labels file: any table with columns id and label (any case), or two columns."""
    df = core_data.read_table(path, budget=budget)
    lower = {str(c).lower(): str(c) for c in df.columns}
    if "id" in lower and "label" in lower:
        id_col, label_col = lower["id"], lower["label"]
    elif len(df.columns) == 2:
        id_col, label_col = str(df.columns[0]), str(df.columns[1])
    else:
        raise InputError(f"The labels file needs columns id and label (it has {', '.join(map(str, df.columns))}).")
    ids = df[id_col].map(lambda v: str(int(v)) if isinstance(v, float) and math.isfinite(v) and v.is_integer()
                         else str(v))
    if ids.duplicated().any():
        raise InputError(f"The labels file lists ids more than once: {', '.join(ids[ids.duplicated()].head(5))}.")
    return dict(zip(ids, df[label_col].astype(str)))


def read_numeric_metadata(path: str | Path, name: str | None = None) -> dict[str, dict[str, Any]]:
    """The JSON ``{variable: {"unit": ..., "description": ...}}`` of a numeric metadata file."""
    path, name = Path(path), name or Path(path).name
    try:
        if path.stat().st_size > MAX_METADATA_BYTES:
            raise InputError(f"The numeric metadata file {name} is larger than "
                             f"{MAX_METADATA_BYTES // 1024**2} MB; it should only describe the columns.")
        meta = json.loads(path.read_text(encoding="utf-8-sig"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise InputError(f"Cannot read the numeric metadata file {name}: {e}.") from None
    if not isinstance(meta, dict) or not all(isinstance(v, dict) for v in meta.values()):
        raise InputError(f'The numeric metadata file {name} must hold a JSON object such as '
                         f'{{"age": {{"unit": "years", "description": "age at entry"}}}}.')
    return meta


# ----------------------------------------------------------------------------- spec -> Dataset
def prepare(spec: DataSpec, base_dir: str | Path | None = None, extract_dir: str | Path | None = None, *,
            read_budget: ReadBudget | None = None) -> Dataset:
    """The ``Dataset`` of ``spec``: the one way from a data spec to items, for both front doors.

    ``base_dir``: where ``spec``'s relative files live (every file must stay inside it); None takes
    them as given. ``extract_dir``: where image files are copied and a ZIP extracted (required for
    those). ``read_budget`` bounds reading a table.
    """
    paths = [_resolve(base_dir, f) for f in spec.files]
    labels = None
    if spec.labels_file:
        labels = read_labels_file(_resolve(base_dir, spec.labels_file), read_budget)
    metadata = None
    if spec.numeric_metadata_file:
        metadata = read_numeric_metadata(_resolve(base_dir, spec.numeric_metadata_file))
    vectors = _resolve(base_dir, spec.vectors_file) if spec.vectors_file else None
    if spec.kind == "table":
        ds = core_data.prepare(paths[0], modality=spec.modality, text_column=spec.text_column,
                               numeric_columns=list(spec.numeric_columns) if spec.numeric_columns else None,
                               id_column=spec.id_column, labels_column=spec.labels_column, labels=labels,
                               numeric_metadata=metadata, read_budget=read_budget, extract_dir=extract_dir,
                               vector_column=spec.vector_column, vectors=vectors)
    elif spec.kind == "txt":
        df = txt_frame(paths, list(spec.names), spec.txt_mode)
        if df.empty:
            raise InputError("The .txt files hold no non-empty lines.")
        ds = core_data.prepare(df, text_column="text", id_column="id", labels=labels, modality="text",
                               numeric_metadata=metadata, vectors=vectors, read_budget=read_budget)
    else:
        df = _image_frame(spec, paths, extract_dir)
        ds = core_data.prepare(df, text_column="path", id_column="id", labels=labels, modality="image",
                               numeric_metadata=metadata)
    ds.source = spec.source
    return ds


def _image_frame(spec: DataSpec, paths: list[Path], extract_dir) -> pd.DataFrame:
    """``id, path`` of images: image files are copied into ``extract_dir`` (id = the file's name); a
    folder's or ZIP's images have their path inside it as id."""
    if spec.kind == "images" and len(paths) == 1 and paths[0].is_dir():
        found = core_data.collect_images(paths[0])
        root = paths[0].resolve()
    elif spec.kind == "images":
        if extract_dir is None:
            raise InputError("Image files need a folder to be copied to (extract_dir).")
        target_dir = Path(extract_dir)
        target_dir.mkdir(parents=True, exist_ok=True)
        copied = []
        for i, p in enumerate(paths):
            target = target_dir / f"f{i:05d}{_ext(p.name)}"
            shutil.copyfile(p, target)
            copied.append(str(target))
        return pd.DataFrame({"id": list(spec.names), "path": copied})
    else:
        if extract_dir is None:
            raise InputError(f"{spec.names[0]} is a ZIP archive: it needs a folder to be extracted to (extract_dir).")
        found = core_data.collect_images(paths[0], extract_dir=extract_dir)
        root = Path(extract_dir).resolve()
    if not found:
        raise InputError(f"No images ({', '.join(IMAGE_EXTENSIONS)}) found in {spec.names[0]}.")
    ids = [Path(p).resolve().relative_to(root).as_posix() for p in found]
    return pd.DataFrame({"id": ids, "path": found})


def estimate_dataset(spec: DataSpec, base_dir: str | Path | None = None, *,
                     read_budget: ReadBudget | None = None) -> Dataset:
    """The data of ``spec`` as far as a cost estimate needs it, writing nothing: a table or texts are
    prepared (their problems show before the start); images are only named, a ZIP's from its listing."""
    if spec.kind in ("table", "txt"):
        return prepare(spec, base_dir, None, read_budget=read_budget)
    names = list(spec.names)
    path = _resolve(base_dir, spec.files[0])
    if spec.kind == "images" and len(spec.files) == 1 and path.is_dir():
        names = core_data.collect_images(path)
    elif spec.kind == "zip":
        try:
            with zipfile.ZipFile(path) as zf:
                names = [n for n in zf.namelist() if _ext(n) in IMAGE_EXTENSIONS
                         and not any(p.startswith(".") or p == "__MACOSX" for p in PurePosixPath(n).parts)]
        except (zipfile.BadZipFile, OSError):
            raise InputError(f"{spec.names[0]} is not a readable ZIP archive.") from None
    if not names:
        raise InputError(f"No images ({', '.join(IMAGE_EXTENSIONS)}) found in {spec.names[0]}.")
    return Dataset(ids=[str(i) for i in range(len(names))], modality="image", image_paths=names)
