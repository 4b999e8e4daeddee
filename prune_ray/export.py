"""`python -m prune_ray.export`: entry point of artifacts.export (a saved model as safetensors or ONNX)."""

import sys

from .artifacts.export import main

if __name__ == "__main__":
    sys.exit(main())
