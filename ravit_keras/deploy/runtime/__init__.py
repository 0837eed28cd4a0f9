"""Run-time side: manifest, policy, quantisation, scheduler. LiteRT + NumPy only (no TensorFlow, no Keras)."""
