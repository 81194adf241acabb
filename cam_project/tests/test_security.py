"""Trust at the doors: the 403 page, login rate limiting, hostile text refused at every entry."""

import pytest
from django.test import Client

from cam_project.testing import user_with_perms

pytestmark = pytest.mark.django_db


# --- the 403 page ----------------------------------------------------------------------------------


def logged_in(*perms: str) -> Client:
    client = Client()
    client.force_login(user_with_perms(*perms, staff=True, username="pat"))
    return client


def test_a_user_without_permissions_gets_a_403_page_with_the_console_layout_and_a_logout():
    response = logged_in().get("/")

    assert response.status_code == 403
    assert [t.name for t in response.templates][:2] == ["403.html", "base.html"]
    html = response.content.decode()
    assert '<header class="top">' in html and "cam.css" in html  # the console's layout
    assert '<form method="post" action="/logout/"' in html and "Log out pat</button>" in html
    assert "<code>campaigns.view_campaign</code>: see the dashboard" in html


def test_the_403_page_lists_only_the_permissions_the_account_lacks():
    response = logged_in("campaigns.view_campaign", "leads.view_lead").get("/campaigns/new")

    assert response.status_code == 403
    html = response.content.decode()
    assert "<code>campaigns.add_campaign</code>: create campaigns" in html
    assert "<code>campaigns.view_campaign</code>" not in html and "<code>leads.view_lead</code>" not in html


def test_the_logout_button_of_the_403_page_logs_out():
    client = logged_in()
    page = client.get("/")
    assert page.status_code == 403

    response = client.post("/logout/")

    assert response.status_code == 302 and response["Location"] == "/login/"
    assert client.get("/")["Location"] == "/login/?next=/"  # logged out: sent to log in again
