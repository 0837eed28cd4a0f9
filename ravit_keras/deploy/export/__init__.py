"""Export side: Keras graph surgery, conversion, flatbuffer rewrites, metadata, mode selection, golden vectors (TensorFlow)."""
