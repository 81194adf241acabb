"""`make demo`: load the sample campaign (once) and run one dry-run cycle of it; with
--with-fake-apollo, the same for an Apollo source against a fake local Apollo and Dropcontact."""

from django.core.management import call_command
from django.core.management.base import BaseCommand
from django.utils import timezone

from campaigns.demo import (
    DEMO_CSV,
    apollo_demo_load,
    apollo_demo_resumed,
    demo_load,
    demo_login,
    fake_providers_running,
)
from leads.credits import credits_summary


class Command(BaseCommand):
    help = "Load the demo campaign with its CSV lead source (idempotent) and run a dry-run cycle."

    def add_arguments(self, parser):
        parser.add_argument("--no-cycle", action="store_true", help="Only load the demo data.")
        parser.add_argument(
            "--with-fake-apollo", action="store_true",
            help="Also run a dry cycle of a demo Apollo source against a fake Apollo and Dropcontact started "
                 "on 127.0.0.1 for the run (never the real services, whatever keys are set).",
        )

    def handle(self, *args, **options):
        campaign, created = demo_load()
        verb = "Loaded" if created else "Found"
        self.stdout.write(f"{verb} demo campaign #{campaign.pk} '{campaign.name}' (CSV: {DEMO_CSV})")
        if not options["no_cycle"]:
            call_command("run_cam_cycle", campaign_id=campaign.pk, stdout=self.stdout, stderr=self.stderr)
        if options["with_fake_apollo"]:
            self._fake_apollo(options["no_cycle"])
        login = demo_login()
        if login:
            self.stdout.write(
                f"\nConsole: http://127.0.0.1:8000/ (run `make serve`), user '{login[0]}', "
                f"password '{login[1]}' (a demo login on the local SQLite database only)."
            )
        else:
            self.stdout.write("\nNo demo login on a DATABASE_URL database: use `manage.py createsuperuser`.")
        self.stdout.write("Scheduler: `make worker` runs a dry cycle of the demo every CAM_CYCLE_MINUTES (15) "
                          "without cron; `make status` shows how it is doing.")

    def _fake_apollo(self, no_cycle: bool) -> None:
        """A dry cycle of the (otherwise paused) Apollo demo campaign against leads.fake_providers:
        each run goes on with the search."""
        campaign, created = apollo_demo_load(timezone.now())
        verb = "Loaded" if created else "Found"
        self.stdout.write(f"\n{verb} demo campaign #{campaign.pk} '{campaign.name}'")
        if no_cycle:
            return
        with fake_providers_running() as url, apollo_demo_resumed(campaign):
            self.stdout.write(f"Fake Apollo and Dropcontact at {url} (made-up people; no credits are real)")
            call_command("run_cam_cycle", campaign_id=campaign.pk, stdout=self.stdout, stderr=self.stderr)
        for provider, used in credits_summary(campaign=campaign, now=timezone.now()).items():
            self.stdout.write(f"{provider.title()} credits (fake): {used['today']} today of "
                              f"{used['budget_per_day']} a day, {used['total']} in all")
