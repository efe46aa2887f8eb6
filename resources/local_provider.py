"""The offline model provider: makes real images and H.264 videos on this machine."""

from __future__ import annotations

import fcntl
import hashlib
import io
import json
import os
import time
from collections.abc import Callable
from pathlib import Path

from pydantic import Field

from resources.media_storage import MediaStorage
from resources.model_provider import (
    GeneratedMedia,
    GenerationRequest,
    ModelProvider,
    PreparedCall,
    ProviderPrediction,
)
from wf_core.errors import RETRYABLE_TYPES, HardError, RetryableError, WorkflowError
from wf_store.predictions import Prediction, input_digest

VIDEO_SECONDS = 2.0
VIDEO_FPS = 12
VIDEO_MAX_SIDE = 384


class LocalModelProvider(ModelProvider):
    """Runs every registered model offline with Pillow and ffmpeg; no account, no network.

    `fault_file` (JSON `{"<model or task>": {"error_type": ..., "retry_after": ...,
    "delay": seconds, "latency": seconds, "times": n}}`) makes matching calls slow (the
    create call itself waits `delay`: its run is held), predictions long (`latency` more
    seconds at the provider: the step parks) and/or fail, for drills
    and tests (`times` makes a fault apply n times); `call_log` appends a JSON line
    per call.
    """

    latency_seconds: float = Field(default=0.0, ge=0, description="Simulated model time.")
    fault_file: str | None = Field(default=None, description="Faults to simulate, for drills.")
    call_log: str | None = Field(default=None, description="Append a JSON line per call here.")
    api_key: str | None = Field(default=None, description="Simulated account key (drills).")

    @property
    def provider_name(self) -> str:
        return "local"

    def prepare(self, request: GenerationRequest, media: MediaStorage) -> PreparedCall:
        """The offline call: the model renders the source named by id, with the prompt."""
        self.model_for(request)
        provider_input = {
            "task": request.task,
            "prompt": request.prompt,
            "image": f"media:{request.source.public_id}.{request.source.format}",
            **request.params,
        }
        digest = input_digest(request.model, request.model, provider_input)
        return PreparedCall(request.model, provider_input, digest)

    def submit(
        self, call: PreparedCall, intent: Prediction, webhook_url: str | None
    ) -> ProviderPrediction:
        """Start an offline prediction: it ends `latency_seconds` after its intent.

        Its id follows from the intent, so a submit repeated after a crash starts
        nothing new. A configured fault delays the call, fails it, or lengthens the
        prediction.
        """
        task = str(call.provider_input.get("task"))
        fault = self._take_fault(intent.model, task) or {}
        # Logged before the outcome, as a provider bills a call it has seen.
        source = str(call.provider_input.get("image", "")).removeprefix("media:")
        self._log_call(intent, task, source.rsplit(".", 1)[0], created=not fault.get("error_type"))
        if fault.get("delay"):
            time.sleep(float(fault["delay"]))
        self._raise(fault, intent.model)
        longer = float(fault.get("latency") or 0)
        return self._view(intent, intent.created_at + self.latency_seconds + longer)

    def create_may_have_arrived(self, error: WorkflowError) -> bool:
        """A simulated refusal is certain: nothing was made."""
        return False

    def find(
        self, intent: Prediction, taken: Callable[[str], bool] = lambda _: False
    ) -> ProviderPrediction | None:
        """An offline prediction exists from its first submit on: recomputed from the intent."""
        if intent.prediction_id is None and not self._was_called(intent):
            return None
        return self._view(intent, intent.expected_at or intent.created_at + self.latency_seconds)

    def fetch(self, prediction: Prediction) -> ProviderPrediction | None:
        """Processing until its expected end, then succeeded."""
        return self._view(prediction, prediction.expected_at or prediction.created_at)

    def collect(
        self, prediction: Prediction, request: GenerationRequest, media: MediaStorage
    ) -> GeneratedMedia:
        """Render the output now, from the stored source (deterministic from the prompt)."""
        source = media.read(request.source)
        seed = _seed(request.prompt or "", request.model)
        ident = prediction.prediction_id
        if request.task == "image_to_video":
            data = render_zoom_video(source, seed)
            extra = {"duration": VIDEO_SECONDS}
            return GeneratedMedia(
                data=data, format="mp4", provider="local", prediction_id=ident, extra=extra
            )
        render = {
            "image_edit": edit_image,
            "image_style": style_image,
            "image_upscale": upscale_image,
        }
        data = render[request.task](source, request.prompt or "", seed)
        return GeneratedMedia(data=data, format="png", provider="local", prediction_id=ident)

    def failure(self, prediction: Prediction) -> WorkflowError:
        """Offline predictions fail at submit; one that ends otherwise was lost or stopped."""
        message = f"local prediction {prediction.prediction_id} {prediction.provider_status}"
        details = {"provider": "local", "model": prediction.model}
        if prediction.provider_status in ("canceled", "aborted"):
            return RetryableError("timeout", message, None, **details)
        return HardError("internal", f"{message}: {prediction.error or 'no message'}", **details)

    def _view(self, intent: Prediction, expected_at: float) -> ProviderPrediction:
        now = time.time()
        ident = intent.prediction_id or f"local-{intent.id}"
        if now >= expected_at:
            return ProviderPrediction(ident, "succeeded", 100, None, None, expected_at)
        total = max(1e-6, expected_at - intent.created_at)
        done = max(0.0, min(1.0, (now - intent.created_at) / total))
        status = "starting" if done < 0.05 else "processing"
        return ProviderPrediction(ident, status, int(100 * done), None, None, expected_at)

    def _was_called(self, intent: Prediction) -> bool:
        """Whether a submit for this intent got as far as the call log (when one is kept)."""
        if not self.call_log or not os.path.exists(self.call_log):
            return self.call_log is None
        with open(self.call_log, encoding="utf-8") as lines:
            for line in lines:
                call = json.loads(line) if line.strip() else {}
                if call.get("intent") == intent.id and call.get("created"):
                    return True
        return False

    def _log_call(self, intent: Prediction, task: str, source: str, created: bool) -> None:
        if not self.call_log:
            return
        line = {
            "job_id": intent.job_id,
            "step": intent.step,
            "task": task,
            "model": intent.model,
            "source": source,
            "intent": intent.id,
            "created": created,
            "at": time.time(),
        }
        with open(self.call_log, "a", encoding="utf-8") as out:
            out.write(json.dumps(line) + "\n")

    @staticmethod
    def _raise(fault: dict, model: str) -> None:
        error_type = fault.get("error_type")
        if not error_type:
            return
        message = fault.get("message", f"simulated {error_type} for {model}")
        details = {"provider": "local", "model": model}
        if error_type in RETRYABLE_TYPES:
            raise RetryableError(error_type, message, fault.get("retry_after"), **details)
        raise HardError(error_type, message, **details)

    def _take_fault(self, model: str, task: str) -> dict | None:
        """The fault matching this call (by model, then task); a counted one is used up."""
        if not self.fault_file or not os.path.exists(self.fault_file):
            return None
        with open(self.fault_file, "r+", encoding="utf-8") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            faults = json.loads(handle.read() or "{}")
            key = model if model in faults else task
            fault = faults.get(key)
            if fault and "times" in fault:
                fault["times"] -= 1
                if fault["times"] <= 0:
                    del faults[key]
                handle.seek(0)
                handle.truncate()
                handle.write(json.dumps(faults))
            return fault

    def credential_fingerprint(self) -> str | None:
        if not self.api_key:
            return None
        return hashlib.sha256(self.api_key.encode()).hexdigest()[:12]

    def check_auth(self) -> bool:
        """False while a simulated invalid_key fault is configured."""
        if not self.fault_file or not os.path.exists(self.fault_file):
            return True
        faults = json.loads(Path(self.fault_file).read_text(encoding="utf-8") or "{}")
        return not any(f.get("error_type") == "invalid_key" for f in faults.values())


def _seed(prompt: str, model: str) -> int:
    return int.from_bytes(hashlib.sha256(f"{model}\0{prompt}".encode()).digest()[:4], "big")


def _open_rgb(data: bytes):
    from PIL import Image

    image = Image.open(io.BytesIO(data))
    image.load()
    return image.convert("RGB")


def _png(image) -> bytes:
    out = io.BytesIO()
    image.save(out, format="PNG", optimize=False, compress_level=1)
    return out.getvalue()


def edit_image(data: bytes, prompt: str, seed: int) -> bytes:
    """Tint the image with a colour drawn from the prompt and write the prompt on it."""
    from PIL import Image, ImageDraw

    image = _open_rgb(data)
    tint = ((seed >> 16) & 255, (seed >> 8) & 255, seed & 255)
    image = Image.blend(image, Image.new("RGB", image.size, tint), 0.35)
    draw = ImageDraw.Draw(image)
    band = max(14, image.height // 12)
    draw.rectangle([0, image.height - band, image.width, image.height], fill=(0, 0, 0))
    draw.text((6, image.height - band + 2), prompt[:80], fill=(255, 255, 255))
    return _png(image)


def style_image(data: bytes, prompt: str, seed: int) -> bytes:
    """A style filter picked by the prompt: posterized, contoured or embossed colours."""
    from PIL import ImageFilter, ImageOps

    image = _open_rgb(data)
    style = seed % 3
    if style == 0:
        image = ImageOps.posterize(image, 3)
    elif style == 1:
        image = image.filter(ImageFilter.CONTOUR)
    else:
        image = ImageOps.solarize(image.filter(ImageFilter.EDGE_ENHANCE_MORE), 160)
    return _png(image)


def upscale_image(data: bytes, prompt: str, seed: int) -> bytes:
    """A 2x Lanczos upscale."""
    from PIL import Image

    image = _open_rgb(data)
    return _png(image.resize((image.width * 2, image.height * 2), Image.Resampling.LANCZOS))


def render_zoom_video(data: bytes, seed: int) -> bytes:
    """A real H.264 MP4: a slow zoom into the image, VIDEO_SECONDS long."""
    import tempfile

    import imageio_ffmpeg
    from PIL import Image

    image = _open_rgb(data)
    scale = min(1.0, VIDEO_MAX_SIDE / max(image.size))
    width = max(16, int(image.width * scale) // 2 * 2)
    height = max(16, int(image.height * scale) // 2 * 2)
    base = image.resize((width, height), Image.Resampling.BILINEAR)
    frames = int(VIDEO_SECONDS * VIDEO_FPS)
    with tempfile.TemporaryDirectory() as tmp:
        target = os.path.join(tmp, "out.mp4")
        writer = imageio_ffmpeg.write_frames(
            target,
            (width, height),
            fps=VIDEO_FPS,
            codec="libx264",
            quality=None,
            pix_fmt_out="yuv420p",
            output_params=["-preset", "ultrafast", "-movflags", "+faststart"],
            macro_block_size=2,
            ffmpeg_log_level="error",
        )
        writer.send(None)
        for index in range(frames):
            zoom = 1.0 + 0.25 * index / max(1, frames - 1)
            cw, ch = width / zoom, height / zoom
            left, top = (width - cw) / 2, (height - ch) / 2
            frame = base.resize(
                (width, height), Image.Resampling.BILINEAR, box=(left, top, left + cw, top + ch)
            )
            writer.send(frame.tobytes())
        writer.close()
        return Path(target).read_bytes()
