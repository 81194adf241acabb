"""What the scheduler runs for inbound mail (cam_project/schedules.py declares when)."""

import logging

from django_q.tasks import async_task

from outreach.inbox import inbox_mailboxes, inbox_poll

logger = logging.getLogger(__name__)


def inboxes_fan_out() -> int:
    """One task per mailbox with IMAP settings, so the workers read them side by side and a
    slow server holds up only its own mailbox."""
    ids = list(inbox_mailboxes().values_list("pk", flat=True))
    for mailbox_id in ids:
        async_task("outreach.tasks.inbox_read", mailbox_id, task_name=f"read inbox of mailbox {mailbox_id}",
                   group="cam-inboxes")
    return len(ids)


def inbox_read(mailbox_id: int) -> dict:
    """Read one mailbox (a task delivered twice reads twice: each message is applied once)."""
    mailbox = inbox_mailboxes().filter(pk=mailbox_id).first()
    if mailbox is None:
        return {"mailbox_id": mailbox_id, "note": "deleted, or its IMAP settings removed, since it was queued"}
    result = inbox_poll(mailbox=mailbox)
    if result.error:
        logger.warning("reading mailbox %s: %s", mailbox_id, result.error)
    return {"mailbox_id": mailbox_id, **result.as_dict()}
