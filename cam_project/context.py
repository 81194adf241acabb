def console(request):
    """What every console page shows in its header: where a live run's mail would go."""
    from campaigns.views import mail_mode

    return {"mail_mode": mail_mode()}
