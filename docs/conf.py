"""Sphinx configuration of the tg_samplenet documentation.

Build it from the repository root with warnings as errors::

    sphinx-build -W docs docs/_build
"""

import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
sys.path.insert(0, str(DOCS.parent))  # the checkout's tg_samplenet, installed or not
sys.path.insert(0, str(DOCS / "_ext"))

import tg_samplenet  # noqa: E402

project = "tg_samplenet"
author = "tg_samplenet contributors"
copyright = "the tg_samplenet contributors"
version = release = tg_samplenet.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
    "tg_docs",  # the API pages from __all__, the command line's help, the results pages
]

exclude_patterns = ["_build", "_ext", "Thumbs.db", ".DS_Store"]
root_doc = "index"
pygments_style = "sphinx"
pygments_dark_style = "monokai"

# The docstrings follow PyG's form: Google-style "Args:", a "Shapes:" section for modules,
# ":rtype:" for functions, the constructor's arguments in the class docstring.
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_ivar = True  # "Attributes:" as fields, not as objects autodoc documents again
napoleon_custom_sections = ["Shapes"]
autoclass_content = "class"
autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_preserve_defaults = True
autosummary_generate = False  # the API pages are written by the tg_docs directives

html_theme = "furo"
html_title = f"tg_samplenet {release}"
html_static_path = []
html_theme_options = {
    "sidebar_hide_name": False,
    "navigation_with_keys": True,
}
