"""Small files that decode to huge tables, made in the test (never stored in git): an xlsx whose sheet
declares (or holds) a cell at XFD1048576, a Parquet of 60 M zero rows, a CSV with a million columns,
and a Parquet whose one repeated string decodes to gigabytes."""

from __future__ import annotations

import io
import re
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd


def xlsx_bomb(path: Path, dimension: str = "A1:XFD1048576", far: str = "XFD1048576") -> Path:
    """A real two-cell workbook, its sheet XML edited: the declared dimension and one far cell."""
    buf = io.BytesIO()
    pd.DataFrame({"text": ["hello", "world"]}).to_excel(buf, index=False)
    src = zipfile.ZipFile(io.BytesIO(buf.getvalue()))
    row = far.lstrip("ABCDEFGHIJKLMNOPQRSTUVWXYZ")
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as out:
        for info in src.infolist():
            raw = src.read(info.filename)
            if info.filename == "xl/worksheets/sheet1.xml":
                xml = re.sub(r'<dimension ref="[^"]*"\s*/>', f'<dimension ref="{dimension}"/>', raw.decode())
                assert f'ref="{dimension}"' in xml
                xml = xml.replace("</sheetData>", f'<row r="{row}"><c r="{far}" t="n"><v>1</v></c></row></sheetData>')
                raw = xml.encode()
            out.writestr(info, raw)
    return path


def zero_rows_parquet(path: Path, rows: int = 60_000_000) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"x": np.zeros(rows, dtype=np.int64)}), path, compression="zstd")
    return path


def wide_csv(path: Path, columns: int = 1_000_000) -> Path:
    with open(path, "w") as fh:
        fh.write(",".join(f"c{i}" for i in range(columns)) + "\n")
        fh.write(",".join("1" for _ in range(columns)) + "\n")
    return path


def repeated_string_parquet(path: Path, rows: int = 1_000_000, chars: int = 4_000) -> Path:
    """Within every declared limit (1 M rows, 1 column, a tiny dictionary page), yet ``rows x chars``
    bytes once decoded: only the reader's memory limit stops it."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    words = pa.array(["x" * chars]).dictionary_encode()
    col = pa.DictionaryArray.from_arrays(pa.array(np.zeros(rows, dtype=np.int32)), words.dictionary)
    pq.write_table(pa.table({"text": col}), path, compression="zstd", store_schema=False)  # read back as plain strings
    return path
