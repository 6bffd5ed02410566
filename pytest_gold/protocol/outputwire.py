"""Live output (``-s``) on the wire: how chunks are marked on ipyparallel's IOPub channel,
and the most one read of an engine's output spool returns (the controller reads on)."""

#: The MIME type of output chunks in ``display_data`` messages.
OUTPUT_MIME = "application/x-pytest-gold-output"
#: The most a read from the spool returns (the controller reads on until it has all).
READ_MAX_BYTES = 4 * 1024 * 1024
