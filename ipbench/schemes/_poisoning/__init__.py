"""Protection by data poisoning with an input-space token, shared by ActiveDaemon, M-LOCK and
ADIP: the poisoning recipe (``poisoning``), the common scheme shape (``token_scheme``) and
ActiveDaemon's token generator and identity code (``tokens``). Private to the schemes."""
