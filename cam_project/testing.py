"""Helpers for the API tests: users with given permissions and API clients logged in as them.

Plain functions, not fixtures (pytest only loads fixtures from conftest.py): each API test
module wraps the ones it needs in its own fixtures. Call them inside a test with database access.
"""

from itertools import count

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

# The apps whose models the API exposes; a read-only user may view every one of their models.
CAM_APPS = ("campaigns", "leads", "outreach")
PASSWORD = "correct horse battery staple"
_numbers = count(1)


def _username(prefix: str) -> str:
    return f"{prefix}{next(_numbers)}"


def perms(*names: str) -> list[Permission]:
    """Permissions by "app_label.codename" (e.g. "campaigns.view_campaign")."""
    found = []
    for name in names:
        app_label, codename = name.split(".")
        found.append(Permission.objects.get(content_type__app_label=app_label, codename=codename))
    return found


# Users get no usable password unless asked (hashing one takes most of a test's time);
# pass password=PASSWORD for a test that logs in with it.


def user_with_perms(*names: str, staff: bool = False, username: str | None = None, password: str | None = None):
    """An active user with exactly the given "app_label.codename" permissions."""
    user = get_user_model().objects.create_user(
        username or _username("user"), f"{next(_numbers)}@staff.example", password, is_staff=staff
    )
    user.user_permissions.set(perms(*names))
    return user


def superuser(username: str | None = None, password: str | None = None):
    return get_user_model().objects.create_superuser(username or _username("admin"), "admin@staff.example", password)


def read_only_staff(username: str | None = None, password: str | None = None):
    """A staff user with every view_* permission of the CAM apps and nothing else."""
    user = get_user_model().objects.create_user(
        username or _username("viewer"), "viewer@staff.example", password, is_staff=True
    )
    user.user_permissions.set(
        Permission.objects.filter(content_type__app_label__in=CAM_APPS, codename__startswith="view_")
    )
    return user


def token_client(user, **kwargs) -> APIClient:
    """A client sending `Authorization: Token <key>` for `user` (the token is created if needed)."""
    token, _ = Token.objects.get_or_create(user=user)
    client = APIClient(**kwargs)
    client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    return client


def session_client(user, **kwargs) -> APIClient:
    """A client logged in with a session cookie."""
    client = APIClient(**kwargs)
    client.force_login(user)
    return client


def anonymous_client(**kwargs) -> APIClient:
    return APIClient(**kwargs)


def raw_json(client: APIClient, method: str, url: str, body: bytes | str):
    """Send `body` as is with Content-Type application/json (for malformed JSON)."""
    return getattr(client, method.lower())(url, data=body, content_type="application/json")


def assert_json_error(response, status: int) -> dict:
    """The response has this status and a JSON body, which is returned."""
    assert response.status_code == status, response.content
    assert response["Content-Type"].startswith("application/json")
    return response.json()
