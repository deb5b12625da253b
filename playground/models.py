from django.conf import settings
from django.db import models


class Conversation(models.Model):
    """A person's saved chat, with the parameters it was last sent with. Only its owner ever sees it."""

    # Long enough for a sentence; the heading and the history show one line of it, ellipsed.
    TITLE_MAX_LENGTH = 120

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="conversations")
    title = models.CharField(max_length=TITLE_MAX_LENGTH)
    system = models.TextField(blank=True)
    temperature = models.FloatField(null=True, blank=True)
    top_p = models.FloatField(null=True, blank=True)
    max_tokens = models.PositiveIntegerField(default=1024)
    stop = models.JSONField(default=list, blank=True)
    # The team its calls are counted for: one of its owner's teams, picked in the composer (their only one by
    # default); empty: none.
    team = models.ForeignKey("accounts.Team", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    # Request ids of calls whose answers an edited prompt replaced: they count in the running cost.
    replaced_calls = models.JSONField(default=list, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-updated_at", "-id"]
        indexes = [models.Index(fields=["user", "-updated_at"])]

    def __str__(self) -> str:
        return self.title


class Turn(models.Model):
    """One prompt and the answers to it: one per model, side by side when comparing."""

    conversation = models.ForeignKey(Conversation, on_delete=models.CASCADE, related_name="turns")
    prompt = models.TextField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return self.prompt[:60]


class Answer(models.Model):
    """One model's answer to a turn, with what it cost and how fast it came.

    `pending` until its stream opens, `streaming` while it is generated (exactly one stream claims it and
    starts the generation, which goes on without the browser: any page open on it follows it), then `ok`,
    `stopped` (Stop was pressed; the partial text is kept) or `error`.

    Regenerate answers a turn again as a new `version` (every lane of it); the earlier versions stay, to
    compare. The latest version is the one the conversation continues from.
    """

    class Status(models.TextChoices):
        PENDING = "pending"
        STREAMING = "streaming"
        OK = "ok"
        STOPPED = "stopped"
        ERROR = "error"

    turn = models.ForeignKey(Turn, on_delete=models.CASCADE, related_name="answers")
    # The pane, left to right; in later turns the same lane continues the same model's thread.
    lane = models.PositiveSmallIntegerField(default=0)
    version = models.PositiveSmallIntegerField(default=1)
    model = models.ForeignKey("providers.Model", null=True, on_delete=models.SET_NULL, related_name="+")
    # "provider/model" when it was asked, kept readable if the model is deleted later.
    model_address = models.CharField(max_length=300)
    content = models.TextField(blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    error_kind = models.CharField(max_length=32, blank=True)
    error_message = models.CharField(max_length=500, blank=True, help_text="Plain words; never a secret.")
    finish_reason = models.CharField(max_length=32, blank=True)

    input_tokens = models.PositiveIntegerField(null=True, blank=True)
    output_tokens = models.PositiveIntegerField(null=True, blank=True)
    usage_estimated = models.BooleanField(default=False)
    cost = models.DecimalField(max_digits=18, decimal_places=10, null=True, blank=True)
    latency_ms = models.PositiveIntegerField(null=True, blank=True)
    ttft_ms = models.PositiveIntegerField(null=True, blank=True)
    # The call's id in the usage ledger.
    request_id = models.UUIDField(null=True, blank=True)

    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["version", "lane"]
        constraints = [models.UniqueConstraint(fields=["turn", "version", "lane"], name="answer_unique_version_lane")]

    def __str__(self) -> str:
        return f"{self.model_address} ({self.status})"

    @property
    def model_display(self) -> str:
        """"provider · model" as the picker names it; from the address once the model is deleted."""
        if self.model is not None:
            return f"{self.model.provider.name} · {self.model.label}"
        return " · ".join(self.model_address.split("/", 1))

    @property
    def is_pending(self) -> bool:
        return self.status == self.Status.PENDING

    @property
    def is_live(self) -> bool:
        """Still being answered: its pane streams (or follows) the generation."""
        return self.status in (self.Status.PENDING, self.Status.STREAMING)

    @property
    def is_finished(self) -> bool:
        return self.status in (self.Status.OK, self.Status.STOPPED, self.Status.ERROR)

    @property
    def has_metrics(self) -> bool:
        return self.latency_ms is not None
