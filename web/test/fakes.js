// Test doubles at the page's two boundaries: the bridge's HTTP API and the browser's EventSource.
import { ApiError } from '../src/api/client.js';

/** An EventSource the test drives: `emit(type, data)`, `fail(readyState)`, `open()`. */
export class FakeEventSource {
  static CONNECTING = 0;
  static OPEN = 1;
  static CLOSED = 2;
  static instances = [];

  constructor(url) {
    this.url = url;
    this.readyState = FakeEventSource.CONNECTING;
    this.listeners = {};
    this.closed = false;
    FakeEventSource.instances.push(this);
  }

  addEventListener(type, listener) {
    (this.listeners[type] ||= []).push(listener);
  }

  close() {
    this.closed = true;
    this.readyState = FakeEventSource.CLOSED;
  }

  open() {
    this.readyState = FakeEventSource.OPEN;
    this.onopen?.();
  }

  emit(type, data, lastEventId = 'v2.0.0.0.0') {
    for (const listener of this.listeners[type] || []) listener({ data: JSON.stringify(data), lastEventId });
  }

  fail(readyState = FakeEventSource.CONNECTING) {
    this.readyState = readyState;
    this.onerror?.(new Event('error'));
  }

  static latest() {
    return FakeEventSource.instances[FakeEventSource.instances.length - 1];
  }

  static reset() {
    FakeEventSource.instances = [];
  }
}

/** An execution document of API.md for a three-step job. */
export function executionDoc(overrides = {}, checkpoints = {}) {
  const names = ['upload', 'image_edit', 'video_generation'];
  const base = Object.fromEntries(
    names.map((name, i) => [String(i), { step_name: name, step_type: i ? 'generation' : 'input', status: 'pending' }]),
  );
  for (const [key, value] of Object.entries(checkpoints)) base[key] = { ...base[key], ...value };
  return {
    id: 'run-1',
    job_id: 'job-1',
    workflow_id: 'img-edit-to-video',
    status: 'running',
    current_step: 0,
    total_steps: 3,
    checkpoints: base,
    error_info: null,
    result: null,
    can_retry: false,
    retry_count: 0,
    ...overrides,
  };
}

export const WORKFLOW = {
  id: 'img-edit-to-video',
  name: 'Image Edit to Video',
  description: 'Edit your image, then animate it.',
  icon: '🎬',
  enabled: true,
  default_prompts: { image_edit: 'Enhance it', video_generation: 'Zoom in' },
  supported_models: { image_edit: ['nano-banana', 'flux-kontext-pro'], video_generation: ['minimax/video-01', 'kling/v1.6'] },
  steps: [
    { name: 'upload', description: 'Upload your input image' },
    { name: 'image_edit', description: 'AI edits the image' },
    { name: 'video_generation', description: 'The image becomes a video' },
  ],
  estimated_duration_seconds: 180,
  credits_cost: 50,
};

/** An API client whose answers the test sets; records every call. */
export function fakeApi({ docs = [executionDoc()], workflows = [WORKFLOW], jobs = { jobs: [], next_cursor: null } } = {}) {
  const calls = [];
  const queue = [...docs];
  let last = docs[docs.length - 1];
  const api = {
    calls,
    baseUrl: '',
    /** The next documents `execution` answers (the last one repeats). */
    setDocs(next) {
      queue.splice(0, queue.length, ...next);
      last = next[next.length - 1];
    },
    listWorkflows: async () => {
      calls.push(['listWorkflows']);
      return workflows;
    },
    execution: async (jobId) => {
      calls.push(['execution', jobId]);
      const next = queue.length ? queue.shift() : last;
      if (next instanceof ApiError) throw next;
      return structuredClone(next);
    },
    streamUrl: async (jobId) => `/jobs/${jobId}/stream?access_token=tok`,
    execute: async (args) => {
      calls.push(['execute', args]);
      if (api.executeError) throw api.executeError;
      return { job_id: 'job-1', execution_id: 'run-1', status: 'running', stream_url: '/jobs/job-1/stream' };
    },
    retry: async (jobId) => {
      calls.push(['retry', jobId]);
      return { message: 'Workflow retry started', execution_id: 'run-2', resume_from_step: 2 };
    },
    cancel: async (jobId) => {
      calls.push(['cancel', jobId]);
      return { job_id: jobId, status: 'cancelled' };
    },
    jobs: async (args) => {
      calls.push(['jobs', args]);
      return jobs;
    },
    mediaUrl: (url) => url,
  };
  return api;
}
