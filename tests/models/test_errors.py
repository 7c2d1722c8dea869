"""Provider failures as the user sees them: a connection error names the URL the request went to."""

from __future__ import annotations

import socket

import httpx
import pytest

from rlm import RLM, ProviderError
from rlm.models.errors import translate_lm_error, url_tried


def port_with_nothing_listening() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_a_connection_error_on_the_litellm_path_names_the_url_it_tried():
    # DSPy's native client does not know together_ai: the call goes through LiteLLM and its HTTP client.
    port = port_with_nothing_listening()
    rlm = RLM(model="together_ai/org/model", api_base=f"http://127.0.0.1:{port}/v1", api_key="test-key", num_retries=0)

    with pytest.raises(ProviderError) as caught:
        rlm.completion("Which service failed?", "svc-a ok\nsvc-b error")

    message = str(caught.value)
    assert f"(the request went to http://127.0.0.1:{port}/v1/chat/completions)" in message
    assert "Connection refused" in message
    assert "api.openai.com" not in message  # LiteLLM's placeholder request, not where the call went


def test_a_connection_error_on_the_native_path_names_host_and_port():
    port = port_with_nothing_listening()
    rlm = RLM(model="openai/served-model", api_base=f"http://127.0.0.1:{port}/v1", num_retries=0)

    with pytest.raises(ProviderError, match=f"failed to connect to 127.0.0.1:{port}"):
        rlm.completion("Which service failed?", "svc-a ok\nsvc-b error")


def test_the_url_named_drops_the_query_and_credentials_where_keys_can_travel():
    request = httpx.Request("POST", "https://user:pw@generativelanguage.googleapis.com/v1beta/m:generate?key=SECRET")
    try:
        try:
            raise httpx.ConnectError("[Errno 111] Connection refused", request=request)
        except httpx.ConnectError as inner:
            raise RuntimeError("InternalServerError: Connection error.") from inner
    except RuntimeError as outer:
        error = translate_lm_error(outer, "gemini/g")

    assert "(the request went to https://generativelanguage.googleapis.com/v1beta/m:generate)" in str(error)
    assert "SECRET" not in str(error)
    assert "pw" not in str(error)


def test_no_url_is_invented_when_no_request_is_known():
    assert url_tried(RuntimeError("boom")) is None
    assert url_tried(httpx.ConnectError("refused")) is None  # httpx raises when asked for a missing request
