"""``python -m hercules_core run ...``: the command line as the README documents it.

The one deliberate upward import of ``hercules_core``: this entry script (never imported by the
library) hands over to the application layer's CLI, ``hercules_run.cli``, which builds models from
the registry. ``tests/test_layering.py`` allows this file and no other.
"""

import sys

from hercules_run.cli import main

sys.exit(main())
