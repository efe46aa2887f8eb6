import { describe, expect, it } from 'vitest';
import { ApiError, createApiClient, isFileRefusal, parseRetryAfter } from '../src/api/client.js';

function recordingFetch(status, body, headers = {}) {
  const seen = [];
  const fetch = async (url, init) => {
    seen.push({ url, init });
    return new Response(body == null ? null : JSON.stringify(body), { status, headers });
  };
  return { fetch, seen };
}

describe('createApiClient', () => {
  it('sends the bearer token and reads JSON', async () => {
    const { fetch, seen } = recordingFetch(200, { workflows: [{ id: 'a' }] });
    const api = createApiClient({ baseUrl: 'http://bridge', getToken: async () => 'tok', fetch });
    expect(await api.listWorkflows()).toEqual([{ id: 'a' }]);
    expect(seen[0].url).toBe('http://bridge/workflows/list');
    expect(seen[0].init.headers.Authorization).toBe('Bearer tok');
  });

  it('sends no Authorization without a token (the demo)', async () => {
    const { fetch, seen } = recordingFetch(200, { jobs: [], next_cursor: null });
    await createApiClient({ fetch }).jobs({ limit: 5, cursor: 'c1' });
    expect(seen[0].url).toBe('/workflows/jobs?limit=5&cursor=c1');
    expect(seen[0].init.headers.Authorization).toBeUndefined();
  });

  it('turns an error answer into an ApiError with Retry-After', async () => {
    const body = { error: { code: 'rate_limited', message: 'Too many requests. Try again in 7 s.' } };
    const { fetch } = recordingFetch(429, body, { 'Retry-After': '7' });
    const error = await createApiClient({ fetch }).retry('j1').catch((e) => e);
    expect(error).toBeInstanceOf(ApiError);
    expect([error.status, error.code, error.retryAfterSeconds]).toEqual([429, 'rate_limited', 7]);
    expect(error.message).toBe('Too many requests. Try again in 7 s.');
  });

  it('posts the form execute expects', async () => {
    const { fetch, seen } = recordingFetch(202, { job_id: 'j1' });
    const file = new File(['x'], 'a.jpg', { type: 'image/jpeg' });
    const options = { models: { image_edit: 'nano-banana' } };
    await createApiClient({ fetch }).execute({ workflowId: 'wf', file, options, idempotencyKey: 'k' });
    const form = seen[0].init.body;
    expect(seen[0].init.method).toBe('POST');
    expect(form.get('workflow_id')).toBe('wf');
    expect(form.get('file').name).toBe('a.jpg');
    expect(JSON.parse(form.get('options'))).toEqual(options);
    expect(seen[0].init.headers['Idempotency-Key']).toBe('k');
  });

  it('puts the token in the stream URL, which EventSource cannot send as a header', async () => {
    const api = createApiClient({ baseUrl: 'http://b', getToken: async () => 'a b' });
    expect(await api.streamUrl('j1')).toBe('http://b/jobs/j1/stream?access_token=a%20b');
    expect(await createApiClient().streamUrl('j1')).toBe('/jobs/j1/stream');
  });

  it('reports an unreachable server as network_error', async () => {
    const fetch = async () => {
      throw new TypeError('failed');
    };
    const error = await createApiClient({ fetch }).execution('j1').catch((e) => e);
    expect([error.status, error.code]).toEqual([0, 'network_error']);
  });

  it('keeps absolute media URLs and prefixes bridge paths', () => {
    const api = createApiClient({ baseUrl: 'http://b' });
    expect(api.mediaUrl('/media/x.mp4')).toBe('http://b/media/x.mp4');
    expect(api.mediaUrl('https://cdn/x.mp4')).toBe('https://cdn/x.mp4');
  });
});

describe('isFileRefusal and parseRetryAfter', () => {
  it.each([
    [415, 'unsupported_type', true],
    [413, 'file_too_large', true],
    [400, 'empty_file', true],
    [400, 'missing_field', false],
    [422, 'invalid_options', false],
    [429, 'rate_limited', false],
  ])('%i %s → %s', (status, code, expected) => {
    expect(isFileRefusal(new ApiError(status, code, 'm'))).toBe(expected);
  });

  it('reads seconds and HTTP dates', () => {
    const now = Date.parse('2026-01-01T00:00:00Z');
    expect(parseRetryAfter('12', now)).toBe(12);
    expect(parseRetryAfter('Thu, 01 Jan 2026 00:00:30 GMT', now)).toBe(30);
    expect(parseRetryAfter(null, now)).toBeNull();
    expect(parseRetryAfter('soon', now)).toBeNull();
  });
});
