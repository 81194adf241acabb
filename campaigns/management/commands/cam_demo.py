"""`make demo`: load the sample campaign (once) and run one dry-run cycle of it."""

from django.core.management import call_command
from django.core.management.base import BaseCommand

from campaigns.demo import DEMO_CSV, demo_load, demo_login


class Command(BaseCommand):
    help = "Load the demo campaign with its CSV lead source (idempotent) and run a dry-run cycle."

    def add_arguments(self, parser):
        parser.add_argument("--no-cycle", action="store_true", help="Only load the demo data.")

    def handle(self, *args, **options):
        campaign, created = demo_load()
        verb = "Loaded" if created else "Found"
        self.stdout.write(f"{verb} demo campaign #{campaign.pk} '{campaign.name}' (CSV: {DEMO_CSV})")
        if not options["no_cycle"]:
            call_command("run_cam_cycle", campaign_id=campaign.pk, stdout=self.stdout, stderr=self.stderr)
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
