"""SageMakerPredictor: boto3 to the real local endpoint through an InvokeEndpoint front, and botocore's Stubber."""

from __future__ import annotations

import io
import json

import pytest

from explain.errors import PredictorError
from explain.predictors import SageMakerPredictor, TransportConfig, make_predictor
from serving.contract import encode_images, npy_body_size
from tests.fake_endpoint import assert_same_predictions, fake_model, random_batch

# --------------------------------------------------------------------------------------
# SageMaker runtime: moto's server (happy path) and botocore's Stubber (errors)
# --------------------------------------------------------------------------------------

def _runtime_client(endpoint_url=None):
    import boto3
    from botocore.config import Config

    return boto3.client("sagemaker-runtime", region_name="us-east-1", endpoint_url=endpoint_url,
                        aws_access_key_id="testing", aws_secret_access_key="testing",
                        config=Config(retries={"total_max_attempts": 1}))


class _RuntimeFront:
    """SageMaker runtime's InvokeEndpoint, as HTTP: ``POST /endpoints/NAME/invocations`` forwarded
    to a real local endpoint's ``/invocations`` (body and headers as the runtime passes them).

    moto cannot stand in here: moto 5.2.5's server decodes every request body as UTF-8
    (moto/core/responses.py setup_class), so binary npy/jpeg/png bodies fail inside it with a 500.
    """

    def __init__(self, endpoint_url: str, endpoint_name: str):
        import http.server
        import threading
        import urllib.error
        import urllib.request

        seen = self.seen = []

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 (http.server's name)
                body = self.rfile.read(int(self.headers["Content-Length"]))
                seen.append((self.path, dict(self.headers)))
                if self.path != f"/endpoints/{endpoint_name}/invocations":
                    self._answer(404, b'{"message": "no such endpoint"}', "application/json", {})
                    return
                forwarded = {name: self.headers[name] for name in
                             ("Content-Type", "Accept", "X-Amzn-SageMaker-Custom-Attributes") if self.headers[name]}
                request = urllib.request.Request(f"{endpoint_url}/invocations", data=body,
                                                 headers=forwarded, method="POST")
                try:
                    with urllib.request.urlopen(request, timeout=60) as answer:
                        status, payload, headers = answer.status, answer.read(), answer.headers
                except urllib.error.HTTPError as error:
                    status, payload, headers = error.code, error.read(), error.headers
                self._answer(status, payload, headers.get("Content-Type", "application/octet-stream"),
                             {"x-Amzn-Invoked-Production-Variant": "AllTraffic"})

            def _answer(self, status, payload, content_type, extra):
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(payload)))
                for name, value in extra.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.mark.integration
def test_sagemaker_predictor_through_boto3_to_the_real_endpoint(detector_endpoint, tiny_detector_dir):
    """boto3's signed InvokeEndpoint calls carry the batches to the real handler and back."""
    batch = random_batch(5, height=48, width=64, seed=11)
    with make_predictor(str(tiny_detector_dir), "detection") as in_process:
        expected = in_process(batch)
    front = _RuntimeFront(detector_endpoint.url, "explain-test")
    try:
        budget = npy_body_size((2, 48, 64, 3))  # 3 requests: 2 + 2 + 1 images
        for accept in ("application/json", "application/x-npy"):
            front.seen.clear()
            predictor = SageMakerPredictor("explain-test", "detection", TransportConfig(
                max_payload_bytes=budget, concurrency=1, max_retries=0, accept=accept),
                client=_runtime_client(front.url))
            assert_same_predictions(predictor(batch), expected)
            assert predictor.stats["requests"] == 3 and predictor.stats["images"] == 5
            assert len(front.seen) == 3
            assert all(headers["Authorization"].startswith("AWS4-HMAC-SHA256 ") for _, headers in front.seen)
            assert all(headers["Accept"] == accept for _, headers in front.seen)
        missing = SageMakerPredictor("no-such-endpoint", "detection", TransportConfig(max_retries=0),
                                     client=_runtime_client(front.url))
        with pytest.raises(PredictorError, match="no-such-endpoint"):
            missing(batch[:1])
    finally:
        front.close()


def test_sagemaker_predictor_packs_requests_for_invoke_endpoint():
    from botocore.response import StreamingBody
    from botocore.stub import Stubber

    batch = random_batch(5, seed=11)
    expected = fake_model(batch, "classification")
    budget = npy_body_size((2, 32, 32, 3))
    client = _runtime_client()
    stubber = Stubber(client)
    for part in (slice(0, 2), slice(2, 4), slice(4, 5)):
        body = json.dumps([p.tolist() for p in expected[part]]).encode()
        stubber.add_response(
            "invoke_endpoint",
            {"Body": StreamingBody(io.BytesIO(body), len(body)), "ContentType": "application/json"},
            {"EndpointName": "explain-test", "Body": encode_images(batch[part], "application/x-npy"),
             "ContentType": "application/x-npy", "Accept": "application/json"})
    stubber.activate()
    predictor = SageMakerPredictor("explain-test", "classification", TransportConfig(
                                                                                     max_payload_bytes=budget,
                                                                                     concurrency=1), client=client)
    assert_same_predictions(predictor(batch), expected)
    stubber.assert_no_pending_responses()
    assert predictor.stats["requests"] == 3 and predictor.stats["images"] == 5


def test_sagemaker_predictor_without_a_region_says_how_to_set_one(monkeypatch, tmp_path):
    for name in ("AWS_DEFAULT_REGION", "AWS_REGION", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    with pytest.raises(PredictorError, match="no AWS region for the SageMaker endpoint: set AWS_DEFAULT_REGION"):
        make_predictor("sagemaker:my-endpoint", "detection")


def _stubbed(responses):
    from botocore.response import StreamingBody
    from botocore.stub import Stubber

    client = _runtime_client()
    stubber = Stubber(client)
    for kind, value in responses:
        if kind == "ok":
            body = json.dumps([p.tolist() for p in value]).encode()
            stubber.add_response("invoke_endpoint", {
                "Body": StreamingBody(io.BytesIO(body), len(body)), "ContentType": "application/json"})
        else:
            code, http_status, fields = value
            stubber.add_client_error("invoke_endpoint", service_error_code=code,
                                     service_message=f"{code} happened", http_status_code=http_status,
                                     modeled_fields=fields)
    stubber.activate()
    return client, stubber


def test_sagemaker_predictor_retries_throttling_and_5xx_model_errors():
    batch = random_batch(1)
    expected = fake_model(batch, "detection")
    client, stubber = _stubbed([
        ("error", ("ThrottlingException", 400, {})),
        ("error", ("ModelError", 424, {"OriginalStatusCode": 503, "OriginalMessage": "queue full"})),
        ("error", ("ServiceUnavailable", 503, {})),
        ("ok", expected),
    ])
    predictor = SageMakerPredictor("ep", "detection", TransportConfig(backoff_base=0.001), client=client)
    assert_same_predictions(predictor(batch), expected)
    stubber.assert_no_pending_responses()
    assert predictor.stats["retries"] == 3 and predictor.stats["requests"] == 4


def test_sagemaker_predictor_reports_4xx_model_error_without_retry():
    client, stubber = _stubbed([
        ("error", ("ModelError", 424, {"OriginalStatusCode": 400,
                                       "OriginalMessage": '{"error": "expected (N, H, W, 3) uint8"}'})),
    ])
    predictor = SageMakerPredictor("ep", "detection", TransportConfig(backoff_base=0.001), client=client)
    with pytest.raises(PredictorError, match=r"model behind SageMaker endpoint ep rejected the request "
                                             r"with HTTP 400: expected \(N, H, W, 3\) uint8$"):
        predictor(random_batch(1))
    stubber.assert_no_pending_responses()
    assert predictor.stats["retries"] == 0


def test_sagemaker_predictor_names_the_content_type_a_5xx_model_error_blames_without_retry():
    """review 32: a JumpStart container answers 500 "unsupported content type"; six attempts, then 'check that the
    endpoint is up', hid that a Clarify config without predictor.content_type sends npy here, not JPEG."""
    client, stubber = _stubbed([
        ("error", ("ModelError", 424, {"OriginalStatusCode": 500,
                                       "OriginalMessage": "Unsupported content type: application/x-npy"})),
    ])
    predictor = SageMakerPredictor("ep", "detection", TransportConfig(backoff_base=0.001), client=client)
    with pytest.raises(PredictorError, match=r"HTTP 500: Unsupported content type: application/x-npy; choose another "
                                             r"--content-type \(predictor.content_type in a Clarify config"):
        predictor(random_batch(1))
    stubber.assert_no_pending_responses()
    assert predictor.stats["retries"] == 0


def test_sagemaker_predictor_reports_validation_error():
    client, _ = _stubbed([("error", ("ValidationError", 400, {}))])
    predictor = SageMakerPredictor("ep", "detection", client=client)
    with pytest.raises(PredictorError, match="SageMaker endpoint ep: ValidationError: ValidationError happened"):
        predictor(random_batch(1))


# Errors that say this caller cannot use the endpoint at all stop the run (EndpointAccessError); a request's
# own fault stays a PredictorError of that image.
ACCESS_ERRORS = [
    ("UnrecognizedClientException", "The security token included in the request is invalid.", True),
    ("InvalidSignatureException", "The request signature we calculated does not match.", True),
    ("ExpiredTokenException", "The security token included in the request is expired", True),
    ("AccessDeniedException", "User is not authorized to perform: sagemaker:InvokeEndpoint", True),
    ("ValidationError", "Endpoint ep of account 123456789012 not found.", True),
    ("ValidationError", "1 validation error detected: Value at 'body' failed to satisfy constraint", False),
]


@pytest.mark.parametrize("code, message, stops_the_run", ACCESS_ERRORS)
def test_sagemaker_errors_that_no_image_can_avoid_are_endpoint_access_errors(code, message, stops_the_run):
    from botocore.stub import Stubber

    from explain.errors import EndpointAccessError

    client = _runtime_client()
    stubber = Stubber(client)
    stubber.add_client_error("invoke_endpoint", service_error_code=code, service_message=message,
                             http_status_code=400)
    stubber.activate()
    predictor = SageMakerPredictor("ep", "detection", TransportConfig(backoff_base=0.001), client=client)
    with pytest.raises(PredictorError) as raised:
        predictor(random_batch(1))
    assert isinstance(raised.value, EndpointAccessError) is stops_the_run
    assert str(raised.value) == f"SageMaker endpoint ep: {code}: {message}"
