"""The E2B cloud sandbox (`sandbox="e2b"`): one E2B sandbox per RLM node.

`registry.py` builds it; `sandbox.py` is the adapter, `bridge.py` the marker protocol with the
code in the sandbox, `service.py` the SDK and the limits of E2B's service.
"""

from rlm.sandbox.e2b.sandbox import E2BSandbox, check_available

__all__ = ["E2BSandbox", "check_available"]
