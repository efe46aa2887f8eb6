// The bridge API as API.md describes it: one function per route, errors as ApiError.

/** An error answer of the bridge: `{"error": {"code", "message"}}` plus the HTTP status. */
export class ApiError extends Error {
  constructor(status, code, message, { retryAfterSeconds = null, details = {} } = {}) {
    super(message);
    this.name = 'ApiError';
    this.status = status;
    this.code = code;
    this.retryAfterSeconds = retryAfterSeconds;
    this.details = details;
  }
}

// Codes of an execute refusal that are about the request, not the file (API.md, Errors).
const NOT_ABOUT_THE_FILE = new Set([
  'missing_field',
  'invalid_json',
  'invalid_options',
  'workflow_not_found',
  'invalid_callback_url',
  'form_too_large',
]);

/** Whether an execute refusal is about the uploaded file (shown next to the file field). */
export function isFileRefusal(error) {
  return (
    error instanceof ApiError &&
    [400, 413, 415].includes(error.status) &&
    !NOT_ABOUT_THE_FILE.has(error.code)
  );
}

/** `Retry-After` as whole seconds (delta-seconds or an HTTP date), or null. */
export function parseRetryAfter(value, now = Date.now()) {
  if (value == null || value === '') return null;
  if (/^\d+$/.test(value.trim())) return Number(value.trim());
  const at = Date.parse(value);
  return Number.isNaN(at) ? null : Math.max(0, Math.ceil((at - now) / 1000));
}

/**
 * A client of the bridge at `baseUrl` ('' for the same origin).
 * `getToken` returns the Supabase access token, or null when auth is off.
 */
export function createApiClient({ baseUrl = '', getToken = async () => null, fetch: fetchImpl } = {}) {
  const doFetch = fetchImpl ?? ((...args) => globalThis.fetch(...args));

  async function request(path, { method = 'GET', body, headers = {} } = {}) {
    const token = await getToken();
    const sent = { Accept: 'application/json', ...headers };
    if (token) sent.Authorization = `Bearer ${token}`;
    let response;
    try {
      response = await doFetch(baseUrl + path, { method, body, headers: sent });
    } catch {
      throw new ApiError(0, 'network_error', 'The server could not be reached. Check your connection and try again.');
    }
    let data = null;
    try {
      data = await response.json();
    } catch {
      data = null;
    }
    if (!response.ok) {
      const error = (data && data.error) || {};
      throw new ApiError(
        response.status,
        error.code || `http_${response.status}`,
        error.message || `The server answered ${response.status}.`,
        { retryAfterSeconds: parseRetryAfter(response.headers.get('Retry-After')), details: error },
      );
    }
    return data;
  }

  const job = (jobId) => encodeURIComponent(jobId);

  return {
    baseUrl,
    /** GET /workflows/list: the enabled workflows. */
    listWorkflows: async () => (await request('/workflows/list')).workflows,
    /** POST /workflows/execute: `{job_id, execution_id, status, stream_url}`. */
    execute: ({ workflowId, file, options, idempotencyKey }) => {
      const form = new FormData();
      form.append('workflow_id', workflowId);
      if (file) form.append('file', file, file.name);
      if (options) form.append('options', JSON.stringify(options));
      const headers = idempotencyKey ? { 'Idempotency-Key': idempotencyKey } : {};
      return request('/workflows/execute', { method: 'POST', body: form, headers });
    },
    /** GET /workflows/execution/<job_id>: the execution document. */
    execution: (jobId) => request(`/workflows/execution/${job(jobId)}`),
    /** POST /workflows/retry/<job_id>. */
    retry: (jobId) => request(`/workflows/retry/${job(jobId)}`, { method: 'POST' }),
    /** POST /workflows/cancel/<job_id>. */
    cancel: (jobId) => request(`/workflows/cancel/${job(jobId)}`, { method: 'POST' }),
    /** GET /workflows/jobs: one page of the caller's jobs, newest first. */
    jobs: ({ limit = 10, cursor = null } = {}) => {
      const query = new URLSearchParams({ limit: String(limit) });
      if (cursor) query.set('cursor', cursor);
      return request(`/workflows/jobs?${query}`);
    },
    /** The job's SSE address; the token goes in the query (EventSource sends no headers). */
    streamUrl: async (jobId) => {
      const token = await getToken();
      const url = `${baseUrl}/jobs/${job(jobId)}/stream`;
      return token ? `${url}?access_token=${encodeURIComponent(token)}` : url;
    },
    /** A media URL of an output: absolute ones as they are, bridge paths under `baseUrl`. */
    mediaUrl: (url) => (!url || /^[a-z]+:/i.test(url) ? url : baseUrl + url),
  };
}
