"""Form parsing that says which limit a request broke: Werkzeug raises one bare 413 for
the body (MAX_CONTENT_LENGTH), a text field (MAX_FORM_MEMORY_SIZE) and the part count
(MAX_FORM_PARTS) alike, and the body's 413 means the file is too large.
"""

from __future__ import annotations

from typing import IO, Any

from flask import Request
from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.formparser import FormDataParser

from bridge_api.http.errors import ApiError
from wf_core.run_config import MAX_PROMPT_CHARS


class _DelimiterCounter:
    """The form body as Werkzeug reads it, counting multipart delimiters on the way."""

    def __init__(self, stream: IO[bytes], boundary: bytes) -> None:
        self._stream = stream
        self._delimiter = b"--" + boundary
        self._tail = b""
        self.delimiters = 0
        self.body_too_large = False

    def read(self, size: int = -1, /) -> bytes:
        """Read on; a body over MAX_CONTENT_LENGTH is remembered as such."""
        try:
            data = self._stream.read(size)
        except RequestEntityTooLarge:
            self.body_too_large = True
            raise
        # The tail is one byte short of a delimiter, so no delimiter is counted twice.
        self.delimiters += (self._tail + data).count(self._delimiter)
        self._tail = (self._tail + data)[-(len(self._delimiter) - 1) :]
        return data


class LimitedFormDataParser(FormDataParser):
    """Werkzeug's parser; a broken field or part limit is a 413 `form_too_large`."""

    def _parse_multipart(
        self, stream: IO[bytes], mimetype: str, content_length: int | None, options: Any
    ) -> tuple[IO[bytes], Any, Any]:
        counter = _DelimiterCounter(stream, options.get("boundary", "").encode("ascii"))
        try:
            _, form, files = super()._parse_multipart(
                counter,  # type: ignore[arg-type]  # only read() is used
                mimetype,
                content_length,
                options,
            )
        except RequestEntityTooLarge:
            if counter.body_too_large:
                raise  # the file: 413 file_too_large
            raise self._form_too_large(counter.delimiters - 1) from None
        return stream, form, files

    def _form_too_large(self, parts: int) -> ApiError:
        if self.max_form_parts is not None and parts > self.max_form_parts:
            message = f"The form has more than {self.max_form_parts:,} parts."
        else:
            message = (
                f"A text field of the form is larger than {self.max_form_memory_size:,} bytes"
                f" (a prompt in options holds at most {MAX_PROMPT_CHARS:,} characters)."
            )
        return ApiError(413, "form_too_large", message)


class LimitedFormRequest(Request):
    """Flask's request with `LimitedFormDataParser` for its forms."""

    form_data_parser_class = LimitedFormDataParser
