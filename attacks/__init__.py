"""Attack plugins, installed as ``ipbench.attacks`` (entry-point group ``ipbench.attacks``)."""

BUILTIN: list[str] = ["fake_token", "fake_credential", "forged_fingerprint", "neural_cleanse"]
