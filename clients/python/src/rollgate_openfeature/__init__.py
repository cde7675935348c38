"""rollgate-openfeature: an OpenFeature hook that reports signals to a rollgate server.

    from openfeature import api
    from rollgate_openfeature import RollgateSignalsHook

    hook = RollgateSignalsHook("http://rollgate:8080", token="<client token>")
    api.add_hooks([hook])
    ...
    hook.complaint("qr-ordering", EvaluationContext(targeting_key="user-42"))
    hook.close()

See README.md for the whole story and docs/clients.md (rollgate repository) for the protocol.
"""

from ._hook import RollgateSignalsHook
from ._version import __version__

__all__ = ["RollgateSignalsHook", "__version__"]
