"""Deployment behind HTTPS as the README's "Deploying" section documents it: `check --deploy` is
clean with exactly its environment, every setting comes from the environment, and gunicorn
serves the application with its command line."""

import json
import os
import re
import secrets
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from django.conf import settings

MANAGE = [sys.executable, "manage.py"]


def readme_block(marker: str) -> str:
    text = (Path(settings.BASE_DIR) / "README.md").read_text()
    block = text.split(f"<!-- {marker} -->")[1].split(f"<!-- /{marker} -->")[0]
    return block.split("```sh\n")[1].split("```")[0]


def documented_environment() -> dict[str, str]:
    """The README's production environment; its placeholders, the secret and encryption keys,
    made as it says."""
    from cryptography.fernet import Fernet

    environment = dict(line.split("=", 1) for line in readme_block("deploy-env").splitlines() if line.strip())
    placeholders = [name for name, value in environment.items() if value.startswith("<")]
    assert placeholders == ["SECRET_KEY", "CAM_ENCRYPTION_KEY"]
    environment["SECRET_KEY"] = secrets.token_urlsafe(50)
    environment["CAM_ENCRYPTION_KEY"] = Fernet.generate_key().decode()
    return environment


def run_manage(args: list[str], environment: dict[str, str], tmp_path) -> subprocess.CompletedProcess:
    """manage.py in a child process with only `environment` (nothing inherited from the test run).
    CAM_VAR_DIR only keeps its static and secret-key files out of the working tree."""
    env = {"PATH": os.environ["PATH"], "CAM_VAR_DIR": str(tmp_path), **environment}
    return subprocess.run(MANAGE + args, cwd=settings.BASE_DIR, env=env, capture_output=True, text=True, timeout=120)


def settings_in_child(names: list[str], environment: dict[str, str], tmp_path) -> dict:
    code = ("from django.conf import settings; import json; "
            f"print(json.dumps({{n: getattr(settings, n, None) for n in {names!r}}}, default=str))")
    done = run_manage(["shell", "--no-imports", "-c", code], environment, tmp_path)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_check_deploy_is_clean_with_exactly_the_documented_environment(tmp_path):
    done = run_manage(["check", "--deploy", "--fail-level", "WARNING"], documented_environment(), tmp_path)

    assert done.returncode == 0, done.stderr
    assert "System check identified no issues (0 silenced)." in done.stdout
    assert "WARNING" not in done.stderr.upper()


def test_check_deploy_warns_without_cam_https(tmp_path):
    environment = documented_environment()
    del environment["CAM_HTTPS"]

    done = run_manage(["check", "--deploy", "--fail-level", "WARNING"], environment, tmp_path)

    assert done.returncode != 0
    assert sorted(set(re.findall(r"security\.W\d+", done.stderr))) == [
        "security.W004", "security.W008", "security.W012", "security.W016",
    ]


def test_cam_https_turns_on_the_secure_settings_and_each_can_be_overridden(tmp_path):
    names = ["SECURE_SSL_REDIRECT", "SESSION_COOKIE_SECURE", "CSRF_COOKIE_SECURE", "SECURE_HSTS_SECONDS",
             "SECURE_HSTS_INCLUDE_SUBDOMAINS", "SECURE_HSTS_PRELOAD", "SECURE_PROXY_SSL_HEADER", "CSRF_TRUSTED_ORIGINS"]

    plain = settings_in_child(names, {}, tmp_path)
    https = settings_in_child(names, documented_environment(), tmp_path)
    overridden = settings_in_child(names, {
        **documented_environment(), "SECURE_SSL_REDIRECT": "false", "SECURE_HSTS_SECONDS": "3600",
        "SECURE_HSTS_PRELOAD": "no", "CSRF_TRUSTED_ORIGINS": "https://cam.example.com, https://cam2.example.com",
    }, tmp_path)

    assert plain == {**dict.fromkeys(names, False), "SECURE_HSTS_SECONDS": 0, "SECURE_PROXY_SSL_HEADER": None,
                     "CSRF_TRUSTED_ORIGINS": []}
    assert https == {**dict.fromkeys(names, True), "SECURE_HSTS_SECONDS": 31_536_000,
                     "SECURE_PROXY_SSL_HEADER": ["HTTP_X_FORWARDED_PROTO", "https"],
                     "CSRF_TRUSTED_ORIGINS": ["https://cam.example.com"]}
    assert overridden == {**https, "SECURE_SSL_REDIRECT": False, "SECURE_HSTS_SECONDS": 3600,
                          "SECURE_HSTS_PRELOAD": False,
                          "CSRF_TRUSTED_ORIGINS": ["https://cam.example.com", "https://cam2.example.com"]}


def test_the_login_limits_come_from_the_environment(tmp_path):
    names = ["AXES_FAILURE_LIMIT", "AXES_COOLOFF_TIME"]

    assert settings_in_child(names, {}, tmp_path) == {"AXES_FAILURE_LIMIT": 5, "AXES_COOLOFF_TIME": "0:15:00"}
    assert settings_in_child(names, {"CAM_LOGIN_FAILURE_LIMIT": "3", "CAM_LOGIN_LOCKOUT_MINUTES": "60"}, tmp_path) == {
        "AXES_FAILURE_LIMIT": 3, "AXES_COOLOFF_TIME": "1:00:00",
    }
    assert settings_in_child(names, {"CAM_LOGIN_LOCKOUT_MINUTES": "0"}, tmp_path) == {
        "AXES_FAILURE_LIMIT": 5, "AXES_COOLOFF_TIME": None,  # locked out until staff unlock it
    }


def test_a_malformed_switch_is_refused_at_start(tmp_path):
    done = run_manage(["check"], {"CAM_HTTPS": "sure"}, tmp_path)

    assert done.returncode != 0
    assert "CAM_HTTPS must be true or false, not 'sure'" in done.stderr


def test_a_malformed_encryption_key_is_refused_at_start_without_echoing_it(tmp_path):
    from cryptography.fernet import Fernet

    done = run_manage(["check"], {"CAM_ENCRYPTION_KEY": f"{Fernet.generate_key().decode()},hunter2"}, tmp_path)

    assert done.returncode != 0
    assert "CAM_ENCRYPTION_KEY: key 2 is not a Fernet key" in done.stderr and "hunter2" not in done.stderr


# --- behind the proxy, over HTTP, in gunicorn ------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


def get(url: str, headers: dict) -> tuple[int, dict]:
    opener = urllib.request.build_opener(NoRedirect)
    try:
        with opener.open(urllib.request.Request(url, headers=headers), timeout=10) as response:
            return response.status, dict(response.headers)
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers)


@pytest.fixture
def gunicorn(tmp_path, database_url):
    """The README's gunicorn command line on a free port, with the documented environment."""
    line = next(line for line in readme_block("deploy-commands").splitlines() if "gunicorn " in line)
    args = line.split()
    assert args[0] == ".venv/bin/gunicorn" and args[1] == "cam_project.wsgi"
    port = free_port()
    args = [str(Path(sys.executable).parent / "gunicorn"),
            *(arg.replace("127.0.0.1:8000", f"127.0.0.1:{port}") for arg in args[1:])]
    env = {"PATH": os.environ["PATH"], "CAM_VAR_DIR": str(tmp_path), **documented_environment(),
           "DATABASE_URL": database_url}  # the test database instead of the documented one
    server = subprocess.Popen(args, cwd=settings.BASE_DIR, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            assert server.poll() is None and time.monotonic() < deadline, server.stderr.read().decode()
            time.sleep(0.2)
    yield f"http://127.0.0.1:{port}"
    server.terminate()
    server.wait(timeout=30)


@pytest.mark.django_db
def test_gunicorn_serves_the_console_over_the_proxys_https_and_redirects_plain_http(gunicorn):
    host = {"Host": "cam.example.com"}

    status, headers = get(f"{gunicorn}/login/", {**host, "X-Forwarded-Proto": "https"})
    assert status == 200
    assert headers["Strict-Transport-Security"] == "max-age=31536000; includeSubDomains; preload"
    assert "Secure" in headers["Set-Cookie"] and headers["Set-Cookie"].startswith("csrftoken=")

    status, headers = get(f"{gunicorn}/login/", host)
    assert status == 301 and headers["Location"] == "https://cam.example.com/login/"

    status, _ = get(f"{gunicorn}/login/", {"Host": "attacker.example", "X-Forwarded-Proto": "https"})
    assert status == 400  # not in ALLOWED_HOSTS


@pytest.mark.parametrize(("args", "address"), [([], "127.0.0.1:8000"), (["PORT=8123"], "127.0.0.1:8123")])
def test_make_serve_listens_on_port_8000_or_the_port_given(args, address):
    environment = {"PATH": os.environ["PATH"], "PORT": "9999"}  # a PORT in the environment is not taken

    done = subprocess.run(["make", "--dry-run", "serve", *args], cwd=settings.BASE_DIR, capture_output=True, text=True,
                          timeout=60, env=environment)

    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1].endswith(f"manage.py runserver {address}")
