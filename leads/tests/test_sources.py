"""CSV lead sources: confined to CAM_IMPORT_DIR, errors that never echo a file, files uploaded
through the admin (LeadSourceAdmin and the campaign's inline) and the console's leads page,
the demo's source, and rejected rows reported once per version of the file."""

import os
from datetime import timedelta
from io import StringIO
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command

from cam_project.testing import user_with_perms
from campaigns.cycle import cycle_run
from campaigns.demo import DEMO_CSV, DEMO_NAME
from campaigns.models import Campaign
from campaigns.tests.factories import CampaignFactory
from leads.importing import INSERT_BATCH
from leads.models import Lead, LeadSource
from leads.tests.factories import LeadSourceFactory

pytestmark = pytest.mark.django_db

SECRET = "root:$6$Xy7.secretsalt$hashhashhash:19000:0:99999:7:::"
LEADS_CSV = b"Email,First Name,Company\nann@acme.example,Ann,Acme\nbob@bolt.example,Bob,Bolt\n"


@pytest.fixture
def import_dir(settings, tmp_path) -> Path:
    """CAM_IMPORT_DIR inside the test's directory, with a secret file beside it (outside)."""
    settings.CAM_IMPORT_DIR = tmp_path / "imports"
    settings.CAM_IMPORT_DIR.mkdir()
    (tmp_path / "secret_key").write_text(SECRET + "\n")
    return settings.CAM_IMPORT_DIR


@pytest.fixture
def operator(client):
    client.force_login(get_user_model().objects.create_superuser("op", "op@example.org", "pw"))
    return client


def csv_file(data: bytes = LEADS_CSV, name: str = "export.csv") -> SimpleUploadedFile:
    return SimpleUploadedFile(name, data, content_type="text/csv")


def files_under(directory: Path) -> list[Path]:
    return sorted(p for p in directory.rglob("*") if p.is_file())


# --- confinement -------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["../secret_key", "{tmp}/secret_key", "/etc/passwd", "link.csv"],
                         ids=["dot-dot", "absolute", "system-file", "symlink-out"])
def test_a_source_outside_the_import_directory_is_refused_and_its_contents_never_shown(import_dir, tmp_path, now, path):
    (import_dir / "link.csv").symlink_to(tmp_path / "secret_key")
    campaign = CampaignFactory()
    source = LeadSourceFactory(campaign=campaign, name="Sneaky", settings={"path": path.format(tmp=tmp_path)})

    result = cycle_run(campaign=campaign, now=now, dry_run=True)

    source.refresh_from_db()
    (error,) = result.errors
    assert error.startswith("source Sneaky: ")
    assert "is outside CAM_IMPORT_DIR" in error and "upload the file instead" in error
    assert "is outside CAM_IMPORT_DIR" in source.last_error
    everything = " ".join([*result.errors, *result.notes, source.last_error])
    assert "root:" not in everything and "secretsalt" not in everything
    assert not Lead.objects.exists()


def test_a_relative_path_is_read_from_the_import_directory_not_the_project(import_dir, now):
    campaign = CampaignFactory()
    (import_dir / "data").mkdir()
    (import_dir / "data" / "sample_leads.csv").write_bytes(LEADS_CSV)
    LeadSourceFactory(campaign=campaign, settings={"path": "data/sample_leads.csv"})

    result = cycle_run(campaign=campaign, now=now, dry_run=True)

    assert result.errors == [] and result.leads_discovered == 2


def test_a_source_whose_file_has_no_email_column_does_not_quote_its_header(import_dir, now):
    (import_dir / "passwd.csv").write_text(SECRET + "\ndaemon:x:1:1::/usr/sbin:/usr/sbin/nologin\n")
    campaign = CampaignFactory()
    source = LeadSourceFactory(campaign=campaign, name="Odd", settings={"path": "passwd.csv"})

    result = cycle_run(campaign=campaign, now=now, dry_run=True)

    source.refresh_from_db()
    assert result.errors == ["source Odd: no email column in the header"]
    assert source.last_error == "no email column in the header"


def test_a_source_path_that_is_not_text_is_an_error_not_a_crash(import_dir, now):
    campaign = CampaignFactory()
    LeadSourceFactory(campaign=campaign, name="Odd", settings={"path": ["a.csv"]})

    result = cycle_run(campaign=campaign, now=now, dry_run=True)

    assert result.errors == ['source Odd: the "path" of a CSV source must be text']


# --- the admin -----------------------------------------------------------------------------------


def admin_source_data(campaign, **changes) -> dict:
    return {"campaign": campaign.pk, "name": "Apollo export", "kind": "csv", "settings": "{}", "active": "on",
            **changes}


def test_the_admin_saves_an_uploaded_csv_under_the_campaigns_import_directory(import_dir, operator, now):
    campaign = CampaignFactory()

    response = operator.post("/admin/leads/leadsource/add/", admin_source_data(campaign, csv_file=csv_file()))

    assert response.status_code == 302, response.content.decode()[:3000]
    source = LeadSource.objects.get()
    path = import_dir / source.settings["path"]
    assert source.settings["path"].startswith(f"{campaign.pk}/") and source.settings["path"].endswith("-export.csv")
    assert path.read_bytes() == LEADS_CSV
    assert (source.kind, source.name, source.campaign) == ("csv", "Apollo export", campaign)
    assert cycle_run(campaign=campaign, now=now, dry_run=True).leads_discovered == 2


def test_replacing_a_sources_file_in_the_admin_reads_the_new_file(import_dir, operator, now):
    campaign = CampaignFactory()
    operator.post("/admin/leads/leadsource/add/", admin_source_data(campaign, csv_file=csv_file()))
    source = LeadSource.objects.get()
    first_path = source.settings["path"]
    newer = LEADS_CSV + b"cat@cat.example,Cat,Cat Co\n"

    response = operator.post(f"/admin/leads/leadsource/{source.pk}/change/",
                             admin_source_data(campaign, csv_file=csv_file(newer), settings=f'{{"path": "{first_path}"}}'))

    assert response.status_code == 302
    source.refresh_from_db()
    assert source.settings["path"] != first_path
    assert (import_dir / source.settings["path"]).read_bytes() == newer
    assert cycle_run(campaign=campaign, now=now, dry_run=True).leads_discovered == 3


@pytest.mark.parametrize(("data", "message"), [
    (b"name,company\nAnn,Acme\n", "no email column in the header (found &#x27;name&#x27;, &#x27;company&#x27;)"),
    (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "a binary file, not CSV text"),
    (b"", "The submitted file is empty."),
], ids=["no-email-column", "binary", "empty"])
def test_the_admin_refuses_a_file_that_is_not_a_csv_of_leads_and_keeps_nothing(import_dir, operator, data, message):
    campaign = CampaignFactory()

    response = operator.post("/admin/leads/leadsource/add/", admin_source_data(campaign, csv_file=csv_file(data)))

    assert response.status_code == 200
    assert message in response.content.decode()
    assert not LeadSource.objects.exists()
    assert files_under(import_dir) == []


def test_the_admin_refuses_a_typed_path_outside_the_import_directory(import_dir, operator):
    campaign = CampaignFactory()

    response = operator.post("/admin/leads/leadsource/add/",
                             admin_source_data(campaign, settings='{"path": "../secret_key"}'))

    assert response.status_code == 200
    assert "is outside CAM_IMPORT_DIR" in response.content.decode()
    assert not LeadSource.objects.exists()


def test_the_admin_asks_for_a_file_for_a_csv_source_without_one(import_dir, operator):
    campaign = CampaignFactory()

    response = operator.post("/admin/leads/leadsource/add/", admin_source_data(campaign))

    assert response.status_code == 200
    assert "Upload the CSV file this source reads." in response.content.decode()
    assert not LeadSource.objects.exists()


def campaign_change_data(operator, campaign, *rows: dict) -> dict:
    """The campaign's admin change form as the browser would post it, with lead source rows."""
    page = operator.get(f"/admin/campaigns/campaign/{campaign.pk}/change/")
    form = page.context["adminform"].form
    data = {}
    for bound in form:
        value = bound.value()
        if value is not None and value is not False:
            data[bound.html_name] = "on" if value is True else value
    for inline in page.context["inline_admin_formsets"]:
        formset = inline.formset
        data.update({f"{formset.prefix}-{key}": value for key, value in formset.management_form.initial.items()})
        if formset.prefix == "lead_sources":
            data[f"{formset.prefix}-TOTAL_FORMS"] = len(rows)
            for i, row in enumerate(rows):
                data.update({f"{formset.prefix}-{i}-{key}": value for key, value in row.items()})
    return data


def test_the_campaigns_inline_takes_a_csv_file_as_a_new_source(import_dir, operator, now):
    campaign = CampaignFactory()
    data = campaign_change_data(operator, campaign, {"name": "Fair leads", "kind": "csv", "settings": "{}",
                                                     "active": "on", "csv_file": csv_file(name="fair.csv")})

    response = operator.post(f"/admin/campaigns/campaign/{campaign.pk}/change/", data)

    assert response.status_code == 302, response.content.decode()[:3000]
    source = campaign.lead_sources.get()
    assert source.name == "Fair leads" and source.settings["path"].endswith("-fair.csv")
    assert (import_dir / source.settings["path"]).read_bytes() == LEADS_CSV
    assert cycle_run(campaign=campaign, now=now, dry_run=True).leads_discovered == 2


def test_the_campaigns_inline_refuses_a_file_without_an_email_column(import_dir, operator):
    campaign = CampaignFactory()
    data = campaign_change_data(operator, campaign, {"name": "Bad", "kind": "csv", "settings": "{}", "active": "on",
                                                     "csv_file": csv_file(b"name\nAnn\n")})

    response = operator.post(f"/admin/campaigns/campaign/{campaign.pk}/change/", data)

    assert response.status_code == 200
    assert "no email column in the header" in response.content.decode()
    assert not campaign.lead_sources.exists()
    assert files_under(import_dir) == []


# --- the console ---------------------------------------------------------------------------------


def add_source(client, campaign, data: bytes = LEADS_CSV, name: str = "Fair leads", file_name: str = "fair.csv"):
    return client.post(f"/campaigns/{campaign.pk}/leads",
                       {"action": "add_source", "name": name, "source_file": csv_file(data, file_name)}, follow=True)


def test_the_console_adds_an_uploaded_csv_as_a_source_read_by_every_cycle(import_dir, operator, now):
    campaign = CampaignFactory()

    page = add_source(operator, campaign).content.decode()

    source = campaign.lead_sources.get()
    assert "Added the lead source Fair leads" in page
    assert (source.kind, source.name) == ("csv", "Fair leads")
    assert (import_dir / source.settings["path"]).read_bytes() == LEADS_CSV
    assert not Lead.objects.exists()  # a source is read by the cycle, not imported now
    assert cycle_run(campaign=campaign, now=now, dry_run=True).leads_discovered == 2
    # New rows appended to the file are picked up by the next cycle.
    with (import_dir / source.settings["path"]).open("ab") as fh:
        fh.write(b"cat@cat.example,Cat,Cat Co\n")
    assert cycle_run(campaign=campaign, now=now + timedelta(minutes=15), dry_run=True).leads_discovered == 1


def test_a_source_switched_off_in_the_console_is_not_read_until_switched_on_again(import_dir, operator, client, now):
    campaign = CampaignFactory()
    add_source(operator, campaign)
    source = campaign.lead_sources.get()

    page = operator.post(f"/sources/{source.pk}/active", {"active": "off"}, follow=True).content.decode()

    assert "is off: cycles skip it" in page
    source.refresh_from_db()
    assert source.active is False
    assert cycle_run(campaign=campaign, now=now, dry_run=True).leads_discovered == 0
    operator.post(f"/sources/{source.pk}/active", {"active": "on"})
    assert cycle_run(campaign=campaign, now=now + timedelta(minutes=15), dry_run=True).leads_discovered == 2

    viewer = user_with_perms("leads.view_lead", "leads.view_leadsource", "campaigns.view_campaign")
    client.force_login(viewer)
    assert client.post(f"/sources/{source.pk}/active", {"active": "off"}).status_code == 403
    assert "Switch off" not in client.get(f"/campaigns/{campaign.pk}/leads").content.decode()


def test_the_console_names_a_source_after_its_file_when_no_name_is_given(import_dir, operator):
    campaign = CampaignFactory()

    add_source(operator, campaign, name="")

    assert campaign.lead_sources.get().name == "fair.csv"


def test_the_console_refuses_a_source_file_without_an_email_column_quoting_its_header(import_dir, operator):
    campaign = CampaignFactory()

    page = add_source(operator, campaign, b"name,company\nAnn,Acme\n").content.decode()

    assert "fair.csv cannot be a lead source: no email column in the header (found &#x27;name&#x27;" in page
    assert not LeadSource.objects.exists()
    assert files_under(import_dir) == []


def test_adding_a_source_in_the_console_needs_add_leadsource(import_dir, client):
    campaign = CampaignFactory()
    importer = user_with_perms("leads.view_lead", "leads.add_lead", "campaigns.view_campaign")
    client.force_login(importer)

    page = client.get(f"/campaigns/{campaign.pk}/leads").content.decode()
    response = client.post(f"/campaigns/{campaign.pk}/leads", {"action": "add_source", "source_file": csv_file()})

    assert "Upload a CSV" in page and "Add a CSV lead source" not in page
    assert response.status_code == 403
    assert not LeadSource.objects.exists() and files_under(import_dir) == []


def test_the_console_shows_the_add_source_form_to_users_with_add_leadsource(import_dir, client):
    campaign = CampaignFactory()
    client.force_login(user_with_perms("leads.view_lead", "leads.add_leadsource", "campaigns.view_campaign"))

    page = client.get(f"/campaigns/{campaign.pk}/leads").content.decode()

    assert "Add a CSV lead source" in page
    assert add_source(client, campaign).status_code == 200
    assert campaign.lead_sources.count() == 1


# --- the demo ------------------------------------------------------------------------------------


def test_the_demo_source_reads_a_copy_of_the_sample_in_the_import_directory(import_dir, settings):
    call_command("cam_demo", stdout=StringIO())
    call_command("cam_demo", stdout=StringIO())

    campaign = Campaign.objects.get(name=DEMO_NAME)
    source = campaign.lead_sources.get()
    assert source.settings == {"path": f"{campaign.pk}/sample_leads.csv"}
    assert (import_dir / source.settings["path"]).read_bytes() == (Path(settings.BASE_DIR) / DEMO_CSV).read_bytes()
    assert campaign.leads.count() == 50


def test_an_old_demo_database_whose_source_reads_the_repository_file_is_fixed_up(import_dir):
    call_command("cam_demo", "--no-cycle", stdout=StringIO())
    campaign = Campaign.objects.get(name=DEMO_NAME)
    LeadSource.objects.update(settings={"path": DEMO_CSV})  # as demos made before confinement have it

    out = StringIO()
    call_command("cam_demo", stdout=out)

    source = campaign.lead_sources.get()
    assert source.settings == {"path": f"{campaign.pk}/sample_leads.csv"}
    assert "errors" not in out.getvalue().split("discovered")[0]
    assert campaign.leads.count() == 50


# --- rejected rows, once per version of the file ------------------------------------------------------


def test_a_sources_rejected_rows_are_noted_once_per_version_of_its_file(import_dir, now):
    campaign = CampaignFactory()
    path = import_dir / "leads.csv"
    path.write_text("email\nok@acme.example\nbroken\n")
    source = LeadSourceFactory(campaign=campaign, name="Export", settings={"path": "leads.csv"})

    def rejected_notes(minutes: int) -> list[str]:
        result = cycle_run(campaign=campaign, now=now + timedelta(minutes=minutes), dry_run=True)
        return [note for note in result.notes if note.startswith("source Export:")]

    first, second = rejected_notes(0), rejected_notes(15)
    with path.open("a") as fh:
        fh.write("also broken\n")
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 1_000_000))
    third, fourth = rejected_notes(30), rejected_notes(45)

    assert first == ["source Export: 1 row rejected (line 3: invalid email: "
                     "An email address must have an @-sign.)"]
    assert second == []
    assert len(third) == 1 and third[0].startswith("source Export: 2 rows rejected (line 3: ")
    assert fourth == []
    source.refresh_from_db()
    assert source.reported_file_version == f"{path.stat().st_size}:{path.stat().st_mtime_ns}"


def test_a_file_read_only_in_part_is_reported_once_it_was_read_to_the_end(import_dir, now):
    # Insertion goes by batches of INSERT_BATCH rows and stops at the cycle's limit: the rows a
    # cycle did not reach may hold rejected rows, so that version is not yet reported.
    campaign = CampaignFactory()
    rows = [f"p{i}@acme.example" for i in range(2 * INSERT_BATCH + 100)]
    rows.insert(2 * INSERT_BATCH + 50, "broken")
    (import_dir / "leads.csv").write_text("email\n" + "\n".join(rows) + "\n")
    LeadSourceFactory(campaign=campaign, name="Export", settings={"path": "leads.csv"})

    def notes(minutes: int) -> list[str]:
        result = cycle_run(campaign=campaign, now=now + timedelta(minutes=minutes), dry_run=True,
                           max_new_leads=INSERT_BATCH)
        return [note for note in result.notes if note.startswith("source Export:")]

    assert (notes(0), notes(15)) == ([], [])
    assert notes(30) == [f"source Export: 1 row rejected (line {2 * INSERT_BATCH + 52}: invalid email: "
                         "An email address must have an @-sign.)"]
    assert notes(45) == []
    assert Lead.objects.filter(campaign=campaign).count() == 2 * INSERT_BATCH + 100
