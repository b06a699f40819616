from __future__ import annotations

import pytest

from vtx.core.settings import Secret, Settings, SettingsError, redact_url

BASE = {
    "VTX_DATABASE_URL": "postgresql://vtx:hunter2@db:5432/vtx",
    "VTX_S3_ENDPOINT": "http://s3:7070",
    "VTX_S3_ACCESS_KEY": "key",
    "VTX_S3_SECRET_KEY": "s3-secret-value",
    "VTX_PULSAR_URL": "pulsar://pulsar:6650",
    "VTX_IPFS_API_URL": "http://ipfs:5001",
}


def test_reads_values_and_defaults() -> None:
    s = Settings.from_env(BASE)
    assert s.s3_endpoint == "http://s3:7070"
    assert s.s3_public_endpoint == "http://s3:7070", "defaults to the internal endpoint"
    assert s.s3_bucket == "media-videos"
    assert s.request_timeout_s == 10
    assert s.database_url.value == BASE["VTX_DATABASE_URL"]


def test_secrets_never_appear_in_repr_or_str() -> None:
    s = Settings.from_env(BASE)
    for text in (repr(s), str(s)):
        assert "hunter2" not in text
        assert "s3-secret-value" not in text
    assert str(Secret("x")) == "Secret('***')"


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("VTX_S3_ENDPOINT", "s3:7070", "VTX_S3_ENDPOINT='s3:7070': must be a http/https URL"),
        ("VTX_PULSAR_URL", "http://pulsar", "VTX_PULSAR_URL='http://pulsar': must be a pulsar"),
        ("VTX_REQUEST_TIMEOUT_SECONDS", "-3", "VTX_REQUEST_TIMEOUT_SECONDS='-3': must be positive"),
        ("VTX_S3_ADDRESSING_STYLE", "dns", "VTX_S3_ADDRESSING_STYLE='dns': must be one of path"),
        ("VTX_S3_BUCKET", "a/b", "VTX_S3_BUCKET='a/b': must be a non-empty name"),
    ],
)
def test_a_bad_value_names_its_variable(name: str, value: str, message: str) -> None:
    with pytest.raises(SettingsError, match="^" + message.replace("(", r"\(")):
        Settings.from_env({**BASE, name: value})


def test_a_missing_required_variable_is_named() -> None:
    env = {k: v for k, v in BASE.items() if k != "VTX_PULSAR_URL"}
    with pytest.raises(SettingsError, match="VTX_PULSAR_URL is required"):
        Settings.from_env(env)


def test_redact_url_hides_only_the_password() -> None:
    assert redact_url("postgresql://vtx:pw@db:5432/vtx") == "postgresql://vtx:***@db:5432/vtx"
    assert redact_url("http://s3:7070") == "http://s3:7070"


def test_api_and_job_settings_parse() -> None:
    digest = "a" * 64
    s = Settings.from_env(
        {
            **BASE,
            "VTX_API_TOKENS": f"ci:{digest},old:{digest}:2020-01-01",
            "VTX_CORS_ORIGINS": "https://app.example, http://localhost:3000/",
            "VTX_JOB_SECRET_ENV": "VTX_DATABASE_URL=db/url,VTX_S3_SECRET_KEY=storage/secretKey",
            "VTX_API_OPEN_READS": "false",
        }
    )
    assert "a" * 64 not in repr(s), "token hashes are kept out of logs too"
    assert s.cors_origins == ("https://app.example", "http://localhost:3000")
    assert s.job_secret_env == (
        ("VTX_DATABASE_URL", "db", "url"), ("VTX_S3_SECRET_KEY", "storage", "secretKey"),
    )  # fmt: skip
    assert s.api_open_reads is False
    defaults = Settings.from_env(BASE)
    assert defaults.cors_origins == ()
    assert defaults.job_secret_env == ()
    assert defaults.job_secret == ""
    assert defaults.upload_part_size == 16 * 1024 * 1024


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("VTX_API_TOKENS", "ci:nothex", r"entry 1 \(ci\): the hash must be 64 lowercase hex"),
        ("VTX_API_TOKENS", f"ci:{'a' * 64}:someday", "token expiry 'someday' is not an ISO"),
        ("VTX_UPLOAD_PART_SIZE", "1000", "must be between 5 MiB"),
        ("VTX_CORS_ORIGINS", "example.com", "'example.com' is not an origin"),
        ("VTX_JOB_SECRET_ENV", "VTX_X=nokey", "'VTX_X=nokey' is not VAR=secret/key"),
        ("VTX_API_OPEN_READS", "maybe", "must be true or false"),
    ],
)
def test_bad_api_settings_are_named(name: str, value: str, message: str) -> None:
    with pytest.raises(SettingsError, match=f"^{name}=.*{message}"):
        Settings.from_env({**BASE, name: value})
