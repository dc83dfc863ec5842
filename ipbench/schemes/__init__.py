"""Scheme plugins (``ipbench.schemes``). Adding a scheme is one new module here.

Every module whose name does not start with ``_`` is imported when the scheme registry is
first used; ``_`` marks private helpers shared by several schemes (``_poisoning``,
``_activeguard``, ...). Third-party packages register through the ``ipbench.schemes``
entry-point group instead.
"""
