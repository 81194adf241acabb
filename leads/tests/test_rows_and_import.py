"""Lead rows, lead files and bulk import: leads/rows.py, open_lead_file, leads_insert,
leads_import_csv and `manage.py import_leads`."""

import io
import json

import pytest
from django.core.management import CommandError, call_command

from campaigns.tests.factories import CampaignFactory
from leads.importing import INSERT_BATCH, leads_import_csv, leads_insert
from leads.models import Lead
from leads.rows import LeadFileError, LeadRow, RowProblem, csv_rows, email_normalise, lead_row_clean, mapping_rows
from leads.sources import open_lead_file
from leads.tests.factories import LeadFactory, LeadSourceFactory
from outreach.models import Suppression
from outreach.tests.factories import SuppressionFactory


def write_csv(tmp_path, text: str, *, encoding: str = "utf-8", name: str = "leads.csv"):
    path = tmp_path / name
    path.write_bytes(text.encode(encoding))
    return path


def run_import(campaign, path, *args) -> str:
    out = io.StringIO()
    call_command("import_leads", "--campaign-id", str(campaign.pk), str(path), *args, stdout=out, no_color=True)
    return out.getvalue()


def run_import_json(campaign, path) -> dict:
    return json.loads(run_import(campaign, path, "--json"))


def campaign_emails(campaign) -> set[str]:
    return set(Lead.objects.filter(campaign=campaign).values_list("email", flat=True))


def read_rows(text: str) -> list:
    return list(csv_rows(io.StringIO(text, newline="")))


# --- rows.py -----------------------------------------------------------------------------------


def test_email_is_normalised_trimmed_and_lower_case():
    assert email_normalise("  Maya.Chen@BrightLoop.Example \t") == "maya.chen@brightloop.example"
    assert email_normalise(None) == ""


def test_row_fields_have_their_whitespace_collapsed():
    row = lead_row_clean(2, {"email": "a@acme.example", "company": "  Bright \n  Loop  ", "first_name": " Ann "})

    assert isinstance(row, LeadRow)
    assert row.fields["company"] == "Bright Loop"
    assert row.fields["first_name"] == "Ann"
    assert row.fields["industry"] == ""


def test_row_problem_names_the_first_thing_wrong():
    missing = lead_row_clean(4, {"email": "   ", "company": "x" * 500})
    invalid = lead_row_clean(5, {"email": "Not An Email"})
    too_long = lead_row_clean(6, {"email": "a@acme.example", "first_name": "x" * 101})

    assert missing == RowProblem(4, "", "missing email")
    assert invalid.line == 5 and invalid.email == "not an email" and invalid.reason.startswith("invalid email: ")
    assert too_long == RowProblem(6, "a@acme.example", "first_name is longer than 100 characters")


def test_csv_rows_skip_blank_lines_but_keep_counting_them():
    rows = read_rows("email\r\n\r\na@acme.example\r\n ,\r\nb@acme.example\r\n")

    assert [(r.line, r.email) for r in rows] == [(3, "a@acme.example"), (5, "b@acme.example")]


def test_an_oversized_csv_field_is_one_bad_row_and_the_next_rows_keep_their_line_numbers():
    # Lines within the limit, but a quoted field over them larger than the csv module's field limit.
    huge = "y" * 70_000
    rows = read_rows(f'email,notes\na@acme.example,"{huge}\n{huge}"\nb@acme.example,ok\n')

    assert isinstance(rows[0], RowProblem)
    assert rows[0].line == 2 and rows[0].reason.startswith("not readable as CSV")
    assert (rows[1].line, rows[1].email) == (4, "b@acme.example")


def test_csv_without_a_header_is_refused_as_empty():
    with pytest.raises(LeadFileError, match="empty"):
        read_rows("\n")


def test_mapping_rows_map_aliases_and_keep_the_rest_as_extra():
    records = [
        {"Work Email": "Ann@Acme.Example", "Given Name": "Ann", "Organization": "Acme", "linkedin_url": "https://l.example/ann",
         "phone": None, "Favourite colour": "teal"},
        {"email": "nope"},
    ]
    good, bad = mapping_rows(records, first_line=10)

    assert good.line == 10 and good.email == "ann@acme.example"
    assert good.fields["first_name"] == "Ann" and good.fields["company"] == "Acme"
    assert good.fields["linkedin_url"] == "https://l.example/ann"
    assert good.extra == {"Favourite colour": "teal"}
    assert isinstance(bad, RowProblem) and bad.line == 11


# --- open_lead_file ----------------------------------------------------------------------------


def test_a_utf8_file_with_a_byte_order_mark_keeps_its_email_header(tmp_path):
    path = write_csv(tmp_path, "email,last_name\nnoah@fernhill.example,Müller\n", encoding="utf-8-sig")

    with open_lead_file(path) as stream:
        (row,) = csv_rows(stream)

    assert row.email == "noah@fernhill.example"
    assert row.fields["last_name"] == "Müller"


def test_a_windows_1252_file_is_read_with_its_accents(tmp_path):
    path = write_csv(tmp_path, "email,last_name,company\nnoah@fernhill.example,Müller,Société Générale\n", encoding="cp1252")

    with open_lead_file(path) as stream:
        (row,) = csv_rows(stream)

    assert row.fields["last_name"] == "Müller"
    assert row.fields["company"] == "Société Générale"


def test_a_windows_1252_file_whose_first_accent_comes_late_is_still_read_as_windows_1252(tmp_path):
    # An Excel export sorted by email: the first non-ASCII name can sit well past the first 64 KB.
    lines = ["email,last_name"] + [f"user{i}@acme.example,Smith" for i in range(3000)] + ["hans@acme.example,Müller"]
    path = write_csv(tmp_path, "\r\n".join(lines) + "\r\n", encoding="cp1252")
    assert path.stat().st_size > 64 * 1024

    with open_lead_file(path) as stream:
        last = list(csv_rows(stream))[-1]

    assert last.email == "hans@acme.example"
    assert last.fields["last_name"] == "Müller"


def test_a_file_with_nul_bytes_is_refused_as_binary(tmp_path):
    path = tmp_path / "leads.xlsx"
    path.write_bytes(b"PK\x03\x04\x14\x00\x06\x00email\x00\x00")

    with pytest.raises(LeadFileError, match="binary"):
        with open_lead_file(path):
            pass


def test_a_missing_file_is_refused(tmp_path):
    with pytest.raises(LeadFileError, match="no such file"):
        with open_lead_file(tmp_path / "nowhere.csv"):
            pass


# --- leads_insert / leads_import_csv -----------------------------------------------------------


@pytest.mark.django_db
def test_imported_leads_are_new_and_due_at_once(tmp_path, now):
    campaign = CampaignFactory()
    path = write_csv(tmp_path, "email,first_name,job_title\nmaya@brightloop.example,Maya,Head of Marketing\n")

    report = leads_import_csv(campaign=campaign, path=path, now=now)

    lead = Lead.objects.get(campaign=campaign)
    assert report.imported == 1
    assert (lead.email, lead.first_name, lead.job_title) == ("maya@brightloop.example", "Maya", "Head of Marketing")
    assert lead.status == Lead.Status.NEW
    assert lead.next_action_at == now and lead.created_at == now
    assert lead.source is None


@pytest.mark.django_db
def test_inserted_leads_remember_their_source(now):
    source = LeadSourceFactory()
    rows = [LeadRow(line=2, email="ann@acme.example", fields={"first_name": "Ann"})]

    leads_insert(campaign=source.campaign, rows=rows, now=now, source=source)

    assert Lead.objects.get(email="ann@acme.example").source == source


@pytest.mark.django_db
def test_insert_stops_at_the_limit_across_batches(now):
    campaign = CampaignFactory()
    rows = (LeadRow(line=i, email=f"lead{i}@acme.example", fields={}) for i in range(2, 2 + 2 * INSERT_BATCH))

    report = leads_insert(campaign=campaign, rows=rows, now=now, limit=INSERT_BATCH + 10)

    assert report.imported == INSERT_BATCH + 10
    assert Lead.objects.filter(campaign=campaign).count() == INSERT_BATCH + 10


@pytest.mark.django_db
def test_the_same_address_may_be_a_lead_of_another_campaign(tmp_path, now):
    LeadFactory(email="ann@acme.example")
    campaign = CampaignFactory()
    path = write_csv(tmp_path, "email\nann@acme.example\n")

    report = leads_import_csv(campaign=campaign, path=path, now=now)

    assert report.imported == 1 and not report.duplicates
    assert campaign_emails(campaign) == {"ann@acme.example"}


# --- manage.py import_leads --------------------------------------------------------------------


@pytest.mark.django_db
def test_import_reports_each_bad_row_with_its_line_and_reason_and_keeps_the_good_ones(tmp_path):
    campaign = CampaignFactory(name="Spring push")
    LeadFactory(campaign=campaign, email="existing@acme.example")
    SuppressionFactory(email="gone@acme.example", reason=Suppression.Reason.BOUNCED)
    path = write_csv(
        tmp_path,
        "email,first_name,company\n"
        "good@acme.example,Ann,Acme\n"  # line 2
        "not-an-email,Bob,Acme\n"  # 3
        ",Cid,Acme\n"  # 4
        "short@acme.example,Dee\n"  # 5
        f"long@acme.example,Eve,{'x' * 201}\n"  # 6
        "GOOD@acme.example,Ann,Acme\n"  # 7
        "existing@acme.example,Fay,Acme\n"  # 8
        "gone@acme.example,Gus,Acme\n"  # 9
        "second@acme.example,Hal,Acme\n",  # 10
    )

    out = run_import(campaign, path)

    assert f"Imported 2 leads into #{campaign.pk} Spring push; 2 duplicates, 5 rejected." in out
    assert "line 3: not-an-email: invalid email: " in out
    assert "line 4: -: missing email" in out
    assert "line 5: -: has 2 fields, the header has 3" in out
    assert "line 6: long@acme.example: company is longer than 200 characters" in out
    assert "line 7: good@acme.example: repeats line 2" in out
    assert "line 8: existing@acme.example: already in this campaign" in out
    assert "line 9: gone@acme.example: suppressed (bounced)" in out
    assert campaign_emails(campaign) == {"good@acme.example", "second@acme.example", "existing@acme.example"}


@pytest.mark.django_db
def test_import_json_lists_every_duplicate_and_rejected_row(tmp_path):
    campaign = CampaignFactory()
    path = write_csv(tmp_path, "email\na@acme.example\nbroken\nA@acme.example\nb@acme.example\n")

    report = run_import_json(campaign, path)

    assert set(report) == {"imported", "duplicates", "rejected", "cut", "duplicate_rows", "rejected_rows", "cut_rows"}
    assert (report["imported"], report["duplicates"], report["rejected"]) == (2, 1, 1)
    assert report["duplicate_rows"] == [{"line": 4, "email": "a@acme.example", "reason": "repeats line 2"}]
    (rejected,) = report["rejected_rows"]
    assert (rejected["line"], rejected["email"]) == (3, "broken")
    assert rejected["reason"].startswith("invalid email")


@pytest.mark.django_db
def test_import_of_a_file_without_an_email_column_fails_naming_the_email_column(tmp_path):
    campaign = CampaignFactory()
    path = write_csv(tmp_path, "name,company\nAnn,Acme\n")

    with pytest.raises(CommandError, match="no email column"):
        run_import(campaign, path)
    assert not Lead.objects.exists()


@pytest.mark.django_db
def test_import_of_a_binary_file_fails(tmp_path):
    campaign = CampaignFactory()
    path = tmp_path / "leads.csv"
    path.write_bytes(b"email\n\x00\x01\x02binary\xff\xfe\n")

    with pytest.raises(CommandError, match="binary"):
        run_import(campaign, path)


@pytest.mark.django_db
def test_import_of_an_empty_file_fails(tmp_path):
    campaign = CampaignFactory()

    with pytest.raises(CommandError, match="empty"):
        run_import(campaign, write_csv(tmp_path, ""))


@pytest.mark.django_db
def test_import_of_a_missing_file_fails(tmp_path):
    campaign = CampaignFactory()

    with pytest.raises(CommandError, match="no such file"):
        run_import(campaign, tmp_path / "nowhere.csv")


@pytest.mark.django_db
def test_import_into_an_unknown_campaign_fails(tmp_path):
    path = write_csv(tmp_path, "email\na@acme.example\n")
    missing_id = CampaignFactory().pk + 1000

    with pytest.raises(CommandError, match=f"campaign {missing_id} not found"):
        call_command("import_leads", "--campaign-id", str(missing_id), str(path), stdout=io.StringIO())
    assert not Lead.objects.exists()


@pytest.mark.django_db
def test_import_maps_common_header_names_to_lead_fields(tmp_path):
    campaign = CampaignFactory()
    path = write_csv(
        tmp_path,
        "E-mail,First Name,Surname,Organization,Job Title,Employees,Sector\n"
        "ann@acme.example,Ann,Lee,Acme,CTO,42,SaaS\n",
    )

    run_import(campaign, path)

    lead = Lead.objects.get(campaign=campaign)
    assert (lead.email, lead.first_name, lead.last_name, lead.company) == ("ann@acme.example", "Ann", "Lee", "Acme")
    assert (lead.job_title, lead.company_size, lead.industry) == ("CTO", "42", "SaaS")
    assert lead.source_data == {}


@pytest.mark.django_db
def test_import_keeps_unmapped_columns_as_source_data(tmp_path):
    campaign = CampaignFactory()
    path = write_csv(
        tmp_path,
        "email,Website,Seniority,Twitter,City\n"
        "ann@acme.example,https://acme.example,VP,@ann,\n",
    )

    run_import(campaign, path)

    lead = Lead.objects.get(campaign=campaign)
    assert lead.website == "https://acme.example"
    assert lead.source_data == {"Seniority": "VP", "Twitter": "@ann"}


@pytest.mark.django_db
def test_a_quoted_multi_line_field_does_not_shift_the_line_numbers_of_later_rows(tmp_path):
    campaign = CampaignFactory()
    path = write_csv(
        tmp_path,
        "email,company,notes\n"  # line 1
        'ann@acme.example,Acme,"met at\n'  # 2
        "SaaStr,\n"  # 3
        'follow up"\n'  # 4
        "bad-address,Acme,x\n"  # 5
        "ann@acme.example,Acme,again\n",  # 6
    )

    report = run_import_json(campaign, path)

    assert report["imported"] == 1
    assert [row["line"] for row in report["rejected_rows"]] == [5]
    assert report["duplicate_rows"] == [{"line": 6, "email": "ann@acme.example", "reason": "repeats line 2"}]
    assert Lead.objects.get(campaign=campaign).source_data == {"notes": "met at\nSaaStr,\nfollow up"}


@pytest.mark.django_db
def test_import_of_a_windows_1252_file_keeps_names_intact(tmp_path):
    campaign = CampaignFactory()
    path = write_csv(tmp_path, "email,first_name,last_name\r\nnoah@fernhill.example,Noé,Müller\r\n", encoding="cp1252")

    run_import(campaign, path)

    lead = Lead.objects.get(campaign=campaign)
    assert (lead.first_name, lead.last_name) == ("Noé", "Müller")


@pytest.mark.django_db
def test_import_stores_emails_lower_case_and_dedupes_them_case_insensitively(tmp_path):
    campaign = CampaignFactory()
    LeadFactory(campaign=campaign, email="existing@acme.example")
    path = write_csv(
        tmp_path,
        "email\n"
        " Maya.Chen@BrightLoop.Example \n"  # 2
        "MAYA.CHEN@brightloop.example\n"  # 3
        "Existing@ACME.example\n",  # 4
    )

    report = run_import_json(campaign, path)

    assert report["imported"] == 1
    assert report["duplicate_rows"] == [
        {"line": 3, "email": "maya.chen@brightloop.example", "reason": "repeats line 2"},
        {"line": 4, "email": "existing@acme.example", "reason": "already in this campaign"},
    ]
    assert campaign_emails(campaign) == {"maya.chen@brightloop.example", "existing@acme.example"}


@pytest.mark.django_db
def test_importing_the_same_file_twice_imports_nothing_the_second_time(tmp_path):
    campaign = CampaignFactory()
    path = write_csv(tmp_path, "email\na@acme.example\nb@acme.example\nc@acme.example\n")

    first = run_import_json(campaign, path)
    second = run_import_json(campaign, path)

    assert first["imported"] == 3
    assert second["imported"] == 0
    assert second["duplicates"] == 3
    assert {row["reason"] for row in second["duplicate_rows"]} == {"already in this campaign"}
    assert Lead.objects.filter(campaign=campaign).count() == 3


@pytest.mark.django_db
def test_a_file_larger_than_one_insert_batch_imports_every_row(tmp_path):
    campaign = CampaignFactory()
    LeadFactory(campaign=campaign, email="old@acme.example")
    rows = [f"lead{i:04d}@acme.example,Lead {i}" for i in range(1, 1201)]
    rows.insert(700, "old@acme.example,Old")  # line 702, in the second batch
    rows.append("lead0001@acme.example,Again")  # line 1203, repeats the first row from two batches back
    path = write_csv(tmp_path, "email,first_name\n" + "\n".join(rows) + "\n")

    report = run_import_json(campaign, path)

    assert report["imported"] == 1200
    assert report["duplicate_rows"] == [
        {"line": 702, "email": "old@acme.example", "reason": "already in this campaign"},
        {"line": 1203, "email": "lead0001@acme.example", "reason": "repeats line 2"},
    ]
    assert Lead.objects.filter(campaign=campaign).exclude(email="old@acme.example").count() == 1200
    assert Lead.objects.get(campaign=campaign, email="lead1200@acme.example").first_name == "Lead 1200"


@pytest.mark.django_db
def test_exports_as_spreadsheets_and_mail_clients_write_them_are_read(tmp_path):
    campaign = CampaignFactory()
    semicolons = write_csv(tmp_path, "E-mail;First name;Company\nann@acme.example;Ann;Acme, Inc.\n", name="eu.csv")
    trailing = write_csv(tmp_path, "email,first_name\nbob@acme.example,Bob,,\n", name="trailing.csv")
    named = write_csv(tmp_path, 'email,first_name\n"Cid Lee <Cid@Acme.example>",Cid\n', name="named.csv")
    utf16 = tmp_path / "unicode.csv"
    utf16.write_text("email\tlast_name\ndee@acme.example\tMüller\n", encoding="utf-16")

    for path in (semicolons, trailing, named, utf16):
        run_import(campaign, path)

    leads = {lead.email: lead for lead in campaign.leads.all()}
    assert set(leads) == {"ann@acme.example", "bob@acme.example", "cid@acme.example", "dee@acme.example"}
    assert leads["ann@acme.example"].company == "Acme, Inc."
    assert leads["dee@acme.example"].last_name == "Müller"
