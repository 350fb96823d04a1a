"""The package version, in a leaf so that any module may record it in the files it writes."""

__version__ = "0.1.0.dev0"
