"""Property-based fuzzing of the control-plane API from its own OpenAPI document
(schemathesis strategies driven by hypothesis): whatever the input, no 5xx, no unhandled
exception, and every error is problem+json with a detail. Bounded per operation so the
whole walk fits in CI."""

from __future__ import annotations

from collections import Counter
from typing import Any

import schemathesis
from hypothesis import HealthCheck, given, settings

from leptonic.platform import Platform

EXAMPLES = 25


def check(case: Any, headers: dict[str, str], seen: Counter[int]) -> None:
    response = case.call(headers=headers)
    seen[response.status_code] += 1
    where = f"{case.method} {case.formatted_path}"
    assert response.status_code < 500, (where, response.text[:500])
    if response.status_code >= 400:
        ctype = response.headers.get("content-type", "")
        ctype = ctype[0] if isinstance(ctype, list) else ctype
        assert ctype.startswith("application/problem+json"), (where, ctype)
        assert response.json()["detail"], where


def test_no_input_breaks_the_api(platform: Platform, token: str) -> None:
    schema = schemathesis.openapi.from_asgi("/openapi.json", platform.api)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 20
    seen: Counter[int] = Counter()
    auths = [{"Authorization": f"Bearer {token}"}, {},
             {"Authorization": "Bearer lep_not-a-real-token"}]
    for operation in operations:
        @given(case=operation.as_strategy())
        @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                  suppress_health_check=list(HealthCheck))
        def fuzz(case: Any) -> None:
            for headers in auths:
                check(case, headers, seen)

        fuzz()
    # the walk reached past the door, and was turned away at it
    assert seen[200] + seen[201] > 0
    assert seen[401] > 0
    assert seen[422] > 0
