"""The package's version, in a module of its own so that modules recording it (exports, ``ssl-mix --version``)
and ``setup.cfg`` read it without importing the package ``__init__``."""

__all__ = ["__version__"]

__version__ = "0.1.0"
"""The release of ssl_mix (PEP 440), written into exported models' sidecars."""
