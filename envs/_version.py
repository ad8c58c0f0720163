"""The package version, in one place: setup.cfg reads it (``version = attr:``), and
``envs.__version__`` and ``agents.__version__`` are it. CHANGELOG.md says when it changes."""
__version__ = "0.2.0"
