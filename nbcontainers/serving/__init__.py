"""Model -> serving image: `%export-serving` and `nbcontainers export` (see export.py)."""
