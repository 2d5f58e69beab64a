"""marsseg: a Kaggle submission kit for Mars terrain segmentation.

Importing the package is cheap: nothing here loads TensorFlow or Keras, so commands
that need no model (encode, validate, score, inspect, synth) start in well under a second.
"""

from marsseg import quiet

__version__ = "0.1.0"

quiet.install()  # before anything imports TensorFlow
