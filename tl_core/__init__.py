"""TL Studio's engine: datasets, backbones, training jobs, run folders, evaluation and export.

Importable without a browser: nothing here imports streamlit.
"""

__version__ = "0.1.0"
