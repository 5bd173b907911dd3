"""``python -m capacity_forecaster.cli``."""

import sys

from capacity_forecaster.cli import main

sys.exit(main())
