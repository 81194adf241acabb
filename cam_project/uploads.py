"""Uploads are capped at CAM_MAX_UPLOAD_MB: a bigger one is refused without being kept.

CappedUploadHandler runs before Django's two handlers (settings.FILE_UPLOAD_HANDLERS). It does
not raise while the body is parsed: that happens in the CSRF middleware, where an exception
would be a 500 or a CSRF failure. It stops the parsing at the file instead (the fields before
it, such as the CSRF token, are kept; the rest of the body is not read) and leaves the refusal
on the request, where `uploaded_file` raises it for the view to answer: 413 on the API, an
error on a form.
"""

from django.conf import settings
from django.core.files.uploadedfile import UploadedFile
from django.core.files.uploadhandler import FileUploadHandler, StopUpload

_REFUSAL = "_cam_upload_refused"


class UploadTooLarge(Exception):
    """A request's upload was bigger than CAM_MAX_UPLOAD_MB; `field` is the form field of the
    file it was refused at."""

    def __init__(self, field: str):
        self.field = field
        super().__init__(f"The upload is larger than {settings.CAM_MAX_UPLOAD_MB} MB (CAM_MAX_UPLOAD_MB): "
                         "split the file, or ask an administrator to raise the limit.")


def upload_max_bytes() -> int:
    return settings.CAM_MAX_UPLOAD_MB * 1024 * 1024


class CappedUploadHandler(FileUploadHandler):
    """Refuses an upload whose request declares more than the cap (before reading any file
    data), and counts the file bytes it receives, so that whatever the declared length says,
    no more than the cap is ever handed on to be buffered in memory or on disk."""

    def handle_raw_input(self, input_data, META, content_length, boundary, encoding=None):
        self.declared = content_length or 0
        self.received = 0
        return None  # parse as usual

    def new_file(self, field_name, *args, **kwargs):
        super().new_file(field_name, *args, **kwargs)
        if getattr(self, "declared", 0) > upload_max_bytes():
            self._refuse()

    def receive_data_chunk(self, raw_data, start):
        self.received = getattr(self, "received", 0) + len(raw_data)
        if self.received > upload_max_bytes():
            self._refuse()
        return raw_data

    def file_complete(self, file_size):
        return None  # the next handler makes the file

    def _refuse(self):
        if self.request is not None:
            setattr(self.request, _REFUSAL, UploadTooLarge(self.field_name))
        # connection_reset: Django stops parsing and does not read the rest of the body.
        raise StopUpload(connection_reset=True)


def upload_refusal(request) -> UploadTooLarge | None:
    """The refusal of the request's upload, if it had one (the body is parsed if it was not)."""
    if request.method == "POST":
        request.FILES  # noqa: B018 - parsing the body is what finds out
    return getattr(request, _REFUSAL, None)


def uploaded_file(request, name: str) -> UploadedFile | None:
    """The file uploaded as `name`, or None; raises UploadTooLarge if the request's upload was
    refused. Works with Django's request and with DRF's, which parses through the same handlers."""
    files = request.FILES
    refusal = getattr(request, _REFUSAL, None)
    if refusal is not None:
        raise refusal
    return files.get(name)
