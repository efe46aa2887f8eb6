import { describe, expect, it } from 'vitest';
import { applyEvent, isTerminal, stepsOf, thumbnailOf, videoOf } from '../src/jobState.js';
import { executionDoc } from './fakes.js';

describe('applyEvent', () => {
  it('moves a step to running with its progress, then to completed', () => {
    let doc = executionDoc({}, { 0: { status: 'completed', output: { image_url: '/media/u.jpg' } } });
    doc = applyEvent(doc, { type: 'progress', data: { step: 1, step_name: 'image_edit', progress: 40, message: 'Editing' } });
    expect(doc.checkpoints['1']).toMatchObject({ status: 'running', progress: 40, message: 'Editing' });
    doc = applyEvent(doc, { type: 'checkpoint', data: { step: 1, status: 'completed', output: { edited_image_url: '/e.png' } } });
    expect(doc.checkpoints['1']).toMatchObject({ status: 'completed', output: { edited_image_url: '/e.png' } });
  });

  it('a retryable error waits for its retry with next_retry_at', () => {
    const data = { step: 2, error: 'quota', error_type: 'quota_exceeded', retryable: true, next_retry_at: '2026-01-01T00:00:10Z' };
    const doc = applyEvent(executionDoc(), { type: 'error', data });
    expect(doc.status).toBe('pending_retry');
    expect(doc.checkpoints['2']).toMatchObject({ status: 'failed_retryable', error: 'quota' });
    expect(doc.error_info).toMatchObject({ step: 2, retryable: true, next_retry_at: '2026-01-01T00:00:10Z' });
    expect(isTerminal(doc)).toBe(false);
  });

  it('progress after a failure is the retry running: the error goes', () => {
    let doc = applyEvent(executionDoc(), { type: 'error', data: { step: 2, error: 'x', error_type: 'timeout', retryable: true } });
    doc = applyEvent(doc, { type: 'progress', data: { step: 2, step_name: 'video_generation', progress: 0, message: 'Starting' } });
    expect(doc.status).toBe('running');
    expect(doc.error_info).toBeNull();
    expect(doc.checkpoints['2'].error).toBeUndefined();
  });

  it('a permanent error fails the job; cancellation cancels it; complete completes it', () => {
    const failed = applyEvent(executionDoc(), { type: 'error', data: { step: 2, error: 'no', error_type: 'content_rejected', retryable: false } });
    expect([failed.status, failed.checkpoints['2'].status, isTerminal(failed)]).toEqual(['failed', 'failed', true]);
    const cancelled = applyEvent(executionDoc(), { type: 'error', data: { step: null, error: 'Job cancelled', error_type: 'cancelled', retryable: false } });
    expect([cancelled.status, cancelled.can_retry]).toEqual(['cancelled', false]);
    const done = applyEvent(executionDoc(), { type: 'complete', data: { result: { video_url: '/v.mp4' } } });
    expect([done.status, done.result.video_url]).toEqual(['completed', '/v.mp4']);
  });

  it('never moves a completed step or job back', () => {
    const doc = executionDoc({ status: 'completed' }, { 1: { status: 'completed' } });
    expect(applyEvent(doc, { type: 'progress', data: { step: 1, progress: 5 } })).toBe(doc);
  });
});

describe('helpers', () => {
  it('lists steps in order and finds pictures and videos', () => {
    const doc = executionDoc({}, { 10: { step_name: 'late', status: 'pending' } });
    expect(stepsOf(doc).map((s) => s.index)).toEqual([0, 1, 2, 10]);
    expect(thumbnailOf({ edited_image_url: '/a.png', model_used: 'm' })).toBe('/a.png');
    expect(thumbnailOf({ video_url: '/v.mp4' })).toBeNull();
    expect(videoOf({ video_url: '/v.mp4' })).toBe('/v.mp4');
    expect(videoOf({ clip_url: 'https://c/x.webm' })).toBe('https://c/x.webm');
    expect(videoOf(null)).toBeNull();
  });
});
