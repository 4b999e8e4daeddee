"""`python -m prune_ray.analyze`: entry point of results.analyze (frontier tables and plots)."""

import sys

from .results.analyze import main

if __name__ == "__main__":
    sys.exit(main())
