"""Scheme plugins, installed as ``ipbench.schemes``. Adding a scheme is one new file here.

BUILTIN lists the modules imported when the registry is first used; third-party packages
register through the ``ipbench.schemes`` entry-point group instead.
"""

BUILTIN = ["none", "activedaemon", "activeguard", "mlock", "adip", "chaow", "advparams", "passport"]
