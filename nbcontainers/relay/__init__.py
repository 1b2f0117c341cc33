"""The relay: a running notebook's cells sent to a container kernel (``%container use``).

``kernel.py`` owns the connection to the container kernel and forwards its messages; the
magics only parse, call and print. Import from the modules themselves.
"""

__all__: list[str] = []
