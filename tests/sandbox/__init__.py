"""A local stand-in for Custobar's data API, for tests, benchmarks and demos (DESIGN.md §4).

    from tests.sandbox import Sandbox, generate_dataset, TEST_TOKEN

    with Sandbox(dataset=generate_dataset(seed=1)) as sb:     # or sb = Sandbox(...).start()
        requests.get(f"{sb.url}/api/data/customers/",
                     headers={"Authorization": f"Token {TEST_TOKEN}"})

- ``sb.add(stream, record)``, ``sb.delete(stream, **key)`` (returns the number removed) and
  ``sb.records(stream)`` change and read the served records (the Dataset is not touched).
- ``sb.switches``: a set of SWITCHES, for what the API doc leaves open.
- ``sb.inject(kind, *, times=1, stream=None, after=0, **options)``: the next ``times`` matching
  requests (None: all of them), after ``after`` of them, get fault ``kind`` (FAULT_KINDS);
  ``sb.clear_faults()``.
- ``sb.requests``: one dict per API request (method, path, query, params, stream, auth_ok,
  auth_scheme, user_agent, status, fault, t_start, t_end); never the token.
  ``sb.clear_requests()``. Other processes use ``GET /_sandbox/requests`` and
  ``POST /_sandbox/clear-requests``.

Needs only the standard library and msgspec. ``python -m tests.sandbox --help`` runs it as a
server of its own.
"""

from .data import CUSTOM_FIELDS, EVENT_TYPES, SALE_STATES, STREAMS, Dataset, generate_dataset
from .server import FAULT_KINDS, SWITCHES, TEST_TOKEN, Sandbox

__all__ = [
    "CUSTOM_FIELDS",
    "EVENT_TYPES",
    "FAULT_KINDS",
    "SALE_STATES",
    "STREAMS",
    "SWITCHES",
    "TEST_TOKEN",
    "Dataset",
    "Sandbox",
    "generate_dataset",
]
