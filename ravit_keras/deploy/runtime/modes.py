"""The conversion-mode vocabulary: part of the manifest contract (its ``quantization`` key).

Here, beside the manifest, so that the CLI and the runtimes name the modes
without importing the converter (TensorFlow).
"""

MODES = ("int8", "int8-full", "dynamic", "int16x8", "float32")
# Modes whose submodels take uint8 pixels and give int8 logits and CLS tokens.
INTEGER_IO_MODES = ("int8", "int8-full")
# Modes whose matrix products run in int8 arithmetic (dynamic quantises activations
# on the fly), so int8 GEMM speed is their ceiling.
INT8_MATMUL_MODES = ("int8", "int8-full", "dynamic")
