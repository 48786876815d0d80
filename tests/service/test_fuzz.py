"""Schemathesis against the service's own OpenAPI schema: no 5xx, and every response conforms to the schema."""

import pytest

schemathesis = pytest.importorskip("schemathesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from schemathesis.checks import positive_data_acceptance  # noqa: E402

from service.app import create_app  # noqa: E402
from service.settings import Settings  # noqa: E402


def test_api_conforms_and_never_fails(tiny_predictor, tiny_model_dir, tmp_path):
    config = Settings(model_dir=tiny_model_dir, max_text_chars=2000, max_body_bytes=64_000, feedback_db=tmp_path / "fb.sqlite3")
    schema = schemathesis.openapi.from_asgi("/openapi.json", create_app(config, predictor=tiny_predictor))
    operations = [result.ok() for result in schema.get_all_operations()]
    assert {f"{op.method.upper()} {op.path}" for op in operations} >= {"POST /classify", "POST /classify/batch", "POST /feedback"}
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(max_examples=25, derandomize=True, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        def check(case):
            response = case.call()
            assert response.status_code < 500, (case.path, response.text)
            # Schema-valid bodies may still be refused for what the schema cannot say (empty text, limits, no relation head).
            case.validate_response(response, excluded_checks=[positive_data_acceptance])
            if response.status_code >= 400:
                assert set(response.json()) == {"error", "error_type"}, response.text

        check()
