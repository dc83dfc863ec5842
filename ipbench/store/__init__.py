"""What a run leaves behind: the SQLite results store, the stage cache and its records, and
the transfer of stores between machines. Loads no plugin code."""
