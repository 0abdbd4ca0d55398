"""ExportError: what every part of an export raises when it cannot go ahead.

Must not know: anything else.

Example (CPU, instant):
    python -c "from tune_distill.export import ExportError; print(issubclass(ExportError, ValueError))"
"""


class ExportError(ValueError):
    """A sweep folder, trial choice or export that cannot go ahead; the message says which and why."""
