import { formatWait } from '../format.js';
import { stepsOf, thumbnailOf } from '../jobState.js';

const STEP_LABELS = {
  pending: 'Waiting',
  running: 'Running',
  completed: 'Completed',
  failed_retryable: 'Waiting to retry',
  failed: 'Failed',
};
const JOB_LABELS = {
  pending: 'Starting',
  running: 'Running',
  completed: 'Completed',
  failed: 'Failed',
  pending_retry: 'Waiting to retry',
  cancelled: 'Cancelled',
};

/** Whole seconds from `now` to an ISO time, at least 0; null without a time. */
export function secondsUntil(iso, now) {
  if (!iso) return null;
  const at = Date.parse(iso);
  return Number.isNaN(at) ? null : Math.max(0, Math.ceil((at - now) / 1000));
}

function readable(name) {
  return (name || '').replaceAll('_', ' ');
}

function StepDetail({ step, retryAt, now, mediaUrl }) {
  if (step.status === 'running') {
    const progress = step.progress ?? step.provider?.progress;
    return (
      <>
        {progress != null && (
          <progress max={100} value={progress} aria-label={`${readable(step.step_name)} progress`}>
            {progress}%
          </progress>
        )}
        <p className="muted">
          {step.message || (step.provider ? `Waiting for ${step.provider.name} (${step.provider.status})` : 'Working…')}
          {progress != null ? ` ${progress}%` : ''}
        </p>
      </>
    );
  }
  if (step.status === 'failed_retryable') {
    const wait = secondsUntil(retryAt, now);
    return (
      <>
        <p className="step-error">{step.error}</p>
        <p className="countdown">
          {wait == null || wait === 0 ? 'Retrying now…' : `Next attempt in ${formatWait(wait)}`}
        </p>
      </>
    );
  }
  if (step.status === 'failed') {
    return <p className="step-error">{step.error || 'This step failed.'}</p>;
  }
  if (step.status === 'completed') {
    const thumbnail = thumbnailOf(step.output);
    return thumbnail ? (
      <img className="thumbnail" src={mediaUrl(thumbnail)} alt={`Output of ${readable(step.step_name)}`} />
    ) : null;
  }
  return null;
}

/**
 * The job's steps in order with their state: waiting, running with progress, waiting for
 * a retry with a countdown to `next_retry_at`, completed with a thumbnail, failed with the
 * message. A live region announces changes of state (not every percent).
 */
export function ProgressTracker({ job, workflow = null, now = Date.now(), mediaUrl = (url) => url }) {
  if (!job) return null;
  const steps = stepsOf(job);
  const described = Object.fromEntries((workflow?.steps || []).map((s) => [s.name, s.description]));
  const current = steps.find((s) => s.status !== 'completed') || steps[steps.length - 1];
  const jobLabel = JOB_LABELS[job.status] || job.status;
  const announcement = current
    ? `${jobLabel}. Step ${current.index + 1} of ${steps.length}, ${readable(current.step_name)}: ${(STEP_LABELS[current.status] || current.status).toLowerCase()}.`
    : jobLabel;
  return (
    <section className="progress-tracker" aria-labelledby="progress-heading" data-job-id={job.job_id}>
      <h2 id="progress-heading">
        Progress <span className={`badge badge-${job.status}`} data-job-status={job.status}>{jobLabel}</span>
      </h2>
      <p className="visually-hidden" role="status" aria-live="polite" aria-atomic="true">
        {announcement}
      </p>
      {job.status === 'failed' && job.error_info?.message && (
        <p className="step-error">{job.error_info.message}</p>
      )}
      <ol className="steps">
        {steps.map((step) => (
          <li key={step.index} className={`step step-${step.status}`} data-step={step.step_name} data-status={step.status}>
            <div className="step-head">
              <span className="step-name">{readable(step.step_name)}</span>
              <span className={`badge badge-${step.status}`}>{STEP_LABELS[step.status] || step.status}</span>
            </div>
            {described[step.step_name] && <p className="muted">{described[step.step_name]}</p>}
            <StepDetail
              step={step}
              retryAt={job.error_info?.step === step.index ? job.error_info.next_retry_at : null}
              now={now}
              mediaUrl={mediaUrl}
            />
          </li>
        ))}
      </ol>
    </section>
  );
}
