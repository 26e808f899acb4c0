"""``python -m nctk`` runs the command line."""

import sys

from nctk.cli import main

sys.exit(main())
