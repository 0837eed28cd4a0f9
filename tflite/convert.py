"""Convert a trained RAViT into TFLite submodels + manifest: ``ravit convert``.

    python tflite/convert.py --model runs/demo/train --data generated --out runs/demo/tflite
"""

import sys

from ravit_keras.cli import main

if __name__ == "__main__":
    sys.exit(main(["convert", *sys.argv[1:]]))
