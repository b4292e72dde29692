# first: choose the compiled or the interpreted build before any module of
# the package is imported (fleecesim/_compiled.py)
from . import _compiled

_compiled.install()

__version__ = "0.1.0"
