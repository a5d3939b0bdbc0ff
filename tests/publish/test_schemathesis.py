"""Property-based requests from the served OpenAPI document: never a 5xx."""

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings

EXAMPLES_PER_OPERATION = 25


def _check_operation(operation) -> list[str]:
    failures: list[str] = []

    @settings(
        max_examples=EXAMPLES_PER_OPERATION,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        derandomize=True,
        database=None,
    )
    @given(case=operation.as_strategy())
    def call(case):
        response = case.call(timeout=60)
        if response.status_code >= 500:
            failures.append(
                f"{case.method} {response.request.url} -> {response.status_code}: "
                f"{response.text[:200]}"
            )

    call()
    return failures


@pytest.mark.slow
@pytest.mark.integration
def test_generated_requests_never_get_a_server_error(live_server):
    schema = schemathesis.openapi.from_url(f"{live_server.url}/openapi?f=json")
    failures: list[str] = []
    checked = []
    for result in schema.get_all_operations():
        operation = result.ok()
        # executing the workflow process starts real jobs (tested on their own)
        if operation.path.endswith("/execution"):
            continue
        checked.append(f"{operation.method.upper()} {operation.path}")
        failures.extend(_check_operation(operation))
    assert len(checked) > 20
    assert not failures, "\n".join(failures[:20])
