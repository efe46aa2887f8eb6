"""The Replicate model provider: one paid prediction per job step, found again after a crash."""

from __future__ import annotations

import hashlib
import time
from typing import Any

import httpx
from pydantic import Field

from resources.media_storage import MediaStorage
from resources.model_provider import GeneratedMedia, GenerationRequest, ModelProvider, ProgressFn
from resources.prediction_ledger import (
    RUNNING,
    SPENT,
    PredictionLedger,
    PredictionRecord,
    input_fingerprint,
)
from resources.replicate_api import ReplicateApi
from resources.replicate_errors import PROVIDER, deadline_error, error_from_prediction
from resources.replicate_output import output_format, output_urls, progress_of, video_duration
from wf_core.errors import RetryableError
from wf_core.models import ModelSpec


class ReplicateModelProvider(ModelProvider):
    """Runs official Replicate models over HTTP; the prediction ledger prevents double billing."""

    api_token: str = Field(description="Replicate API token (REPLICATE_API_TOKEN).")
    base_url: str = Field(
        default="https://api.replicate.com/v1", description="API root (REPLICATE_API_BASE_URL)."
    )
    ledger_url: str = Field(description="Folder or fsspec URL of the prediction ledger.")
    wait_seconds: int = Field(default=5, ge=0, le=60, description="Prefer: wait on create.")
    deadline_seconds: float = Field(
        default=900.0, gt=0, description="Cancel a prediction older than this (Cancel-After)."
    )
    poll_initial_seconds: float = Field(default=1.0, gt=0, description="First poll interval.")
    poll_max_seconds: float = Field(default=10.0, gt=0, description="Longest poll interval.")
    request_timeout_seconds: float = Field(default=30.0, gt=0, description="Per HTTP request.")

    @property
    def provider_name(self) -> str:
        """Recorded in checkpoints and failure records."""
        return PROVIDER

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

    def generate(
        self,
        request: GenerationRequest,
        media: MediaStorage,
        progress: ProgressFn | None = None,
    ) -> GeneratedMedia:
        """Take this job step's saved prediction, or create one, wait for it, fetch its output."""
        spec = self.model_for(request)
        # The fingerprint names the source by id, not URL: signed URLs change on every call.
        source_id = f"media:{request.source.public_id}.{request.source.format}"
        fingerprint = input_fingerprint(
            request.model,
            spec.provider_model,
            spec.provider_input(prompt=request.prompt, image=source_id, **request.params),
        )
        ledger = PredictionLedger(self.ledger_url)
        report = progress or (lambda percent, message: None)
        api = ReplicateApi(
            self.base_url,
            self.api_token,
            request.model,
            self.request_timeout_seconds,
            self.wait_seconds,
        )
        with api:
            record, prediction = self._saved(api, ledger, request, fingerprint)
            resumed = record is not None
            if record is None:
                record, prediction = self._create(api, ledger, request, spec, media, fingerprint)
            report(15, "Resumed the saved prediction" if resumed else "Prediction created")
            assert prediction is not None  # a saved or created prediction was read
            prediction = self._wait(api, ledger, record, prediction, report)
            response = api.download(output_urls(prediction)[0])
        if response is None:
            if resumed:
                # The saved success's files are gone: only now is a new prediction justified.
                ledger.save(record.with_status("expired"))
            raise RetryableError(
                "server_unavailable",
                f"output of prediction {record.prediction_id} is gone",
                None,
                provider=PROVIDER,
                model=request.model,
            )
        url = output_urls(prediction)[0]
        extra: dict[str, Any] = {}
        if request.task == "image_to_video":
            asked = spec.provider_input(prompt=request.prompt, image=None, **request.params)
            extra["duration"] = video_duration(asked, response.content)
        return GeneratedMedia(
            data=response.content,
            format=output_format(url, response.headers.get("content-type", "")),
            provider=PROVIDER,
            provider_url=url,
            prediction_id=record.prediction_id,
            extra=extra,
        )

    def _saved(
        self, api: ReplicateApi, ledger: PredictionLedger, request: GenerationRequest, fp: str
    ) -> tuple[PredictionRecord | None, dict[str, Any] | None]:
        """The job step's earlier prediction, if it may still give us this output."""
        record = ledger.read(request.job_id, request.step)
        if record is None or record.status in SPENT:
            return None, None
        prediction = api.get(record.prediction_id)
        status = prediction.get("status") if prediction else None
        if record.fingerprint != fp:
            # It was asked for something else (another model or input): stop paying for it.
            if status in RUNNING:
                api.cancel(record.prediction_id)
            return None, None
        if prediction is not None and (
            status in RUNNING or (status == "succeeded" and output_urls(prediction))
        ):
            return record, prediction
        return None, None

    def _create(
        self,
        api: ReplicateApi,
        ledger: PredictionLedger,
        request: GenerationRequest,
        spec: ModelSpec,
        media: MediaStorage,
        fp: str,
    ) -> tuple[PredictionRecord, dict[str, Any]]:
        """Start a prediction and save its id before anything else can go wrong."""
        provider_input = spec.provider_input(
            prompt=request.prompt, image=media.provider_url(request.source), **request.params
        )
        prediction = api.create(spec.provider_model, provider_input, self.deadline_seconds)
        record = PredictionRecord(
            job_id=request.job_id,
            step=request.step,
            prediction_id=prediction["id"],
            model=request.model,
            provider_model=spec.provider_model,
            fingerprint=fp,
            status=prediction.get("status", "starting"),
            urls=prediction.get("urls") or {},
            output=prediction.get("output"),
        )
        ledger.save(record)
        return record, prediction

    def _wait(
        self,
        api: ReplicateApi,
        ledger: PredictionLedger,
        record: PredictionRecord,
        prediction: dict[str, Any],
        report: ProgressFn,
    ) -> dict[str, Any]:
        """Poll with backoff until the prediction ends; cancel it when the deadline passes."""
        interval = self.poll_initial_seconds
        while prediction.get("status") in RUNNING:
            if record.age_seconds() > self.deadline_seconds:
                api.cancel(record.prediction_id)
                ledger.save(record.with_status("canceled"))
                raise deadline_error(record.prediction_id, record.model, self.deadline_seconds)
            report(*progress_of(prediction))
            time.sleep(interval)
            interval = min(interval * 1.5, self.poll_max_seconds)
            latest = api.get(record.prediction_id)
            if latest is None:
                ledger.save(record.with_status("expired"))
                raise RetryableError(
                    "server_unavailable",
                    f"Replicate lost prediction {record.prediction_id}",
                    None,
                    provider=PROVIDER,
                    model=record.model,
                )
            prediction = latest
            if prediction.get("status") != record.status:
                record = record.with_status(prediction["status"], prediction.get("output"))
                ledger.save(record)
        if prediction.get("status") != record.status:
            ledger.save(record.with_status(prediction["status"], prediction.get("output")))
        if prediction.get("status") != "succeeded" or not output_urls(prediction):
            raise error_from_prediction(prediction, record.model)
        return prediction
