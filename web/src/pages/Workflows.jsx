import { useCallback, useEffect, useState } from 'react';
import { isFileRefusal } from '../api/client.js';
import { formatWait } from '../format.js';
import { CancelButton } from '../components/CancelButton.jsx';
import { ExecuteButton } from '../components/ExecuteButton.jsx';
import { FileUploader } from '../components/FileUploader.jsx';
import { JobHistory } from '../components/JobHistory.jsx';
import { ProgressTracker } from '../components/ProgressTracker.jsx';
import { ResultDisplay } from '../components/ResultDisplay.jsx';
import { RetryButton } from '../components/RetryButton.jsx';
import { StepOptions } from '../components/StepOptions.jsx';
import { WorkflowSelector } from '../components/WorkflowSelector.jsx';
import { useJobHistory } from '../hooks/useJobHistory.js';
import { useJobStream } from '../hooks/useJobStream.js';
import { useNow } from '../hooks/useNow.js';
import { useWorkflows } from '../hooks/useWorkflows.js';

const NO_OPTIONS = { models: {}, prompts: {} };

function optionsToSend(options) {
  const sent = {};
  if (Object.keys(options.models).length) sent.models = options.models;
  if (Object.keys(options.prompts).length) sent.prompts = options.prompts;
  return Object.keys(sent).length ? sent : null;
}

function rateLimitedUntil(error, now) {
  return now + (error.retryAfterSeconds ?? 5) * 1000;
}

/**
 * The Workflows page: pick a workflow, upload a file, choose models and prompts, run it,
 * follow its steps, retry or cancel it, watch and download the video, reopen past jobs.
 * `api` is `createApiClient(...)`; `onUnauthorized` runs on any 401 (back to sign-in).
 */
export function WorkflowsPage({ api, onUnauthorized = () => {}, streamOptions = {}, historyLimit = 10 }) {
  const workflows = useWorkflows(api);
  const history = useJobHistory(api, { limit: historyLimit });
  const [workflowId, setWorkflowId] = useState(null);
  const [file, setFile] = useState(null);
  const [options, setOptions] = useState(NO_OPTIONS);
  const [jobId, setJobId] = useState(null);
  const [errors, setErrors] = useState({ file: null, options: null, form: null, action: null });
  const [executeRetryAt, setExecuteRetryAt] = useState(null);
  const [actionRetryAt, setActionRetryAt] = useState(null);
  const [busy, setBusy] = useState(null); // 'execute' | 'retry' | 'cancel'
  const stream = useJobStream(jobId, { api, ...streamOptions });
  const job = stream.job;
  const now = useNow(1000, Boolean(executeRetryAt || actionRetryAt || job?.status === 'pending_retry'));

  const workflow = workflows.workflows.find((w) => w.id === workflowId) || null;
  const jobWorkflow = workflows.workflows.find((w) => w.id === job?.workflow_id) || null;

  useEffect(() => {
    if (!workflowId && workflows.workflows.length) setWorkflowId(workflows.workflows[0].id);
  }, [workflowId, workflows.workflows]);

  const unauthorized = [workflows.error, history.error, stream.error].some((e) => e?.status === 401);
  useEffect(() => {
    if (unauthorized) onUnauthorized();
  }, [unauthorized, onUnauthorized]);

  // The history shows each job's latest status: read it again when the followed job moves.
  const { reload: reloadHistory } = history;
  useEffect(() => {
    if (job?.status) reloadHistory();
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [job?.status]);

  const fail = useCallback(
    (error, where) => {
      if (error?.status === 401) {
        onUnauthorized();
        return;
      }
      const at = Date.now();
      if (error?.status === 429) {
        if (where === 'execute') setExecuteRetryAt(rateLimitedUntil(error, at));
        else setActionRetryAt(rateLimitedUntil(error, at));
        return;
      }
      if (where === 'execute' && isFileRefusal(error)) {
        setErrors((old) => ({ ...old, file: error.message }));
      } else if (where === 'execute' && error?.status === 422) {
        setErrors((old) => ({ ...old, options: error.message }));
      } else {
        const key = where === 'execute' ? 'form' : 'action';
        setErrors((old) => ({ ...old, [key]: error?.message || String(error) }));
      }
    },
    [onUnauthorized],
  );

  const execute = async (event) => {
    event.preventDefault();
    if (!workflowId || busy) return;
    setErrors({ file: null, options: null, form: null, action: null });
    setBusy('execute');
    try {
      const started = await api.execute({ workflowId, file, options: optionsToSend(options) });
      setExecuteRetryAt(null);
      setJobId(started.job_id);
    } catch (error) {
      fail(error, 'execute');
    } finally {
      setBusy(null);
    }
  };

  const act = async (kind) => {
    setErrors((old) => ({ ...old, action: null }));
    setBusy(kind);
    try {
      if (kind === 'retry') {
        await api.retry(jobId);
        stream.resume();
      } else {
        await api.cancel(jobId);
        await stream.refresh();
      }
      setActionRetryAt(null);
      history.reload();
    } catch (error) {
      fail(error, kind);
      stream.refresh();
    } finally {
      setBusy(null);
    }
  };

  const chooseWorkflow = (id) => {
    setWorkflowId(id);
    setOptions(NO_OPTIONS);
    setErrors((old) => ({ ...old, options: null }));
  };
  const chooseFile = (chosen) => {
    setFile(chosen);
    setErrors((old) => ({ ...old, file: null }));
  };
  const actionWait = actionRetryAt ? Math.ceil((actionRetryAt - now) / 1000) : 0;

  return (
    <div className="workflows-page">
      <form className="panel run-panel" onSubmit={execute} aria-labelledby="run-heading" noValidate>
        <h2 id="run-heading">Run a workflow</h2>
        {workflows.error && workflows.error.status !== 401 && (
          <p className="field-error" role="alert">
            The workflows could not be loaded: {workflows.error.message}
          </p>
        )}
        <WorkflowSelector workflows={workflows.workflows} value={workflowId} onChange={chooseWorkflow} disabled={busy === 'execute'} />
        {workflow?.preview_video && (
          <video className="preview" src={api.mediaUrl(workflow.preview_video)} poster={workflow.preview_thumbnail || undefined} controls muted playsInline aria-label={`Preview of ${workflow.name}`} />
        )}
        <FileUploader file={file} onChange={chooseFile} error={errors.file} disabled={busy === 'execute'} />
        <StepOptions workflow={workflow} value={options} onChange={setOptions} error={errors.options} disabled={busy === 'execute'} />
        <ExecuteButton disabled={!workflowId} busy={busy === 'execute'} retryAt={executeRetryAt} now={now} />
        {errors.form && (
          <p className="field-error" role="alert">
            {errors.form}
          </p>
        )}
      </form>

      <div className="panel job-panel">
        {job ? (
          <>
            <ProgressTracker job={job} workflow={jobWorkflow} now={now} mediaUrl={api.mediaUrl} />
            <div className="job-actions">
              <RetryButton canRetry={job.can_retry && job.status !== 'pending_retry'} onRetry={() => act('retry')} busy={busy === 'retry'} />
              <CancelButton status={job.status} onCancel={() => act('cancel')} busy={busy === 'cancel'} />
            </div>
            {actionWait > 0 && (
              <p className="notice" role="status">
                Too many requests. You can try again in {formatWait(actionWait)}.
              </p>
            )}
            {errors.action && (
              <p className="field-error" role="alert">
                {errors.action}
              </p>
            )}
            {job.status === 'completed' && <ResultDisplay result={job.result} mediaUrl={api.mediaUrl} />}
          </>
        ) : (
          <p className="muted">{jobId ? 'Loading the job…' : 'Run a workflow or open a past job to follow it here.'}</p>
        )}
        {stream.error && stream.error.status !== 401 && !job && (
          <p className="field-error" role="alert">
            {stream.error.message}
          </p>
        )}
      </div>

      <div className="panel history-panel">
        <JobHistory
          jobs={history.jobs.map((past) => (job && past.job_id === job.job_id ? { ...past, status: job.status } : past))}
          workflows={workflows.workflows}
          onOpen={(past) => setJobId(past.job_id)}
          hasMore={history.hasMore}
          onLoadMore={history.loadMore}
          loading={history.loading}
          activeJobId={jobId}
        />
      </div>
    </div>
  );
}
