"""Two example milterkit filters, installable as plugins (see ``pyproject.toml``)."""
