"""Model -> serving image: `%export-serving` and `nbcontainers export` (see export.py)."""

__all__: list[str] = []
