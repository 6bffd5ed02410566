"""The version of the messages between the controller, the supervisors and the workers."""

#: The version of the messages between the controller, the supervisors and the workers
#: (here and in :mod:`pytest_gold.protocol.messages`). Raise it with any change that the
#: other side of an older or newer installation would misread. :class:`StartRun` and
#: :class:`WrongProtocol` keep their ``kind`` and ``protocol`` field for ever, so that two
#: versions can always tell each other apart.
#: 2: an engine returns a batch's events as one JSON array (``messages.result_to_wire``).
PROTOCOL_VERSION = 2
