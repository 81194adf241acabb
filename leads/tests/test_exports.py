"""CSV exports as Outlook, Apollo, LinkedIn and HubSpot write them, imported with
`manage.py import_leads`: their header names are mapped, the most specific one wins whatever
the column order, and what is not mapped is kept as source data."""

import io
import json

import pytest
from django.core.management import call_command

from campaigns.tests.factories import CampaignFactory
from leads.models import Lead
from leads.rows import columns_map

pytestmark = pytest.mark.django_db

# Outlook's "Export to a file" → CSV: "Title" is the salutation, "Job Title" the job.
OUTLOOK = (
    '"Title","First Name","Middle Name","Last Name","Suffix","Company","Department","Job Title",'
    '"Business Street","Business City","Business State","Business Postal Code","Business Country/Region",'
    '"Business Phone","Mobile Phone","E-mail Address","E-mail Type","E-mail Display Name","E-mail 2 Address",'
    '"Notes","Web Page"\r\n'
    '"Mr.","Tom","","Becker","","Nordlicht Software GmbH","Marketing","Head of Marketing","Hafenstr. 4",'
    '"Hamburg","","20457","Germany","+49 40 1234567","","tom.becker@nordlicht.example","SMTP",'
    '"Tom Becker (tom.becker@nordlicht.example)","","Met at OMR",""\r\n'
    '"Ms.","Sarah","J.","Okafor","","Brightpath Ltd","","CTO","","London","","","United Kingdom","","",'
    '"sarah@brightpath.example","SMTP","Sarah Okafor (sarah@brightpath.example)","s.okafor@home.example","",'
    '"https://brightpath.example"\r\n'
    '"Dr.","Lena","","Vogel","","Kliniksoft AG","","","","","","","","","","lena.vogel@kliniksoft.example","SMTP",'
    '"","","",""\r\n'
)

# Apollo's people export (a subset of its columns, in its order).
APOLLO = (
    "First Name,Last Name,Title,Company,Company Name for Emails,Email,Email Status,Seniority,Departments,"
    "Work Direct Phone,# Employees,Industry,Keywords,Person Linkedin Url,Website,Company Linkedin Url,City,State,"
    "Country,Apollo Contact Id\n"
    "Maya,Chen,VP Marketing,\"BrightLoop Technologies, Inc.\",BrightLoop,maya.chen@brightloop.example,Verified,vp,"
    "Marketing,,85,computer software,\"saas, analytics\",http://www.linkedin.com/in/mayachen,"
    "http://www.brightloop.example,http://www.linkedin.com/company/brightloop,Austin,Texas,United States,"
    "64f1c0ffee0001\n"
    "Ravi,Patel,Founder & CEO,Tidewave Labs LLC,Tidewave Labs,ravi@tidewave.example,Extrapolated,founder,,"
    "'+1 415 555 0100,12,information technology & services,,http://www.linkedin.com/in/ravipatel,"
    "http://tidewave.example,,San Francisco,California,United States,64f1c0ffee0002\n"
)

# LinkedIn's data export, Connections.csv: notes before the header; many connections hide their address.
LINKEDIN_CONNECTIONS = (
    "Notes:\n"
    '"When exporting your connection data, you may notice that some of the email addresses are missing. '
    'You will only see email addresses for connections who have allowed their connections to see or download '
    'their email address using this setting https://www.linkedin.com/psettings/privacy/email."\n'
    "\n"
    "First Name,Last Name,URL,Email Address,Company,Position,Connected On\n"  # line 4
    "Amara,Nwosu,https://www.linkedin.com/in/amaranwosu,amara@fintrail.example,Fintrail,Growth Lead,12 Mar 2024\n"
    "Jonas,Berg,https://www.linkedin.com/in/jonasberg,,Nordkap AS,Head of Sales,03 Jan 2023\n"  # line 6: no address
    "Priya,Raman,https://www.linkedin.com/in/priyaraman,priya@cloudmint.example,CloudMint,\"Director, Product\","
    "28 Feb 2025\n"
)

# A Sales Navigator list exported by a prospecting tool.
SALES_NAVIGATOR = (
    "First Name,Last Name,Email Address,Company,Position,Profile URL,Location\n"
    "Elena,Rossi,elena.rossi@datafoglia.example,Datafoglia,Chief Marketing Officer,"
    "https://www.linkedin.com/sales/lead/ACwAA1,\"Milan, Lombardy, Italy\"\n"
    "Kofi,Mensah,kofi@paylane.example,PayLane,VP Engineering,https://www.linkedin.com/sales/lead/ACwAA2,"
    "\"Accra, Ghana\"\n"
)

# HubSpot's contacts export.
HUBSPOT = (
    "Record ID,First Name,Last Name,Email,Phone Number,Job Title,Company Name,Number of Employees,Industry,"
    "Lifecycle Stage,Contact owner,Create Date\n"
    "5101,Grace,Liu,grace.liu@shipwise.example,+1 206 555 0142,Operations Director,Shipwise,51-200,Logistics,"
    "Lead,Alex Demo,2025-01-14 09:12\n"
    "5102,Omar,Haddad,omar@ledgerly.example,,Head of Finance,Ledgerly,11-50,Financial Services,Subscriber,,"
    "2025-02-02 16:40\n"
)


def run_import(tmp_path, text: str, name: str = "export.csv") -> dict:
    campaign = CampaignFactory()
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    out = io.StringIO()
    call_command("import_leads", "--campaign-id", str(campaign.pk), str(path), "--json", stdout=out)
    return json.loads(out.getvalue())


def lead(email: str) -> Lead:
    return Lead.objects.get(email=email)


def test_an_outlook_export_takes_the_job_title_not_the_salutation(tmp_path):
    report = run_import(tmp_path, OUTLOOK, "contacts.csv")

    assert (report["imported"], report["rejected"]) == (3, 0)
    tom = lead("tom.becker@nordlicht.example")
    assert (tom.first_name, tom.last_name, tom.company, tom.job_title) == (
        "Tom", "Becker", "Nordlicht Software GmbH", "Head of Marketing")
    assert tom.source_data == {
        "Department": "Marketing", "Business Street": "Hafenstr. 4", "Business City": "Hamburg",
        "Business Postal Code": "20457", "Business Country/Region": "Germany", "Business Phone": "+49 40 1234567",
        "E-mail Type": "SMTP", "E-mail Display Name": "Tom Becker (tom.becker@nordlicht.example)", "Notes": "Met at OMR",
    }
    assert "Title" not in tom.source_data
    assert lead("sarah@brightpath.example").job_title == "CTO"
    assert lead("sarah@brightpath.example").source_data["E-mail 2 Address"] == "s.okafor@home.example"
    # No job title given: the salutation does not stand in for one.
    assert lead("lena.vogel@kliniksoft.example").job_title == ""


def test_an_apollo_export_maps_its_columns_and_keeps_the_rest(tmp_path):
    report = run_import(tmp_path, APOLLO, "apollo-export.csv")

    assert (report["imported"], report["rejected"]) == (2, 0)
    maya = lead("maya.chen@brightloop.example")
    assert (maya.first_name, maya.last_name, maya.job_title) == ("Maya", "Chen", "VP Marketing")
    # "Company Name for Emails" is the name cleaned for use in an email.
    assert (maya.company, maya.company_size, maya.industry) == ("BrightLoop", "85", "computer software")
    assert (maya.linkedin_url, maya.website) == ("http://www.linkedin.com/in/mayachen", "http://www.brightloop.example")
    assert (maya.city, maya.source_data["State"], maya.country) == ("Austin", "Texas", "United States")
    assert maya.source_data["Email Status"] == "Verified"
    assert not {"Company", "Title", "Email", "# Employees", "Industry"} & set(maya.source_data)
    assert lead("ravi@tidewave.example").company == "Tidewave Labs"


def test_a_linkedin_connections_export_skips_its_notes_and_keeps_its_line_numbers(tmp_path):
    report = run_import(tmp_path, LINKEDIN_CONNECTIONS, "Connections.csv")

    assert (report["imported"], report["rejected"]) == (2, 1)
    assert report["rejected_rows"] == [{"line": 6, "email": "", "reason": "missing email"}]
    amara = lead("amara@fintrail.example")
    assert (amara.first_name, amara.last_name, amara.company, amara.job_title) == (
        "Amara", "Nwosu", "Fintrail", "Growth Lead")
    assert amara.source_data == {"URL": "https://www.linkedin.com/in/amaranwosu", "Connected On": "12 Mar 2024"}
    assert lead("priya@cloudmint.example").job_title == "Director, Product"


def test_a_sales_navigator_export_is_read(tmp_path):
    report = run_import(tmp_path, SALES_NAVIGATOR, "sales-nav.csv")

    assert report["imported"] == 2
    elena = lead("elena.rossi@datafoglia.example")
    assert (elena.first_name, elena.company, elena.job_title) == ("Elena", "Datafoglia", "Chief Marketing Officer")
    assert elena.source_data == {"Profile URL": "https://www.linkedin.com/sales/lead/ACwAA1",
                                 "Location": "Milan, Lombardy, Italy"}


def test_a_hubspot_export_is_read(tmp_path):
    report = run_import(tmp_path, HUBSPOT, "hubspot-crm-exports-all-contacts.csv")

    assert report["imported"] == 2
    grace = lead("grace.liu@shipwise.example")
    assert (grace.first_name, grace.last_name, grace.job_title) == ("Grace", "Liu", "Operations Director")
    assert (grace.company, grace.company_size, grace.industry) == ("Shipwise", "51-200", "Logistics")
    assert grace.source_data == {"Record ID": "5101", "Phone Number": "+1 206 555 0142", "Lifecycle Stage": "Lead",
                                 "Contact owner": "Alex Demo", "Create Date": "2025-01-14 09:12"}


def test_business_and_work_email_and_organization_name_are_read(tmp_path):
    run_import(tmp_path, "Business Email,Organization Name\nann@acme.example,Acme\n", "a.csv")
    run_import(tmp_path, "Work Email,Personal Email\nbob@bolt.example,bob@home.example\n", "b.csv")

    assert lead("ann@acme.example").company == "Acme"
    assert lead("bob@bolt.example").source_data == {"Personal Email": "bob@home.example"}


def test_a_full_name_is_split_into_first_and_last_name_when_there_are_no_name_columns(tmp_path):
    report = run_import(tmp_path, 'Name,Email\nAnn Marie Lee,ann@acme.example\n"Okafor, Sarah",sarah@b.example\n'
                                  "Cher,cher@c.example\n")

    assert report["imported"] == 3
    assert (lead("ann@acme.example").first_name, lead("ann@acme.example").last_name) == ("Ann", "Marie Lee")
    assert (lead("sarah@b.example").first_name, lead("sarah@b.example").last_name) == ("Sarah", "Okafor")
    assert (lead("cher@c.example").first_name, lead("cher@c.example").last_name) == ("Cher", "")
    assert lead("ann@acme.example").source_data == {}


def test_a_full_name_column_gives_way_to_first_and_last_name_columns(tmp_path):
    run_import(tmp_path, "Full Name,First Name,Last Name,Email\nDr. Ann Lee,Ann,Lee,ann@acme.example\n")

    ann = lead("ann@acme.example")
    assert (ann.first_name, ann.last_name, ann.source_data) == ("Ann", "Lee", {})


@pytest.mark.parametrize("header", [["Title", "Job Title"], ["Job Title", "Title"]])
def test_the_most_specific_alias_wins_whatever_the_column_order(header):
    columns = columns_map(["Email", *header])

    assert columns[header.index("Job Title") + 1] == "job_title"
    assert columns[header.index("Title") + 1] == ""  # named, but not used, and not kept as extra


def test_an_export_with_two_email_columns_uses_the_work_address(tmp_path):
    run_import(tmp_path, "Email,Work Email\nann@home.example,ann@acme.example\n")

    ann = lead("ann@acme.example")
    assert ann.source_data == {}
    assert not Lead.objects.filter(email="ann@home.example").exists()
