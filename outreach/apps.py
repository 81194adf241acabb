from django.apps import AppConfig


class OutreachConfig(AppConfig):
    default_auto_field = 'django.db.models.BigAutoField'
    name = 'outreach'

    def ready(self):
        from outreach import webhooks  # noqa: F401 — connects the ESP webhook receivers (anymail signals)
