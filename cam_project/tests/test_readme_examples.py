"""The README's curl examples, run as written against a live server on the test database."""

import os
import subprocess
from io import StringIO
from pathlib import Path

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command

pytestmark = pytest.mark.django_db(transaction=True, reset_sequences=True)


def readme_examples() -> tuple[str, list[str]]:
    text = (Path(settings.BASE_DIR) / "README.md").read_text()
    block = text.split("<!-- curl-examples -->")[1].split("<!-- /curl-examples -->")[0]
    script = block.split("```sh\n")[1].split("```")[0].replace("\\\n", " ")
    lines = [line.strip() for line in script.splitlines() if line.strip()]
    return lines[0], lines[1:]


def test_the_readme_curl_examples_run_as_written(live_server, database_url):
    call_command("cam_demo", stdout=StringIO())  # what `make demo` leaves: campaign 1 and its leads
    if not get_user_model().objects.filter(username="demo").exists():  # no demo login off SQLite
        get_user_model().objects.create_superuser("demo", "demo@example.org", "pw")
    token_line, examples = readme_examples()
    assert token_line.startswith("TOKEN=") and len(examples) >= 12

    env = {**os.environ, "DATABASE_URL": database_url, "CAM_LOG_LEVEL": "WARNING"}
    token = run(f'{token_line}\necho "$TOKEN"', env).stdout.strip()
    assert len(token) == 40
    for example in examples:
        run(example.replace("http://127.0.0.1:8000", live_server.url), {**env, "TOKEN": token})


def run(command: str, env: dict) -> subprocess.CompletedProcess:
    # --fail-with-body: an HTTP error fails the example, and shows what the API said.
    script = f'curl() {{ command curl --silent --show-error --fail-with-body "$@"; }}\nset -e\n{command}\n'
    done = subprocess.run(["bash", "-c", script], cwd=settings.BASE_DIR, capture_output=True, text=True, timeout=60,
                          env=env)
    assert done.returncode == 0, f"{command}\n{done.stdout}\n{done.stderr}"
    return done
