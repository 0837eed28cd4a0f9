"""Benchmark RAViT submodels against a classic ViT with LiteRT: ``ravit bench``.

    python tflite/benchmark.py --model runs/ravit --baseline runs/vit4 --data DATA --out runs/bench
"""

import sys

from ravit_keras.cli import main

if __name__ == "__main__":
    sys.exit(main(["bench", *sys.argv[1:]]))
