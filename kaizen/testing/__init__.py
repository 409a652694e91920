"""Testing without a provider: `ScriptedModel` (a scriptable model answered in-process through
the transport seam, or through litellm with ``transport="litellm"``) and `FaultServer` (a real
OpenAI-compatible HTTP server on loopback that injects latency and faults). Both exercise Kaizen's
real call path; nothing is mocked.
"""

from kaizen.testing.fault_server import Fault, FaultServer
from kaizen.testing.scripted import (
    SCRIPTED_PROVIDER,
    ScriptedCall,
    ScriptedHTTPError,
    ScriptedModel,
    ScriptedReply,
    ScriptedStatus,
    ScriptedToolCalls,
    ScriptError,
)
from kaizen.testing.scripted_litellm import make_scripted_handler, status_error

__all__ = [
    "SCRIPTED_PROVIDER",
    "Fault",
    "FaultServer",
    "ScriptError",
    "ScriptedCall",
    "ScriptedHTTPError",
    "ScriptedModel",
    "ScriptedReply",
    "ScriptedStatus",
    "ScriptedToolCalls",
    "make_scripted_handler",
    "status_error",
]
