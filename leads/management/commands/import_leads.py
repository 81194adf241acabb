"""Bulk import of leads: `import_leads --campaign-id N FILE.csv`."""

import json
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from campaigns.models import Campaign
from leads.importing import leads_import_csv
from leads.rows import LeadFileError

SHOWN_PER_KIND = 50


class Command(BaseCommand):
    help = (
        "Import leads from a CSV file (header row with an email column; first_name, last_name, "
        "company, job_title, company_size, industry and common variants are mapped, other columns "
        "are kept as source data, at most 50 of them). Reports imported, duplicate, rejected and cut rows with "
        "line numbers."
    )

    def add_arguments(self, parser):
        parser.add_argument("--campaign-id", type=int, required=True)
        parser.add_argument("file", metavar="FILE.csv")
        parser.add_argument("--json", action="store_true", help="Print the report as JSON.")

    def handle(self, *args, **options):
        campaign = Campaign.objects.filter(pk=options["campaign_id"]).first()
        if campaign is None:
            raise CommandError(f"campaign {options['campaign_id']} not found")
        try:
            report = leads_import_csv(campaign=campaign, path=options["file"], now=timezone.now(),
                                      origin=f"import_leads of {Path(options['file']).name}")
        except LeadFileError as exc:
            raise CommandError(f"cannot import {options['file']}: {exc}") from None

        if options["json"]:
            self.stdout.write(json.dumps(report.as_dict(), indent=2))
            return
        self.stdout.write(
            self.style.SUCCESS(f"Imported {_count(report.imported, 'lead')} into #{campaign.pk} {campaign.name}")
            + f"; {_count(len(report.duplicates), 'duplicate')}, {len(report.rejected)} rejected"
            + (f", {_count(len(report.cut_rows), 'row')} with extra columns cut." if report.cut_rows else ".")
        )
        sections = (("Duplicates", report.duplicates), ("Rejected", report.rejected),
                    ("Imported with extra columns cut", report.cut_rows))
        for title, problems in sections:
            if not problems:
                continue
            self.stdout.write(f"{title}:")
            for p in problems[:SHOWN_PER_KIND]:
                self.stdout.write(f"  line {p.line}: {p.email or '-'}: {p.reason}")
            if len(problems) > SHOWN_PER_KIND:
                self.stdout.write(f"  … and {len(problems) - SHOWN_PER_KIND} more (use --json for all)")


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"
