"""`python -m prune_ray.sweep`: entry point of tune.sweep (run a pruning sweep on Ray Tune)."""

import sys

from .tune.sweep import main

if __name__ == "__main__":
    sys.exit(main())
