"""The page an unsubscribe link opens (SPEC §8, RFC 8058). No login: the person is not staff.

GET shows a confirmation and changes nothing (mail scanners and link previews GET every link);
POST unsubscribes. The POST needs no CSRF token: RFC 8058's one-click POST comes from the mailbox
provider's servers with no cookie and no form of ours, and the signed token in the URL is what
proves the request (a forged POST could only unsubscribe the person the link was made for).
"""

from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods

from outreach.unsubscribe import email_masked, unsubscribe_apply, unsubscribe_email


@csrf_exempt
@require_http_methods(["GET", "HEAD", "POST"])
def unsubscribe(request, token: str):
    if request.method == "POST":
        one_click = request.POST.get("List-Unsubscribe") == "One-Click"
        email = unsubscribe_apply(token=token, now=timezone.now(),
                                  how="one-click unsubscribe (List-Unsubscribe-Post)" if one_click
                                  else "unsubscribe page")
        if email is None:
            return _invalid(request)
        return render(request, "unsubscribe/done.html", {"address": email_masked(email)})
    email = unsubscribe_email(token)
    if email is None:
        return _invalid(request)
    return render(request, "unsubscribe/confirm.html", {"address": email_masked(email)})


def _invalid(request):
    return render(request, "unsubscribe/invalid.html", status=400)
