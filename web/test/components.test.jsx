import { cleanup, fireEvent, render, screen } from '@testing-library/react';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { CancelButton } from '../src/components/CancelButton.jsx';
import { ExecuteButton } from '../src/components/ExecuteButton.jsx';
import { FileUploader } from '../src/components/FileUploader.jsx';
import { JobHistory } from '../src/components/JobHistory.jsx';
import { ProgressTracker } from '../src/components/ProgressTracker.jsx';
import { ResultDisplay } from '../src/components/ResultDisplay.jsx';
import { RetryButton } from '../src/components/RetryButton.jsx';
import { SignIn } from '../src/components/SignIn.jsx';
import { StepOptions } from '../src/components/StepOptions.jsx';
import { WorkflowSelector } from '../src/components/WorkflowSelector.jsx';
import { WORKFLOW, executionDoc } from './fakes.js';

afterEach(cleanup);

const NOW = Date.parse('2026-01-01T00:00:00Z');

describe('WorkflowSelector', () => {
  it('offers every listed workflow as a labelled radio', () => {
    const onChange = vi.fn();
    const other = { ...WORKFLOW, id: 'new-one', name: 'New One' };
    render(<WorkflowSelector workflows={[WORKFLOW, other]} value="img-edit-to-video" onChange={onChange} />);
    expect(screen.getByLabelText(/Image Edit to Video/).checked).toBe(true);
    fireEvent.click(screen.getByLabelText(/New One/));
    expect(onChange).toHaveBeenCalledWith('new-one');
    expect(screen.getByRole('group', { name: 'Workflow' })).toBeTruthy();
  });
});

describe('FileUploader', () => {
  it('hands over the chosen file and shows a refusal next to the field', () => {
    const onChange = vi.fn();
    const { rerender } = render(<FileUploader file={null} onChange={onChange} />);
    const input = screen.getByLabelText('Input image');
    const file = new File(['x'], 'a.txt', { type: 'text/plain' });
    fireEvent.change(input, { target: { files: [file] } });
    expect(onChange).toHaveBeenCalledWith(file);
    rerender(<FileUploader file={file} onChange={onChange} error="The file is text; upload an image." />);
    const alert = screen.getByRole('alert');
    expect(alert.textContent).toBe('The file is text; upload an image.');
    expect(input.getAttribute('aria-invalid')).toBe('true');
    expect(input.getAttribute('aria-describedby')).toBe(alert.id);
  });
});

describe('StepOptions', () => {
  it('offers the supported models and the default prompts; sends only what changed', () => {
    const onChange = vi.fn();
    render(<StepOptions workflow={WORKFLOW} value={{ models: {}, prompts: {} }} onChange={onChange} />);
    const model = screen.getByLabelText('Model for video_generation');
    expect([...model.options].map((o) => o.value)).toEqual(['', 'minimax/video-01', 'kling/v1.6']);
    fireEvent.change(model, { target: { value: 'kling/v1.6' } });
    expect(onChange).toHaveBeenLastCalledWith({ models: { video_generation: 'kling/v1.6' }, prompts: {} });
    const prompt = screen.getByLabelText('Prompt for image_edit');
    expect(prompt.value).toBe('Enhance it');
    fireEvent.change(prompt, { target: { value: 'teal' } });
    expect(onChange).toHaveBeenLastCalledWith({ models: {}, prompts: { image_edit: 'teal' } });
    expect(screen.queryByLabelText('Model for upload')).toBeNull();
  });
});

describe('ExecuteButton', () => {
  it('is disabled while rate limited and says when to try again', () => {
    const { rerender } = render(<ExecuteButton retryAt={NOW + 7000} now={NOW} />);
    expect(screen.getByRole('button', { name: 'Run workflow' }).disabled).toBe(true);
    expect(screen.getByRole('status').textContent).toContain('try again in 7 s');
    rerender(<ExecuteButton retryAt={NOW + 7000} now={NOW + 7000} />);
    expect(screen.getByRole('button', { name: 'Run workflow' }).disabled).toBe(false);
    expect(screen.queryByRole('status')).toBeNull();
  });

  it('counts long waits in minutes', () => {
    render(<ExecuteButton retryAt={NOW + 3600 * 1000} now={NOW} />);
    expect(screen.getByRole('status').textContent).toContain('try again in 60 min');
  });
});

describe('ProgressTracker', () => {
  const job = executionDoc(
    {
      status: 'pending_retry',
      error_info: { step: 2, error_type: 'rate_limit', retryable: true, message: 'slow down', next_retry_at: '2026-01-01T00:00:12Z' },
    },
    {
      0: { status: 'completed', output: { image_url: '/media/u.jpg' } },
      1: { status: 'running', progress: 40, message: 'Editing' },
      2: { status: 'failed_retryable', error: 'slow down', error_type: 'rate_limit' },
    },
  );

  it("shows each step's state: thumbnail, progress, countdown to next_retry_at", () => {
    render(<ProgressTracker job={job} workflow={WORKFLOW} now={NOW} />);
    const items = screen.getAllByRole('listitem');
    expect(items.map((li) => li.dataset.status)).toEqual(['completed', 'running', 'failed_retryable']);
    expect(screen.getByAltText('Output of upload').getAttribute('src')).toBe('/media/u.jpg');
    expect(screen.getByLabelText('image edit progress').getAttribute('value')).toBe('40');
    expect(items[2].textContent).toContain('Next attempt in 12 s');
    expect(items[2].textContent).toContain('slow down');
  });

  it('says "retrying now" once the time has come, and announces state changes politely', () => {
    render(<ProgressTracker job={job} workflow={WORKFLOW} now={NOW + 20000} />);
    expect(screen.getByText('Retrying now…')).toBeTruthy();
    const live = screen.getByRole('status');
    expect(live.getAttribute('aria-live')).toBe('polite');
    expect(live.textContent).toBe('Waiting to retry. Step 2 of 3, image edit: running.');
  });

  it('shows the message of a failed step', () => {
    const failed = executionDoc({ status: 'failed' }, { 2: { status: 'failed', error: 'rejected' } });
    render(<ProgressTracker job={failed} now={NOW} />);
    expect(screen.getAllByRole('listitem')[2].textContent).toContain('rejected');
  });
});

describe('ResultDisplay', () => {
  it('plays the video and offers it for download', () => {
    render(<ResultDisplay result={{ video_url: '/media/jobs/j/video_generation.mp4' }} mediaUrl={(u) => `http://b${u}`} />);
    expect(screen.getByLabelText('Result video').getAttribute('src')).toBe('http://b/media/jobs/j/video_generation.mp4');
    const link = screen.getByRole('link', { name: 'Download video' });
    expect(link.getAttribute('download')).toBe('video_generation.mp4');
  });

  it('shows nothing without a video', () => {
    const { container } = render(<ResultDisplay result={null} />);
    expect(container.innerHTML).toBe('');
  });
});

describe('RetryButton and CancelButton', () => {
  it('Retry only when the API says can_retry', () => {
    const onRetry = vi.fn();
    const { rerender } = render(<RetryButton canRetry={false} onRetry={onRetry} />);
    expect(screen.queryByRole('button')).toBeNull();
    rerender(<RetryButton canRetry onRetry={onRetry} />);
    fireEvent.click(screen.getByRole('button', { name: 'Retry' }));
    expect(onRetry).toHaveBeenCalledOnce();
  });

  it.each([
    ['running', true],
    ['pending_retry', true],
    ['completed', false],
    ['cancelled', false],
  ])('Cancel for a %s job: %s', (status, shown) => {
    render(<CancelButton status={status} onCancel={() => {}} />);
    expect(Boolean(screen.queryByRole('button', { name: 'Cancel job' }))).toBe(shown);
  });
});

describe('JobHistory', () => {
  it('lists jobs newest first, opens one, loads more', () => {
    const onOpen = vi.fn();
    const onLoadMore = vi.fn();
    const jobs = [
      { job_id: 'b', workflow_id: 'img-edit-to-video', status: 'running', created_at: '2026-01-01T00:01:00Z' },
      { job_id: 'a', workflow_id: 'gone-workflow', status: 'pending_retry', created_at: '2026-01-01T00:00:00Z' },
    ];
    render(<JobHistory jobs={jobs} workflows={[WORKFLOW]} onOpen={onOpen} hasMore onLoadMore={onLoadMore} activeJobId="b" />);
    const buttons = screen.getAllByRole('button');
    expect(buttons[0].textContent).toContain('Image Edit to Video');
    expect(buttons[0].getAttribute('aria-current')).toBe('true');
    expect(buttons[1].textContent).toContain('gone-workflow');
    expect(buttons[1].textContent).toContain('pending retry');
    fireEvent.click(buttons[1]);
    expect(onOpen).toHaveBeenCalledWith(jobs[1]);
    fireEvent.click(screen.getByRole('button', { name: 'Load more jobs' }));
    expect(onLoadMore).toHaveBeenCalledOnce();
  });
});

describe('SignIn', () => {
  it('signs in with email and password and shows a refusal', async () => {
    const onSignIn = vi.fn().mockRejectedValueOnce(new Error('Invalid login credentials'));
    render(<SignIn onSignIn={onSignIn} notice="Your session has ended. Please sign in again." />);
    expect(screen.getByRole('status').textContent).toContain('session has ended');
    fireEvent.change(screen.getByLabelText('Email'), { target: { value: 'a@b.c' } });
    fireEvent.change(screen.getByLabelText('Password'), { target: { value: 'pw' } });
    fireEvent.click(screen.getByRole('button', { name: 'Sign in' }));
    expect((await screen.findByRole('alert')).textContent).toBe('Invalid login credentials');
    expect(onSignIn).toHaveBeenCalledWith('a@b.c', 'pw');
  });
});
