"""Attack plugins, installed as ``ipbench.attacks`` (entry-point group ``ipbench.attacks``)."""

BUILTIN: list[str] = [
    "finetune",
    "prune",
    "extraction",
    "fake_token",
    "fake_credential",
    "forged_fingerprint",
    "neural_cleanse",
    "strip_control",
    "passport_retrain",
]
