import os

# The README's test command runs the notebooks in their small "smoke" size unless told otherwise.
os.environ.setdefault("SACNN_SMOKE", "1")
