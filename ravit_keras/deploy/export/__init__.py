"""Export side (TensorFlow): Keras graph surgery, conversion, flatbuffer rewrites, metadata,
mode selection, golden vectors."""
