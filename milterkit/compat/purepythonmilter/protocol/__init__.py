"""``purepythonmilter.protocol``: the command and response objects and the protocol enums."""
