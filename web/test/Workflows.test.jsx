import { act, cleanup, fireEvent, render, screen } from '@testing-library/react';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { App } from '../src/App.jsx';
import { ApiError } from '../src/api/client.js';
import { WorkflowsPage } from '../src/pages/Workflows.jsx';
import { FakeEventSource, executionDoc, fakeApi } from './fakes.js';

const streamOptions = { EventSourceImpl: FakeEventSource };

async function settle() {
  await act(async () => {
    await new Promise((resolve) => setTimeout(resolve, 0));
  });
}

async function runWith(api) {
  render(<WorkflowsPage api={api} streamOptions={streamOptions} onUnauthorized={api.onUnauthorized} />);
  await screen.findByLabelText(/Image Edit to Video/);
  fireEvent.change(screen.getByLabelText('Input image'), {
    target: { files: [new File(['x'], 'a.jpg', { type: 'image/jpeg' })] },
  });
  fireEvent.change(screen.getByLabelText('Model for video_generation'), { target: { value: 'kling/v1.6' } });
  fireEvent.click(screen.getByRole('button', { name: 'Run workflow' }));
  await settle();
}

beforeEach(() => FakeEventSource.reset());
afterEach(cleanup);

describe('WorkflowsPage', () => {
  it('runs the chosen workflow with its options and follows the job', async () => {
    const api = fakeApi({ docs: [executionDoc()] });
    await runWith(api);
    const [, args] = api.calls.find(([name]) => name === 'execute');
    expect(args.workflowId).toBe('img-edit-to-video');
    expect(args.file.name).toBe('a.jpg');
    expect(args.options).toEqual({ models: { video_generation: 'kling/v1.6' } });
    expect(await screen.findByRole('heading', { name: /Progress/ })).toBeTruthy();
    expect(FakeEventSource.latest().url).toBe('/jobs/job-1/stream?access_token=tok');
    expect(screen.getByRole('button', { name: 'Cancel job' })).toBeTruthy();
  });

  it("shows a refused upload's message next to the file field", async () => {
    const api = fakeApi();
    api.executeError = new ApiError(415, 'unsupported_type', 'The file is a PDF document; upload an image.');
    await runWith(api);
    const input = screen.getByLabelText('Input image');
    expect(document.getElementById(input.getAttribute('aria-describedby')).textContent).toBe(
      'The file is a PDF document; upload an image.',
    );
    expect(screen.queryByRole('heading', { name: /Progress/ })).toBeNull();
  });

  it('says when to try again after a 429', async () => {
    const api = fakeApi();
    api.executeError = new ApiError(429, 'rate_limited', 'Too many', { retryAfterSeconds: 30 });
    await runWith(api);
    expect(screen.getByText(/You can try again in (29|30) s/)).toBeTruthy();
    expect(screen.getByRole('button', { name: 'Run workflow' }).disabled).toBe(true);
  });

  it('sends a 401 back to sign-in', async () => {
    const api = fakeApi();
    api.onUnauthorized = vi.fn();
    api.executeError = new ApiError(401, 'token_expired', 'The access token has expired');
    await runWith(api);
    expect(api.onUnauthorized).toHaveBeenCalled();
  });

  it('retries a failed job and follows it again', async () => {
    const api = fakeApi({ docs: [executionDoc({ status: 'failed', can_retry: true }, { 2: { status: 'failed', error: 'rejected' } })] });
    await runWith(api);
    const retry = await screen.findByRole('button', { name: 'Retry' });
    expect(FakeEventSource.instances).toHaveLength(0);
    api.setDocs([executionDoc({ status: 'running' })]);
    fireEvent.click(retry);
    await settle();
    await settle();
    expect(api.calls.some(([name]) => name === 'retry')).toBe(true);
    expect(FakeEventSource.instances).toHaveLength(1);
    expect(screen.queryByRole('button', { name: 'Retry' })).toBeNull();
  });

  it('opens a past job from the history with its checkpoints', async () => {
    const done = executionDoc(
      { status: 'completed', result: { video_url: '/media/v.mp4' } },
      { 0: { status: 'completed' }, 1: { status: 'completed' }, 2: { status: 'completed', output: { video_url: '/media/v.mp4' } } },
    );
    const jobs = { jobs: [{ job_id: 'old', workflow_id: 'img-edit-to-video', status: 'completed', created_at: null }], next_cursor: null };
    const api = fakeApi({ docs: [done], jobs });
    render(<WorkflowsPage api={api} streamOptions={streamOptions} />);
    fireEvent.click(await screen.findByRole('button', { name: /Image Edit to Video completed/ }));
    expect(await screen.findByLabelText('Result video')).toBeTruthy();
    expect(api.calls).toContainEqual(['execution', 'old']);
    expect(screen.getAllByRole('listitem').filter((li) => li.dataset.status === 'completed')).toHaveLength(3);
  });
});

describe('App sign-in', () => {
  function fakeSupabase() {
    const state = { session: null, listener: null };
    const client = {
      auth: {
        getSession: async () => ({ data: { session: state.session } }),
        onAuthStateChange: (listener) => {
          state.listener = listener;
          return { data: { subscription: { unsubscribe() {} } } };
        },
        signInWithPassword: async ({ email, password }) => {
          if (password !== 'right') return { error: { message: 'Invalid login credentials' } };
          state.session = { access_token: 'jwt-1', user: { email } };
          state.listener?.('SIGNED_IN', state.session);
          return { error: null };
        },
        signOut: async () => {
          state.session = null;
          state.listener?.('SIGNED_OUT', null);
        },
      },
    };
    return { client, state };
  }

  it('signs in with Supabase and sends its access token', async () => {
    const { client } = fakeSupabase();
    const createClient = vi.fn(() => client);
    const fetch = vi.fn(async () => new Response(JSON.stringify({ workflows: [], jobs: [] }), { status: 200 }));
    vi.stubGlobal('fetch', fetch);
    const config = { auth_mode: 'supabase', supabase_url: 'https://x.supabase.co', supabase_anon_key: 'anon', api_base: '' };
    render(<App config={config} createSupabaseClient={createClient} />);
    fireEvent.change(await screen.findByLabelText('Email'), { target: { value: 'me@x.io' } });
    fireEvent.change(screen.getByLabelText('Password'), { target: { value: 'right' } });
    fireEvent.click(screen.getByRole('button', { name: 'Sign in' }));
    expect(await screen.findByText('me@x.io')).toBeTruthy();
    await settle();
    expect(createClient).toHaveBeenCalledWith('https://x.supabase.co', 'anon');
    expect(fetch.mock.calls.some(([, init]) => init.headers.Authorization === 'Bearer jwt-1')).toBe(true);
    vi.unstubAllGlobals();
  });

  it('sends the person back to sign-in when the API answers 401', async () => {
    const { client, state } = fakeSupabase();
    state.session = { access_token: 'old', user: { email: 'me@x.io' } };
    const refused = { error: { code: 'token_expired', message: 'The access token has expired' } };
    vi.stubGlobal('fetch', async () => new Response(JSON.stringify(refused), { status: 401 }));
    const config = { auth_mode: 'supabase', supabase_url: 'https://x.supabase.co', supabase_anon_key: 'anon', api_base: '' };
    render(<App config={config} createSupabaseClient={() => client} />);
    expect(await screen.findByLabelText('Email')).toBeTruthy();
    expect(screen.getByRole('status').textContent).toContain('Your session has ended');
    expect(state.session).toBeNull();
    vi.unstubAllGlobals();
  });

  it('runs as local-dev when the bridge has auth disabled', async () => {
    vi.stubGlobal('fetch', async () => new Response(JSON.stringify({ workflows: [], jobs: [] }), { status: 200 }));
    render(<App config={{ auth_mode: 'disabled', api_base: '' }} />);
    expect(screen.getByText('local-dev')).toBeTruthy();
    expect(screen.queryByLabelText('Email')).toBeNull();
    await settle();
    vi.unstubAllGlobals();
  });

  it('says what is missing when the bridge needs tokens but the page has no Supabase settings', () => {
    render(<App config={{ auth_mode: 'supabase', api_base: '' }} />);
    expect(screen.getByRole('alert').textContent).toContain('SUPABASE_ANON_KEY');
  });
});

describe('useJobHistory', () => {
  it('shows each job once, across pages too', async () => {
    const { renderHook } = await import('@testing-library/react');
    const { useJobHistory } = await import('../src/hooks/useJobHistory.js');
    const job = (id) => ({ job_id: id, workflow_id: 'img-edit-to-video', status: 'completed' });
    const pages = [
      { jobs: [job('c'), job('c'), job('b')], next_cursor: 'k' },
      { jobs: [job('b'), job('a')], next_cursor: null },
    ];
    const api = { jobs: vi.fn(async () => pages.shift()) };
    const { result } = renderHook(() => useJobHistory(api, { limit: 3 }));
    await settle();
    expect(result.current.jobs.map((j) => j.job_id)).toEqual(['c', 'b']);
    expect(result.current.hasMore).toBe(true);
    await act(async () => result.current.loadMore());
    expect(result.current.jobs.map((j) => j.job_id)).toEqual(['c', 'b', 'a']);
    expect(api.jobs).toHaveBeenLastCalledWith({ limit: 3, cursor: 'k' });
    expect(result.current.hasMore).toBe(false);
  });
});
