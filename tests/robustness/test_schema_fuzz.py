"""Schema-driven fuzzing: every operation of the OpenAPI spec with valid and invalid inputs (schemathesis),
in-process against the ASGI app. No input may produce a 5xx, and every answer must match the spec."""

import time

import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.python import asgi
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from app.config import Settings
from app.main import create_app
from tests.conftest import SHIPPED_MODEL

# Examples per operation and generation mode; the whole module stays well under a minute.
MAX_EXAMPLES = 100

APP = create_app(Settings(model_path=SHIPPED_MODEL))
schema = schemathesis.openapi.from_asgi("/openapi.json", APP)


def wait_until_warm(timeout: float = 30.0) -> None:
    """schemathesis runs the app's lifespan itself (afresh for each operation); fuzz only once the model
    is warm, so that a 503 could only mean overload, which sequential requests never cause."""
    with asgi.get_client(APP):  # starts the lifespan if it is not running
        deadline = time.monotonic() + timeout
        while not APP.state.service.ready:
            assert time.monotonic() < deadline, (
                f"the app did not become ready: {APP.state.service.not_ready_reason}"
            )
            time.sleep(0.02)


@schema.parametrize()
@settings(max_examples=MAX_EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None)
def test_no_server_error_and_responses_match_the_schema(case: schemathesis.Case) -> None:
    wait_until_warm()
    case.call_and_validate(
        checks=[
            not_a_server_error,
            status_code_conformance,
            content_type_conformance,
            response_schema_conformance,
        ]
    )
