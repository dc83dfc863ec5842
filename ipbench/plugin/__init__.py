"""Everything a scheme or an attack plugin needs, from one import.

::

    from ipbench.plugin import Scheme, Credential, Protected, RunContext, schemes
    from ipbench.plugin import Attack, Target, Metric, At, pct, score, seeded, attacks

The contract (``Scheme``, ``Attack``), what they exchange (``Protected``, ``Credential``,
``Target``, ``RunContext``), the capabilities a scheme declares and an attack requires, the
metric specs an attack declares, the helpers a thief uses (``steal``, ``thief_train``,
``score``, ...), the two registries, and the errors a plugin raises. The modules below stay
importable by their own names; this face is what the docs and the examples use.
"""

from ipbench.core.errors import IpbenchError
from ipbench.core.registry import attacks, schemes
from ipbench.metrics.spec import At, Metric, Results, pct
from ipbench.ml.images import quantize, to_uint8
from ipbench.ml.models import ModelSpec, build_model
from ipbench.ml.training import to_float_images
from ipbench.plugin.attack import (
    Attack,
    Target,
    answers,
    bare_network,
    first,
    redeploy,
    score,
    seeded,
    served_accuracy,
    steal,
    test_slice,
    thief_data,
    thief_train,
    training_set_size,
)
from ipbench.plugin.capabilities import (
    CredentialForging,
    FingerprintAuthentication,
    InputSpaceToken,
    PassportLayers,
    SharedStage,
    StealthViews,
    WrappedDeployment,
    capabilities_of,
    capability,
)
from ipbench.plugin.context import RunContext
from ipbench.plugin.contract import Credential, Protected, Scheme
from ipbench.plugin.evaluate import eval_users, query_logits

__all__ = [
    "At", "Attack", "Credential", "CredentialForging", "FingerprintAuthentication",
    "InputSpaceToken", "IpbenchError", "Metric", "ModelSpec", "PassportLayers", "Protected",
    "Results", "RunContext", "Scheme", "SharedStage", "StealthViews", "Target", "WrappedDeployment", "answers", "attacks",
    "bare_network", "build_model", "capabilities_of", "capability", "eval_users", "first",
    "pct", "quantize", "query_logits", "redeploy", "schemes", "score", "seeded",
    "served_accuracy", "steal", "test_slice", "thief_data", "thief_train", "to_float_images",
    "to_uint8", "training_set_size",
]  # fmt: skip
