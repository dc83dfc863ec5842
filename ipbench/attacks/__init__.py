"""Attack plugins (``ipbench.attacks``). Adding an attack is one new module here.

Every module whose name does not start with ``_`` is imported when the attack registry is
first used. Third-party packages register through the ``ipbench.attacks`` entry-point group.
The helpers attacks share are public, in ``ipbench.plugin.attack``.
"""
