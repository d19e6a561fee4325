"""`python -m lmtune.cli ...`: how `lmtune train --nproc N` starts each process."""

import sys

from lmtune.cli import main

sys.exit(main())
