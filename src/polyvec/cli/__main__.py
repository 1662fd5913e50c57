"""``python -m polyvec.cli``."""

from polyvec.cli import main

raise SystemExit(main())
