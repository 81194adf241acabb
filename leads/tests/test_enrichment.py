"""Enrichment, verification and scoring (leads/enrichment.py), and the discover and enrich
phases of the cycle (leads_discover, leads_enrich)."""

import shutil
from datetime import timedelta
from pathlib import Path

import pytest

from campaigns.tests.factories import CampaignFactory
from leads.enrichment import company_size_bucket, email_verify, job_seniority, lead_score, source_fields_enrich
from leads.importing import leads_discover
from leads.models import Lead, LeadSource
from leads.services import leads_enrich
from leads.tests.factories import LeadFactory, LeadSourceFactory
from outreach.tests.factories import SuppressionFactory

Status = Lead.Status


def new_lead(**fields) -> Lead:
    """A lead as discovery leaves it: NEW, unverified, unscored, no enrichment."""
    defaults = {"status": Status.NEW, "email_valid": None, "score": 0.0, "enrichment": {}, "industry": ""}
    return LeadFactory(**{**defaults, **fields})


def csv_source(campaign, tmp_path, text: str, name: str = "leads.csv") -> LeadSource:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return LeadSourceFactory(campaign=campaign, name=name, settings={"path": str(path)})


# --- lead_score --------------------------------------------------------------------------------


def unsaved_lead(**fields) -> Lead:
    defaults = {"job_title": "", "company_size": "", "industry": "", "email_valid": None}
    return LeadFactory.build(**{**defaults, **fields})


def test_a_lead_with_nothing_known_scores_the_base():
    assert lead_score(unsaved_lead()) == 0.3


def test_each_known_field_adds_its_weight_to_the_score():
    assert lead_score(unsaved_lead(job_title="CTO")) == 0.45
    assert lead_score(unsaved_lead(company_size="11-50")) == 0.45
    assert lead_score(unsaved_lead(industry="SaaS")) == 0.45
    assert lead_score(unsaved_lead(email_valid=True)) == 0.5


def test_an_unverified_or_invalid_email_adds_nothing():
    assert lead_score(unsaved_lead(email_valid=False)) == 0.3
    assert lead_score(unsaved_lead(email_valid=None)) == 0.3


def test_scores_are_exact_sums_around_the_qualification_threshold():
    # Float sums like 0.3 + 0.15 + 0.2 must compare equal to what an operator reads.
    assert lead_score(unsaved_lead(job_title="CTO", email_valid=True)) == 0.65
    assert lead_score(unsaved_lead(job_title="CTO", company_size="11-50", industry="SaaS")) == 0.75
    assert lead_score(unsaved_lead(job_title="CTO", company_size="11-50", email_valid=True)) == 0.8


def test_a_lead_with_everything_known_scores_at_most_one():
    full = unsaved_lead(job_title="CTO", company_size="11-50", industry="SaaS", email_valid=True)

    assert lead_score(full) == 0.95
    assert 0.0 <= lead_score(full) <= 1.0


# --- company_size_bucket and job_seniority ----------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "bucket"),
    [
        ("1", "1-10"),
        ("10", "1-10"),
        ("11", "11-50"),
        ("42", "11-50"),
        ("50", "11-50"),
        ("51", "51-200"),
        ("200", "51-200"),
        ("201", "201-500"),
        ("1000", "501-1000"),
        ("1,200 employees", "1001-5000"),
        ("10000", "5001-10000"),
        ("10001", "10001+"),
        (" 75 Employees ", "51-200"),
    ],
)
def test_a_head_count_becomes_its_size_bucket(raw, bucket):
    assert company_size_bucket(raw) == bucket


def test_a_size_that_is_not_a_count_is_kept_as_given():
    assert company_size_bucket("11-50") == "11-50"
    assert company_size_bucket(" Enterprise ") == "Enterprise"
    assert company_size_bucket("") == ""


def test_a_size_without_any_digit_is_not_guessed_as_one_to_ten():
    # "." is a common "unknown" filler in spreadsheets; the docstring keeps anything but a count.
    assert company_size_bucket(".") == "."


@pytest.mark.parametrize(
    ("title", "seniority"),
    [
        ("CEO", "executive"),
        ("Co-founder & CTO", "executive"),
        ("Managing Director", "executive"),
        ("VP Sales", "vp"),
        ("Head of Marketing", "vp"),
        ("Director of Engineering", "director"),
        ("Engineering Manager", "manager"),
        ("Growth Lead", "manager"),
        ("Software Engineer", "individual contributor"),
        ("", ""),
    ],
)
def test_a_job_title_gives_its_seniority(title, seniority):
    assert job_seniority(title) == seniority


# --- email_verify ------------------------------------------------------------------------------


def test_a_well_formed_address_verifies_without_dns_by_default():
    assert email_verify("maya@brightloop.example") == {"valid": True, "reason": "", "checked_dns": False}


def test_a_malformed_address_fails_verification_with_a_reason():
    result = email_verify("maya@@brightloop")

    assert result["valid"] is False
    assert result["reason"].startswith("invalid: ")


# --- source_fields_enrich ----------------------------------------------------------------------


def test_source_enrichment_reads_the_domain_the_title_and_known_extra_columns():
    lead = LeadFactory.build(
        pk=7, email="maya@brightloop.example", job_title="Head of Marketing", company_size="18",
        source_data={"Domain": "brightloop.example", "Phone": "+33 1 23", "Favourite colour": "teal", "Location": ""},
    )

    found = source_fields_enrich([lead])

    assert found[7]["data"] == {
        "email_domain": "brightloop.example", "free_mail": False, "company_domain": "brightloop.example",
        "seniority": "vp", "website": "brightloop.example", "phone": "+33 1 23",
    }
    assert found[7]["fields"] == {"company_size": "11-50"}


def test_a_free_mail_address_gives_no_company_domain():
    lead = LeadFactory.build(pk=1, email="maya.chen@gmail.com", job_title="", company_size="11-50", source_data={})

    found = source_fields_enrich([lead])

    assert found[1]["data"] == {"email_domain": "gmail.com", "free_mail": True}
    assert found[1]["fields"] == {}


# --- leads_enrich ------------------------------------------------------------------------------


@pytest.mark.django_db
def test_enrichment_verifies_scores_and_marks_new_leads_enriched(now):
    campaign = CampaignFactory()
    lead = new_lead(campaign=campaign, job_title="CTO", company_size="42", industry="SaaS", next_action_at=now)

    result = leads_enrich(campaign=campaign, now=now, limit=10)

    lead.refresh_from_db()
    assert result.count == 1 and result.errors == []
    assert lead.status == Status.ENRICHED
    assert lead.email_valid is True and lead.email_verification["valid"] is True
    assert lead.score == 0.95
    assert lead.company_size == "11-50"
    assert lead.enrichment["seniority"] == "executive"
    assert lead.enriched_at == now
    assert lead.next_action_at == now


@pytest.mark.django_db
def test_enrichment_says_dropcontact_was_skipped_when_its_key_is_unset(now):
    campaign = CampaignFactory()
    new_lead(campaign=campaign)

    result = leads_enrich(campaign=campaign, now=now, limit=10)

    assert result.notes == ["dropcontact enrichment skipped: DROPCONTACT_API_KEY is not set"]
    assert result.errors == []
    assert result.count == 1


@pytest.mark.django_db
def test_a_lead_whose_address_fails_verification_gets_no_outreach(now):
    campaign = CampaignFactory()
    lead = new_lead(campaign=campaign, email="maya@@brightloop.example", job_title="CTO", company_size="", next_action_at=now)

    leads_enrich(campaign=campaign, now=now, limit=10)

    lead.refresh_from_db()
    assert lead.email_valid is False
    assert lead.score == 0.45
    assert lead.next_action_at is None
    assert lead.stopped_reason.startswith("email failed verification: invalid")


@pytest.mark.django_db
def test_enrichment_takes_the_oldest_new_leads_up_to_the_limit(now):
    campaign = CampaignFactory()
    newest = new_lead(campaign=campaign, created_at=now - timedelta(minutes=1))
    oldest = new_lead(campaign=campaign, created_at=now - timedelta(days=2))
    older = new_lead(campaign=campaign, created_at=now - timedelta(days=1))
    contacted = LeadFactory(campaign=campaign, status=Status.CONTACTED, score=0.5, created_at=now - timedelta(days=9))

    result = leads_enrich(campaign=campaign, now=now, limit=2)

    statuses = dict(Lead.objects.values_list("pk", "status"))
    assert result.count == 2
    assert statuses[oldest.pk] == statuses[older.pk] == Status.ENRICHED
    assert statuses[newest.pk] == Status.NEW
    assert statuses[contacted.pk] == Status.CONTACTED
    assert Lead.objects.get(pk=contacted.pk).score == 0.5


@pytest.mark.django_db
def test_enrichment_with_no_new_leads_does_nothing(now):
    campaign = CampaignFactory()
    LeadFactory(campaign=campaign)

    result = leads_enrich(campaign=campaign, now=now, limit=10)

    assert (result.count, result.notes, result.errors) == (0, [], [])


# --- leads_discover ----------------------------------------------------------------------------


@pytest.mark.django_db
def test_discovery_inserts_the_csv_sources_leads_as_new_and_due(tmp_path, now):
    campaign = CampaignFactory()
    source = csv_source(campaign, tmp_path, "email,first_name,website,Favourite colour\n"
                                            "maya@brightloop.example,Maya,https://b.example,teal\n")

    result = leads_discover(campaign=campaign, now=now, limit=20)

    lead = Lead.objects.get(campaign=campaign)
    source.refresh_from_db()
    assert (result.count, result.errors) == (1, [])
    assert (lead.email, lead.first_name, lead.status) == ("maya@brightloop.example", "Maya", Status.NEW)
    assert lead.source == source and lead.website == "https://b.example"
    assert lead.source_data == {"Favourite colour": "teal"}
    assert lead.next_action_at == now
    assert source.last_run_at == now and source.last_error == ""


@pytest.mark.django_db
def test_discovery_reads_a_relative_path_from_the_import_directory(settings, now):
    campaign = CampaignFactory()
    (Path(settings.CAM_IMPORT_DIR) / "7").mkdir()
    shutil.copy(Path(settings.BASE_DIR) / "data" / "sample_leads.csv", Path(settings.CAM_IMPORT_DIR) / "7" / "sample.csv")
    LeadSourceFactory(campaign=campaign, settings={"path": "7/sample.csv"})

    result = leads_discover(campaign=campaign, now=now, limit=1000)

    assert result.errors == []
    assert result.count > 0
    assert Lead.objects.filter(campaign=campaign, email="maya.chen@brightloop.example").exists()


@pytest.mark.django_db
def test_discovery_never_adds_a_suppressed_address_or_an_existing_lead(tmp_path, now):
    campaign = CampaignFactory()
    LeadFactory(campaign=campaign, email="known@acme.example", first_name="Kept")
    SuppressionFactory(email="gone@acme.example")
    csv_source(campaign, tmp_path, "email,first_name\nknown@acme.example,Changed\nGone@Acme.example,Gus\nnew@acme.example,Ann\n")

    result = leads_discover(campaign=campaign, now=now, limit=20)

    assert result.count == 1
    assert set(Lead.objects.filter(campaign=campaign).values_list("email", flat=True)) == {
        "known@acme.example", "new@acme.example",
    }
    assert Lead.objects.get(email="known@acme.example").first_name == "Kept"
    assert any("line 3: suppressed" in note for note in result.notes)


@pytest.mark.django_db
def test_discovery_twice_finds_nothing_new_the_second_time(tmp_path, now):
    campaign = CampaignFactory()
    csv_source(campaign, tmp_path, "email\na@acme.example\nb@acme.example\n")

    first = leads_discover(campaign=campaign, now=now, limit=20)
    second = leads_discover(campaign=campaign, now=now + timedelta(hours=1), limit=20)

    assert (first.count, second.count) == (2, 0)
    assert Lead.objects.filter(campaign=campaign).count() == 2


@pytest.mark.django_db
def test_discovery_stops_at_the_limit_across_sources_and_picks_up_the_rest_later(tmp_path, now):
    campaign = CampaignFactory()
    csv_source(campaign, tmp_path, "email\na@acme.example\nb@acme.example\nc@acme.example\n", name="one.csv")
    csv_source(campaign, tmp_path, "email\nd@acme.example\ne@acme.example\n", name="two.csv")

    first = leads_discover(campaign=campaign, now=now, limit=4)
    second = leads_discover(campaign=campaign, now=now, limit=4)

    assert (first.count, second.count) == (4, 1)
    assert Lead.objects.filter(campaign=campaign).count() == 5


@pytest.mark.django_db
def test_discovery_reports_a_csv_sources_rejected_rows(tmp_path, now):
    campaign = CampaignFactory()
    csv_source(campaign, tmp_path, "email\nok@acme.example\nbroken\n")

    result = leads_discover(campaign=campaign, now=now, limit=20)

    assert result.count == 1
    (note,) = result.notes
    assert "1 row rejected" in note and "line 3: invalid email" in note


@pytest.mark.django_db
def test_a_missing_csv_file_is_an_error_that_does_not_stop_the_other_sources(tmp_path, now):
    campaign = CampaignFactory()
    broken = LeadSourceFactory(campaign=campaign, name="Old export", settings={"path": str(tmp_path / "gone.csv")})
    csv_source(campaign, tmp_path, "email\nann@acme.example\n")

    result = leads_discover(campaign=campaign, now=now, limit=20)

    broken.refresh_from_db()
    assert result.count == 1
    assert len(result.errors) == 1
    assert result.errors[0].startswith("source Old export: ") and "no such file" in result.errors[0]
    assert "no such file" in broken.last_error
    assert broken.last_run_at == now


@pytest.mark.django_db
def test_a_csv_source_without_a_path_is_an_error(now):
    campaign = CampaignFactory()
    LeadSourceFactory(campaign=campaign, name="Unset", settings={})

    result = leads_discover(campaign=campaign, now=now, limit=20)

    assert result.count == 0
    assert result.errors == ['source Unset: CSV source has no "path" in its settings']


@pytest.mark.django_db
def test_the_apollo_source_is_skipped_not_failed_when_its_key_is_unset(now):
    campaign = CampaignFactory()
    source = LeadSourceFactory(campaign=campaign, name="Apollo", kind=LeadSource.Kind.APOLLO, settings={})

    result = leads_discover(campaign=campaign, now=now, limit=20)

    source.refresh_from_db()
    assert result.errors == []
    assert result.notes == ["source Apollo skipped: APOLLO_API_KEY is not set"]
    assert source.last_error == "" and source.last_run_at == now


@pytest.mark.django_db
def test_an_inactive_source_is_not_read(tmp_path, now):
    campaign = CampaignFactory()
    source = csv_source(campaign, tmp_path, "email\nann@acme.example\n")
    source.active = False
    source.save()

    result = leads_discover(campaign=campaign, now=now, limit=20)

    source.refresh_from_db()
    assert result.count == 0
    assert not Lead.objects.exists()
    assert source.last_run_at is None
