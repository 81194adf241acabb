"""Hostile and odd input to imports: over-long lines in bounded memory, extra columns cut and
reported, internationalised addresses, control characters in lead fields."""

import gc
import io
import json
import tracemalloc

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command
from django.utils import timezone

from campaigns.cycle import cycle_run
from campaigns.tests.factories import CampaignFactory
from leads.models import Lead
from leads.rows import MAX_EXTRA_FIELDS, MAX_LINE_LENGTH, RowProblem, csv_rows, email_normalise
from outreach.models import Suppression

pytestmark = pytest.mark.django_db


def run_import(campaign, path, *args) -> str:
    out = io.StringIO()
    call_command("import_leads", "--campaign-id", str(campaign.pk), str(path), *args, stdout=out, no_color=True)
    return out.getvalue()


def import_json(campaign, path) -> dict:
    return json.loads(run_import(campaign, path, "--json"))


def write(tmp_path, text: str, name="leads.csv"):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8", newline="")
    return path


# --- line length -----------------------------------------------------------------------------------


def test_a_line_longer_than_the_limit_is_a_rejected_row_and_the_rows_around_it_land(tmp_path):
    campaign = CampaignFactory()
    path = write(tmp_path, "email,notes\r\n"
                           "ann@acme.example,first\r\n"                       # 2
                           f"long@acme.example,{'x' * (MAX_LINE_LENGTH + 1)}\r\n"  # 3
                           "bad-address,x\r\n"                                # 4
                           "bob@bolt.example,after\r\n")                      # 5

    report = import_json(campaign, path)

    assert report["imported"] == 2
    assert report["rejected_rows"][0] == {"line": 3, "email": "", "reason": "line longer than 100,000 characters"}
    assert report["rejected_rows"][1]["line"] == 4
    assert set(campaign.leads.values_list("email", flat=True)) == {"ann@acme.example", "bob@bolt.example"}


def test_a_line_of_exactly_the_limit_is_read_and_a_cut_line_ending_does_not_shift_line_numbers(tmp_path):
    campaign = CampaignFactory()
    padded = "ann@acme.example," + "n" * (MAX_LINE_LENGTH - len("ann@acme.example,"))
    assert len(padded) == MAX_LINE_LENGTH
    path = write(tmp_path, f"email,notes\r\n{padded}\r\nbroken,x\r\nbob@bolt.example,y\r\n")

    report = import_json(campaign, path)

    assert report["imported"] == 2
    assert [row["line"] for row in report["rejected_rows"]] == [3]


def test_a_row_longer_than_its_limit_over_quoted_line_breaks_is_a_rejected_row(tmp_path):
    # Each field within the csv module's field limit, each line within the line limit, but the
    # row goes on over 25 lines of 50,000 characters: it is refused before it is held whole.
    campaign = CampaignFactory()
    lines = ["email,notes", "ann@acme.example,ok", 'bob@bolt.example,"start'] + [f'{"y" * 50_000}","' for _ in range(25)]
    path = write(tmp_path, "\n".join(lines) + '"\n')

    report = import_json(campaign, path)

    assert report["imported"] == 1
    assert report["rejected_rows"][0] == {
        "line": 3, "email": "", "reason": "row longer than 1,000,000 characters over several lines (a quote left open?)"}


def test_an_over_long_header_line_refuses_the_file(tmp_path):
    campaign = CampaignFactory()
    path = write(tmp_path, "email," + "h" * MAX_LINE_LENGTH + "\nann@acme.example,x\n")

    with pytest.raises(Exception, match="the header line is longer than 100,000 characters"):
        run_import(campaign, path)
    assert not Lead.objects.exists()


def test_a_50_mb_line_is_imported_around_in_bounded_memory(tmp_path):
    campaign = CampaignFactory()
    path = tmp_path / "huge.csv"
    with path.open("w", encoding="utf-8", newline="") as fh:
        fh.write("email,notes\n")
        fh.write("".join(f"before{i}@acme.example,ok\n" for i in range(50)))  # lines 2-51
        fh.write("huge@acme.example,")  # line 52
        chunk = "z" * (1024 * 1024)
        for _ in range(50):
            fh.write(chunk)
        fh.write("\n")
        fh.write("".join(f"after{i}@acme.example,ok\n" for i in range(50)))  # lines 53-102
    assert path.stat().st_size > 50 * 1024 * 1024

    gc.collect()
    tracemalloc.start()
    try:
        out = run_import(campaign, path, "--json")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()

    report = json.loads(out)
    print(f"peak traced memory importing a 50 MB line: {peak / 2**20:.1f} MiB")
    assert peak < 20 * 2**20
    assert report["imported"] == 100
    assert report["rejected_rows"] == [{"line": 52, "email": "", "reason": "line longer than 100,000 characters"}]
    assert campaign.leads.filter(email="after49@acme.example").exists()


def test_csv_rows_read_a_stream_line_by_line_with_bounded_reads():
    class Recorder(io.StringIO):
        sizes = []

        def readline(self, size=-1):
            self.sizes.append(size)
            return super().readline(size)

    stream = Recorder("email\na@acme.example\n" + "q" * 300_000 + "\nb@acme.example\n", newline="")

    rows = list(csv_rows(stream))

    assert [type(r) for r in rows] == [type(rows[0]), RowProblem, type(rows[0])]
    assert all(0 < size <= MAX_LINE_LENGTH + 1 for size in Recorder.sizes)


# --- extra columns cut ---------------------------------------------------------------------------------


def test_extra_columns_beyond_the_cap_are_cut_and_reported_not_the_row_refused(tmp_path):
    campaign = CampaignFactory()
    extra_names = [f"col{i:02d}" for i in range(MAX_EXTRA_FIELDS + 12)]
    header = ",".join(["email", *extra_names])
    path = write(tmp_path, f"{header}\nann@acme.example,{','.join('v' for _ in extra_names)}\n"
                           f"bob@bolt.example,{','.join('' for _ in extra_names)}\n")

    report = import_json(campaign, path)
    text = run_import(CampaignFactory(), path)

    assert (report["imported"], report["rejected"], report["cut"]) == (2, 0, 1)
    assert report["cut_rows"] == [{"line": 2, "email": "ann@acme.example",
                                   "reason": "12 extra columns not kept (at most 50)"}]
    kept = Lead.objects.get(campaign=campaign, email="ann@acme.example").source_data
    assert list(kept) == extra_names[:MAX_EXTRA_FIELDS]
    assert "Imported 2 leads" in text and "1 row with extra columns cut." in text
    assert "Imported with extra columns cut:\n  line 2: ann@acme.example: 12 extra columns not kept (at most 50)" in text


def test_an_extra_value_or_name_too_long_is_cut_and_reported(tmp_path):
    # Before: a row with a value over 1,000 characters was refused as a whole.
    campaign = CampaignFactory()
    long_name = "N" * 150
    path = write(tmp_path, f"email,notes,{long_name}\nann@acme.example,{'x' * 1500},short\n")

    report = import_json(campaign, path)

    assert report["imported"] == 1 and report["rejected"] == 0
    (cut,) = report["cut_rows"]
    assert cut["reason"] == (f"extra field 'notes' cut to 1,000 characters; extra column name {'N' * 40!r}… "
                             "cut to 100 characters")
    data = Lead.objects.get().source_data
    assert data == {"notes": "x" * 1000, "N" * 100: "short"}


def test_a_duplicate_row_is_not_reported_as_cut(tmp_path):
    campaign = CampaignFactory()
    path = write(tmp_path, f"email,notes\nann@acme.example,ok\nann@acme.example,{'x' * 1500}\n")

    report = import_json(campaign, path)

    assert (report["imported"], report["duplicates"], report["cut"]) == (1, 1, 0)


def test_the_api_and_the_console_show_the_cut_rows(api, client, admin):
    campaign = CampaignFactory()
    data = f"email,notes\nann@acme.example,{'x' * 1500}\n".encode()

    response = api.post(f"/api/cam/campaigns/{campaign.pk}/leads",
                        {"file": SimpleUploadedFile("a.csv", data)}, format="multipart")
    client.force_login(admin)
    page = client.post(f"/campaigns/{CampaignFactory().pk}/leads",
                       {"file": SimpleUploadedFile("b.csv", data)}, follow=True).content.decode()

    assert response.json()["cut"] == 1
    assert response.json()["cut_rows"][0]["reason"] == "extra field 'notes' cut to 1,000 characters"
    assert 'data-report="cut">1<' in page
    assert "imported; extra field &#x27;notes&#x27; cut to 1,000 characters" in page


# --- internationalised addresses ---------------------------------------------------------------------


def test_a_non_ascii_local_part_is_refused_with_the_reason(tmp_path):
    campaign = CampaignFactory()
    path = write(tmp_path, "email\njosé@acme.example\nann@acme.example\n")

    report = import_json(campaign, path)

    assert report["imported"] == 1
    assert report["rejected_rows"] == [{
        "line": 2, "email": "josé@acme.example",
        "reason": "the part before the @ has non-ASCII characters: most mail servers cannot deliver to it",
    }]


def test_an_internationalised_domain_is_stored_in_its_ascii_form_and_deduplicated_in_either_spelling(tmp_path):
    campaign = CampaignFactory()
    path = write(tmp_path, "email\nAnn@Bücher.example\nann@xn--bcher-kva.example\n")

    report = import_json(campaign, path)

    assert report["imported"] == 1
    assert report["duplicate_rows"] == [{"line": 3, "email": "ann@xn--bcher-kva.example", "reason": "repeats line 2"}]
    assert Lead.objects.get().email == "ann@xn--bcher-kva.example"


@pytest.mark.parametrize(("suppressed", "imported"), [
    ("ann@BÜCHER.example", "ann@xn--bcher-kva.example"),
    ("ann@xn--bcher-kva.example", "ann@bücher.example"),
])
def test_the_suppression_list_matches_either_spelling_of_a_domain(api, tmp_path, suppressed, imported):
    campaign = CampaignFactory()
    assert api.post("/api/cam/suppressions", {"email": suppressed, "reason": "unsubscribed"},
                    format="json").status_code == 201

    report = import_json(campaign, write(tmp_path, f"email\n{imported}\n"))

    assert Suppression.objects.get().email == "ann@xn--bcher-kva.example"
    assert report["imported"] == 0
    assert report["rejected_rows"][0]["reason"] == "suppressed (unsubscribed)"


def test_mail_to_an_internationalised_domain_goes_to_its_ascii_address(tmp_path, smtp_server):
    campaign = CampaignFactory()
    run_import(campaign, write(tmp_path, "email,first_name\nann@bücher.example,Ann\n"))

    result = cycle_run(campaign=campaign, now=timezone.now(), dry_run=False)

    assert (result.outreach_sent, result.errors) == (1, [])
    (message,) = smtp_server.messages
    assert message["To"] == "ann@xn--bcher-kva.example"


@pytest.mark.parametrize("garbage", [
    None, 42, "", "@", "a@", "@b", "a@b@c", "\x00@\x00", "a@\ud800.example", "ü" * 5000 + "@ü.example",
    "a@" + "ü" * 400, "<<>>", "Name <a@ü..example>", "a@xn--zz.example", "a@.", " \t\n ",
])
def test_email_normalise_never_raises(garbage):
    assert isinstance(email_normalise(garbage), str)


# --- control characters ----------------------------------------------------------------------------------


def test_a_row_with_control_characters_in_a_lead_field_is_refused_naming_the_field(tmp_path):
    campaign = CampaignFactory()
    path = write(tmp_path, "email,first_name,company,job_title,company_size,industry\n"
                           "a@acme.example,Ann\x1b[31m,Acme,CTO,10,SaaS\n"     # 2 escape
                           "b@acme.example,Bob,Acme\x07,CTO,10,SaaS\n"         # 3 bell
                           "c@acme.example,Cid,Acme,\u202eOTC,10,SaaS\n"       # 4 bidi override
                           "d@acme.example,Dee,Acme,CTO,10\x7f,SaaS\n"         # 5 DEL
                           "e@acme.example,Eve,Acme,CTO,10,Saa\x9bS\n"         # 6 C1
                           "f@acme.example,Fay\tLee,Acme,CTO,10,SaaS\n")       # 7 a tab: whitespace

    report = import_json(campaign, path)

    assert report["imported"] == 1
    assert [(row["line"], row["reason"]) for row in report["rejected_rows"]] == [
        (2, "first_name contains control characters"),
        (3, "company contains control characters"),
        (4, "job_title contains control characters"),
        (5, "company_size contains control characters"),
        (6, "industry contains control characters"),
    ]
    assert Lead.objects.get().first_name == "Fay Lee"


def test_the_api_refuses_a_lead_with_control_characters_naming_the_field(api):
    campaign = CampaignFactory()
    url = f"/api/cam/campaigns/{campaign.pk}/leads"

    one = api.post(url, {"email": "a@acme.example", "last_name": "Lee\x1b]0;pwned\x07"}, format="json")
    many = api.post(url, [{"email": "b@acme.example", "company": "\u202eemca"}, {"email": "c@acme.example"}],
                    format="json")

    assert one.status_code == 400 and list(one.json()) == ["last_name"]
    assert "control characters" in one.json()["last_name"][0]
    assert many.json()["rejected_rows"] == [{"line": 1, "email": "b@acme.example",
                                             "reason": "company contains control characters"}]
    assert list(Lead.objects.values_list("email", flat=True)) == ["c@acme.example"]
