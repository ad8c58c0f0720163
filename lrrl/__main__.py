"""``python -m lrrl train ...`` and ``python -m lrrl evaluate ...`` (:mod:`lrrl.cli`)."""
import sys

from lrrl.cli import main

sys.exit(main())
