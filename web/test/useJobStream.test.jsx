import { act, renderHook } from '@testing-library/react';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { ApiError } from '../src/api/client.js';
import { useJobStream } from '../src/hooks/useJobStream.js';
import { FakeEventSource, executionDoc, fakeApi } from './fakes.js';

async function flush(ms = 0) {
  await act(async () => {
    await vi.advanceTimersByTimeAsync(ms);
  });
}

function follow(api, jobId = 'job-1', options = {}) {
  return renderHook(({ id }) => useJobStream(id, { api, EventSourceImpl: FakeEventSource, pollMs: 1000, staleMs: 10000, ...options }), {
    initialProps: { id: jobId },
  });
}

const executions = (api) => api.calls.filter(([name]) => name === 'execution').length;

beforeEach(() => {
  vi.useFakeTimers();
  FakeEventSource.reset();
});
afterEach(() => {
  vi.useRealTimers();
});

describe('useJobStream', () => {
  it('reads the document, then follows the stream with the token in the URL', async () => {
    const api = fakeApi({ docs: [executionDoc()] });
    const { result } = follow(api);
    await flush();
    expect(result.current.job.status).toBe('running');
    const source = FakeEventSource.latest();
    expect(source.url).toBe('/jobs/job-1/stream?access_token=tok');
    act(() => source.open());
    expect(result.current.connection).toBe('sse');
    act(() => source.emit('progress', { step: 1, step_name: 'image_edit', progress: 40, message: 'Editing' }));
    expect(result.current.job.checkpoints['1']).toMatchObject({ status: 'running', progress: 40 });
  });

  it('fetches the document again on a checkpoint; events that arrive meanwhile are kept', async () => {
    const api = fakeApi({ docs: [executionDoc()] });
    const { result } = follow(api);
    await flush();
    const source = FakeEventSource.latest();
    api.setDocs([executionDoc({}, { 0: { status: 'completed' }, 1: { status: 'completed' } })]);
    act(() => {
      source.emit('checkpoint', { step: 1, status: 'completed', output: {} });
      source.emit('progress', { step: 2, step_name: 'video_generation', progress: 10, message: 'Rendering' });
    });
    await flush();
    expect(executions(api)).toBe(2);
    expect(result.current.job.checkpoints['1'].status).toBe('completed');
    expect(result.current.job.checkpoints['2']).toMatchObject({ status: 'running', progress: 10 });
  });

  it('closes after complete', async () => {
    const api = fakeApi({ docs: [executionDoc()] });
    const { result } = follow(api);
    await flush();
    const source = FakeEventSource.latest();
    api.setDocs([executionDoc({ status: 'completed', result: { video_url: '/v.mp4' } })]);
    act(() => source.emit('complete', { result: { video_url: '/v.mp4' } }));
    await flush();
    expect(source.closed).toBe(true);
    expect(result.current.connection).toBe('closed');
    expect(result.current.job.result.video_url).toBe('/v.mp4');
  });

  it('keeps following when a replayed permanent error is history (the job runs again)', async () => {
    const api = fakeApi({ docs: [executionDoc()] });
    const { result } = follow(api);
    await flush();
    const source = FakeEventSource.latest();
    act(() => source.emit('error', { step: 2, error: 'no', error_type: 'content_rejected', retryable: false }));
    await flush(); // the document says running: the error was an earlier run's
    expect(source.closed).toBe(false);
    expect(result.current.job.status).toBe('running');
  });

  it('stops on a permanent error the document confirms', async () => {
    const api = fakeApi({ docs: [executionDoc()] });
    const { result } = follow(api);
    await flush();
    const source = FakeEventSource.latest();
    api.setDocs([executionDoc({ status: 'failed', can_retry: true })]);
    act(() => source.emit('error', { step: 2, error: 'no', error_type: 'content_rejected', retryable: false }));
    await flush();
    expect(source.closed).toBe(true);
    expect(result.current.job).toMatchObject({ status: 'failed', can_retry: true });
  });

  it('lets the browser reconnect (it sends Last-Event-ID) and counts failures', async () => {
    const api = fakeApi();
    const { result } = follow(api);
    await flush();
    const source = FakeEventSource.latest();
    act(() => source.fail(FakeEventSource.CONNECTING));
    expect(result.current.connection).toBe('reconnecting');
    act(() => source.open());
    expect(result.current.connection).toBe('sse');
    expect(FakeEventSource.instances).toHaveLength(1); // no new EventSource: the browser retries
  });

  it('falls back to polling when the stream is refused, until the job ends', async () => {
    const api = fakeApi({ docs: [executionDoc()] });
    const { result } = follow(api);
    await flush();
    act(() => FakeEventSource.latest().fail(FakeEventSource.CLOSED));
    expect(result.current.connection).toBe('polling');
    await flush(1000);
    await flush(1000);
    expect(executions(api)).toBe(3);
    api.setDocs([executionDoc({ status: 'completed', result: { video_url: '/v.mp4' } })]);
    await flush(1000);
    expect(result.current.job.status).toBe('completed');
    expect(result.current.connection).toBe('closed');
    await flush(5000);
    expect(executions(api)).toBe(4);
  });

  it('falls back to polling after repeated failed reconnects', async () => {
    const api = fakeApi();
    const { result } = follow(api, 'job-1', { maxStreamFailures: 2 });
    await flush();
    const source = FakeEventSource.latest();
    act(() => source.fail());
    act(() => source.fail());
    expect(source.closed).toBe(true);
    expect(result.current.connection).toBe('polling');
  });

  it('polls when there is no EventSource at all', async () => {
    const api = fakeApi();
    const { result } = follow(api, 'job-1', { EventSourceImpl: null });
    await flush();
    expect(result.current.connection).toBe('polling');
  });

  it('checks a quiet stream by fetching the document (heartbeats never reach script)', async () => {
    const api = fakeApi();
    follow(api);
    await flush();
    expect(executions(api)).toBe(1);
    await flush(10000);
    expect(executions(api)).toBe(2);
  });

  it('opens no stream for a job that has ended; resume() follows it again', async () => {
    const api = fakeApi({ docs: [executionDoc({ status: 'failed', can_retry: true })] });
    const { result } = follow(api);
    await flush();
    expect(FakeEventSource.instances).toHaveLength(0);
    expect(result.current.connection).toBe('closed');
    api.setDocs([executionDoc({ status: 'running' })]);
    act(() => result.current.resume());
    await flush();
    expect(FakeEventSource.instances).toHaveLength(1);
    expect(result.current.job.status).toBe('running');
  });

  it('gives up on a 401 and reports it', async () => {
    const api = fakeApi({ docs: [new ApiError(401, 'token_expired', 'expired')] });
    const { result } = follow(api);
    await flush(5000);
    expect(result.current.error.status).toBe(401);
    expect(FakeEventSource.instances).toHaveLength(0);
    expect(executions(api)).toBe(1);
  });

  it('closes the stream when the job id changes or the page goes', async () => {
    const api = fakeApi();
    const { rerender, unmount, result } = follow(api);
    await flush();
    const first = FakeEventSource.latest();
    rerender({ id: 'job-2' });
    await flush();
    expect(first.closed).toBe(true);
    expect(FakeEventSource.latest().url).toContain('job-2');
    unmount();
    expect(FakeEventSource.latest().closed).toBe(true);
    expect(result.current.job).not.toBeNull();
  });
});
