"""What the runs page's model import does with an uploaded ``model.json`` or ``.hercules`` bundle, in
the bounded reader.

:func:`open_imported` runs in a child process of :mod:`callbacks.bounded` (memory and time limits):
it loads the model (``hercules_core.load_model``, which checks every declared array against the
document before decoding), writes the run's other result files beside it, and returns only the
small summary the run's status needs. A model file that would need more memory than the reader may
use is refused there, so the explorer, which loads the same file in the web server later, never
meets it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hercules_core import columnar, load_model
from hercules_run.pipeline import save_outputs
from hercules_run.spec import settings_summary


UPLOAD = "upload" + columnar.BUNDLE_SUFFIX  # an uploaded bundle, while it is unpacked


def open_imported(rdir: str) -> dict[str, Any]:
    """Load ``rdir/model.json``, write the other outputs (the model itself stays as it was), and
    return what the run's status shows. An uploaded bundle is unpacked first (its model.json and
    items file, under the ZIP rules); loading then checks the items file against the model."""
    model = Path(rdir) / "model.json"
    if columnar.is_bundle(model):
        bundle = model.replace(model.with_name(UPLOAD))
        columnar.extract_bundle(bundle, Path(rdir))
        bundle.unlink()
    h = load_model(model)
    save_outputs(h, rdir, write_model=False)
    return {"n_items": h.n_items, "top_level": h.top_level, "modality": h.dataset.modality,
            "labelled": h.dataset.labels is not None, "settings": settings_summary(h.config),
            "timings": h.stats.get("timings", {}), "clusters_per_level": [len(lv) for lv in h.levels[1:]]}
