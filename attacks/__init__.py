"""Attack plugins, installed as ``ipbench.attacks`` (entry-point group ``ipbench.attacks``)."""

BUILTIN: list[str] = ["extraction", "finetune", "passport_retrain", "prune", "strip_control"]
