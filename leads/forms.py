"""The form an Apollo source's search is edited in, in the console and the admin (SPEC §10):
lists typed comma-separated or one a line, seniorities and company sizes ticked, and the whole
checked by leads.apollo_source.apollo_settings_clean, as the cycle checks it."""

from django import forms
from django.core.exceptions import ValidationError

from cam_project.validators import no_control_characters
from leads.apollo_source import DEFAULT_PER_CYCLE, EMPLOYEE_RANGES, MAX_ITEM_LENGTH, MAX_PER_CYCLE, apollo_settings_clean
from leads.clients.apollo import SEARCH_FILTERS, SENIORITIES
from leads.models import LeadSource

SENIORITY_LABELS = {"owner": "Owner", "founder": "Founder", "c_suite": "C-suite", "partner": "Partner", "vp": "VP",
                    "head": "Head", "director": "Director", "manager": "Manager", "senior": "Senior",
                    "entry": "Entry level", "intern": "Intern"}
# The form's fields are named as Apollo names its filters, so its errors map onto them.
SETTINGS_FIELDS = (*SEARCH_FILTERS, "per_cycle")


def employee_range_label(value: str) -> str:
    """Apollo's "1,10" as "1–10", and "10001," as "10,001+"."""
    low, _, high = value.partition(",")
    return f"{int(low):,}–{int(high):,}" if high else f"{int(low):,}+"


def list_split(text: str) -> list[str]:
    """Text on one line is read comma-separated; text with line breaks one item a line, so that
    an item may hold a comma ("Paris, France")."""
    parts = text.splitlines() if "\n" in text or "\r" in text else text.split(",")
    return [" ".join(part.split()) for part in parts if part.strip()]


def list_join(items: list[str]) -> str:
    """Items as list_split reads them back: one a line (with a last line break) when one holds
    a comma, else comma-separated."""
    if any("," in item for item in items):
        return "\n".join(items) + "\n"
    return ", ".join(items)


class ListField(forms.CharField):
    """A list of text typed comma-separated, or one item a line."""

    widget = forms.Textarea(attrs={"rows": 2})

    def __init__(self, **kwargs):
        super().__init__(required=False, strip=False, **kwargs)

    def to_python(self, value) -> list[str]:
        return list_split(super().to_python(value))

    def prepare_value(self, value):
        return list_join(value) if isinstance(value, (list, tuple)) else value


def _ticks(choices, label: str, help_text: str = "") -> forms.MultipleChoiceField:
    return forms.MultipleChoiceField(required=False, choices=choices, widget=forms.CheckboxSelectMultiple,
                                     label=label, help_text=help_text)


class ApolloFiltersForm(forms.Form):
    """Apollo's people-search filters, and the people revealed per cycle."""

    person_titles = ListField(label="Job titles", help_text="e.g. CEO, Head of Growth, Marketing Director.")
    person_seniorities = _ticks([(s, SENIORITY_LABELS.get(s, s)) for s in SENIORITIES], "Seniorities")
    person_locations = ListField(label="Where the people are",
                                 help_text="Countries, regions or cities; one a line when a place has a comma "
                                           "(“Paris, France”).")
    organization_locations = ListField(label="Where the companies are (headquarters)")
    organization_num_employees_ranges = _ticks([(r, employee_range_label(r)) for r in EMPLOYEE_RANGES],
                                               "Company size (employees)")
    q_keywords = forms.CharField(required=False, max_length=MAX_ITEM_LENGTH, label="Keywords",
                                 help_text="Words Apollo looks for in the people's and companies' profiles.")
    q_organization_domains_list = ListField(label="Company domains", help_text="e.g. acme.com, bolt.io.")
    per_cycle = forms.IntegerField(required=False, min_value=1, max_value=MAX_PER_CYCLE, initial=DEFAULT_PER_CYCLE,
                                   label="People revealed per cycle",
                                   help_text=f"Each person revealed costs an Apollo credit, within the campaign's "
                                             f"daily budget. Blank: {DEFAULT_PER_CYCLE}.")

    @staticmethod
    def filters_initial(settings: dict) -> dict:
        """A source's settings as the fields' initial values."""
        settings = settings if isinstance(settings, dict) else {}
        return {name: settings[name] for name in SETTINGS_FIELDS if name in settings}

    def filters_settings(self) -> dict | None:
        """The settings the fields give, as apollo_settings_clean leaves them; None when they are
        not right, each error then on its field (or the form's, for "give at least one filter")."""
        if any(name in self.errors for name in SETTINGS_FIELDS):
            return None
        raw = {name: self.cleaned_data.get(name) for name in SETTINGS_FIELDS}
        if raw["per_cycle"] is None:
            raw["per_cycle"] = DEFAULT_PER_CYCLE
        try:
            return apollo_settings_clean(raw)
        except ValidationError as exc:
            for name, errors in exc.message_dict.items():
                self.add_error(name if name in SETTINGS_FIELDS else None, errors)
            return None


class ApolloSourceForm(ApolloFiltersForm):
    """An Apollo source in the console: its name, whether cycles read it, and its search.
    cleaned_data["settings"] holds the settings to keep."""

    name = forms.CharField(max_length=LeadSource._meta.get_field("name").max_length,
                           validators=[no_control_characters], help_text="Shown in the cycle's notes and errors.")
    active = forms.BooleanField(required=False, initial=True, label="Active: every cycle goes on with this search")
    field_order = ["name", "active"]

    def __init__(self, *args, source: LeadSource | None = None, **kwargs):
        if source is not None and "initial" not in kwargs:
            kwargs["initial"] = {"name": source.name, "active": source.active, **self.filters_initial(source.settings)}
        super().__init__(*args, label_suffix="", **kwargs)

    def clean(self):
        cleaned = super().clean()
        settings = self.filters_settings()
        if settings is not None:
            cleaned["settings"] = settings
        return cleaned
