"""The pieces ``ravit_keras.train`` is made of: recipe, callbacks, normalisation, data to run.

``ravit_keras.train`` re-exports the recipe and callbacks; import from there.
"""
