"""The two errors of the search package: a space that cannot be used, a searcher asked the impossible.

What it does: defines `SearchSpaceError` (bad YAML, bad bounds, expressions that fail) and
`SearcherError` (unknown searcher name or trial, bad objective, constraint or values). Both are
`ValueError`s, so the command line reports them as plain errors.

What it must not know: anything else; every other module of the package imports it.

Example (CPU, instant):
    python -c "from tune_distill.search.errors import SearcherError; print(SearcherError.__mro__)"
"""

from __future__ import annotations


class SearchSpaceError(ValueError):
    """A search space that cannot be used; the message names the file (if any) and the key."""


class SearcherError(ValueError):
    """A searcher asked to do something impossible (unknown name, unknown trial, bad values)."""
