"""The relay: a running notebook's cells sent to a container kernel (``%container use``).

- :mod:`.session`    how a `%container` kernel is specified, pre-checked, started and warmed
  (the service the magics call: they only parse, call it and print)
- :mod:`.kernel`     :class:`~.kernel.Relay`: lifecycle and shell requests (execute, input,
  interrupts, internal runs, completion, inspection)
- :mod:`.outputs`    the IOPub pump that re-publishes what the container says; widget comms
- :mod:`.connection` the kernel manager, its private sockets, waiting until it answers
- :mod:`.remote`     a failed container cell as a local exception

Import from the modules themselves.
"""

__all__: list[str] = []
