"""Schemathesis hooks for scripts/fuzz (loaded through SCHEMATHESIS_HOOKS=fuzz_hooks).

One adjustment, for the one rule of the APIs that no schema can state: an Idempotency-Key
names one request, so order-service answers a key reused with a different body with 422 (as
the IETF draft on the Idempotency-Key header says). Schemathesis draws keys from a small space
and would send one key with two bodies, then count the 422 as a schema-valid request refused.
So every valid key is replaced by a fresh one; invalid keys are left as drawn, for the
negative tests. Retries with one key are tested in order-service/tests/api/orders.rs.
"""

import re
import uuid

import schemathesis

VALID_KEY = re.compile(r"[!-~]{1,255}")


@schemathesis.hook
def before_call(ctx, case, **kwargs):
    headers = case.headers or {}
    for name in list(headers):
        value = headers[name]
        if name.lower() == "idempotency-key" and isinstance(value, str) and VALID_KEY.fullmatch(value):
            headers[name] = str(uuid.uuid4())

