"""Read the mailboxes for what came back: `poll_inbox [--mailbox N ...] [--json]` (SPEC §9).

The scheduler does the same every CAM_INBOX_MINUTES ("cam: read inboxes"). One line per mailbox:
new messages, what they were, what was matched to a lead, interrupted sends found in Sent, and
the error if its server failed. Exits 1 when any mailbox could not be read, after the others.
"""

import json

from django.core.management.base import BaseCommand, CommandError

from cam_project.validators import printable
from outreach.inbox import inbox_mailboxes, inbox_poll_all


class Command(BaseCommand):
    help = "Read every mailbox with IMAP settings (or those given) for replies, out-of-office, bounces and unsubscribes."

    def add_arguments(self, parser):
        parser.add_argument("--mailbox", type=int, action="append", dest="mailboxes", metavar="N",
                            help="Only this mailbox (its id); may be given more than once.")
        parser.add_argument("--json", action="store_true", help="Print the results as JSON.")

    def handle(self, *args, mailboxes=None, **options):
        if mailboxes:
            known = set(inbox_mailboxes().filter(pk__in=mailboxes).values_list("pk", flat=True))
            if unknown := sorted(set(mailboxes) - known):
                raise CommandError(f"no mailbox with IMAP settings has id {', '.join(map(str, unknown))}")
        elif not inbox_mailboxes().exists():
            self.stdout.write("No mailbox has IMAP settings: nothing to read (add them on the mailbox's page).")
            return
        results = inbox_poll_all(mailbox_ids=mailboxes)
        if options["json"]:
            self.stdout.write(json.dumps([result.as_dict() for result in results], indent=2))
        else:
            for result in results:
                kinds = ", ".join(f"{count} {kind.replace('_', '-')}" for kind, count in sorted(result.kinds.items()))
                line = (f"{printable(result.mailbox)}: {result.read} new"
                        + (f" ({kinds})" if kinds else "") + f", {result.matched} matched to a lead")
                if result.already:
                    line += f", {result.already} already read"
                if result.reconciled_sent or result.not_in_sent:
                    line += f"; Sent folder: {result.reconciled_sent} interrupted send(s) found, {result.not_in_sent} not"
                if result.more:
                    line += "; more waiting for the next read"
                self.stdout.write(line + f" [{result.seconds:.1f} s]")
                if result.error:
                    self.stderr.write(f"  {printable(result.error)}")
        if any(result.error for result in results):
            raise SystemExit(1)
