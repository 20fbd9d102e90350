"""Configuration: contract defaults, and bad values stop start-up with one line naming the variable."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from replyflow.config import Quota, load_settings
from replyflow.errors import ConfigurationError


def test_contract_defaults(tmp_path: Path) -> None:
    s = load_settings(data_dir=tmp_path)
    assert s.database_url == "sqlite:///./replyflow.db"
    assert s.redis_url is None
    assert s.graph_api_url == "https://graph.facebook.com"
    assert s.private_reply_quota == Quota(750, 3600)
    assert s.reconcile_interval == 300
    assert s.instagram_api_url == "https://graph.instagram.com"
    assert s.is_sandbox, "no app secret means sandbox mode"


def test_instagram_login_settings(tmp_path: Path) -> None:
    sandbox = load_settings(data_dir=tmp_path, public_url="http://127.0.0.1:8015")
    assert sandbox.instagram_base_url == "http://127.0.0.1:8015/sandbox/instagram"
    assert sandbox.instagram_dialog_base_url == "http://127.0.0.1:8015/sandbox/instagram-login"
    live = load_settings(
        data_dir=tmp_path,
        meta_app_id="123456",
        meta_app_secret="m" * 32,
        secret_key="k" * 32,
        webhook_verify_token="v",
        instagram_app_id="987654",
        instagram_app_secret="i" * 32,
    )
    assert live.instagram_base_url == "https://graph.instagram.com"
    assert (live.instagram_client_id, live.instagram_client_secret) == ("987654", "i" * 32)
    assert live.webhook_secrets == ["m" * 32, "i" * 32], "Instagram Login deliveries may be signed with either"


def test_sandbox_generates_secrets_once(tmp_path: Path) -> None:
    first = load_settings(data_dir=tmp_path)
    second = load_settings(data_dir=tmp_path)
    assert first.verify_token == second.verify_token
    assert first.secret_keys == second.secret_keys
    assert len(first.secret_keys[0]) >= 32
    assert (tmp_path / "sandbox-secret-key").stat().st_mode & 0o077 == 0


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({"REPLYFLOW_PRIVATE_REPLY_QUOTA": "lots"}, "REPLYFLOW_PRIVATE_REPLY_QUOTA"),
        ({"REPLYFLOW_PRIVATE_REPLY_QUOTA": "0/3600"}, "REPLYFLOW_PRIVATE_REPLY_QUOTA"),
        ({"REPLYFLOW_DATABASE_URL": "mysql://x"}, "REPLYFLOW_DATABASE_URL"),
        ({"REPLYFLOW_SECRET_KEY": "too-short"}, "REPLYFLOW_SECRET_KEY"),
        ({"REPLYFLOW_RECONCILE_INTERVAL": "soon"}, "REPLYFLOW_RECONCILE_INTERVAL"),
        ({"REPLYFLOW_GRAPH_API_VERSION": "25"}, "REPLYFLOW_GRAPH_API_VERSION"),
        ({"REPLYFLOW_SANDBOX": "maybe"}, "REPLYFLOW_SANDBOX"),
        ({"REPLYFLOW_INSTAGRAM_API_URL": "graph.instagram.com"}, "REPLYFLOW_INSTAGRAM_API_URL"),
        ({"REPLYFLOW_INSTAGRAM_TOKEN_REFRESH_DAYS": "90"}, "REPLYFLOW_INSTAGRAM_TOKEN_REFRESH_DAYS"),
        ({"REPLYFLOW_META_APP_SECRET": "s" * 32}, "REPLYFLOW_META_APP_ID"),
        ({"REPLYFLOW_SANDBOX": "0"}, "REPLYFLOW_META_APP_SECRET"),
        (
            {"REPLYFLOW_META_APP_SECRET": "s" * 32, "REPLYFLOW_META_APP_ID": "123"},
            "REPLYFLOW_SECRET_KEY",
        ),
    ],
)
def test_bad_values_name_the_variable(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, env: dict[str, str], variable: str
) -> None:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(ConfigurationError) as caught:
        load_settings(data_dir=tmp_path)
    assert variable in caught.value.message
    assert "\n" not in caught.value.message
    for value in env.values():
        if len(value) > 8:
            assert value not in caught.value.message, "a bad value may be a secret: never echo it"


def test_env_file_is_read(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("REPLYFLOW_PRIVATE_REPLY_QUOTA=10/60\nREPLYFLOW_RECONCILE_INTERVAL=60\n")
    monkeypatch.chdir(tmp_path)
    s = load_settings(data_dir=tmp_path)
    assert s.private_reply_quota == Quota(10, 60)
    assert s.reconcile_interval == 60


def test_secret_key_list_for_rotation(tmp_path: Path) -> None:
    keys = "a" * 32 + "," + "b" * 40
    s = load_settings(data_dir=tmp_path, secret_key=keys)
    assert s.secret_keys == ["a" * 32, "b" * 40]


def test_cli_exits_1_with_one_line(tmp_path: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", "REPLYFLOW_PRIVATE_REPLY_QUOTA": "x", "HOME": str(tmp_path)}
    proc = subprocess.run(
        [sys.executable, "-m", "replyflow", "migrate"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 1
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    assert "REPLYFLOW_PRIVATE_REPLY_QUOTA" in lines[0]
