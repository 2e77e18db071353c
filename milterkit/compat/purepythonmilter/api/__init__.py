"""``purepythonmilter.api``: the application object, the connection models and the logger."""
