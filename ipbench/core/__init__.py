"""The foundation every other layer stands on: errors, settings and their validation, the
plugin registry and code identity, the owner key, tensor I/O, integrity, provenance, progress."""
