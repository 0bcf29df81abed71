"""Redaction of secrets from JSON-like data and from text."""

from __future__ import annotations

from inferpipe.llm.redaction import REDACTED, is_sensitive_key, redact, scrub_text


def test_nested_secrets_are_redacted_and_the_rest_kept() -> None:
    data = {
        "api_key": "sk-1",
        "config": {
            "headers": {"Authorization": "Bearer sk-1", "X-Api-Key": "k", "Accept": "json"},
            "openaiApiKey": "sk-2",
            "api_key_env": "OPENAI_API_KEY",
        },
        "users": [{"name": "ada", "password": "hunter2"}, ("tuple", {"db_password": "p"})],
        "usage": {"input_tokens": 10, "max_tokens": 100, "cached_tokens": 1},
        "oauth": {"access_token": "t", "refresh_token": "r", "client_secret": "s"},
    }

    cleaned = redact(data)

    assert cleaned == {
        "api_key": REDACTED,
        "config": {
            "headers": {"Authorization": REDACTED, "X-Api-Key": REDACTED, "Accept": "json"},
            "openaiApiKey": REDACTED,
            "api_key_env": "OPENAI_API_KEY",
        },
        "users": [{"name": "ada", "password": REDACTED}, ("tuple", {"db_password": REDACTED})],
        "usage": {"input_tokens": 10, "max_tokens": 100, "cached_tokens": 1},
        "oauth": {"access_token": REDACTED, "refresh_token": REDACTED, "client_secret": REDACTED},
    }
    assert data["api_key"] == "sk-1"  # the input is not modified


def test_configurable_keys_and_replacement() -> None:
    data = {"ssn": "123", "token": "kept", "nested": [{"SSN": "456"}]}
    assert redact(data, keys=["ssn"], replacement="***") == {
        "ssn": "***",
        "token": "kept",
        "nested": [{"SSN": "***"}],
    }


def test_known_secret_values_are_scrubbed_inside_strings() -> None:
    data = {"error": "key sk-live-abcdef was refused", "list": ["sk-live-abcdef"]}
    assert redact(data, secret_values=["sk-live-abcdef"]) == {
        "error": f"key {REDACTED} was refused",
        "list": [REDACTED],
    }
    assert scrub_text("short abc", ["abc"]) == "short abc"  # too short to scrub safely


def test_sensitive_key_matching() -> None:
    assert is_sensitive_key("Proxy-Authorization")
    assert is_sensitive_key("APIKEY")
    assert not is_sensitive_key("tokens")
    assert not is_sensitive_key("secret_name_hint")
