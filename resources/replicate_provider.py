"""The Replicate model provider: one paid prediction per job step, created exactly once.

A create asks Replicate to call `<PUBLIC_BASE_URL>/hooks/replicate?intent=<id>` when the
prediction completes, and does not wait (`Prefer: wait` would hold the run and widen the
window in which a crash loses a billed prediction's id). After a crash between the
recorded intent and Replicate's answer, `find` searches the account's recent
predictions for the one that create made.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import httpx
from pydantic import Field

from resources.media_storage import MediaStorage
from resources.model_provider import (
    GeneratedMedia,
    GenerationRequest,
    ModelProvider,
    PreparedCall,
    ProviderPrediction,
)
from resources.replicate_api import ReplicateApi
from resources.replicate_errors import PROVIDER, error_from_prediction
from resources.replicate_output import output_format, output_urls, progress_of, video_duration
from wf_core.errors import RetryableError, WorkflowError
from wf_core.times import epoch_seconds_to_datetime
from wf_store.predictions import Prediction, input_digest

# How far before an intent a prediction it made may carry a creation time (clock skew).
FIND_SKEW_SECONDS = 120.0
FIND_MAX_PAGES = 20


class ReplicateModelProvider(ModelProvider):
    """Runs official Replicate models over HTTP."""

    api_token: str = Field(description="Replicate API token (REPLICATE_API_TOKEN).")
    base_url: str = Field(
        default="https://api.replicate.com/v1", description="API root (REPLICATE_API_BASE_URL)."
    )
    deadline_seconds: float = Field(
        default=900.0, gt=0, description="Replicate cancels a prediction older than this."
    )
    request_timeout_seconds: float = Field(default=30.0, gt=0, description="Per HTTP request.")
    webhooks: bool = Field(default=False, description="Ask Replicate to call us back.")

    @property
    def provider_name(self) -> str:
        """Recorded in checkpoints and failure records."""
        return PROVIDER

    @property
    def sends_webhooks(self) -> bool:
        """Whether creates carry our webhook URL."""
        return self.webhooks

    def credential_fingerprint(self) -> str | None:
        """A short hash of the token: tells the retry sensor the key was replaced."""
        return hashlib.sha256(self.api_token.encode()).hexdigest()[:12]

    def check_auth(self) -> bool:
        """`GET /account` answers 200 for a token Replicate accepts."""
        try:
            response = httpx.get(
                f"{self.base_url.rstrip('/')}/account",
                headers={"Authorization": f"Bearer {self.api_token}"},
                timeout=self.request_timeout_seconds,
            )
        except httpx.HTTPError:
            return False
        return response.status_code == 200

    def _api(self, model: str) -> ReplicateApi:
        return ReplicateApi(self.base_url, self.api_token, model, self.request_timeout_seconds)

    def prepare(self, request: GenerationRequest, media: MediaStorage) -> PreparedCall:
        """The create's input, with a signed URL of the source; the digest names it by id."""
        spec = self.model_for(request)
        source_id = f"media:{request.source.public_id}.{request.source.format}"
        named = spec.provider_input(prompt=request.prompt, image=source_id, **request.params)
        provider_input = spec.provider_input(
            prompt=request.prompt, image=media.provider_url(request.source), **request.params
        )
        digest = input_digest(request.model, spec.provider_model, named)
        return PreparedCall(spec.provider_model, provider_input, digest)

    def submit(
        self, call: PreparedCall, intent: Prediction, webhook_url: str | None
    ) -> ProviderPrediction:
        """Create the prediction; with webhooks on, Replicate calls us when it completes."""
        hook = f"{webhook_url}?intent={quote(intent.id)}" if webhook_url else None
        with self._api(intent.model) as api:
            created = api.create(
                call.provider_model,
                call.provider_input,
                self.deadline_seconds,
                webhook=hook,
                events=["completed"],
            )
        return _view(created)

    def find(
        self, intent: Prediction, taken: Callable[[str], bool] = lambda _: False
    ) -> ProviderPrediction | None:
        """The newest recent prediction made for this intent (its webhook names it), or
        with this intent's exact model and input and not `taken` by another row; None if
        the create never arrived."""
        since = epoch_seconds_to_datetime(intent.created_at - FIND_SKEW_SECONDS)
        name = intent.provider_model.partition(":")[0]
        with self._api(intent.model) as api:
            for page in api.list_since(since, FIND_MAX_PAGES):
                for found in page:
                    hook = str(found.get("webhook") or "")
                    if f"intent={intent.id}" in hook:
                        return _view(found)
                    if (
                        not hook
                        and found.get("model") == name
                        and found.get("input") == intent.provider_input
                        and not taken(str(found.get("id")))
                    ):
                        return _view(found)
        return None

    def fetch(self, prediction: Prediction) -> ProviderPrediction | None:
        """`GET /predictions/{id}`; None when Replicate no longer knows it."""
        assert prediction.prediction_id is not None
        with self._api(prediction.model) as api:
            found = api.get(prediction.prediction_id)
        return _view(found) if found is not None else None

    def cancel(self, prediction: Prediction) -> None:
        """`POST /predictions/{id}/cancel` (best effort)."""
        if prediction.prediction_id:
            with self._api(prediction.model) as api:
                api.cancel(prediction.prediction_id)

    def collect(
        self, prediction: Prediction, request: GenerationRequest, media: MediaStorage
    ) -> GeneratedMedia:
        """Download the output (its URL expires an hour after the prediction)."""
        urls = output_urls({"output": prediction.output})
        if not urls:
            raise self.failure(prediction)
        with self._api(prediction.model) as api:
            response = api.download(urls[0])
        if response is None:
            raise RetryableError(
                "server_unavailable",
                f"output of prediction {prediction.prediction_id} is gone",
                None,
                provider=PROVIDER,
                model=request.model,
            )
        extra: dict[str, Any] = {}
        if request.task == "image_to_video":
            spec = self.model_for(request)
            asked = spec.provider_input(prompt=request.prompt, image=None, **request.params)
            extra["duration"] = video_duration(asked, response.content)
        return GeneratedMedia(
            data=response.content,
            format=output_format(urls[0], response.headers.get("content-type", "")),
            provider=PROVIDER,
            provider_url=urls[0],
            prediction_id=prediction.prediction_id,
            extra=extra,
        )

    def failure(self, prediction: Prediction) -> WorkflowError:
        """Replicate's failure, classified as before (safety, timeout, input...)."""
        view = {
            "id": prediction.prediction_id,
            "status": prediction.provider_status,
            "error": prediction.error,
        }
        if prediction.provider_status == "succeeded":
            view = {**view, "status": "failed", "error": "the prediction gave no output"}
        return error_from_prediction(view, prediction.model)


def _view(prediction: dict[str, Any]) -> ProviderPrediction:
    status = str(prediction.get("status") or "starting")
    progress = None
    if status in ("starting", "processing"):
        progress = progress_of(prediction)[0]
    elif status == "succeeded":
        progress = 100
    return ProviderPrediction(
        id=str(prediction["id"]),
        status=status,
        progress=progress,
        output=prediction.get("output"),
        error=prediction.get("error"),
    )
